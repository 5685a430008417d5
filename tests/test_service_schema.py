"""The OpenAPI schema against the app itself: schemathesis generates valid and invalid requests from the
schema and runs every check (no server error, statuses and bodies as documented, schema-invalid data
rejected, schema-valid data accepted). Small limits keep each example cheap on the tiny exports."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS
from schemathesis.generation import GenerationMode

from tests.service_helpers import make_app, running

pytest_plugins = ["tests.service_fixtures"]

EXAMPLES = 15  # per operation and mode: the whole module runs in about half a minute
LIMITS = {"max_texts": 4, "max_text_chars": 120, "request_timeout_s": 30}


@pytest.fixture(scope="module")
def app(variants_root):
    app = make_app(variants_root, **LIMITS)
    with running(app):  # the lifespan discovers the variants the schema names
        yield app


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_app_conforms_to_its_schema(api_schema, mode):
    # schemathesis' own pytest plugin does not run under pytest 9 yet: one hypothesis test per operation
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 6
    for op in operations:
        if mode == GenerationMode.NEGATIVE and not (len(op.body) or len(op.query)):
            continue  # nothing to get wrong (GET /healthz)

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=CHECKS.get_all())

        check()


def test_the_schema_states_the_limits_of_the_settings(app):
    with running(app) as c:
        spec = c.get("/openapi.json").json()
    req = spec["components"]["schemas"]["TranslateRequest"]
    assert req["properties"]["text"]["maxLength"] == LIMITS["max_text_chars"]
    assert req["properties"]["text"]["minLength"] == 1 and req["properties"]["text"]["pattern"]
    assert req["properties"]["texts"]["maxItems"] == LIMITS["max_texts"]
    assert req["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    op = spec["paths"]["/translate"]["post"]
    variant = next(p for p in op["parameters"] if p["name"] == "variant")
    assert variant["schema"]["anyOf"][0]["enum"] == ["tiny", "tiny-int8"]
    assert {"400", "404", "413", "422", "499", "503"} <= set(op["responses"])
    assert {"400", "413", "422"} <= set(spec["paths"]["/attention"]["post"]["responses"])


def test_the_non_blank_pattern_is_pythons_whitespace():
    """The schema's "not only whitespace" pattern rejects exactly what the service strips to nothing: Python's
    str.isspace() set, spelt out (ECMA's \\S, which schema tools use, lets U+001C-U+001F and U+0085 through)."""
    import re
    import sys

    from service.schemas import NON_BLANK

    for i in range(sys.maxunicode + 1):
        c = chr(i)
        assert (re.search(NON_BLANK, c) is None) == c.isspace(), hex(i)

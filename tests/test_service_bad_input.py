"""Bad input gets a clear 4xx, never a 5xx, and the service keeps serving afterwards."""

from __future__ import annotations

import json
import random

import pytest

from tests.service_helpers import make_app, metric, running

pytest_plugins = ["tests.service_fixtures"]  # variants_root, writable_root

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(variants_root):
    with running(make_app(variants_root, max_texts=4, max_text_chars=50, max_body_bytes=4096)) as c:
        yield c


def post(client, body: bytes | str, query: str = "", headers=JSON):
    return client.post(f"/translate{query}", content=body.encode() if isinstance(body, str) else body, headers=headers)


BAD = [
    # (case, body, status, words the detail must contain)
    ("empty text", {"text": ""}, 422, "empty or whitespace"),
    ("whitespace text", {"text": " \t\n "}, 422, "empty or whitespace"),
    ("whitespace in a list", {"texts": ["ok", "  "]}, 422, "text 1 is empty"),
    ("empty list", {"texts": []}, 422, "texts"),
    ("too many texts", {"texts": ["a"] * 5}, 422, "limit is 4"),
    ("text too long", {"text": "a" * 51}, 422, "limit is 50"),
    ("beam too large", {"text": "a", "beam": 9}, 422, "beam"),
    ("beam zero", {"text": "a", "beam": 0}, 422, "beam"),
    ("max_len zero", {"text": "a", "max_len": 0}, 422, "max_len"),
    ("text is a number", {"text": 5}, 422, "text: Input should be a valid string"),
    ("texts is a string", {"texts": "a"}, 422, "texts"),
    ("texts holds a number", {"texts": ["a", 3]}, 422, "texts.1"),
    ("beam is a string", {"text": "a", "beam": "3"}, 422, "beam"),
    ("beam is a float", {"text": "a", "beam": 2.5}, 422, "beam"),
    ("beam is a bool", {"text": "a", "beam": True}, 422, "beam"),
    ("both text and texts", {"text": "a", "texts": ["b"]}, 422, "exactly one"),
    ("neither", {"beam": 2}, 422, "exactly one"),
    ("unknown field", {"text": "a", "beams": 2}, 422, "beams"),
    ("lone surrogate", '{"text": "\\ud800 x"}', 422, "surrogate"),
    ("a list body", ["a"], 422, "JSON object"),
    ("a null body", None, 422, "JSON object"),
]


@pytest.mark.parametrize("case,body,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_json_bodies_get_a_clear_4xx(client, case, body, status, words):
    r = post(client, body if isinstance(body, str) else json.dumps(body))
    assert r.status_code == status, r.text
    assert words in r.json()["detail"], r.json()


def test_malformed_json_and_invalid_utf8_are_400(client):
    r = post(client, '{"text": "a"')
    assert r.status_code == 400 and "not valid JSON" in r.json()["detail"]
    r = post(client, b'{"text": "caf\xe9"}')  # Latin-1, not UTF-8
    assert r.status_code == 400 and "not valid UTF-8" in r.json()["detail"]
    r = post(client, "[" * 3000)  # deeper than the JSON parser goes
    assert r.status_code in (400, 422), r.text


def test_body_too_large_is_413_with_or_without_content_length(client):
    big = json.dumps({"text": "a" * 5000})
    r = post(client, big)
    assert r.status_code == 413 and "TZIP_MAX_BODY_BYTES" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(10):
            yield b" " * 1000

    r = client.post("/translate", content=chunks(), headers=JSON)
    assert r.status_code == 413


def test_unknown_variant_is_404_listing_the_known_ones_and_never_a_path(client, variants_root):
    for name in ("nope", "../tiny", "tiny/../../etc/passwd", str(variants_root / "tiny"), "TINY", "%00"):
        r = client.post("/translate", params={"variant": name}, json={"text": "a"})
        assert r.status_code == 404, (name, r.text)
        body = r.json()
        assert body["known_variants"] == ["tiny", "tiny-int8"]
        assert str(variants_root) not in r.text and "/" not in body["detail"]
    r = client.post("/translate", params={"variant": "x" * 500}, json={"text": "a"})
    assert r.status_code == 422  # absurdly long names are refused before the lookup


def test_wrong_content_type_is_a_clear_4xx(client):
    r = client.post("/translate", content=b"A man.", headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "application/json" in r.json()["detail"]


def test_fuzzed_bodies_never_yield_a_5xx_and_the_service_keeps_serving(client):
    rng = random.Random(0)
    atoms = [None, True, 0, -1, 2**70, 1.5, float("nan"), "", " ", "a", "\u0000", "\U0001f600" * 3, [], {}, ["a"], [[]]]
    keys = ["text", "texts", "beam", "max_len", "variant", "", "\u00e9"]
    bodies: list[bytes] = []
    for _ in range(60):
        obj = {rng.choice(keys): rng.choice(atoms) for _ in range(rng.randint(0, 3))}
        bodies.append(json.dumps(obj).encode())
    for _ in range(30):
        bodies.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
    bodies += [b"", b"{}", b"NaN", b'{"text": "\\udfff"}', b'{"text": "a", "text": 5}', b"\xef\xbb\xbf{}", b'{"texts": [' + b'"a",' * 3 + b'"b"]}']
    for body in bodies:
        r = post(client, body)
        assert r.status_code < 500, (body, r.status_code, r.text)
        assert r.status_code == 200 or r.json().get("detail"), (body, r.text)
    ok = post(client, json.dumps({"text": "A man is riding a bike."}))
    assert ok.status_code == 200 and len(ok.json()["translations"]) == 1
    assert metric(client.get("/metrics").text, "tzip_requests_total", variant="tiny", status="500") == 0


def test_long_outputs_are_capped_at_the_models_positions_not_a_crash(client):
    # the tiny model has 64 positions; 50 pieces of source allow 1.5 * 50 + 10 > 64 output tokens
    r = post(client, json.dumps({"texts": ["qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvb"] * 2, "max_len": 512, "beam": 2}))
    assert r.status_code == 200, r.text

"""The API through the ASGI app on real exported tiny variants: translation per variant, /variants,
liveness and readiness, metrics, the OpenAPI docs."""

from __future__ import annotations

import threading

import pytest

from compression.runtime import manifest
from compression.runtime.catalogue import find_exported
from compression.runtime.search import SearchConfig
from compression.runtime.translator import OnnxTranslator, load_translator
from tests.onnx_fixtures import SOURCES
from tests.service_helpers import VARIANTS, make_app, metric, running

pytest_plugins = ["tests.service_fixtures"]  # variants_root, writable_root


@pytest.fixture(scope="module")
def client(variants_root):
    with running(make_app(variants_root)) as c:
        yield c


@pytest.fixture(scope="module")
def reference(variants_root):
    """What each variant says when called directly, without the service."""
    return {name: load_translator(variants_root, variant=name) for name in VARIANTS}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_translates_as_its_own_model(client, reference, variants_root, name):
    r = client.post(f"/translate?variant={name}", json={"text": SOURCES[0]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["translations"] == reference[name].translate([SOURCES[0]], SearchConfig())
    man = manifest.read(find_exported(name, variants_root))
    assert body["variant"] == name
    assert body["model_size_bytes"] == man["model_bytes"] > 0
    assert body["bleu"] == man["bleu"] and body["compression_ratio"] == man["ratio"]
    assert body["provider"] == "CPUExecutionProvider"
    lat = body["latency_ms"]
    assert 0 <= lat["queue_ms"] and 0 < lat["inference_ms"] <= lat["total_ms"]
    assert lat["queue_ms"] + lat["inference_ms"] <= lat["total_ms"] + 1


def test_the_variant_switch_changes_the_model(client):
    out = {v: client.post(f"/translate?variant={v}", json={"text": SOURCES[1]}).json()["translations"] for v in VARIANTS}
    assert out["tiny"] != out["tiny-int8"]


def test_several_texts_with_beam_search_match_the_direct_call(client, reference):
    r = client.post("/translate?variant=tiny", json={"texts": SOURCES[:5], "beam": 3, "max_len": 12})
    assert r.status_code == 200, r.text
    assert r.json()["translations"] == reference["tiny"].translate(SOURCES[:5], SearchConfig(beam=3, max_len=12))


def test_without_a_variant_the_default_answers_and_the_default_is_configurable(client, variants_root):
    assert client.post("/translate", json={"text": "A dog."}).json()["variant"] == "tiny"  # the uncompressed one
    with running(make_app(variants_root, default_variant="tiny-int8")) as other:
        assert other.post("/translate", json={"text": "A dog."}).json()["variant"] == "tiny-int8"
        assert other.get("/readyz").json()["default_variant"] == "tiny-int8"


def test_variants_lists_manifest_figures_and_what_is_loaded(variants_root):
    with running(make_app(variants_root)) as c:  # fresh app: only the default is preloaded
        listed = {v["name"]: v for v in c.get("/variants").json()}
        assert sorted(listed) == sorted(VARIANTS)
        assert listed["tiny"]["loaded"] and listed["tiny"]["default"]
        assert not listed["tiny-int8"]["loaded"] and listed["tiny-int8"]["state"] == "available"
        for name, v in listed.items():
            man = manifest.read(find_exported(name, variants_root))
            assert (v["bytes"], v["model_bytes"], v["bleu"], v["method"]) == (
                man["bytes"], man["model_bytes"], man["bleu"], man["method"])
            assert "path" not in v  # the server's directories stay private
        c.post("/translate?variant=tiny-int8", json={"text": "A cat."})
        after = {v["name"]: v for v in c.get("/variants").json()}
        assert after["tiny-int8"]["loaded"] and after["tiny-int8"]["provider"] == "CPUExecutionProvider"


def test_liveness_answers_while_loading_and_readiness_waits_for_the_default(variants_root):
    gate = threading.Event()

    def slow_loader(*args, **kw):
        gate.wait(20)
        return OnnxTranslator(*args, **kw)

    with running(make_app(variants_root, loader=slow_loader), ready=False) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503 and "loading" in r.json()["detail"]
        gate.set()
        from tests.service_helpers import wait_ready

        wait_ready(c)
        assert c.get("/readyz").json()["status"] == "ready"


def test_preload_all_loads_every_variant_before_traffic(variants_root):
    with running(make_app(variants_root, preload=["all"])) as c:
        for _ in range(200):
            if all(v["loaded"] for v in c.get("/variants").json()):
                break
            threading.Event().wait(0.02)
        assert all(v["loaded"] for v in c.get("/variants").json())


def test_metrics_count_requests_latency_batches_and_loaded_variants(client):
    client.post("/translate?variant=tiny", json={"texts": SOURCES[:3]})
    client.post("/translate?variant=nope", json={"text": "x"})
    text = client.get("/metrics").text
    assert metric(text, "tzip_requests_total", variant="tiny", status="200") >= 1
    assert metric(text, "tzip_requests_total", variant="-", status="404") >= 1
    assert metric(text, "tzip_request_latency_seconds_count", variant="tiny") >= 1
    assert metric(text, "tzip_queue_latency_seconds_count", variant="tiny") >= 1
    assert metric(text, "tzip_batch_size_sum", variant="tiny") >= 3
    assert metric(text, "tzip_variant_loaded", variant="tiny") == 1
    assert "tzip_queue_depth" in text and "tzip_inference_latency_seconds_bucket" in text


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/translate", "/variants", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    params = {p["name"] for p in spec["paths"]["/translate"]["post"]["parameters"]}
    assert "variant" in params
    assert client.get("/docs").status_code == 200


def test_variants_survives_odd_manifest_fields(variants_root):
    from compression.runtime.catalogue import list_exported
    from service.main import create_app
    from service.settings import load_settings

    def lister(root):
        found = list_exported(root)
        for m in found:
            if m["name"] == "tiny-int8":
                m.update(bits="eight", sparsity=True, ratio=None, bleu={"beam5": 30.5, "greedy": 30.1})
        return found

    with running(create_app(load_settings(model_root=variants_root), lister=lister)) as c:
        r = c.get("/variants")
        assert r.status_code == 200
        odd = next(v for v in r.json() if v["name"] == "tiny-int8")
        assert (odd["bits"], odd["sparsity"], odd["ratio"], odd["bleu"]) == (None, None, None, 30.5)

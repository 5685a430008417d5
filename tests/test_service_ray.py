"""The service on Ray Serve (service/ray_serve.py), on a local cluster over real exported tiny variants: the
same translations as the single-process service for two variants, the same 4xx answers, 404 for an unknown
variant, 503 for a variant the replicas refuse while the others serve, and merged /metrics.

One local cluster per mode (3 logical CPUs, two replicas), each shut down after its tests: ~40 s each.
"""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest

from compression.runtime.catalogue import find_exported
from tests.onnx_fixtures import SOURCES
from tests.service_helpers import build_root, make_app, metric, running
from tests.test_service_registry import _tamper

ray = pytest.importorskip("ray", reason="ray is not installed: pip install '.[ray]' (make test installs it)")
serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed: pip install '.[ray]'")

VARIANTS = ("tiny", "tiny-int8")
BROKEN = "tiny-broken"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = build_root(tmp_path_factory.mktemp("ray-served"), extra={BROKEN: {"seed": 2, "precision": "fp32"}})
    _tamper(find_exported(BROKEN, root))
    return root


@pytest.fixture(scope="module", params=["split", "combined"])
def ray_url(root, request):
    """The deployment in each mode (split: ingress + multiplexed translators; combined: whole-service replicas)."""
    from service.ray_serve import build
    from service.ray_settings import load_ray_settings

    env = {"TZIP_MODEL_ROOT": str(root), "TZIP_DEFAULT_VARIANT": "tiny", "TZIP_RAY_REPLICAS": "2", "TZIP_RAY_MODE": request.param,
           "TZIP_RAY_REPLICA_CPUS": "1", "TZIP_RAY_INGRESS_CPUS": "0.5", "TZIP_ORT_THREADS": "1",
           "TZIP_LOG_LEVEL": "warning"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the replicas read their settings from TZIP_* (copied into their runtime_env)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)  # never a neighbour's cluster
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(load_ray_settings()), name="tzip", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 120
        while httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < end, httpx.get(f"{url}/readyz").text
            time.sleep(0.2)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def client(ray_url):
    with httpx.Client(base_url=ray_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def single(root):
    """The single-process service on the same exports: the reference."""
    with running(make_app(root, default_variant="tiny")) as c:
        yield c


REQUESTS = [{"text": SOURCES[0]}, {"texts": SOURCES[:4]}, {"texts": SOURCES[1:4], "beam": 3, "max_len": 12}]


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_translates_as_the_single_process_service(client, single, variant):
    for body in REQUESTS:
        got, want = client.post(f"/translate?variant={variant}", json=body), single.post(f"/translate?variant={variant}", json=body)
        assert got.status_code == want.status_code == 200, got.text
        g, w = got.json(), want.json()
        assert g["translations"] == w["translations"]
        for key in ("variant", "model_size_bytes", "compression_ratio", "bleu", "provider"):
            assert g[key] == w[key], key
    assert client.post("/translate", json={"text": SOURCES[0]}).json()["variant"] == "tiny"  # the default


def test_the_two_variants_really_differ(client):
    out = {v: client.post(f"/translate?variant={v}", json={"text": SOURCES[1]}).json()["translations"] for v in VARIANTS}
    assert out["tiny"] != out["tiny-int8"]


@pytest.mark.parametrize("body, status", [
    ({"text": ""}, 422), ({"texts": []}, 422), ({"text": "A dog.", "beam": 99}, 422), ({"text": 5}, 422),
    ({"text": "A dog.", "colour": "red"}, 422), ({"text": "A", "texts": ["B"]}, 422), ("{not json", 400),
])
def test_bad_input_gets_the_same_4xx_as_the_single_process_service(client, single, body, status):
    kw = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    got, want = client.post("/translate", **kw), single.post("/translate", **kw)
    assert got.status_code == want.status_code == status
    assert got.json() == want.json()


def test_an_unknown_variant_is_404_with_the_known_ones(client):
    r = client.post("/translate?variant=nope", json={"text": "A dog."})
    assert r.status_code == 404
    assert r.json()["known_variants"] == sorted([*VARIANTS, BROKEN])


def test_a_variant_the_replicas_refuse_is_503_and_the_others_keep_serving(client):
    r = client.post(f"/translate?variant={BROKEN}", json={"text": "A dog."})
    assert r.status_code == 503 and "re-export" in r.json()["detail"], r.text
    assert client.post("/translate?variant=tiny-int8", json={"text": "A dog."}).status_code == 200


def test_variants_and_metrics_cover_the_translator_replicas(client):
    client.post("/translate?variant=tiny-int8", json={"text": "A dog."})
    time.sleep(2.5)  # replicas report once a second
    listed = {v["name"]: v for v in client.get("/variants").json()}
    assert listed["tiny-int8"]["state"] == "loaded" and listed["tiny-int8"]["provider"] == "CPUExecutionProvider"
    text = client.get("/metrics").text
    assert metric(text, "tzip_requests_total", variant="tiny-int8", status="200") >= 1  # the ingress's own
    assert metric(text, "tzip_batch_size_count", variant="tiny-int8") >= 1  # from a translator replica
    assert metric(text, "tzip_variant_load_failures_total", variant=BROKEN) >= 1

"""Variant lifecycle on real exports: one load for concurrent first requests, LRU unloading under the
memory budget, tampered artifacts refused at load while the other variants keep serving."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from compression.runtime import manifest
from compression.runtime.catalogue import find_exported
from compression.runtime.translator import OnnxTranslator
from tests.service_helpers import build_root, make_app, metric, running, serving, wait_ready

pytest_plugins = ["tests.service_fixtures"]  # variants_root, writable_root

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class CountingLoader:
    def __init__(self, delay: float = 0.0):
        self.calls: Counter[str] = Counter()
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, directory, sessions):
        with self.lock:
            self.calls[manifest.read(directory)["name"]] += 1
        threading.Event().wait(self.delay)  # a slow load makes the first requests overlap
        return OnnxTranslator(directory, sessions)


async def test_concurrent_first_requests_load_a_variant_once(variants_root):
    loader = CountingLoader(delay=0.3)
    async with serving(make_app(variants_root, loader=loader)) as client:
        assert loader.calls == {"tiny": 1}  # only the default is preloaded
        rs = await asyncio.gather(*(client.post("/translate?variant=tiny-int8", json={"text": "A dog."}) for _ in range(20)))
        assert [r.status_code for r in rs] == [200] * 20
        assert loader.calls == {"tiny": 1, "tiny-int8": 1}


def test_memory_budget_unloads_the_least_recently_used_variant(tmp_path):
    root = build_root(tmp_path, extra={"tiny-b": {"seed": 2, "precision": "fp32"}})
    sizes = {v: sum(f.stat().st_size for f in find_exported(v, root).iterdir()) for v in ("tiny", "tiny-int8", "tiny-b")}
    budget_mb = (sizes["tiny"] + max(sizes["tiny-int8"], sizes["tiny-b"]) + 1000) / 2**20  # default + one more
    loader = CountingLoader()
    with running(make_app(root, loader=loader, memory_budget_mb=budget_mb)) as c:
        def loaded():
            return sorted(v["name"] for v in c.get("/variants").json() if v["loaded"])

        assert c.post("/translate?variant=tiny-int8", json={"text": "A"}).status_code == 200
        assert loaded() == ["tiny", "tiny-int8"]
        assert c.post("/translate?variant=tiny-b", json={"text": "A"}).status_code == 200
        assert loaded() == ["tiny", "tiny-b"]  # tiny-int8 was the least recently used; the default stays
        assert c.post("/translate?variant=tiny-int8", json={"text": "A"}).status_code == 200
        assert loaded() == ["tiny", "tiny-int8"]
        assert loader.calls == {"tiny": 1, "tiny-int8": 2, "tiny-b": 1}
        text = c.get("/metrics").text
        assert metric(text, "tzip_variant_loaded", variant="tiny-b") == 0
        assert metric(text, "tzip_loaded_bytes") == sum(
            v["bytes"] for v in c.get("/variants").json() if v["loaded"])


def test_a_variant_larger_than_the_budget_is_503_not_a_crash(variants_root):
    tiny = sum(f.stat().st_size for f in find_exported("tiny", variants_root).iterdir())
    with running(make_app(variants_root, memory_budget_mb=(tiny + 1000) / 2**20)) as c:
        r = c.post("/translate?variant=tiny-int8", json={"text": "A"})
        assert r.status_code == 503 and "TZIP_MEMORY_BUDGET_MB" in r.json()["detail"] and r.headers["Retry-After"]
        assert c.post("/translate", json={"text": "A"}).status_code == 200


def _tamper(directory) -> None:
    weights = max((p for p in directory.iterdir() if p.suffix in (".bin", ".onnx")), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))


def test_a_tampered_variant_is_refused_at_load_and_the_others_keep_serving(writable_root):
    _tamper(find_exported("tiny-int8", writable_root))
    with running(make_app(writable_root)) as c:
        for _ in range(2):  # refused, and refused again (not retried on every request)
            r = c.post("/translate?variant=tiny-int8", json={"text": "A dog."})
            assert r.status_code == 503 and "integrity check failed" in r.json()["detail"], r.text
            assert str(writable_root) not in r.text
        listed = {v["name"]: v for v in c.get("/variants").json()}
        assert listed["tiny-int8"]["state"] == "refused" and "re-export" in listed["tiny-int8"]["error"]
        assert c.post("/translate?variant=tiny", json={"text": "A dog."}).status_code == 200
        assert metric(c.get("/metrics").text, "tzip_variant_load_failures_total", variant="tiny-int8") == 1


def test_a_tampered_default_leaves_the_service_alive_but_not_ready(writable_root):
    _tamper(find_exported("tiny", writable_root))
    with running(make_app(writable_root), ready=False) as c:
        for _ in range(500):
            r = c.get("/readyz")
            if "failed" in r.json().get("detail", ""):
                break
            threading.Event().wait(0.02)
        assert r.status_code == 503 and "integrity check failed" in r.json()["detail"]
        assert c.get("/healthz").status_code == 200
        assert c.post("/translate?variant=tiny-int8", json={"text": "A dog."}).status_code == 200


def test_a_refused_variant_is_retried_after_the_cooldown_once_repaired(variants_root, writable_root):
    target = find_exported("tiny-int8", writable_root)
    original = {p.name: p.read_bytes() for p in target.iterdir()}
    _tamper(target)
    with running(make_app(writable_root, retry_failed_load_s=0.2)) as c:
        assert c.post("/translate?variant=tiny-int8", json={"text": "A"}).status_code == 503
        for name, data in original.items():  # re-exported (here: restored)
            (target / name).write_bytes(data)
        threading.Event().wait(0.3)
        assert c.post("/translate?variant=tiny-int8", json={"text": "A"}).status_code == 200
        wait_ready(c)

"""Variant lifecycle on real exports: one load for concurrent first requests, LRU unloading under the
resident-memory budget, broken artifacts (manifest, sha256, ONNX) listed and answered 503 while the other
variants keep serving."""

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


class FakeResident:
    """The process's RSS as the registry measures it: 100 MB at start, 50 MB more for each load."""

    MB = 2**20

    def __init__(self, monkeypatch):
        self.rss = 100 * self.MB
        for module in ("service.memory", "service.registry"):
            monkeypatch.setattr(f"{module}.rss_bytes", lambda: self.rss)

    def loader(self, inner):
        def load(directory, sessions):
            self.rss += 50 * self.MB
            return inner(directory, sessions)
        return load


def test_memory_budget_counts_measured_resident_bytes_and_unloads_the_least_recently_used(tmp_path, monkeypatch):
    root = build_root(tmp_path, extra={"tiny-b": {"seed": 2, "precision": "fp32"}})
    fake, loader = FakeResident(monkeypatch), CountingLoader()
    budget_mb = 100 + 2 * 50 + 10  # the process at start, the default and one more variant
    with running(make_app(root, loader=fake.loader(loader), memory_budget_mb=budget_mb, inference_reserve_mb=0)) as c:
        def loaded():
            return sorted(v["name"] for v in c.get("/variants").json() if v["loaded"])

        assert c.post("/translate?variant=tiny-int8", json={"text": "A"}).status_code == 200
        assert loaded() == ["tiny", "tiny-int8"]
        assert c.post("/translate?variant=tiny-b", json={"text": "A"}).status_code == 200
        assert loaded() == ["tiny", "tiny-b"]  # tiny-int8 was the least recently used; the default stays
        assert c.post("/translate?variant=tiny-int8", json={"text": "A"}).status_code == 200
        assert loaded() == ["tiny", "tiny-int8"]
        assert loader.calls == {"tiny": 1, "tiny-int8": 2, "tiny-b": 1}
        listed = {v["name"]: v for v in c.get("/variants").json()}
        assert listed["tiny"]["resident_bytes"] == 50 * fake.MB and listed["tiny-b"]["resident_bytes"] is None
        text = c.get("/metrics").text
        assert metric(text, "tzip_variant_loaded", variant="tiny-b") == 0
        assert metric(text, "tzip_variant_resident_bytes", variant="tiny-int8") == 50 * fake.MB
        assert metric(text, "tzip_variant_resident_bytes", variant="tiny-b") == 0
        assert metric(text, "tzip_memory_budget_bytes") == budget_mb * fake.MB
        assert metric(text, "tzip_loaded_bytes") == sum(
            v["bytes"] for v in c.get("/variants").json() if v["loaded"])


def test_a_variant_that_does_not_fit_the_budget_is_503_not_a_crash(variants_root, monkeypatch):
    fake = FakeResident(monkeypatch)
    loader = fake.loader(OnnxTranslator)
    with running(make_app(variants_root, loader=loader, memory_budget_mb=100 + 50 + 10, inference_reserve_mb=0)) as c:
        r = c.post("/translate?variant=tiny-int8", json={"text": "A"})  # expected to need what the default needed
        assert r.status_code == 503 and "TZIP_MEMORY_BUDGET_MB" in r.json()["detail"] and r.headers["Retry-After"]
        assert c.post("/translate", json={"text": "A"}).status_code == 200


def test_resident_bytes_are_measured_for_real(variants_root):
    with running(make_app(variants_root)) as c:
        tiny = next(v for v in c.get("/variants").json() if v["name"] == "tiny")
        assert tiny["resident_bytes"] >= tiny["bytes"]  # at least its bytes on disk
        assert metric(c.get("/metrics").text, "tzip_variant_resident_bytes", variant="tiny") == tiny["resident_bytes"]
        assert tiny["rss_added_bytes"] == tiny["resident_bytes"] and tiny["disk_bytes"] == tiny["bytes"] > 0
        assert tiny["resident_weight_bytes"] == tiny["model_bytes"]  # graph files: their weights as read
        text = c.get("/metrics").text
        assert metric(text, "tzip_variant_disk_bytes", variant="tiny") == tiny["disk_bytes"]
        assert metric(text, "tzip_variant_weight_bytes", variant="tiny") == tiny["resident_weight_bytes"]
        body = c.post("/translate?variant=tiny", json={"text": "A dog."}).json()
        for key in ("disk_bytes", "resident_weight_bytes", "rss_added_bytes"):
            assert body[key] == tiny[key], key


def _tamper(directory) -> None:
    weights = max((p for p in directory.iterdir() if p.suffix in (".bin", ".onnx")), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))


def test_a_tampered_variant_is_listed_broken_and_the_others_keep_serving(writable_root):
    _tamper(find_exported("tiny-int8", writable_root))
    with running(make_app(writable_root)) as c:
        for _ in range(2):  # broken, and broken again (not retried on every request)
            r = c.post("/translate?variant=tiny-int8", json={"text": "A dog."})
            assert r.status_code == 503 and "integrity check failed" in r.json()["detail"], r.text
            assert str(writable_root) not in r.text
        listed = {v["name"]: v for v in c.get("/variants").json()}
        assert listed["tiny-int8"]["state"] == "broken" and "re-export" in listed["tiny-int8"]["error"]
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


def test_a_broken_variant_is_retried_after_the_cooldown_once_repaired(variants_root, writable_root):
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


def test_an_unreadable_manifest_is_listed_broken_and_answers_503_not_404(writable_root, caplog):
    (find_exported("tiny-int8", writable_root) / "manifest.json").write_text('{"name": "tiny-int8", ')  # cut short
    with running(make_app(writable_root)) as c:
        listed = {v["name"]: v for v in c.get("/variants").json()}
        broken = listed["tiny-int8"]  # no name can be read: listed under its directory
        assert broken["state"] == "broken" and "manifest unreadable" in broken["error"] and not broken["loaded"]
        r = c.post("/translate?variant=tiny-int8", json={"text": "A dog."})
        assert r.status_code == 503 and "manifest unreadable" in r.json()["detail"], r.text
        assert c.post("/translate?variant=tiny", json={"text": "A dog."}).status_code == 200
    assert any("tiny-int8" in r.message and "broken" in r.message for r in caplog.records if r.levelname == "ERROR")


def test_a_truncated_onnx_file_is_listed_broken_before_any_request(writable_root):
    graph = find_exported("tiny-int8", writable_root) / "decoder.onnx"
    graph.write_bytes(graph.read_bytes()[:100])
    with running(make_app(writable_root)) as c:
        for _ in range(500):  # the background check of every file at start-up
            listed = {v["name"]: v for v in c.get("/variants").json()}
            if listed["tiny-int8"]["state"] == "broken":
                break
            threading.Event().wait(0.02)
        assert listed["tiny-int8"]["state"] == "broken" and "sha256" in listed["tiny-int8"]["error"]
        assert c.post("/translate?variant=tiny-int8", json={"text": "A"}).status_code == 503


def test_on_the_cpu_the_loaded_translator_decodes_row_groups_of_one_thread_each(variants_root):
    from compression.runtime.greedy import GreedyLoopTranslator
    from compression.runtime.sessions import SessionFactory

    with running(make_app(variants_root, device="cpu", ort_threads=3)) as client:
        registry = client.app.state.registry
        assert (registry.sessions.threads, registry.sessions.workers) == (1, 3)
        assert client.post("/translate", json={"texts": ["A dog runs.", "Two men."]}).status_code == 200
        translator = registry.resolve(None).translator
        assert isinstance(translator, GreedyLoopTranslator) and translator.workers == 3
    with running(make_app(variants_root, device="cpu", ort_threads=3, ort_row_groups=False)) as client:
        assert client.app.state.registry.sessions == SessionFactory("cpu", 3, False, cpu_arena=False)

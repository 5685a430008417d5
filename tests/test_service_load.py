"""Concurrency through the ASGI app: 200 concurrent requests all answered and batched, load shedding
with 503 + Retry-After, the per-request timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from compression.runtime.search import SearchConfig
from compression.runtime.translator import OnnxTranslator, load_translator
from tests.onnx_fixtures import SOURCES
from tests.service_helpers import make_app, metric, serving

pytest_plugins = ["tests.service_fixtures"]  # variants_root, writable_root

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_200_concurrent_requests_are_all_answered_in_batches(variants_root):
    app = make_app(variants_root, max_batch_size=32, max_wait_ms=20, preload=["all"])
    direct = {v: load_translator(variants_root, variant=v) for v in ("tiny", "tiny-int8")}
    async with serving(app) as client:
        jobs = [(("tiny", "tiny-int8")[i % 2], SOURCES[i % len(SOURCES)]) for i in range(200)]
        responses = await asyncio.gather(
            *(client.post(f"/translate?variant={v}", json={"text": s}) for v, s in jobs)
        )
        assert [r.status_code for r in responses] == [200] * 200
        expected = {(v, s): direct[v].translate([s], SearchConfig())[0] for v, s in set(jobs)}
        for (v, s), r in zip(jobs, responses, strict=True):  # batching never changes a translation
            assert r.json()["variant"] == v and r.json()["translations"] == [expected[(v, s)]]
        assert max(r.json()["batch_size"] for r in responses) > 1
        text = (await client.get("/metrics")).text
    for v in ("tiny", "tiny-int8"):
        calls = metric(text, "tzip_batch_size_count", variant=v)
        sentences = metric(text, "tzip_batch_size_sum", variant=v)
        assert sentences == 100 and calls < sentences  # some inference calls carried several requests
        assert metric(text, "tzip_batch_size_bucket", variant=v, le="1.0") < calls
        assert metric(text, "tzip_requests_total", variant=v, status="200") == 100
        assert metric(text, "tzip_queue_depth", variant=v) == 0


async def test_a_full_queue_sheds_with_503_and_retry_after_and_recovers(variants_root):
    app = make_app(variants_root, max_batch_size=1, max_wait_ms=0, max_queue=8, max_texts=8)
    async with serving(app) as client:
        body = {"texts": SOURCES[:8], "beam": 4}
        responses = await asyncio.gather(*(client.post("/translate", json=body) for _ in range(12)))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) == {200, 503} and codes.count(200) >= 1, codes
        for r in responses:
            if r.status_code == 503:
                assert int(r.headers["Retry-After"]) >= 1 and "retry later" in r.json()["detail"]
        # once the burst has drained the service answers normally again
        assert (await client.post("/translate", json={"text": "A dog."})).status_code == 200
        text = (await client.get("/metrics")).text
        assert metric(text, "tzip_shed_total", variant="tiny", reason="queue_full") == codes.count(503)
        assert metric(text, "tzip_requests_total", variant="tiny", status="503") == codes.count(503)


async def test_a_request_past_its_timeout_gets_503_and_the_next_one_is_served(variants_root):
    class Slow:
        """The real translator, made slow for texts that ask for it."""

        def __init__(self, inner):
            self.inner, self.provider = inner, inner.provider

        def translate(self, texts, cfg, batch_size):
            if any("slow" in t for t in texts):
                time.sleep(1.5)
            return self.inner.translate(texts, cfg, batch_size)

    def loader(*args, **kw):
        return Slow(OnnxTranslator(*args, **kw))

    app = make_app(variants_root, loader=loader, max_batch_size=1, max_wait_ms=0, request_timeout_s=0.5)
    async with serving(app) as client:
        start = time.perf_counter()
        r = await client.post("/translate", json={"text": "slow please"})
        assert r.status_code == 503 and "did not finish within 0.5 s" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 1
        assert time.perf_counter() - start < 1.4  # answered at the timeout, not when the call ended
        await asyncio.sleep(1.5)  # the abandoned call ends; the next request is served normally
        ok = await client.post("/translate", json={"text": "A dog."})
        assert ok.status_code == 200, ok.text
        text = (await client.get("/metrics")).text
        assert metric(text, "tzip_shed_total", variant="tiny", reason="timeout") == 1

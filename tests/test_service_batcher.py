"""The dynamic batcher on its own: batches form, respect their size and options, shed load, time out."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from compression.runtime.search import SearchConfig
from service.batcher import DynamicBatcher, Overloaded
from service.metrics import Metrics

pytestmark = pytest.mark.anyio


class Recorder:
    """A translate function that records every call and answers after ``delay`` seconds."""

    def __init__(self, delay: float = 0.02):
        self.delay, self.calls = delay, []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, texts: list[str], cfg: SearchConfig, batch_size: int) -> list[str]:
        self.gate.wait(5)
        self.calls.append((list(texts), cfg))
        time.sleep(self.delay)
        return [f"{t}/{cfg.beam}" for t in texts]


@pytest.fixture
def anyio_backend():
    return "asyncio"


def make(translate, **kw) -> DynamicBatcher:
    b = DynamicBatcher("v", translate, ThreadPoolExecutor(1), Metrics(), **kw)
    b.start()
    return b


async def test_concurrent_requests_share_batches_and_keep_their_order():
    rec = Recorder()
    b = make(rec, max_batch_size=16, max_wait_s=0.05)
    results = await asyncio.gather(*(b.submit([f"s{i}"], SearchConfig(), 5) for i in range(40)))
    assert [r.translations for r in results] == [[f"s{i}/1"] for i in range(40)]
    sizes = [len(texts) for texts, _ in rec.calls]
    assert sum(sizes) == 40 and max(sizes) == 16 and len(sizes) <= 4
    assert all(r.batch_size > 1 for r in results)
    await b.stop()


async def test_a_request_larger_than_the_batch_runs_alone_and_options_never_mix():
    rec = Recorder()
    b = make(rec, max_batch_size=4, max_wait_s=0.05)
    big = b.submit([f"x{i}" for i in range(10)], SearchConfig(), 5)
    beam = b.submit(["b"], SearchConfig(beam=3), 5)
    small = b.submit(["y"], SearchConfig(), 5)
    r_big, r_beam, r_small = await asyncio.gather(big, beam, small)
    assert r_big.translations == [f"x{i}/1" for i in range(10)]
    assert r_beam.translations == ["b/3"] and r_small.translations == ["y/1"]
    for texts, cfg in rec.calls:  # a call never mixes beam sizes
        assert all(t.startswith("b") == (cfg.beam == 3) for t in texts)
    await b.stop()


async def test_full_queue_is_shed_with_retry_after_and_the_rest_is_served():
    rec = Recorder(delay=0.05)
    rec.gate.clear()  # hold the first batch so the queue fills up
    b = make(rec, max_batch_size=2, max_wait_s=0.0, max_queue=4)
    first = asyncio.ensure_future(b.submit(["a", "b"], SearchConfig(), 5))
    await asyncio.sleep(0.05)  # the worker took it and waits at the gate
    queued = [asyncio.ensure_future(b.submit([f"q{i}"], SearchConfig(), 5)) for i in range(4)]
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as shed:
        await b.submit(["too much"], SearchConfig(), 5)
    assert shed.value.retry_after >= 1
    rec.gate.set()
    assert (await first).translations == ["a/1", "b/1"]
    assert [(await q).translations for q in queued] == [[f"q{i}/1"] for i in range(4)]
    assert b.idle
    await b.stop()


async def test_timed_out_request_gets_overloaded_and_is_not_translated():
    rec = Recorder(delay=0.3)
    b = make(rec, max_batch_size=1, max_wait_s=0.0)
    slow = asyncio.ensure_future(b.submit(["running"], SearchConfig(), 5))
    await asyncio.sleep(0.05)
    with pytest.raises(Overloaded, match="did not finish within"):
        await b.submit(["late"], SearchConfig(), 0.1)
    await slow
    await asyncio.sleep(0.05)
    assert ["late"] not in [texts for texts, _ in rec.calls]  # dropped, not translated for nobody
    assert b.idle
    await b.stop()


async def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on():
    calls = []

    def flaky(texts, cfg, batch_size):
        calls.append(texts)
        if len(calls) == 1:
            raise ValueError("boom")
        return texts

    b = make(flaky, max_batch_size=8, max_wait_s=0.0)
    with pytest.raises(ValueError, match="boom"):
        await b.submit(["a"], SearchConfig(), 5)
    assert (await b.submit(["b"], SearchConfig(), 5)).translations == ["b"]
    await b.stop()

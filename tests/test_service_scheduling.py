"""Scheduling (issue 14): long requests are cut into chunks that interleave with other requests and other
variants, a cancelled request stops at the next chunk and is counted, and long texts are segmented."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from compression.runtime.search import SearchConfig
from compression.runtime.translator import OnnxTranslator, load_translator
from service.batcher import DynamicBatcher
from service.metrics import Metrics
from service.scheduler import FairScheduler
from service.segments import segment
from tests.service_helpers import make_app, metric, running, serving
from tests.test_service_batcher import Recorder

pytest_plugins = ["tests.service_fixtures"]
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def pair(delay: float, **kw):
    """Two variants' batchers sharing one inference thread through one fair scheduler."""
    executor, scheduler, metrics = ThreadPoolExecutor(1), FairScheduler(1), Metrics()
    recs = Recorder(delay), Recorder(delay)
    batchers = [DynamicBatcher(n, r, executor, metrics, max_wait_s=0, scheduler=scheduler, **kw)
                for n, r in zip(("a", "b"), recs, strict=True)]
    for b in batchers:
        b.start()
    return batchers, recs, metrics


async def test_a_long_request_is_cut_into_chunks_and_another_variant_runs_between_them():
    (a, b), (ra, rb), _ = pair(0.05, max_batch_rows=8)
    big = asyncio.ensure_future(a.submit([f"x{i}" for i in range(32)], SearchConfig(beam=2), 30))  # 4 per call
    await asyncio.sleep(0.06)  # its first chunk runs
    start = time.perf_counter()
    small = await b.submit(["s"], SearchConfig(), 30)
    waited = time.perf_counter() - start
    assert small.translations == ["s/1"] and waited < 0.2  # one chunk of the other variant at most, not all eight
    result = await big
    assert result.translations == [f"x{i}/2" for i in range(32)]  # chunks reassembled in order
    assert [len(t) for t, _ in ra.calls] == [4] * 8 and result.batch_size == 4
    await a.stop()
    await b.stop()


async def test_a_cancelled_request_stops_at_the_next_chunk_and_is_counted():
    (a, b), (ra, _), metrics = pair(0.05, max_batch_rows=2)
    job = asyncio.ensure_future(a.submit([f"x{i}" for i in range(20)], SearchConfig(), 30))  # 10 chunks
    await asyncio.sleep(0.08)
    job.cancel()
    await asyncio.sleep(0.2)
    assert len(ra.calls) <= 3 and a.idle  # nothing left queued, nothing more computed
    assert metrics.cancelled.labels("a")._value.get() == 1
    assert (await a.submit(["next"], SearchConfig(), 5)).translations == ["next/1"]
    await a.stop()
    await b.stop()


async def test_a_client_that_disconnects_is_counted_cancelled(variants_root):
    class Paced:
        """The real translator, 50 ms per call: the request below lasts ~2 s on any machine."""

        def __init__(self, inner):
            self.inner, self.provider = inner, inner.provider

        def translate(self, texts, cfg, batch_size):
            time.sleep(0.05)
            return self.inner.translate(texts, cfg, batch_size)

    def loader(*args, **kw):
        return Paced(OnnxTranslator(*args, **kw))

    app = make_app(variants_root, loader=loader, max_batch_rows=1)
    async with serving(app) as client:
        texts = ["A man is riding a bike."] * 40
        task = asyncio.ensure_future(client.post("/translate", json={"texts": texts, "max_len": 40}))
        for _ in range(200):  # cancel once its first chunk has been computed, not on a guessed schedule
            if metric((await client.get("/metrics")).text, "tzip_sentences_total", variant="tiny") >= 1:
                break
            await asyncio.sleep(0.02)
        task.cancel()  # the client goes away mid-request
        for _ in range(100):
            text = (await client.get("/metrics")).text
            if metric(text, "tzip_cancelled_total", variant="tiny") == 1:
                break
            await asyncio.sleep(0.05)
        assert metric(text, "tzip_cancelled_total", variant="tiny") == 1
        assert 1 <= metric(text, "tzip_sentences_total", variant="tiny") < 40


def test_sentences_are_split_on_their_ends_not_on_abbreviations():
    text = "Dr. Smith went to Washington, D.C. at 5 p.m. on Monday. He met Mr. Brown.\n\nThey talked! Then? Home."
    parts = segment([text, "One sentence only."], 300)
    assert parts.segments == ["Dr. Smith went to Washington, D.C. at 5 p.m. on Monday.", "He met Mr. Brown.",
                              "They talked!", "Then?", "Home.", "One sentence only."]
    assert parts.join([s.upper() for s in parts.segments]) == [text.upper(), "ONE SENTENCE ONLY."]


def test_an_overlong_sentence_is_cut_at_a_clause_or_word_boundary():
    long = "a man with a red hat, " * 30
    pieces = segment([long], 100).segments
    assert all(len(p) <= 100 for p in pieces) and all(p.endswith(",") for p in pieces[:-1])
    assert " ".join(pieces) == long.strip()


def test_a_paragraph_is_translated_sentence_by_sentence_and_joined(variants_root):
    sentences = ["A man is riding a bike.", "Two dogs play in the snow.", "A woman is reading a book."]
    direct = load_translator(variants_root, variant="tiny").translate(sentences, SearchConfig())
    with running(make_app(variants_root)) as c:
        r = c.post("/translate", json={"texts": [" ".join(sentences), sentences[0]]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["segments"] == 4
        assert body["translations"] == [" ".join(t.strip() for t in direct), direct[0].strip()]


def test_a_request_over_the_work_bound_is_413_naming_the_limit(variants_root):
    with running(make_app(variants_root, max_request_tokens=500)) as c:
        r = c.post("/translate", json={"texts": ["A man is riding a bike. Two dogs play."] * 8, "beam": 4})
        assert r.status_code == 413 and "TZIP_MAX_REQUEST_TOKENS" in r.json()["detail"], r.text
        assert c.post("/translate", json={"text": "A man is riding a bike."}).status_code == 200


async def test_the_work_is_cancelled_when_the_server_sees_the_disconnect():
    from service.deps import unless_disconnected
    from service.errors import ClientGone

    class GoneRequest:  # what uvicorn's receive() answers once the client has closed the connection
        async def receive(self):
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

    cancelled = asyncio.Event()

    async def work():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(ClientGone):
        await unless_disconnected(GoneRequest(), work())  # type: ignore[arg-type]
    assert cancelled.is_set()


def test_the_work_check_tokenizes_only_when_its_byte_bound_does_not_fit():
    """check_work first bounds each text's pieces by its UTF-8 bytes (+2): a request that fits the bound is not
    tokenized in the event loop; one that does not is measured exactly, and passes when its real pieces fit."""
    from service.deps import check_work
    from service.errors import BadInput
    from service.settings import load_settings

    class Counting:
        calls = 0

        def encode(self, texts):
            Counting.calls += 1
            return [[1] * 3 for _ in texts]  # three pieces each, far below the byte bound

    cfg = SearchConfig(beam=2, max_len=512)
    tok = Counting()
    check_work(["A dog."] * 4, cfg, tok, load_settings(max_request_tokens=32768))
    assert Counting.calls == 0
    long_text = "word " * 200  # 1,000 bytes: bound 2 x limit(1002) = 1024 steps; real: 2 x limit(3) = 28
    check_work([long_text], cfg, tok, load_settings(max_request_tokens=500))
    assert Counting.calls == 1
    with pytest.raises(BadInput, match="TZIP_MAX_REQUEST_TOKENS"):
        check_work([long_text] * 20, cfg, tok, load_settings(max_request_tokens=500))

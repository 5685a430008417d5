"""Dynamic batching of one variant: requests that arrive close together share one inference call.

A worker task takes the oldest waiting request, then gathers more requests with the same search
options until the batch holds ``max_batch_size`` sentences or the oldest request has waited
``max_wait_s``; the batch runs on a shared thread pool so the event loop keeps accepting requests.
The queue is bounded (in sentences): when it is full a request is shed at once with ``Overloaded``,
whose ``retry_after`` estimates when the queue will have drained. Batching never changes a
translation: the search gives every sentence its own length limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from compression.runtime.search import SearchConfig

from .metrics import Metrics

log = logging.getLogger(__name__)

TranslateFn = Callable[[list[str], SearchConfig, int], list[str]]


class Overloaded(Exception):
    """The request was shed (queue full or timed out); the client should retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class BatchResult:
    translations: list[str]
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass
class _Job:
    texts: list[str]
    cfg: SearchConfig
    future: asyncio.Future[BatchResult]
    enqueued: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # its client timed out: drop it instead of translating it


class DynamicBatcher:
    def __init__(
        self,
        name: str,
        translate: TranslateFn,
        executor: Executor,
        metrics: Metrics,
        max_batch_size: int = 64,
        max_wait_s: float = 0.01,
        max_queue: int = 1024,
    ):
        self.name, self._translate, self._executor, self._metrics = name, translate, executor, metrics
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self._jobs: deque[_Job] = deque()
        self._queued = 0  # sentences waiting (abandoned jobs included until the worker drops them)
        self._running = 0  # sentences in the inference call now
        self._wake = asyncio.Event()
        self._rate = 0.0  # sentences/s of recent batches (exponential moving average), for Retry-After
        self._task: asyncio.Task[None] | None = None
        # labelled children looked up once: labels() takes a lock and hashes on every call
        self._m_depth = metrics.queue_depth.labels(name)
        self._m_batch = metrics.batch_size.labels(name)
        self._m_infer = metrics.inference_latency.labels(name)
        self._m_sentences = metrics.sentences.labels(name)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._work(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Cancel the worker; requests still waiting get Overloaded (the registry stops idle batchers only)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._jobs:
            job = self._jobs.popleft()
            if job.abandoned:
                job.future.cancel()
            elif not job.future.done():
                job.future.set_exception(Overloaded(f"variant {self.name!r} was unloaded", 1))
        self._queued = 0
        self._gauge()

    @property
    def idle(self) -> bool:
        return self._queued == 0 and self._running == 0

    @property
    def depth(self) -> int:
        return self._queued

    # -- requests ----------------------------------------------------------------------------------

    async def submit(self, texts: list[str], cfg: SearchConfig, timeout_s: float) -> BatchResult:
        if self._task is None:
            raise RuntimeError(f"batcher of {self.name!r} is not running; call start() first")
        if self._queued + len(texts) > self.max_queue:
            self._metrics.shed.labels(self.name, "queue_full").inc()
            raise Overloaded(
                f"variant {self.name!r} has {self._queued} sentences queued (limit {self.max_queue}); retry later",
                self.retry_after(),
            )
        job = _Job(texts, cfg, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._queued += len(texts)
        self._gauge()
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except asyncio.CancelledError:  # the client went away
            job.abandoned = True
            raise
        except TimeoutError:
            job.abandoned = True
            self._metrics.shed.labels(self.name, "timeout").inc()
            raise Overloaded(
                f"translation on {self.name!r} did not finish within {timeout_s:g} s; retry later", self.retry_after()
            ) from None

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained at the recent rate (1..60)."""
        backlog = self._queued + self._running
        if self._rate <= 0:
            return 1
        return int(min(60, max(1, math.ceil(backlog / self._rate))))

    # -- worker ------------------------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            cfg = batch[0].cfg
            texts = [t for job in batch for t in job.texts]
            start = time.perf_counter()
            self._running = len(texts)
            try:
                out = await loop.run_in_executor(self._executor, self._translate, texts, cfg, self.max_batch_size)
                if len(out) != len(texts):
                    raise RuntimeError(f"translator returned {len(out)} translations for {len(texts)} texts")
            except Exception as e:  # a broken batch fails its requests, never the worker
                log.exception("inference failed on variant %s (%d sentences)", self.name, len(texts))
                for job in batch:
                    if job.abandoned:
                        job.future.cancel()  # nobody awaits it: do not leave an unretrieved exception
                    elif not job.future.done():
                        job.future.set_exception(e)
                continue
            finally:
                self._running = 0
            took = time.perf_counter() - start
            self._record(len(texts), took)
            i = 0
            for job in batch:
                n = len(job.texts)
                if not job.future.done():
                    job.future.set_result(BatchResult(out[i : i + n], start - job.enqueued, took, len(texts)))
                i += n

    async def _next_batch(self) -> list[_Job]:
        while not self._jobs:
            self._wake.clear()
            await self._wake.wait()
        first = self._jobs[0]
        deadline = first.enqueued + self.max_wait_s
        while self._compatible(first.cfg) < self.max_batch_size:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
        return self._take(first.cfg)

    def _compatible(self, cfg: SearchConfig) -> int:
        return sum(len(j.texts) for j in self._jobs if j.cfg == cfg and not j.abandoned)

    def _take(self, cfg: SearchConfig) -> list[_Job]:
        """Pop the oldest jobs with these options up to max_batch_size sentences (at least one job)."""
        batch: list[_Job] = []
        size = 0
        keep: deque[_Job] = deque()
        while self._jobs:
            job = self._jobs.popleft()
            if job.abandoned or job.future.done():
                self._queued -= len(job.texts)
                continue
            fits = not batch or size + len(job.texts) <= self.max_batch_size
            if job.cfg == cfg and fits:
                batch.append(job)
                size += len(job.texts)
                self._queued -= len(job.texts)
            else:
                keep.append(job)
        self._jobs = keep
        self._gauge()
        return batch

    def _record(self, sentences: int, seconds: float) -> None:
        rate = sentences / max(seconds, 1e-6)
        self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        self._m_batch.observe(sentences)
        self._m_infer.observe(seconds)
        self._m_sentences.inc(sentences)

    def _gauge(self) -> None:
        self._m_depth.set(self._queued)

"""Dynamic batching of one variant: requests that arrive close together share one inference call.

A worker task takes the oldest waiting request, then gathers more requests with the same search
options until the batch holds ``max_batch_size`` sentences or the oldest request has waited
``max_wait_s``; it then waits for a slot of the shared ``FairScheduler`` (round robin between variants)
and runs the batch on the inference thread pool so the event loop keeps accepting requests.
One call holds at most ``max_batch_rows`` decoder rows (sentences x beam): a long request is cut into
chunks taken one at a time, so other requests, of this variant and of the others, interleave with it,
and a request whose client went away (or timed out) is dropped at the next chunk boundary.
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
from .scheduler import FairScheduler

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


@dataclass(eq=False)  # identity: jobs are found in the queue by ``is``
class _Job:
    texts: list[str]
    cfg: SearchConfig
    future: asyncio.Future[BatchResult]
    enqueued: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # its client went away or timed out: drop what is left of it
    taken: int = 0  # texts handed to inference calls so far
    out: list[str] = field(default_factory=list)
    done: int = 0  # texts translated
    started: float | None = None  # when its first chunk ran
    inference_s: float = 0.0  # its chunks' inference calls, summed
    batch_size: int = 0  # the most sentences in one call that served it

    @property
    def left(self) -> int:
        return len(self.texts) - self.taken

    @property
    def live(self) -> bool:
        return not self.abandoned and not self.future.done()

    def finish(self, start: float, took: float, first: int, out: list[str], size: int) -> None:
        self.started = start if self.started is None else self.started
        self.out[first : first + len(out)] = out
        self.done += len(out)
        self.inference_s += took
        self.batch_size = max(self.batch_size, size)
        if self.done == len(self.texts) and not self.future.done():
            self.future.set_result(BatchResult(self.out, self.started - self.enqueued, self.inference_s, self.batch_size))


Chunk = list[tuple[_Job, int, int]]  # (job, first text, end) pieces of one inference call


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
        scheduler: FairScheduler | None = None,
        max_batch_rows: int = 32,
    ):
        self.name, self._translate, self._executor, self._metrics = name, translate, executor, metrics
        self.max_batch_size, self.max_wait_s, self.max_queue = max_batch_size, max_wait_s, max_queue
        self.max_batch_rows = max_batch_rows
        self._scheduler = scheduler or FairScheduler(1)
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
        self._m_cancelled = metrics.cancelled.labels(name)

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
        job = _Job(texts, cfg, asyncio.get_running_loop().create_future(), out=[""] * len(texts))
        self._jobs.append(job)
        self._queued += len(texts)
        self._gauge()
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except asyncio.CancelledError:  # the client went away: what is left of it is not computed
            job.abandoned = True
            self._metrics_cancel(job)
            raise
        except TimeoutError:
            job.abandoned = True
            self._drop_left(job)
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

    def _metrics_cancel(self, job: _Job) -> None:
        if job.done < len(job.texts):
            self._m_cancelled.inc()
        self._drop_left(job)

    def _drop_left(self, job: _Job) -> None:
        """Stop counting the job's untaken texts as queued (the worker skips it at the next boundary)."""
        if job in self._jobs:
            self._jobs.remove(job)
            self._queued -= job.left
            job.taken = len(job.texts)
            self._gauge()

    # -- worker ------------------------------------------------------------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cfg = await self._next_batch()
            if cfg is None:
                continue
            async with self._scheduler.slot():  # round robin with the other variants' batchers
                chunk = self._take(cfg)  # taken now: requests that came while we waited for the slot join
                if not chunk:
                    continue
                texts = [t for job, a, b in chunk for t in job.texts[a:b]]
                start = time.perf_counter()
                self._running = len(texts)
                try:
                    out = await loop.run_in_executor(self._executor, self._translate, texts, cfg, len(texts))
                    if len(out) != len(texts):
                        raise RuntimeError(f"translator returned {len(out)} translations for {len(texts)} texts")
                except Exception as e:  # a broken batch fails its requests, never the worker
                    log.exception("inference failed on variant %s (%d sentences)", self.name, len(texts))
                    self._fail(chunk, e)
                    continue
                finally:
                    self._running = 0
            took = time.perf_counter() - start
            self._record(len(texts), took)
            i = 0
            for job, a, b in chunk:
                job.finish(start, took, a, out[i : i + b - a], len(texts))
                i += b - a

    def _fail(self, chunk: Chunk, e: Exception) -> None:
        for job, _, _ in chunk:
            self._drop_left(job)
            if job.abandoned:
                job.future.cancel()  # nobody awaits it: do not leave an unretrieved exception
            elif not job.future.done():
                job.future.set_exception(e)

    async def _next_batch(self) -> SearchConfig | None:
        """Wait for work, and up to max_wait_s for the oldest request's batch to fill; its search options."""
        while not self._jobs:
            self._wake.clear()
            await self._wake.wait()
        first = self._jobs[0]
        deadline = first.enqueued + self.max_wait_s
        while self._compatible(first.cfg) < self._limit(first.cfg):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
        return first.cfg if first.live else None

    def _limit(self, cfg: SearchConfig) -> int:
        """Sentences one call may hold: max_batch_size, and max_batch_rows decoder rows (sentences x beam)."""
        return max(1, min(self.max_batch_size, self.max_batch_rows // cfg.beam))

    def _compatible(self, cfg: SearchConfig) -> int:
        return sum(j.left for j in self._jobs if j.cfg == cfg and j.live)

    def _take(self, cfg: SearchConfig) -> Chunk:
        """The oldest texts with these options, up to the call's limit; a request larger than that leaves
        its remaining texts at the front of the queue for the next call."""
        limit, size = self._limit(cfg), 0
        chunk: Chunk = []
        keep: deque[_Job] = deque()
        while self._jobs:
            job = self._jobs.popleft()
            if not job.live:
                self._queued -= job.left
                continue
            if job.cfg == cfg and size < limit:
                n = min(job.left, limit - size)
                chunk.append((job, job.taken, job.taken + n))
                job.taken += n
                size += n
                self._queued -= n
            if job.left:
                keep.append(job)
        self._jobs = keep
        self._gauge()
        return chunk

    def _record(self, sentences: int, seconds: float) -> None:
        rate = sentences / max(seconds, 1e-6)
        self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
        self._m_batch.observe(sentences)
        self._m_infer.observe(seconds)
        self._m_sentences.inc(sentences)

    def _gauge(self) -> None:
        self._m_depth.set(self._queued)

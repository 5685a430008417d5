"""Fair sharing of the inference threads between variants.

Every variant has its own batcher, and each batcher runs one inference call at a time; before each call
it takes a slot here. Slots are handed over strictly in the order they were asked for, so while variant A
works through a long request chunk by chunk, a waiting variant B gets the next free slot, then A again:
round robin at the granularity of one inference call (a chunk of at most TZIP_MAX_BATCH_ROWS rows).
A plain ``asyncio.Semaphore`` would let the task that just released a slot take it back before the
woken waiter runs; here ``release`` hands the slot directly to the next waiter.

Why not one worker thread per variant: on 2 cores, 11 variants running at once would each get 1/11 of
the cores with their ONNX Runtime threads fighting over them (measured in benchmarks/soak/results.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class FairScheduler:
    def __init__(self, slots: int):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.slots = slots
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # the slot was handed over just as we were cancelled
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes to it directly: no barging
                return
        self._free += 1

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

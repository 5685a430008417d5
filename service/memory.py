"""Resident memory of this process, and handing freed heap back to the operating system.

``rss_bytes`` reads /proc/self/statm (Linux: the Docker image and this machine); elsewhere it answers None
and the registry falls back to the bytes on disk. ``trim`` asks glibc to return freed heap pages
(``malloc_trim``): ONNX Runtime frees a large request's tensors, but glibc keeps the pages mapped unless asked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def trim() -> bool:
    """Return freed heap memory to the OS (glibc only; False elsewhere)."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


class MemoryBook:
    """The memory budget in resident bytes: the process as it started (interpreter, libraries), plus what
    loading each variant added (measured: RSS after the load and warm-up minus before, heap trimmed on both
    sides, loads one at a time), plus a reserve for the inference calls running at once (the largest RSS
    growth seen during one call, at least ``reserve_floor``). Without /proc the bytes on disk stand in."""

    TRIM_ABOVE = 8 << 20  # trim the heap after a call that grew the process by more than this

    def __init__(self, budget: int, reserve_floor: int, calls: int):
        self.budget, self.reserve_floor, self.calls = budget, reserve_floor, calls
        trim()
        self.base = rss_bytes() or 0
        self.call_peak = 0  # largest growth of one inference call

    @property
    def reserve(self) -> int:
        return max(self.reserve_floor, self.call_peak) * self.calls

    def measure(self) -> int | None:
        """RSS after handing freed heap back (call before and after a load)."""
        trim()
        return rss_bytes()

    def observe_call(self, before: int | None) -> None:
        """After an inference call that started at RSS ``before``: learn its growth, give the heap back."""
        after = rss_bytes()
        if before is None or after is None:
            return
        grew = after - before
        self.call_peak = max(self.call_peak, grew)
        if grew > self.TRIM_ABOVE:
            trim()

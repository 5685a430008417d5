"""Attention sessions of the service: ``attention.onnx`` of recently used variants, opened on demand.

Kept apart from the translation sessions of the registry: an analysis request never holds a translation
slot longer than its one translation, and at most ``size`` attention sessions (each holding its variant's
decoded weights) stay open, least recently used dropped first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from compression.attention_runtime import NoAttentionGraph, OnnxAttention


class AttentionSessions:
    def __init__(self, size: int = 2, threads: int | None = None):
        self.size, self.threads = size, threads
        self._open: OrderedDict[tuple[str, str], OnnxAttention] = OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, name: str, manifest: dict[str, Any]) -> OnnxAttention:
        """The attention session of a variant (by its registry manifest); 501 when its export has no graph."""
        path = manifest.get("path")
        if not path:
            raise HTTPException(501, f"variant {name!r} has no export directory to read an attention graph from")
        key = (name, str(path))
        async with self._lock:  # one load at a time: a second request for the same variant finds it open
            if key in self._open:
                self._open.move_to_end(key)
                return self._open[key]
            try:
                att = await asyncio.to_thread(OnnxAttention, Path(path), "cpu", self.threads)
            except NoAttentionGraph as e:
                raise HTTPException(501, str(e)) from e
            self._open[key] = att
            while len(self._open) > self.size:
                self._open.popitem(last=False)
            return att

"""Shared dependencies: what the lifespan built, taken from app.state (tests override them).

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, and three
thread hops per request cost more CPU than the rest of the request handling.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from compression.runtime.search import SearchConfig

from .errors import BadInput, ClientGone
from .metrics import Metrics
from .registry import VariantRegistry
from .settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_registry(request: Request) -> VariantRegistry:
    return request.app.state.registry


async def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[VariantRegistry, Depends(get_registry)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def check_limits(texts: list[str], s: Settings) -> None:
    """Limits that depend on the settings (the schema checks types and ranges)."""
    if not texts:
        raise BadInput('"texts" is empty; send at least one sentence')
    if len(texts) > s.max_texts:
        raise BadInput(f"{len(texts)} texts in one request; the limit is {s.max_texts} (TZIP_MAX_TEXTS): split it")
    for i, t in enumerate(texts):
        if not t.strip():
            raise BadInput(f"text {i} is empty or whitespace only")
        if len(t) > s.max_text_chars:
            raise BadInput(f"text {i} has {len(t)} characters; the limit is {s.max_text_chars} (TZIP_MAX_TEXT_CHARS)")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(f"text {i} holds an unpaired UTF-16 surrogate (\\ud800-\\udfff); send valid Unicode") from None


def check_work(segments: Sequence[str], cfg: SearchConfig, tokenizer: Any, s: Settings) -> None:
    """The work a request asks for, bounded before anything is queued: the decoder steps of its segments
    (beam x each one's output limit) within TZIP_MAX_REQUEST_TOKENS, its segments within TZIP_MAX_QUEUE."""
    if len(segments) > s.max_queue:
        raise BadInput(f"the texts hold {len(segments)} sentences; one request may hold {s.max_queue} "
                       "(TZIP_MAX_QUEUE): split it", status=413)
    # a bound first: no text has more pieces than UTF-8 bytes (+ EOS and a Marian language code), so a
    # request whose bound fits needs no tokenizing here (the translator tokenizes it anyway)
    if sum(cfg.beam * cfg.limit(len(t.encode("utf-8")) + 2) for t in segments) <= s.max_request_tokens:
        return
    encode = getattr(tokenizer, "encode", None)
    lengths = [len(x) for x in encode(list(segments))] if encode else [len(t) // 3 + 1 for t in segments]
    steps = sum(cfg.beam * cfg.limit(n) for n in lengths)
    if steps > s.max_request_tokens:
        raise BadInput(
            f"this request asks for {steps} decoder steps (beam {cfg.beam} x the output limit of each of its "
            f"{len(segments)} sentences); the limit is {s.max_request_tokens} (TZIP_MAX_REQUEST_TOKENS): "
            "send fewer or shorter texts, or a smaller beam or max_len", status=413)


T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, or ClientGone as soon as the client disconnects (``work`` is cancelled: a
    batcher then drops what is left of the request at its next chunk boundary)."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass

"""POST /translate?variant=NAME: batched translation with the variant's size, BLEU and latency split.

Each text is cut into sentences (``service.segments``), the request's work is bounded (``check_work``),
the segments go through the variant's batcher as one job, and the translations are joined back per text.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from compression.runtime.search import SearchConfig

from ..deps import check_limits, check_work, unless_disconnected
from ..schemas import Latency, Problem, TranslateRequest, TranslateResponse
from ..segments import segment

router = APIRouter(tags=["translate"])
SEGMENT_IN_THREAD_CHARS = 2000  # pysbd is pure Python (~20 ms per 1,000 characters): off the event loop above this


@router.post(
    "/translate",
    response_model=TranslateResponse,
    summary="translate English to German with the chosen variant",
    responses={
        400: {"model": Problem, "description": "the body is not UTF-8 JSON, or is nested too deep"},
        404: {"model": Problem, "description": "unknown variant (the answer lists the known ones)"},
        413: {"model": Problem, "description": "body larger than TZIP_MAX_BODY_BYTES, or more work than "
              "TZIP_MAX_REQUEST_TOKENS decoder steps or TZIP_MAX_QUEUE sentences (the answer names the limit)"},
        422: {"model": Problem, "description": "wrong types, unknown fields, both or neither of text/texts, empty "
              "or whitespace-only text, too many texts, text too long, an unpaired surrogate, beam or max_len out of range"},
        499: {"model": Problem, "description": "the client disconnected first (nothing more was computed; counted)"},
        503: {"model": Problem, "description": "overloaded or timed out (see Retry-After), the variant is broken "
              "(the answer says why), or it does not fit the memory budget now"},
    },
)
async def translate(
    body: TranslateRequest,
    request: Request,
    variant: Annotated[str | None, Query(max_length=200, description="variant name (GET /variants); default: the service's")] = None,
) -> Response:
    start = time.perf_counter()
    # what the lifespan built, read directly: FastAPI's dependency solving cost ~15% of a request's CPU here
    state = request.app.state
    registry, settings, metrics = state.registry, state.settings, state.metrics
    v = registry.resolve(variant)
    request.state.variant = v.name  # metrics label: only names that exist
    texts = body.sentences()
    check_limits(texts, settings)
    cfg = SearchConfig(beam=body.beam, max_len=body.max_len)
    if sum(map(len, texts)) > SEGMENT_IN_THREAD_CHARS:
        parts = await asyncio.to_thread(segment, texts, settings.max_segment_chars)
    else:
        parts = segment(texts, settings.max_segment_chars)
    async with registry.use(v) as loaded:
        provider = loaded.provider or "unknown"
        check_work(parts.segments, cfg, getattr(loaded.translator, "tokenizer", None), settings)
        result = await unless_disconnected(request, loaded.submit(parts.segments, cfg, settings.request_timeout_s))
    total = time.perf_counter() - start
    metrics.latency.labels(v.name).observe(total)
    metrics.queue_latency.labels(v.name).observe(result.queue_s)
    metrics.segments.labels(v.name).inc(len(parts.segments))
    info = registry.describe_one(v)
    answer = TranslateResponse(
        translations=parts.join(result.translations),
        segments=len(parts.segments),
        variant=v.name,
        model_size_bytes=info["model_bytes"],
        disk_bytes=info["disk_bytes"],
        resident_weight_bytes=info["resident_weight_bytes"],
        rss_added_bytes=info["rss_added_bytes"],
        compression_ratio=info["ratio"],
        bleu=info["bleu"],
        latency_ms=Latency(
            queue_ms=round(result.queue_s * 1000, 3),
            inference_ms=round(result.inference_s * 1000, 3),
            total_ms=round(total * 1000, 3),
        ),
        provider=provider,
        batch_size=result.batch_size,
    )
    # serialized once here: returned as a model, FastAPI would validate it against response_model again
    return Response(answer.model_dump_json(), media_type="application/json")

"""POST /translate?variant=NAME: batched translation with the variant's size, BLEU and latency split."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request

from compression.runtime.search import SearchConfig

from ..deps import MetricsDep, RegistryDep, SettingsDep, check_limits
from ..schemas import Latency, Problem, TranslateRequest, TranslateResponse

router = APIRouter(tags=["translate"])


@router.post(
    "/translate",
    response_model=TranslateResponse,
    summary="translate English to German with the chosen variant",
    responses={
        400: {"model": Problem, "description": "the body is not UTF-8 JSON"},
        404: {"model": Problem, "description": "unknown variant (the answer lists the known ones)"},
        413: {"model": Problem, "description": "body too large"},
        422: {"model": Problem, "description": "wrong types, empty text, too many texts, text too long, beam out of range"},
        503: {"model": Problem, "description": "overloaded (see Retry-After) or the variant was refused at load"},
    },
)
async def translate(
    body: TranslateRequest,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    variant: Annotated[str | None, Query(max_length=200, description="variant name (GET /variants); default: the service's")] = None,
) -> TranslateResponse:
    start = time.perf_counter()
    v = registry.resolve(variant)
    request.state.variant = v.name  # metrics label: only names that exist
    texts = body.sentences()
    check_limits(texts, settings)
    cfg = SearchConfig(beam=body.beam, max_len=body.max_len)
    async with registry.use(v) as loaded:
        provider = loaded.provider or "unknown"
        result = await loaded.submit(texts, cfg, settings.request_timeout_s)
    total = time.perf_counter() - start
    metrics.latency.labels(v.name).observe(total)
    metrics.queue_latency.labels(v.name).observe(result.queue_s)
    info = registry.describe_one(v)
    return TranslateResponse(
        translations=result.translations,
        variant=v.name,
        model_size_bytes=info["model_bytes"],
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

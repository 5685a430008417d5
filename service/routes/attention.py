"""POST /attention?variant=NAME: one attention map of a sentence, as a PNG heatmap or as JSON weights.

The map comes from the variant's ``attention.onnx`` (ONNX Runtime, no torch), teacher-forced on the
variant's own greedy translation of the text (or on ``target`` when given), so it shows what that
variant's weights did for that output.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, Response

from compression.runtime.attention import NoAttentionGraph
from compression.runtime.attention_maps import KIND_TITLES, AttentionIndexError, map_entropy
from compression.runtime.search import SearchConfig
from compression.runtime.sessions import gpu_shared

from ..deps import RegistryDep, SettingsDep, check_limits
from ..errors import BadInput
from ..schemas import AttentionMap, AttentionRequest, Problem

router = APIRouter(tags=["attention"])


@router.post(
    "/attention",
    summary="an attention heatmap (PNG) or the attention weights (JSON) of one layer and head",
    response_model=AttentionMap,
    responses={
        200: {"content": {"image/png": {}}, "description": "the heatmap (format png) or the weights (format json)"},
        400: {"model": Problem, "description": "the body is not UTF-8 JSON, or is nested too deep"},
        404: {"model": Problem, "description": "unknown variant (the answer lists the known ones)"},
        413: {"model": Problem, "description": "body larger than TZIP_MAX_BODY_BYTES"},
        422: {"model": Problem, "description": "wrong types, unknown fields, bad kind, layer or head index beyond "
              "the variant's, empty, whitespace-only or too long text or target"},
        501: {"model": Problem, "description": "the variant's export has no attention graph (re-export it)"},
        503: {"model": Problem, "description": "the variant is broken (the answer says why) or does not fit the "
              "memory budget now"},
    },
)
async def attention(
    body: AttentionRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    variant: Annotated[str | None, Query(max_length=200, description="variant name (GET /variants); default: the service's")] = None,
):
    v = registry.resolve(variant)
    check_limits([body.text] + ([body.target] if body.target is not None else []), settings)
    async with registry.use(v) as loaded:  # the attention session lives and unloads with the variant
        try:
            att = await registry.attention(loaded)
        except NoAttentionGraph as e:
            raise HTTPException(501, str(e)) from e
        try:
            att.shape.check(body.kind, body.layer, body.head, f"variant {v.name!r}")
        except AttentionIndexError as e:
            raise BadInput(str(e)) from None
        src_ids = att.source_ids(body.text)
        if body.target is None:  # the variant's own greedy translation, as /translate gives it
            cfg = SearchConfig(max_len=att.spec.max_positions - 1)
            out = (await asyncio.to_thread(gpu_shared(loaded.translator.translate_ids), [src_ids], cfg))[0]
        else:
            out = att.target_ids(body.target)
    maps = await asyncio.to_thread(gpu_shared(att.maps), src_ids, out)  # never beside a CUDA-graph capture
    weights = maps.select(body.kind, body.layer, body.head)
    rows, cols = maps.labels(body.kind)
    title = f"{v.name}: {KIND_TITLES[body.kind]}, layer {body.layer}, head {body.head}"
    headers = {"X-Tzip-Layers": str(maps.shape.layers(body.kind)), "X-Tzip-Heads": str(maps.shape.heads)}
    if body.format == "png":
        from compression.runtime.heatmap import heatmap_png  # matplotlib: imported on the first heatmap only

        png = await asyncio.to_thread(heatmap_png, weights, rows, cols, body.kind, title)
        return Response(png, media_type="image/png", headers=headers)
    result = AttentionMap(
        variant=v.name, kind=body.kind, layer=body.layer, head=body.head, layers=maps.shape.layers(body.kind),
        heads=maps.shape.heads, translation=att.tokenizer.decode([out])[0],
        target_from="variant" if body.target is None else "request",
        source_tokens=maps.source_tokens, target_tokens=maps.target_tokens, rows=rows, cols=cols,
        weights=np.round(weights.astype(np.float64), 6).tolist(),
        entropy=round(map_entropy(weights, body.kind), 6),
    )
    return JSONResponse(result.model_dump(), headers=headers)

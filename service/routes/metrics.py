"""Prometheus exposition of the app's own registry."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from ..deps import MetricsDep
from ..metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(m: MetricsDep) -> Response:
    return Response(m.exposition(), media_type=CONTENT_TYPE)

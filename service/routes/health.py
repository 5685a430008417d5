"""Liveness (the process answers) and readiness (the default variant is loaded and warmed up)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import RegistryDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="readiness: the default variant is loaded and warmed up")
async def readyz(registry: RegistryDep) -> JSONResponse:
    if registry.ready:
        return JSONResponse({"status": "ready", "default_variant": registry.default, "device": registry.device})
    return JSONResponse({"status": "not ready", "detail": registry.not_ready_reason}, status_code=503)

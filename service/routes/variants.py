"""The variants this service knows, from their manifests, and whether each is loaded."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import RegistryDep
from ..schemas import VariantInfo

router = APIRouter(tags=["variants"])


@router.get("/variants", response_model=list[VariantInfo], summary="every exported variant and its figures")
async def variants(registry: RegistryDep) -> list[dict]:
    return registry.describe()

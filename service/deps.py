"""Shared dependencies: what the lifespan built, taken from app.state (tests override them).

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, and three
thread hops per request cost more CPU than the rest of the request handling.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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

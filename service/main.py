"""Assemble the app: settings, metrics, the variant registry (built in the lifespan), routes, errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI

from . import errors, openapi, segments
from .metrics import Metrics
from .middleware import BodyGuard, CountRequests
from .registry import Lister, Loader, VariantRegistry
from .routes import ROUTERS
from .settings import Settings, get_settings

log = logging.getLogger(__name__)
RegistryFactory = Callable[[Settings, Metrics, Loader | None, Lister | None], Any]


def create_app(
    settings: Settings | None = None, loader: Loader | None = None, lister: Lister | None = None,
    registry_factory: RegistryFactory | None = None, metrics: Metrics | None = None,
) -> FastAPI:
    """``registry_factory`` and ``metrics`` let another host (service/ray_serve.py) keep these routes, errors and
    middleware and swap what serves them: a registry with the same interface, metrics that merge replicas."""
    settings = settings or get_settings()
    metrics = metrics or Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = (registry_factory or VariantRegistry)(settings, metrics, loader, lister)
        segments.ready()  # a missing dependency: fail now, not on the first paragraph
        registry.discover()  # bad settings or no exports: fail now, before serving anything
        app.state.registry = registry
        preload = asyncio.create_task(registry.preload(), name="preload")  # /healthz answers meanwhile
        memory = asyncio.create_task(registry.watch_memory(), name="memory")
        try:
            yield
        finally:
            for task in (preload, memory):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await registry.close()

    app = FastAPI(
        title="tzip translation service",
        summary="English -> German with compressed Transformer variants on ONNX Runtime",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings, app.state.metrics = settings, metrics
    for router in ROUTERS:
        app.include_router(router)
    errors.install(app)
    openapi.install(app, settings)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(CountRequests, metrics=metrics)  # outermost: counts 413s and 400s of the guard too
    return app

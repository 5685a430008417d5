"""Shared dependencies: what the lifespan built, taken from app.state (tests override them).

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, and three
thread hops per request cost more CPU than the rest of the request handling.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .errors import BadInput
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

"""Shared pieces of the service tests: a root of real exported tiny variants and ways to run the app on it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import load_settings
from tests.onnx_fixtures import export_tiny

# two real exports with different weights and precisions: the outputs tell which one answered
VARIANTS = {"tiny": {"seed": 0, "precision": "fp32"}, "tiny-int8": {"seed": 1, "precision": "int8"}}


def build_root(root: Path, extra: dict[str, dict] | None = None) -> Path:
    for name, kw in {**VARIANTS, **(extra or {})}.items():
        export_tiny(root, name, **kw)
    return root


def make_app(root: Path, loader=None, **settings) -> FastAPI:
    return create_app(load_settings(model_root=root, **settings), loader=loader)


@contextlib.contextmanager
def running(app: FastAPI, ready: bool = True) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        if ready:
            wait_ready(client)
        yield client


def wait_ready(client: TestClient, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < end, client.get("/readyz").json()
        time.sleep(0.02)


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan on the running event loop, and an async client (for concurrency)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tzip", timeout=60) as client:
            for _ in range(1500):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.02)
            yield client


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        key, value = line.rsplit(" ", 1)
        metric_name, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric_name == name and got == want:
            return float(value)
    return 0.0

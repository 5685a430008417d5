"""Exceptions -> HTTP answers. Bad input is a clear 4xx; shedding is 503 with Retry-After.

Validation messages are flattened into one readable ``detail`` ("texts.0: Input should be a valid
string"); the raw pydantic errors follow in ``errors`` without echoing the client's input back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import Overloaded
from .registry import UnknownVariant, VariantUnavailable

log = logging.getLogger(__name__)


class BadInput(Exception):
    """A request that parsed but breaks a limit of the settings (too many texts, text too long, ...)."""

    def __init__(self, detail: str, status: int = 422):
        super().__init__(detail)
        self.detail, self.status = detail, status


class ClientGone(Exception):
    """The client disconnected before its answer was ready (answered 499, which nobody reads; counted)."""


def _where(loc: tuple | list) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        msg = (e.get("ctx") or {}).get("error", "invalid JSON")
        return JSONResponse({"detail": f"the body is not valid JSON ({msg})"}, status_code=400)
    lines, slim = [], []
    for e in errors:
        where = _where(e.get("loc", ()))
        lines.append(f"{where}: {e.get('msg', 'invalid')}")
        slim.append({"loc": where, "type": e.get("type"), "msg": e.get("msg")})
    detail = "; ".join(lines)
    if any(_where(e.get("loc", ())) == "body" and e.get("type") != "value_error" for e in errors):
        detail += ' (send a JSON object such as {"text": "..."} with Content-Type: application/json)'
    return JSONResponse({"detail": detail, "errors": slim}, status_code=422)


async def bad_input(request: Request, exc: BadInput) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


async def unknown_variant(request: Request, exc: UnknownVariant) -> JSONResponse:
    return JSONResponse(
        {"detail": f"unknown variant; choose one of: {', '.join(exc.known)}", "known_variants": exc.known},
        status_code=404,
    )


async def client_gone(request: Request, exc: ClientGone) -> JSONResponse:
    return JSONResponse({"detail": "the client disconnected before the answer; nothing more was computed"},
                        status_code=499)


async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})


async def unavailable(request: Request, exc: VariantUnavailable) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "the body could not be parsed as JSON (check its syntax and nesting depth)"
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


Handler = Callable[[Request, Any], Awaitable[JSONResponse]]  # each takes its own exception type
HANDLERS: dict[type[Exception], Handler] = {
    RequestValidationError: validation_error, BadInput: bad_input, UnknownVariant: unknown_variant,
    Overloaded: overloaded, VariantUnavailable: unavailable, StarletteHTTPException: http_error,
    ClientGone: client_gone,
}


def install(app: FastAPI) -> None:
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)

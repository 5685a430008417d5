"""ASGI middleware: a body guard (size limit, UTF-8) in front of the app, and request counting.

The guard reads the body before any route does, so an oversized or non-UTF-8 body is answered 413/400
without being parsed; bodies here are small (a few sentences), so buffering them costs nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .metrics import NO_VARIANT, Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        too_large = f"the body is larger than {limit} bytes (TZIP_MAX_BODY_BYTES); send fewer or shorter texts"
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > limit:
                await _answer(send, 413, too_large)
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _answer(send, 413, too_large)
                return
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            await _answer(send, 400, f"the body is not valid UTF-8 (byte {e.start}: {e.reason}); encode the JSON as UTF-8")
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class CountRequests:
    """tzip_requests_total{variant, status} for every POST /translate, whatever answered it."""

    def __init__(self, app: ASGIApp, metrics: Metrics, path: str = "/translate"):
        self.app, self.metrics, self.path = app, metrics, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            variant = (scope.get("state") or {}).get("variant", NO_VARIANT)
            self.metrics.requests.labels(variant, str(status)).inc()

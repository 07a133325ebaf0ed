"""What every request goes through, as one plain ASGI middleware: a request id, the body size limit, the
access log and the request metrics.

- Request id: the caller's ``X-Request-Id`` when it is 1–128 characters of ``[A-Za-z0-9._:-]``, else a new one;
  answered in ``X-Request-Id``, put in every log line of the request and sent to the scoring server as
  ``x-request-id`` metadata.
- Body limit: a ``Content-Length`` above ``max_body_bytes`` is refused with 413 before anything is read; a body
  without a length is counted as it arrives and refused at the same point.
- One JSON log line per request: method, route template, status, milliseconds, request id (never the body, the
  query or the headers: they may carry card data or keys).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import GatewayMetrics
from gateway.problems import problem_response

log = logging.getLogger("fraudguard.gateway.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive``; an HTTPException so that the framework's body reading lets it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes")


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics, max_body_bytes: int) -> None:
        self._app = app
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        limit = self._max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            length = _content_length(scope)
            if length is not None and length > limit:
                raise BodyTooLarge(limit)
            await self._app(scope, receive_limited, send_with_id)
        except BodyTooLarge:
            if response_started:
                raise
            response = problem_response(None, 413, f"the body is larger than {limit} bytes", field="body",
                                        headers={"Connection": "close"})
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            self._metrics.requests.labels(route, scope["method"], str(status)).inc()
            self._metrics.latency.labels(route).observe(elapsed)
            log.info("request", extra={"method": scope["method"], "route": route, "status": status,
                                       "ms": round(elapsed * 1000, 3), "request_id": request_id})


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _route_of(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if isinstance(path, str) else "unmatched"

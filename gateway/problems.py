"""Every error the gateway answers is ``application/problem+json`` (RFC 9457), naming the bad field when one is.

- :class:`ProblemError`: raised by a route or a dependency with the status, a title and the detail.
- A body that is not JSON: 400. A body that is JSON but does not fit the schema: 422 with ``errors``, one
  ``{"field", "message"}`` per offending field (``transactions[3].amount_minor``). The value given is never
  echoed back: it may be a card number.
- An unknown route: 404; a known route with the wrong method: 405 (with ``Allow``).
- Anything unexpected: 500 with a correlation id; the exception goes to the log under the same id, never to the
  caller.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fraudguard.errors import FraudguardError, NotFoundError, UnavailableError, ValidationError
from gateway import schemas

log = logging.getLogger("fraudguard.gateway")

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An HTTP error answered as problem+json."""

    def __init__(self, status: int, detail: str, *, field: str | None = None,
                 errors: Sequence[Mapping[str, str]] | None = None, headers: Mapping[str, str] | None = None,
                 title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.errors = [dict(e) for e in errors] if errors is not None else None
        self.headers = dict(headers or {})
        self.title = title or HTTPStatus(status).phrase


def problem_response(request: Request | None, status: int, detail: str, *, title: str | None = None,
                     field: str | None = None, errors: list[dict[str, str]] | None = None,
                     headers: Mapping[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status,
                            "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
        request_id = getattr(request.state, "request_id", None)
        if request_id is not None:
            body["request_id"] = request_id
    if field is not None:
        body["field"] = field
    if errors is not None:
        body["errors"] = errors
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def field_path(loc: Sequence[str | int]) -> str:
    """``("body", "transactions", 3, "amount_minor")`` → ``transactions[3].amount_minor``."""
    path = ""
    for part in loc[1:] if loc and loc[0] in ("body", "path", "query", "header") else loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _message(error: Mapping[str, Any]) -> str:
    """pydantic's message, except that a long list of allowed values (the currencies) is not spelt out."""
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "literal_error" and len(message) > 200:
        return "not one of the allowed values (the OpenAPI document lists them)"
    return message


def domain_status(exc: FraudguardError) -> int:
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, UnavailableError):
        return 503
    return 500


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return problem_response(request, exc.status, exc.detail, title=exc.title, field=exc.field,
                                errors=exc.errors, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(request, 400, "the body is not valid JSON", field="body")
        found = [{"field": field_path(e.get("loc", ())), "message": _message(e)} for e in errors]
        first = found[0] if found else {"field": "body", "message": "invalid"}
        return problem_response(request, 422, f"{first['field']}: {first['message']}", field=first["field"],
                                errors=found)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}"
        field = "body" if exc.status_code == 413 else None
        return problem_response(request, exc.status_code, detail, field=field, headers=exc.headers)

    @app.exception_handler(FraudguardError)
    async def _domain(request: Request, exc: FraudguardError) -> Response:
        status = domain_status(exc)
        if status == 500:
            return await _unexpected(request, exc)
        field = exc.field if isinstance(exc, ValidationError) else None
        return problem_response(request, status, str(exc), field=field)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        correlation_id = uuid.uuid4().hex
        log.error("unexpected error", exc_info=exc, extra={"path": request.url.path, "correlation_id": correlation_id,
                                                          "request_id": getattr(request.state, "request_id", None)})
        return problem_response(request, 500, f"internal error; correlation id {correlation_id}")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route can answer."""
    return {
        status: {"model": schemas.Problem, "description": HTTPStatus(status).phrase,
                 "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for status in statuses
    }

"""One table from domain errors to gRPC status codes, applied by one decorator to every handler.

Unary coroutines and async-generator (streaming) handlers alike. An unexpected exception
reaches the client as ``INTERNAL`` with a correlation id; its text and traceback go only
to the log, under the same id.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc

from fraudguard.errors import BundleError, FraudguardError, NotFoundError, UnavailableError, ValidationError

log = logging.getLogger("fraudguard.scoring")

STATUS_OF: tuple[tuple[type[FraudguardError], grpc.StatusCode], ...] = (
    (ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (BundleError, grpc.StatusCode.FAILED_PRECONDITION),
)

F = TypeVar("F", bound=Callable[..., Any])


def status_of(exc: FraudguardError) -> grpc.StatusCode:
    """The gRPC code for a domain error (most specific class first; unknown ones are INTERNAL)."""
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


async def _abort(exc: BaseException, context: grpc.aio.ServicerContext, method: str) -> None:
    if isinstance(exc, FraudguardError):
        code = status_of(exc)
        if code is not grpc.StatusCode.INTERNAL:
            await context.abort(code, str(exc))
    correlation_id = uuid.uuid4().hex
    log.error("unexpected error in handler", exc_info=exc, extra={"method": method, "correlation_id": correlation_id})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error; correlation id {correlation_id}")


def _passes_through(exc: BaseException) -> bool:
    # context.abort raises AbortError; cancellation must propagate untouched
    return isinstance(exc, asyncio.CancelledError | grpc.aio.AbortError)


def grpc_errors(handler: F) -> F:
    """Translate exceptions raised by a grpc.aio handler into status codes."""
    name = handler.__name__
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for item in handler(self, request, context):
                    yield item
            except Exception as exc:
                if _passes_through(exc):
                    raise
                await _abort(exc, context, name)

        return cast(F, stream)

    @functools.wraps(handler)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await cast(Callable[..., Awaitable[Any]], handler)(self, request, context)
        except Exception as exc:
            if _passes_through(exc):
                raise
            await _abort(exc, context, name)

    return cast(F, unary)

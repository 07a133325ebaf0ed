"""One table from domain errors to gRPC status codes, applied by one decorator to every handler.

Unary coroutines and async-generator (streaming) handlers alike. An unexpected exception
reaches the client as ``INTERNAL`` with a correlation id; its text and traceback go only
to the log, under the same id. The same decorator counts each call's final status (and times unary calls)
in the servicer's metrics, when it has some.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import grpc

from fraudguard.errors import BundleError, FraudguardError, NotFoundError, UnavailableError, ValidationError

if TYPE_CHECKING:
    from scoring.metrics import ScoringMetrics

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


def _code_of(exc: Exception, context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status the call ends with when ``exc`` leaves its handler."""
    if isinstance(exc, grpc.aio.AbortError):  # the handler aborted by itself: the code it gave
        code = context.code()
        return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    if isinstance(exc, FraudguardError):
        return status_of(exc)
    return grpc.StatusCode.INTERNAL


async def _abort(exc: Exception, context: grpc.aio.ServicerContext, method: str, code: grpc.StatusCode) -> None:
    if code is not grpc.StatusCode.INTERNAL:
        await context.abort(code, str(exc))
    correlation_id = uuid.uuid4().hex
    log.error("unexpected error in handler", exc_info=exc, extra={"method": method, "correlation_id": correlation_id,
                                                                 "request_id": request_id(context)})
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error; correlation id {correlation_id}")


def request_id(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's ``x-request-id`` metadata (the REST gateway sends its request's id), for the log lines of
    the call; None when absent or not a short printable token."""
    for name, value in context.invocation_metadata() or ():
        if name == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable():
            return value
    return None


def _status_at_end(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """A stream's status when its handler ran out of requests. grpc.aio ends the requests of a call whose
    deadline passed, or which its client cancelled, as if the client had finished sending: a passed deadline
    shows in the time remaining; a cancellation does not (``context.cancelled()`` stays False), so a stream
    cancelled while the server waits for its next message counts as OK."""
    remaining = context.time_remaining()
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.OK


def _passes_through(exc: BaseException) -> bool:
    # context.abort raises AbortError; cancellation must propagate untouched
    return isinstance(exc, asyncio.CancelledError | grpc.aio.AbortError)


def grpc_errors(handler: F) -> F:
    """Translate exceptions raised by a grpc.aio handler into status codes.

    When the handler's object has a ``metrics`` attribute (a :class:`~scoring.metrics.ScoringMetrics`, or
    ``None``), each call is counted there with the status it ends with, and a unary call's time is measured
    (a stream's messages are timed by the handler itself: the stream's own length is the client's)."""
    name = handler.__name__
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            metrics: ScoringMetrics | None = getattr(self, "metrics", None)
            code = grpc.StatusCode.OK
            try:
                async for item in handler(self, request, context):
                    yield item
                code = _status_at_end(context)
            except Exception as exc:
                code = _code_of(exc, context)
                if _passes_through(exc):
                    raise
                await _abort(exc, context, name, code)
            except BaseException:  # cancelled while a message was in hand, or closed by grpc
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                if metrics is not None:
                    metrics.stream_finished(name, code)

        return cast(F, stream)

    @functools.wraps(handler)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        metrics: ScoringMetrics | None = getattr(self, "metrics", None)
        started = time.perf_counter_ns() if metrics is not None else 0
        code = grpc.StatusCode.OK
        try:
            return await cast(Callable[..., Awaitable[Any]], handler)(self, request, context)
        except Exception as exc:
            code = _code_of(exc, context)
            if _passes_through(exc):
                raise
            await _abort(exc, context, name, code)
        except BaseException:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            if metrics is not None:
                metrics.call_finished(name, code, time.perf_counter_ns() - started)

    return cast(F, unary)

"""API-key checking for the gRPC server: one ``grpc.aio`` interceptor in front of every handler.

Every call except health checks and reflection must carry ``authorization: Bearer <key>`` metadata. The key is
checked by :class:`fraudguard.apikeys.ApiKeyVerifier` (cached for a few seconds, so a call with a known key costs a
dict look-up and a SHA-256) and its roles against the method's:

- no key, a malformed, unknown, revoked or expired key: ``UNAUTHENTICATED``;
- a valid key without the method's role: ``PERMISSION_DENIED``;
- the database not answering for a key that is not cached: ``UNAVAILABLE`` (retry later).

Messages name at most the key's public id, never the secret. A refused call gets a handler of the same kind
(unary or streaming) as the real one, which aborts at once without reading the request.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from fraudguard.apikeys import ApiKey, ApiKeyError, ApiKeyVerifier, Role
from fraudguard.errors import UnavailableError
from fraudguard.proto.fraud.v1 import scoring_pb2

log = logging.getLogger("fraudguard.scoring.auth")

_SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
# methods that never need a key: load balancers and tooling call them without one
OPEN_PREFIXES: tuple[str, ...] = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# the roles that may call each method (admin may call everything); a method not listed here needs admin
METHOD_ROLES: Mapping[str, frozenset[Role]] = {
    f"/{_SERVICE}/Score": frozenset({Role.SCORER}),
    f"/{_SERVICE}/ScoreStream": frozenset({Role.SCORER}),
    f"/{_SERVICE}/ScoreBatch": frozenset({Role.SCORER}),
    f"/{_SERVICE}/GetModelInfo": frozenset({Role.SCORER, Role.ANALYST}),
    f"/{_SERVICE}/ReportOutcome": frozenset({Role.SCORER, Role.ANALYST}),
}
_ADMIN_ONLY = frozenset({Role.ADMIN})
_SCHEME = "bearer"
_NO_KEY = "this server needs an API key: send metadata 'authorization: Bearer <key>'"

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates and authorises each call before its handler runs (see the module's docstring)."""

    def __init__(self, verifier: ApiKeyVerifier, method_roles: Mapping[str, frozenset[Role]] = METHOD_ROLES) -> None:
        self._verifier = verifier
        self._method_roles = method_roles

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler  # unknown methods get UNIMPLEMENTED from grpc
        refusal = await self._refusal(method, handler_call_details.invocation_metadata or ())
        return handler if refusal is None else _refusing(handler, *refusal)

    async def _refusal(self, method: str, metadata: Sequence[Any]) -> tuple[grpc.StatusCode, str] | None:
        """None when the call may go ahead; else the status and message to refuse it with."""
        presented = bearer_token(metadata)
        if presented is None:
            return grpc.StatusCode.UNAUTHENTICATED, _NO_KEY
        try:
            key = await self._verifier.verify(presented)
        except ApiKeyError as exc:
            log.info("call refused", extra={"method": method, "reason": str(exc)})
            return grpc.StatusCode.UNAUTHENTICATED, str(exc)
        except UnavailableError as exc:
            log.warning("cannot check an API key", extra={"method": method, "reason": str(exc)})
            return grpc.StatusCode.UNAVAILABLE, "cannot check the API key now; retry later"
        except Exception as exc:  # a bug must not take the server down, nor leak its text
            correlation_id = uuid.uuid4().hex
            log.error("API key check failed", exc_info=exc, extra={"method": method, "correlation_id": correlation_id})
            return grpc.StatusCode.INTERNAL, f"internal error; correlation id {correlation_id}"
        return _permission(key, method, self._method_roles.get(method, _ADMIN_ONLY))


def make_auth_interceptor(verifier: ApiKeyVerifier) -> grpc.aio.ServerInterceptor:
    """The interceptor to pass as ``grpc.aio.server(interceptors=[...])`` when ``settings.auth`` is on."""
    return ApiKeyInterceptor(verifier)


def bearer_token(metadata: Sequence[Any]) -> str | None:
    """The key in the one ``authorization: Bearer <key>`` entry; None when it is missing, repeated or not Bearer."""
    values = [value for name, value in metadata if isinstance(name, str) and name.lower() == "authorization"]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != _SCHEME:
        return None
    return token.strip() or None


def _permission(key: ApiKey, method: str, needed: frozenset[Role]) -> tuple[grpc.StatusCode, str] | None:
    if key.allows(needed):
        return None
    log.info("call refused", extra={"method": method, "key_id": key.id, "reason": "role"})
    return (grpc.StatusCode.PERMISSION_DENIED,
            f"API key {key.id} (roles {', '.join(sorted(key.roles))}) may not call {method}: it needs "
            f"{' or '.join(sorted(needed))}")


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that aborts with ``code``; requests are left unread (raw bytes)."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)

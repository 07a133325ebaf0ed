"""Who is calling, whether they may, and whether they are calling too often: one dependency per route.

With ``auth`` on, a route needs ``Authorization: Bearer <key>`` with one of its roles (``admin`` may do
everything): no or a bad key → 401 with ``WWW-Authenticate: Bearer``, a key without the role → 403. Keys are the
storage layer's (:mod:`fraudguard.apikeys`), checked against a cache of a few seconds. Then the rate limit: a
token bucket per key (per client address when auth is off) → 429 with ``Retry-After``.

The caller's ``Authorization`` header travels on to the scoring server, so the scorer sees the same key; without
one, the gateway's own ``scoring_api_key`` is sent, if set.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from fraudguard.apikeys import ApiKeyError, ApiKeyVerifier, Role
from fraudguard.errors import UnavailableError
from gateway.metrics import GatewayMetrics
from gateway.problems import ProblemError
from gateway.ratelimit import RateLimiter

log = logging.getLogger("fraudguard.gateway")

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fraudguard"'}


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request."""

    key_id: str | None  # None when auth is off
    address: str
    authorization: str | None  # the header to pass on to the scoring server
    request_id: str

    @property
    def actor(self) -> str:
        """How the audit log and the labels name this caller."""
        return f"api-key:{self.key_id}" if self.key_id else f"address:{self.address}"


@dataclass(frozen=True, slots=True)
class Guard:
    """What the route dependencies need: the key verifier (None: auth off), the limiter (None: no limit)."""

    verifier: ApiKeyVerifier | None
    limiter: RateLimiter | None
    metrics: GatewayMetrics
    scoring_api_key: str | None

    def grpc_metadata(self, caller: Caller) -> tuple[tuple[str, str], ...]:
        authorization = caller.authorization or (f"Bearer {self.scoring_api_key}" if self.scoring_api_key else None)
        request_id = ("x-request-id", caller.request_id)
        return ((("authorization", authorization), request_id) if authorization else (request_id,))


    def grpc_metadata_for_self(self) -> tuple[tuple[str, str], ...]:
        """For the gateway's own calls (Stripe work): its ``scoring_api_key``, if set."""
        return (("authorization", f"Bearer {self.scoring_api_key}"),) if self.scoring_api_key else ()


def bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def require(*roles: Role) -> Callable[[Request], Awaitable[Caller]]:
    """A FastAPI dependency: the caller, authenticated for one of ``roles`` and within the rate limit."""
    needed = frozenset(roles)

    async def dependency(request: Request) -> Caller:
        guard: Guard = request.app.state.services.guard
        address = request.client.host if request.client else "unknown"
        header = request.headers.get("authorization")
        key_id = None
        if guard.verifier is not None:
            key_id = await _authenticate(guard, header, needed)
        if guard.limiter is not None:
            verdict = guard.limiter.take(key_id or address)
            if not verdict.allowed:
                guard.metrics.rate_limited.inc()
                raise ProblemError(429, f"rate limit exceeded; retry in {verdict.retry_after_s} s",
                                   headers={"Retry-After": str(verdict.retry_after_s)})
        return Caller(key_id, address, header if key_id else None, request.state.request_id)

    return dependency


async def _authenticate(guard: Guard, header: str | None, needed: frozenset[Role]) -> str:
    assert guard.verifier is not None
    presented = bearer(header)
    if presented is None:
        guard.metrics.auth_failures.labels("missing").inc()
        raise ProblemError(401, "this gateway needs an API key: send 'Authorization: Bearer <key>'",
                           field="Authorization", headers=_CHALLENGE)
    try:
        key = await guard.verifier.verify(presented)
    except ApiKeyError as exc:
        guard.metrics.auth_failures.labels("invalid").inc()
        raise ProblemError(401, str(exc), field="Authorization", headers=_CHALLENGE) from None
    except UnavailableError:
        log.warning("cannot check an API key: database unavailable")
        raise ProblemError(503, "cannot check the API key now; retry later", headers={"Retry-After": "1"}) from None
    if not key.allows(needed):
        guard.metrics.auth_failures.labels("role").inc()
        raise ProblemError(403, f"API key {key.id} (roles {', '.join(sorted(key.roles))}) may not do this: it needs "
                                f"{' or '.join(sorted(needed))}")
    return key.id

"""The gateway's API keys, roles and rate limit, against a real gateway, scoring server and database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fraudguard.apikeys import revoke_key
from tests.gateway_stack import Stack, running_stack, tx_json


@pytest.fixture
async def stack(data_dir: Path, embedded_dsn: str) -> AsyncIterator[Stack]:
    async with running_stack(data_dir, embedded_dsn, auth=True) as running:
        yield running


ROUTES: list[tuple[str, str, object]] = [
    ("POST", "/v1/score", {"transaction": tx_json(1)}),
    ("POST", "/v1/score:batch", {"transactions": [tx_json(2)]}),
    ("POST", "/v1/outcomes", {"transaction_id": "rest-1", "outcome": "legitimate"}),
    ("GET", "/v1/decisions/rest-1", None),
    ("GET", "/v1/model", None),
]
# what each role may do (admin: everything)
ALLOWED = {
    "scorer": {"/v1/score", "/v1/score:batch", "/v1/outcomes", "/v1/model"},
    "analyst": {"/v1/outcomes", "/v1/decisions/rest-1", "/v1/model"},
    "admin": {path for _, path, _ in ROUTES},
}


async def _call(stack: Stack, method: str, path: str, body: object, headers: dict[str, str]) -> int:
    response = await stack.http.request(method, path, json=body, headers=headers)
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    return response.status_code


async def test_every_route_needs_a_key(stack: Stack) -> None:
    for method, path, body in ROUTES:
        response = await stack.http.request(method, path, json=body)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
        malformed = await stack.http.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
        assert malformed.status_code == 401
        basic = await stack.http.request(method, path, json=body, headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert basic.status_code == 401


async def test_open_routes_stay_open(stack: Stack) -> None:
    assert (await stack.http.get("/healthz")).status_code == 200
    assert (await stack.http.get("/readyz")).status_code == 200
    assert (await stack.http.get("/metrics")).status_code == 200
    assert (await stack.http.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("role", ["scorer", "analyst", "admin"])
async def test_roles_per_route(stack: Stack, role: str) -> None:
    key = await stack.key(role)
    # make sure rest-1 is recorded, so the analyst's look-up finds it
    assert (await stack.http.post("/v1/score", json={"transaction": tx_json(1)},
                                  headers=stack.auth(stack.admin_key))).status_code == 200
    await stack.decision_row("rest-1")
    for method, path, body in ROUTES:
        status = await _call(stack, method, path, body, stack.auth(key))
        if path in ALLOWED[role]:
            assert status in (200, 201), (role, path, status)
        else:
            assert status == 403, (role, path, status)


async def test_the_callers_key_reaches_the_scorer(stack: Stack) -> None:
    """Both check keys: the gateway passes the caller's on, so a scorer key scores through both."""
    key = await stack.key("scorer")
    response = await stack.http.post("/v1/score", json={"transaction": tx_json(3)}, headers=stack.auth(key))
    assert response.status_code == 200, response.text


async def test_a_revoked_key_is_refused(stack: Stack) -> None:
    key = await stack.key("scorer")
    assert (await stack.http.get("/v1/model", headers=stack.auth(key))).status_code == 200
    key_id = key.split("_")[1]
    await revoke_key(stack.db, key_id, "test")
    verifier = stack.gateway.services.guard.verifier
    assert verifier is not None
    verifier.forget(key_id)  # another process would see it within the cache's few seconds
    refused = await stack.http.get("/v1/model", headers=stack.auth(key))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert key.split("_", 2)[2] not in refused.text  # never the secret


async def test_rate_limit_per_key(data_dir: Path, embedded_dsn: str) -> None:
    async with running_stack(data_dir, embedded_dsn, auth=True, rate_limit_per_s=0.5, rate_limit_burst=3) as stack:
        first, second = await stack.key("scorer"), await stack.key("scorer")
        statuses = [(await stack.http.get("/v1/model", headers=stack.auth(first))).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await stack.http.get("/v1/model", headers=stack.auth(first))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["content-type"].startswith("application/problem+json")
        # another key has its own bucket
        assert (await stack.http.get("/v1/model", headers=stack.auth(second))).status_code == 200
        metrics = (await stack.http.get("/metrics")).text
        assert "fraudguard_gateway_rate_limited_total 2.0" in metrics


async def test_rate_limit_per_address_without_auth(data_dir: Path, embedded_dsn: str) -> None:
    async with running_stack(data_dir, embedded_dsn, rate_limit_per_s=0.5, rate_limit_burst=2) as stack:
        statuses = [(await stack.http.get("/v1/model")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]

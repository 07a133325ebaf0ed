"""A real scoring server and a real REST gateway on loopback ports, sharing one real PostgreSQL schema.

Both run in the test's event loop (``start_server`` and ``start_gateway`` bind real sockets); the tests talk to
the gateway over HTTP with httpx, and to the database with asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import stripe

from fraudguard.apikeys import create_key
from fraudguard.db import Database
from fraudguard.settings import Settings
from gateway.server import RunningGateway, start_gateway
from scoring.server import ScoringServer, start_server
from tests.conftest import server_settings

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"


@dataclass
class Stack:
    scorer: ScoringServer
    gateway: RunningGateway
    db: Database
    http: httpx.AsyncClient
    admin_key: str | None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"

    async def key(self, *roles: str) -> str:
        created = await create_key(self.db, roles, None, "test", "test")
        return created.secret

    def auth(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def decision_row(self, transaction_id: str, timeout_s: float = 10.0) -> Mapping[str, Any]:
        """The stored decision (waits for the writer)."""
        deadline = time.monotonic() + timeout_s
        while True:
            async with self.db.connection() as conn:
                row = await conn.fetchrow("SELECT * FROM decisions WHERE transaction_id = $1", transaction_id)
            if row is not None:
                return dict(row)
            if time.monotonic() > deadline:
                raise AssertionError(f"decision {transaction_id} not stored within {timeout_s} s")
            await asyncio.sleep(0.02)

    async def stripe_event_state(self, event_id: str, timeout_s: float = 10.0,
                                 until: tuple[str, ...] = ("done", "ignored", "failed")) -> Mapping[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            async with self.db.connection() as conn:
                row = await conn.fetchrow("SELECT * FROM stripe_events WHERE event_id = $1", event_id)
            if row is not None and row["state"] in until:
                return dict(row)
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event_id} not processed within {timeout_s} s: {row}")
            await asyncio.sleep(0.02)


def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send, made by the stripe library's own signing code."""
    return str(stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp))


def tx_json(i: int = 0, **changes: Any) -> dict[str, Any]:
    """A valid transaction as the REST API takes it."""
    tx: dict[str, Any] = {
        "transaction_id": f"rest-{i}",
        "event_time": datetime.fromtimestamp(time.time() - 60 + i * 1e-3, UTC).isoformat(),
        "amount_minor": 2599,
        "currency": "EUR",
        "card": {"token": f"card-{i % 97}", "bin": "411111", "last4": "1111"},
        "customer_id": f"cust-{i % 89}",
        "merchant_id": f"merchant-{i % 13}",
        "mcc": 5411,
        "merchant_country": "DE",
        "device_id": f"device-{i % 71}",
        "ip_address": f"10.1.{i % 200}.{i % 250}",
        "location": {"latitude": 52.52, "longitude": 13.40},
        "channel": "ecommerce",
        "entry_mode": "card_on_file",
    }
    tx.update(changes)
    return tx


@contextlib.asynccontextmanager
async def running_stack(data_dir: Path, database_url: str, *, auth: bool = False, record: bool = True,
                        **gateway_changes: Any) -> AsyncIterator[Stack]:
    """Scoring server (recording into ``database_url``) and gateway in front of it; with ``auth``, both check
    keys and ``admin_key`` holds an admin key made for the test."""
    scorer = await start_server(server_settings(data_dir, record=record, database_url=database_url, auth=auth,
                                                record_interval_s=0.002))
    gateway: RunningGateway | None = None
    serving: asyncio.Task[None] | None = None
    try:
        values: dict[str, Any] = {
            "gateway_listen": "127.0.0.1:0", "scoring_target": f"127.0.0.1:{scorer.port}", "data_dir": data_dir,
            "database_url": database_url, "auth": auth, "stripe_webhook_secret": WEBHOOK_SECRET,
            "shutdown_grace_s": 2.0, "db_pool_size": 4,
        }
        values.update(gateway_changes)
        gateway = await start_gateway(Settings(**values))
        serving = asyncio.create_task(gateway.serve())
        db = gateway.services.db
        admin = None
        if auth:
            created = await create_key(db, ["admin"], None, "test admin", "test")
            admin = created.secret
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10.0) as http:
            stack = Stack(scorer, gateway, db, http, admin)
            await _until_ready(stack)
            yield stack
    finally:
        if gateway is not None:
            gateway.stop()
        if serving is not None:
            await serving
        await scorer.stop(grace=1.0)


async def _until_ready(stack: Stack, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (await stack.http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("gateway not ready")
        await asyncio.sleep(0.05)

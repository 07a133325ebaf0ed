"""No PAN through the REST gateway reaches the database or a log: card numbers sent in JSON (accepted, refused,
malformed) and inside a Stripe event, through real gateway and scorer processes recording into PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from pathlib import Path

import asyncpg
import httpx

from tests._server_process import ServerProcess
from tests.gateway_stack import WEBHOOK_SECRET, sign, tx_json
from tests.pan_scan import PANS, pans_in
from tests.test_gateway_stripe import stripe_event


async def test_no_pan_from_the_gateway_reaches_the_database_or_the_logs(tmp_path: Path, bundle_store: Path,
                                                                        dsn: str) -> None:
    data = tmp_path / "data"
    shutil.copytree(bundle_store, data / "models")
    prefix = f"gwpan-{secrets.token_hex(3)}-"
    env = {"FRAUDGUARD_RECORD": "true", "FRAUDGUARD_DATABASE_URL": dsn, "FRAUDGUARD_LOG_LEVEL": "DEBUG",
           "FRAUDGUARD_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    scorer = ServerProcess(data, ("--max-cards", "4096", "--max-entities", "4096"), env=env).start()
    gateway = ServerProcess(data, ("--scoring-target", scorer.target), env=env, command="gateway").start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{gateway.target}", timeout=30) as http:
            for i, pan in enumerate(PANS):
                card = {"pan": pan, "bin": pan[:6], "last4": pan[-4:]}
                response = await http.post("/v1/score", json={"transaction": tx_json(i, transaction_id=f"{prefix}{i}",
                                                                                      card=card)})
                assert response.status_code == 200, response.text
            batch = [tx_json(10 + i, transaction_id=f"{prefix}{10 + i}", card={"pan": pan})
                     for i, pan in enumerate(PANS)]
            batch.append(tx_json(20, transaction_id=f"{prefix}20", card={"pan": PANS[1][:-1] + "0"}))  # not Luhn
            assert (await http.post("/v1/score:batch", json={"transactions": batch})).status_code == 200
            refused = await http.post("/v1/score", json={"transaction": tx_json(30, card={"pan": PANS[3]},
                                                                                 amount_minor=-1)})
            assert refused.status_code == 422 and PANS[3] not in refused.text
            with_spaces = "4111 1111 1111 1111"
            spaced = await http.post("/v1/score", json={"transaction": tx_json(31, card={"pan": with_spaces})})
            assert spaced.status_code == 422 and with_spaces not in spaced.text
            broken = await http.post("/v1/score", content=f'{{"transaction": {{"card": {{"pan": "{PANS[4]}"'.encode(),
                                     headers={"content-type": "application/json"})
            assert broken.status_code == 400 and PANS[4] not in broken.text
            event = stripe_event("charge.succeeded", metadata={"ip": "203.0.113.7", "note": f"card {PANS[0]}"},
                                 receipt_email=f"{PANS[2]}@example.com")
            event["data"]["object"]["billing_details"]["email"] = None
            body = json.dumps(event)
            webhook = await http.post("/v1/webhooks/stripe", content=body.encode(),
                                      headers={"Stripe-Signature": sign(body)})
            assert webhook.status_code == 200
            deadline = time.monotonic() + 30
            conn = await asyncpg.connect(dsn)
            try:
                while await conn.fetchval("SELECT count(*) FROM stripe_events WHERE state = 'pending'") \
                        or await conn.fetchval("SELECT count(*) FROM decisions WHERE transaction_id LIKE $1",
                                               prefix + "%") < 10:
                    assert time.monotonic() < deadline, "not everything was stored"
                    await asyncio.sleep(0.05)
            finally:
                await conn.close()
    finally:
        assert gateway.terminate() == 0
        assert scorer.terminate() == 0

    conn = await asyncpg.connect(dsn)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        assert "stripe_events" in tables
        hits: dict[str, list[str]] = {}
        for table in tables:
            for row in await conn.fetch(f'SELECT t::text AS line FROM "{table}" t'):
                found = pans_in(row["line"].encode())
                if found:
                    hits.setdefault(f"table {table}", []).extend(found)
    finally:
        await conn.close()
    for name, process in (("scorer", scorer), ("gateway", gateway)):
        found = pans_in("\n".join(process.log_lines).encode())
        if found:
            hits[f"{name} log"] = found
    assert hits == {}

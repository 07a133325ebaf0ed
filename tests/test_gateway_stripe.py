"""Stripe webhooks through a real gateway: signed by the stripe library's own code, verified by it, stored, processed
once by the workers (scored through a real scoring server, or stored as labels)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway_stack import Stack, running_stack, sign

FIXTURES = Path(__file__).parent / "stripe_events"
PAYMENT = "pi_3PQdF2LkdIwHu7ix1Q9yNx2k"  # the payment of the charge, dispute and warning fixtures


def stripe_event(name: str, *, age_s: float = 30.0, **object_changes: Any) -> dict[str, Any]:
    """A fixture event (shaped like Stripe's) with a fresh id, happening ``age_s`` ago."""
    event: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    event["id"] = "evt_" + secrets.token_hex(12)
    now = int(time.time() - age_s)
    event["created"] = now
    event["data"]["object"]["created"] = now
    event["data"]["object"].update(object_changes)
    return event


async def deliver(stack: Stack, event: dict[str, Any] | str, *, signature: str | None = None,
                  timeout_s: float = 10.0) -> Any:
    body = event if isinstance(event, str) else json.dumps(event)
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature or sign(body)}
    return await stack.http.post("/v1/webhooks/stripe", content=body.encode(), headers=headers, timeout=timeout_s)


def counter(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.fixture
async def stack(data_dir: Path, embedded_dsn: str) -> AsyncIterator[Stack]:
    async with running_stack(data_dir, embedded_dsn) as running:
        yield running


async def test_a_charge_is_scored_once_even_when_redelivered(stack: Stack) -> None:
    event = stripe_event("charge.succeeded")
    first = await deliver(stack, event)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "duplicate": False}
    row = await stack.stripe_event_state(event["id"])
    assert row["state"] == "done"
    assert row["transaction_id"] == PAYMENT
    assert row["payload_enc"] is None  # personal data kept only until processed
    decision = await stack.decision_row(PAYMENT)
    assert decision["amount_minor"] == 4999 and decision["currency"] == "EUR"
    assert json.loads(row["result"])["action"] == decision["action"]

    again = await deliver(stack, event)  # Stripe retries: same event id, new signature
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    # the intent of the same payment arrives too: acknowledged, not scored a second time
    intent = stripe_event("payment_intent.succeeded")
    assert (await deliver(stack, intent)).status_code == 200
    later = await stack.stripe_event_state(intent["id"])
    assert (later["state"], json.loads(later["result"])) == ("ignored", {"reason": "already_scored"})
    await asyncio.sleep(0.2)
    async with stack.db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stripe_events") == 2
        assert await conn.fetchval("SELECT count(*) FROM decisions") == 1
    metrics = (await stack.http.get("/metrics")).text
    assert counter(metrics, "fraudguard_gateway_stripe_events_total", type="charge.succeeded", result="done") == 1
    assert counter(metrics, "fraudguard_gateway_stripe_events_total", type="charge.succeeded",
                   result="duplicate") == 1


async def test_a_dispute_and_an_early_fraud_warning_become_labels(stack: Stack) -> None:
    assert (await deliver(stack, stripe_event("charge.succeeded"))).status_code == 200
    await stack.decision_row(PAYMENT)
    dispute, warning = stripe_event("charge.dispute.created"), stripe_event("radar.early_fraud_warning.created")
    for event in (dispute, warning):
        assert (await deliver(stack, event)).status_code == 200
        row = await stack.stripe_event_state(event["id"])
        assert row["state"] == "done", row
        assert json.loads(row["result"]) == {"label_stored": True, "applied": True}
    async with stack.db.connection() as conn:
        labels = await conn.fetch("SELECT label, source FROM labels WHERE transaction_id = $1 ORDER BY label",
                                  PAYMENT)
    assert [(r["label"], r["source"]) for r in labels] == [("chargeback", "stripe"), ("fraud", "stripe")]


async def test_bad_and_stale_signatures_are_refused_and_nothing_is_stored(stack: Stack) -> None:
    event = stripe_event("charge.succeeded")
    body = json.dumps(event)
    forged = await deliver(stack, body, signature=sign(body, secret="whsec_someone_else"))
    assert forged.status_code == 400
    assert forged.json()["field"] == "Stripe-Signature"
    stale = await deliver(stack, body, signature=sign(body, timestamp=int(time.time()) - 301))
    assert stale.status_code == 400
    assert "stale" in stale.json()["detail"]
    tampered = await deliver(stack, body.replace("4999", "1"), signature=sign(body))
    assert tampered.status_code == 400
    missing = await stack.http.post("/v1/webhooks/stripe", content=body.encode())
    assert missing.status_code == 400
    garbage = await deliver(stack, body, signature="t=abc,v1=;;;")
    assert garbage.status_code == 400
    not_utf8 = await stack.http.post("/v1/webhooks/stripe", content=b"\xff\xfe",
                                     headers={"Stripe-Signature": sign("x")})
    assert not_utf8.status_code == 400
    async with stack.db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stripe_events") == 0
    metrics = (await stack.http.get("/metrics")).text
    assert counter(metrics, "fraudguard_gateway_stripe_events_total", result="bad_signature") == 6


async def test_a_signed_body_that_is_not_an_event_is_refused(stack: Stack) -> None:
    for body, field in (("[1, 2]", "object"), ("{not json", "body"),
                        (json.dumps({"object": "event", "id": "nope", "type": "x", "created": 1}), "id"),
                        (json.dumps({"object": "event", "id": "evt_1", "type": "", "created": 1}), "type"),
                        (json.dumps({"object": "event", "id": "evt_1", "type": "a.b", "created": "now"}), "created")):
        response = await deliver(stack, body)
        assert response.status_code == 400, body
        assert response.json()["field"] == field


async def test_unknown_types_are_acknowledged_ignored_and_counted(stack: Stack) -> None:
    event = stripe_event("customer.created")
    event["type"] = "customer.tax_id.created"
    response = await deliver(stack, event)
    assert response.status_code == 200
    row = await stack.stripe_event_state(event["id"])
    assert (row["state"], json.loads(row["result"])) == ("ignored", {"reason": "unhandled_type"})
    metrics = (await stack.http.get("/metrics")).text
    assert counter(metrics, "fraudguard_gateway_stripe_events_total", type="other", result="ignored") == 1


async def test_a_malformed_event_of_a_handled_type_fails_without_retrying(stack: Stack) -> None:
    event = stripe_event("charge.succeeded", amount=-5)
    assert (await deliver(stack, event)).status_code == 200
    row = await stack.stripe_event_state(event["id"])
    assert row["state"] == "failed"
    assert "amount" in row["last_error"]
    assert row["attempts"] == 1


async def test_events_wait_while_the_scorer_is_down(data_dir: Path, embedded_dsn: str) -> None:
    async with running_stack(data_dir, embedded_dsn) as stack:
        await stack.scorer.stop(grace=0.5)
        event = stripe_event("charge.succeeded")
        response = await deliver(stack, event)
        assert response.status_code == 200  # acknowledged: it is stored
        row = await stack.stripe_event_state(event["id"], until=("pending",))
        for _ in range(200):
            async with stack.db.connection() as conn:
                row = dict(await conn.fetchrow("SELECT * FROM stripe_events WHERE event_id = $1", event["id"]))
            if row["last_error"]:
                break
            await asyncio.sleep(0.05)
        assert row["state"] == "pending" and row["payload_enc"] is not None
        assert "UNAVAILABLE" in row["last_error"]


async def test_without_a_secret_webhooks_are_503(data_dir: Path, embedded_dsn: str) -> None:
    async with running_stack(data_dir, embedded_dsn, stripe_webhook_secret=None) as stack:
        response = await deliver(stack, stripe_event("charge.succeeded"))
        assert response.status_code == 503
        assert "FRAUDGUARD_STRIPE_WEBHOOK_SECRET" in response.json()["detail"]


async def test_many_deliveries_at_once_are_all_acknowledged_and_processed(stack: Stack) -> None:
    events = [stripe_event("charge.succeeded", id=f"ch_load{i}", payment_intent=f"pi_load{i}") for i in range(120)]
    started = time.perf_counter()
    # a generous timeout: on a loaded machine (CI beside other work) 120 at once may queue for seconds
    responses = await asyncio.gather(*(deliver(stack, e, timeout_s=60) for e in events))
    acknowledged_in = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * len(events)
    for event in events:
        row = await stack.stripe_event_state(event["id"], timeout_s=60)
        assert row["state"] == "done", (row["last_error"], row["attempts"])
    async with stack.db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM stripe_events WHERE state = 'done'") == len(events)
    print(f"{len(events)} deliveries acknowledged in {acknowledged_in:.3f} s")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
PATHS = [("created",), ("type",), ("data",), ("data", "object"), ("data", "object", "amount"),
         ("data", "object", "currency"), ("data", "object", "payment_intent"), ("data", "object", "customer"),
         ("data", "object", "payment_method_details"), ("data", "object", "payment_method_details", "card"),
         ("data", "object", "metadata"), ("data", "object", "created"), ("account",)]


async def test_hostile_signed_events_never_break_the_gateway(stack: Stack) -> None:
    """Signed (so they pass verification) but malformed events: each is refused with 400 or acknowledged; the
    workers then finish every stored one (done, ignored or failed), and the gateway stays healthy."""
    base = [stripe_event(name) for name in ("charge.succeeded", "payment_intent.succeeded",
                                            "charge.dispute.created", "radar.early_fraud_warning.created")]
    statuses: list[int] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(which=st.integers(0, len(base) - 1), path=st.sampled_from(PATHS), value=JSON_VALUES,
           raw=st.booleans())
    def post(which: int, path: tuple[str, ...], value: object, raw: bool) -> None:
        event = json.loads(json.dumps(base[which]))
        event["id"] = "evt_" + secrets.token_hex(12)
        if raw:
            body = json.dumps(value)
        else:
            node = event
            for key in path[:-1]:
                node = node[key] if isinstance(node.get(key), dict) else node.setdefault(key, {})
            node[path[-1]] = value
            body = json.dumps(event)
        response = httpx.post(f"{stack.base_url}/v1/webhooks/stripe", content=body.encode(),
                              headers={"Stripe-Signature": sign(body)}, timeout=30)
        assert response.status_code in (200, 400), response.text
        statuses.append(response.status_code)

    await asyncio.to_thread(post)  # the servers run on this loop meanwhile
    assert 200 in statuses and 400 in statuses
    deadline = time.monotonic() + 60
    while True:
        async with stack.db.connection() as conn:
            pending = await conn.fetchval("SELECT count(*) FROM stripe_events WHERE state = 'pending'")
        if pending == 0:
            break
        assert time.monotonic() < deadline, f"{pending} events still pending"
        await asyncio.sleep(0.1)
    assert (await stack.http.get("/readyz")).status_code == 200
    fine = stripe_event("charge.succeeded", id="ch_after_fuzz", payment_intent="pi_after_fuzz")
    assert (await deliver(stack, fine)).status_code == 200
    assert (await stack.stripe_event_state(fine["id"]))["state"] == "done"

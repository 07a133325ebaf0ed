"""Stripe webhooks: verify, store, acknowledge; process later, once, off the request path.

:meth:`StripeInbox.receive` runs inside the request: the ``Stripe-Signature`` header is checked by the official
``stripe`` library against the endpoint secret (with the configured timestamp tolerance), then the event is
stored in ``stripe_events`` (payload sealed with the personal-data keys) keyed by its id. A redelivery finds the
row and is acknowledged without more. Only then does the gateway answer 200, so an acknowledged event is never
lost; if the database cannot take it, the answer is 503 and Stripe delivers it again.

:class:`StripeWorkers` take pending rows (``FOR UPDATE SKIP LOCKED``, so several gateways can share one
database), each under a lease (``next_attempt_at`` moved forward), and do what :func:`gateway.stripe_events.interpret`
says: score the payment through the scoring service (once per payment: a later event of a payment already
scored is ignored), store a label and tell the scorer, or nothing. A failure
other than the scorer refusing the transaction (INVALID_ARGUMENT) leaves the row pending for a later attempt,
with backoff; a refusal, or a malformed event, marks it ``failed`` with the error. Processed rows lose their payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import orjson
import stripe

from fraudguard.db import Database, DatabaseError
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.personal import Keyring, SealedDataError
from fraudguard.tasks import cancel_and_wait
from gateway.convert import ACTION_NAMES, finite
from gateway.metrics import GatewayMetrics
from gateway.outcomes import Outcome, record_outcome
from gateway.problems import ProblemError
from gateway.stripe_events import Ignore, ReportOutcome, ScorePayment, StripeEventError, interpret
from gateway.upstream import Metadata, ScoringClient, UpstreamError

log = logging.getLogger("fraudguard.gateway.stripe")

HANDLED_TYPES = frozenset({
    "payment_intent.created", "payment_intent.requires_action", "payment_intent.processing",
    "payment_intent.succeeded", "charge.succeeded", "charge.pending", "charge.captured",
    "charge.dispute.created", "radar.early_fraud_warning.created",
})
_AAD_PREFIX = b"fraudguard.stripe_event\x00"
# what retrying cannot mend: the scorer refused the transaction itself. Anything else (the scorer down, slow,
# overloaded, misconfigured, or a transport error) is retried with backoff, up to MAX_ATTEMPTS
_PERMANENT = frozenset({grpc.StatusCode.INVALID_ARGUMENT})
MAX_ATTEMPTS = 12  # with the backoff below, about 3 hours of retrying
_BACKOFF_CAP_S = 1800.0

_INSERT = """
INSERT INTO stripe_events (event_id, type, livemode, created, payload_enc, personal_key_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""
_CLAIM = """
UPDATE stripe_events e SET attempts = e.attempts + 1,
       next_attempt_at = now() + make_interval(secs => least($2::float8 * (2 ^ e.attempts), $3::float8))
WHERE e.event_id IN (
    SELECT event_id FROM stripe_events
    WHERE state = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING e.event_id, e.type, e.attempts, e.payload_enc, e.personal_key_id
"""
_FINISH = """
UPDATE stripe_events SET state = $2, processed_at = now(), payload_enc = NULL, personal_key_id = NULL,
       transaction_id = $3, result = $4::jsonb, last_error = $5
WHERE event_id = $1 AND state = 'pending'
"""
_RETRY_LATER = "UPDATE stripe_events SET last_error = $2 WHERE event_id = $1"
_FAIL_KEEPING_PAYLOAD = """
UPDATE stripe_events SET state = 'failed', processed_at = now(), last_error = $2 WHERE event_id = $1
"""
_SCORED_BEFORE = """
SELECT EXISTS (SELECT 1 FROM stripe_events WHERE transaction_id = $1 AND state = 'done' AND result ? 'action')
"""
_PENDING = "SELECT count(*) FROM stripe_events WHERE state = 'pending'"


def type_label(event_type: str) -> str:
    """The metrics label of an event type: the type when handled, else ``other`` (labels stay bounded)."""
    return event_type if event_type in HANDLED_TYPES else "other"


def _aad(event_id: str) -> bytes:
    return _AAD_PREFIX + event_id.encode()


@dataclass(frozen=True, slots=True)
class Receipt:
    event_id: str
    event_type: str
    duplicate: bool


class StripeInbox:
    """Verifies and stores deliveries; wakes the workers."""

    def __init__(self, db: Database, keyring: Keyring, secret: str | None, tolerance_s: int,
                 metrics: GatewayMetrics) -> None:
        self._db = db
        self._keyring = keyring
        self._secret = secret
        self._tolerance_s = tolerance_s
        self._metrics = metrics
        self.arrived = asyncio.Event()

    async def receive(self, payload: bytes, signature: str | None) -> Receipt:
        """Verify, parse, store; :class:`ProblemError` (400, or 503 when it cannot be stored) otherwise."""
        if not self._secret:
            raise ProblemError(503, "Stripe webhooks are not configured: set FRAUDGUARD_STRIPE_WEBHOOK_SECRET")
        if not signature:
            self._metrics.stripe_events.labels("unknown", "bad_signature").inc()
            raise ProblemError(400, "no Stripe-Signature header", field="Stripe-Signature")
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(text, signature, self._secret, self._tolerance_s)
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as exc:
            self._metrics.stripe_events.labels("unknown", "bad_signature").inc()
            reason = "stale timestamp" if "tolerance" in str(exc) else "signature does not verify"
            raise ProblemError(400, f"Stripe-Signature: {reason}; nothing was processed",
                               field="Stripe-Signature") from None
        event_id, event_type, livemode, created = _envelope(payload)
        sealed = self._keyring.seal(payload, _aad(event_id))
        try:
            async with self._db.connection() as conn:
                row = await conn.fetchrow(_INSERT, event_id, event_type, livemode, created, sealed,
                                          self._keyring.current_id)
        except DatabaseError as exc:
            log.error("cannot store a Stripe event; Stripe will redeliver it", extra={"event_id": event_id,
                                                                                     "error": str(exc)})
            raise ProblemError(503, "cannot store the event now; it will be redelivered",
                               headers={"Retry-After": "5"}) from None
        duplicate = row is None
        self._metrics.stripe_events.labels(type_label(event_type), "duplicate" if duplicate else "received").inc()
        if not duplicate:
            self.arrived.set()
        return Receipt(event_id, event_type, duplicate)


def _envelope(payload: bytes) -> tuple[str, str, bool, datetime]:
    """(id, type, livemode, created) of a signed payload; 400 when it is not shaped like a Stripe event."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise ProblemError(400, "the body is not valid JSON", field="body") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise ProblemError(400, "not a Stripe event (object must be 'event')", field="object")
    event_id, event_type, created = event.get("id"), event.get("type"), event.get("created")
    if not isinstance(event_id, str) or not event_id.startswith("evt_") or not 4 < len(event_id) <= 254 \
            or not event_id.isascii() or not event_id[4:].replace("_", "").isalnum():
        raise ProblemError(400, "id: expected a Stripe event id (evt_...)", field="id")
    if not isinstance(event_type, str) or not 0 < len(event_type) <= 100 or not event_type.isprintable():
        raise ProblemError(400, "type: expected an event type such as charge.succeeded", field="type")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 < created < 2**40:
        raise ProblemError(400, "created: expected a Unix time in seconds", field="created")
    return event_id, event_type, event.get("livemode") is True, datetime.fromtimestamp(created, UTC)


class StripeWorkers:
    """Process pending events: ``workers`` at once, woken by the inbox or every ``poll_s``."""

    def __init__(self, db: Database, keyring: Keyring, scoring: ScoringClient, metadata: Metadata,
                 metrics: GatewayMetrics, inbox: StripeInbox, *, workers: int, poll_s: float = 1.0,
                 backoff_s: float = 2.0, default_merchant_id: str = "stripe") -> None:
        self._db = db
        self._keyring = keyring
        self._scoring = scoring
        self._metadata = metadata
        self._metrics = metrics
        self._inbox = inbox
        self._workers = workers
        self._poll_s = poll_s
        self._backoff_s = backoff_s
        self._merchant = default_merchant_id
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stripe-workers")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                claimed = await self.process_some()
            except DatabaseError as exc:
                log.warning("cannot reach the Stripe inbox; will retry", extra={"error": str(exc)})
                claimed = 0
            except Exception as exc:  # a bug must not stop webhook processing for good
                log.error("Stripe worker failed; will retry", exc_info=exc)
                claimed = 0
            if claimed:
                continue
            self._inbox.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox.arrived.wait(), self._poll_s)

    async def process_some(self) -> int:
        """Claim up to ``workers`` due events and process them at once; how many were claimed."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(_CLAIM, self._workers, self._backoff_s, _BACKOFF_CAP_S)
            pending = await conn.fetchval(_PENDING)
        self._metrics.stripe_pending.set(pending)
        if rows:
            await asyncio.gather(*(self._process(row) for row in rows))
        return len(rows)

    async def _process(self, row: Mapping[str, Any]) -> None:
        event_id, event_type = row["event_id"], row["type"]
        label = type_label(event_type)
        try:
            payload = self._keyring.open(row["personal_key_id"], row["payload_enc"], _aad(event_id))
        except SealedDataError as exc:
            await self._finish_failed(event_id, label, f"payload cannot be opened: {exc}", keep_payload=True)
            return
        try:
            action = interpret(orjson.loads(payload), default_merchant_id=self._merchant, now=time.time())
        except StripeEventError as exc:
            await self._finish_failed(event_id, label, str(exc), keep_payload=False)
            return
        try:
            state, transaction_id, result = await self._act(action, event_id)
        except UpstreamError as exc:
            if exc.code not in _PERMANENT and row["attempts"] < MAX_ATTEMPTS:
                async with self._db.connection() as conn:
                    await conn.execute(_RETRY_LATER, event_id, f"{exc.code.name}: {exc.detail}")
                self._metrics.stripe_events.labels(label, "retry").inc()
                return
            await self._finish_failed(event_id, label, f"{exc.code.name}: {exc.detail}", keep_payload=True)
            return
        async with self._db.connection() as conn:
            await conn.execute(_FINISH, event_id, state, transaction_id, orjson.dumps(result).decode(), None)
        self._metrics.stripe_events.labels(label, state).inc()
        log.info("Stripe event processed", extra={"event_id": event_id, "type": event_type, "state": state,
                                                   "transaction_id": transaction_id, **result})

    async def _act(self, action: ScorePayment | ReportOutcome | Ignore,
                   event_id: str) -> tuple[str, str | None, dict[str, Any]]:
        if isinstance(action, Ignore):
            return "ignored", None, {"reason": action.reason}
        if isinstance(action, ScorePayment):
            tx = action.transaction
            if await self._scored_before(tx.transaction_id):
                return "ignored", tx.transaction_id, {"reason": "already_scored"}
            answer = await self._scoring.score(scoring_pb2.ScoreRequest(transaction=tx), self._metadata)
            decision = answer.decision
            action_name = ACTION_NAMES.get(decision.action, "review")
            score = finite(decision.score)
            self._metrics.saw_decision(action_name, score, decision.model_version)
            return "done", tx.transaction_id, {"action": action_name, "score": score,
                                               "model_version": decision.model_version}
        outcome = Outcome(action.transaction_id, action.outcome, "stripe", f"stripe:{event_id}", action.reported_at,
                          merchant_id=action.merchant_id)
        stored = await record_outcome(self._db, self._scoring, outcome, self._metadata)
        return "done", action.transaction_id, {"label_stored": stored.stored, "applied": stored.applied}

    async def _scored_before(self, transaction_id: str) -> bool:
        """Whether an earlier event of this payment was scored (its intent, then its charge, ...): a payment is
        scored once, or it would count several times in every velocity feature."""
        async with self._db.connection() as conn:
            return bool(await conn.fetchval(_SCORED_BEFORE, transaction_id))

    async def _finish_failed(self, event_id: str, label: str, error: str, *, keep_payload: bool) -> None:
        log.error("Stripe event not processed", extra={"event_id": event_id, "error": error})
        async with self._db.connection() as conn:
            if keep_payload:
                await conn.execute(_FAIL_KEEPING_PAYLOAD, event_id, error)
            else:
                await conn.execute(_FINISH, event_id, "failed", None, "{}", error)
        self._metrics.stripe_events.labels(label, "failed").inc()


def validate_secret(secret: str | None) -> None:
    if secret is not None and not secret.startswith("whsec_"):
        raise ValidationError("stripe_webhook_secret", "expected the endpoint's signing secret (whsec_...)")

"""Outcomes (labels) from the REST API and from Stripe: stored first, then told to the scoring server.

The ``labels`` row is the record that training reads, so it is written before anything else; the same report
delivered twice (same transaction, source, outcome and time) is one row (``labels_once``). Then the scorer's
``ReportOutcome`` updates its label-derived features; when the scorer cannot be reached the label is still stored
(``applied`` is then null) and the next training run learns from it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from fraudguard.db import Database
from fraudguard.proto.fraud.v1 import scoring_pb2
from gateway.convert import OUTCOME_NAMES, timestamp
from gateway.upstream import Metadata, ScoringClient, UpstreamError

log = logging.getLogger("fraudguard.gateway")

_INSERT = """
INSERT INTO labels (transaction_id, label, source, actor, reported_at, note)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT ON CONSTRAINT labels_once DO NOTHING
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    transaction_id: str
    outcome: int  # scoring_pb2.Outcome
    source: str  # api, stripe, ...
    actor: str
    reported_at: datetime  # aware
    note: str = ""
    merchant_id: str = ""
    device_id: str = ""


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    stored: bool  # False: the very same report was stored before
    applied: bool | None  # None: the scorer could not be told


async def store_label(db: Database, outcome: Outcome) -> bool:
    """Insert the label; False when the same report is already there."""
    async with db.connection() as conn:
        row = await conn.fetchrow(_INSERT, outcome.transaction_id, OUTCOME_NAMES[outcome.outcome], outcome.source,
                                  outcome.actor, outcome.reported_at, outcome.note)
    return row is not None


async def tell_scorer(scoring: ScoringClient, outcome: Outcome, metadata: Metadata) -> bool:
    """``ReportOutcome`` to the scoring server; raises :class:`UpstreamError`."""
    request = scoring_pb2.ReportOutcomeRequest(
        transaction_id=outcome.transaction_id, outcome=outcome.outcome,  # type: ignore[arg-type]
        reported_at=timestamp(min(outcome.reported_at, datetime.now(UTC))),
        merchant_id=outcome.merchant_id, device_id=outcome.device_id)
    return (await scoring.report_outcome(request, metadata)).applied


async def record_outcome(db: Database, scoring: ScoringClient, outcome: Outcome, metadata: Metadata) -> StoredOutcome:
    """Store, then tell the scorer (only a newly stored label: a retry must not count twice in the features)."""
    stored = await store_label(db, outcome)
    if not stored:
        return StoredOutcome(False, None)
    try:
        applied: bool | None = await tell_scorer(scoring, outcome, metadata)
    except UpstreamError as exc:
        log.warning("label stored; the scorer could not be told",
                    extra={"transaction_id": outcome.transaction_id, "status": exc.status, "error": exc.detail})
        applied = None
    return StoredOutcome(True, applied)

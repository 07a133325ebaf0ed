"""``GET /v1/decisions/{transaction_id}``: a recorded decision, with its inputs, feature vector and labels.

Read straight from the ``decisions`` table (the scoring server's writer stores a decision a few milliseconds after
answering it, so a look-up right after a score may find nothing yet: 404, try again). Personal fields stay sealed
in the database; the card is its token, BIN and last four. Feature names come from the model's registered
feature schema, or from the scorer's model info when the version is the one deciding now.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fraudguard.db import Database
from fraudguard.errors import NotFoundError
from gateway.convert import finite

_DECISION = """
SELECT d.transaction_id, d.event_time, d.decided_at, d.recorded_at, d.amount_minor, d.currency, d.card_token,
       d.card_bin, d.card_last4, d.customer_id, d.merchant_id, d.mcc, d.merchant_country, d.channel, d.entry_mode,
       d.score, d.action, d.reasons::text AS reasons, d.rule_hits::text AS rule_hits, d.model_version,
       d.rule_versions::text AS rule_versions, d.features, d.server_time_us,
       m.feature_schema -> 'feature_names' AS feature_names
FROM decisions d LEFT JOIN model_bundles m ON m.version = d.model_version
WHERE d.transaction_id = $1
ORDER BY d.event_time DESC
LIMIT 1
"""
_LABELS = """
SELECT label, source, reported_at, known_at FROM labels WHERE transaction_id = $1 ORDER BY known_at, id
"""


async def find_decision(db: Database, transaction_id: str, known_names: tuple[str, Sequence[str]] | None = None,
                        ) -> dict[str, Any]:
    """The decision as JSON-ready data; ``NotFoundError`` when none is recorded. ``known_names`` is (model
    version, feature names) of the model the scorer runs, used when the database does not know the version."""
    async with db.connection() as conn:
        row = await conn.fetchrow(_DECISION, transaction_id)
        if row is None:
            raise NotFoundError(f"no decision recorded for transaction {transaction_id!r} (decisions are stored a "
                                "few milliseconds after they are answered, and only when the scorer records)")
        labels = await conn.fetch(_LABELS, transaction_id)
    features = list(row["features"])
    names = json.loads(row["feature_names"]) if row["feature_names"] is not None else None
    if names is None and known_names is not None and known_names[0] == row["model_version"]:
        names = list(known_names[1])
    if not isinstance(names, list) or len(names) != len(features):
        names = [f"feature_{i}" for i in range(len(features))]
    return {
        "transaction_id": row["transaction_id"],
        "event_time": row["event_time"].isoformat(),
        "decided_at": row["decided_at"].isoformat(),
        "recorded_at": row["recorded_at"].isoformat(),
        "amount_minor": row["amount_minor"],
        "currency": row["currency"],
        "card": {"token": row["card_token"], "bin": row["card_bin"], "last4": row["card_last4"]},
        "customer_id": row["customer_id"],
        "merchant_id": row["merchant_id"],
        "mcc": row["mcc"],
        "merchant_country": row["merchant_country"],
        "channel": row["channel"],
        "entry_mode": row["entry_mode"],
        "score": finite(row["score"]),
        "action": row["action"],
        "reasons": [_reason(r) for r in json.loads(row["reasons"])],
        "rule_hits": json.loads(row["rule_hits"]),
        "model_version": row["model_version"],
        "rule_versions": json.loads(row["rule_versions"]),
        "features": {str(name): finite(value) for name, value in zip(names, features, strict=True)},
        "server_time_us": row["server_time_us"],
        "labels": [{"outcome": r["label"], "source": r["source"], "reported_at": r["reported_at"].isoformat(),
                    "known_at": r["known_at"].isoformat()} for r in labels],
    }


def _reason(stored: dict[str, Any]) -> dict[str, Any]:
    return {"feature": stored.get("feature", ""), "value": finite(stored.get("value")),
            "contribution": finite(stored.get("contribution")), "text": stored.get("text", "")}

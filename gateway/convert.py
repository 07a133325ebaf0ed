"""JSON (the checked pydantic models) to ``fraud.v1`` messages and back, field by field.

The answers are built as plain dicts (serialised with orjson by the routes), not as pydantic models: the REST
path of a score should cost the gateway tens of microseconds, not a second validation of its own output.
A score of NaN (the model gave no number; the decision is then REVIEW) becomes JSON ``null``.
"""

from __future__ import annotations

import math
import typing
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from gateway import schemas

ACTION_NAMES: dict[int, str] = {
    scoring_pb2.ACTION_UNSPECIFIED: "allow",  # never sent by the scorer; mapped so a new server cannot break us
    scoring_pb2.ACTION_ALLOW: "allow",
    scoring_pb2.ACTION_CHALLENGE: "challenge",
    scoring_pb2.ACTION_REVIEW: "review",
    scoring_pb2.ACTION_BLOCK: "block",
}
OUTCOMES: dict[str, int] = {
    "fraud": scoring_pb2.OUTCOME_FRAUD,
    "legitimate": scoring_pb2.OUTCOME_LEGITIMATE,
    "chargeback": scoring_pb2.OUTCOME_CHARGEBACK,
}
OUTCOME_NAMES: dict[int, str] = {number: name for name, number in OUTCOMES.items()}
CHANNELS: dict[str, int] = {
    name: transaction_pb2.Channel.Value("CHANNEL_" + name.upper()) for name in typing.get_args(schemas.Channel)
}
ENTRY_MODES: dict[str, int] = {
    name: transaction_pb2.EntryMode.Value("ENTRY_MODE_" + name.upper()) for name in typing.get_args(schemas.EntryMode)
}
CHANNEL_NAMES: dict[int, str] = {number: name for name, number in CHANNELS.items()}
ENTRY_MODE_NAMES: dict[int, str] = {number: name for name, number in ENTRY_MODES.items()}


def timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp


def transaction_message(tx: schemas.Transaction) -> transaction_pb2.Transaction:
    card = tx.card
    message = transaction_pb2.Transaction(
        transaction_id=tx.transaction_id,
        event_time=timestamp(tx.event_time),
        amount_minor=tx.amount_minor,
        currency=tx.currency,
        card=transaction_pb2.Card(token=card.token, bin=card.bin, last4=card.last4, pan=card.pan,
                                  country=card.country),
        customer_id=tx.customer_id,
        merchant_id=tx.merchant_id,
        mcc=tx.mcc,
        merchant_country=tx.merchant_country,
        device_id=tx.device_id,
        ip_address=tx.ip_address,
        channel=CHANNELS[tx.channel],  # type: ignore[arg-type]
        entry_mode=ENTRY_MODES[tx.entry_mode],  # type: ignore[arg-type]
        billing_country=tx.billing_country,
        shipping_country=tx.shipping_country,
        email=tx.email,
    )
    if tx.location is not None:
        message.location.latitude = tx.location.latitude
        message.location.longitude = tx.location.longitude
    return message


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those (and a missing number) become null."""
    return value if value is not None and math.isfinite(value) else None


def decision_json(decision: scoring_pb2.Decision) -> dict[str, Any]:
    return {
        "transaction_id": decision.transaction_id,
        "score": finite(decision.score),
        "action": ACTION_NAMES.get(decision.action, "review"),
        "reasons": [
            {"feature": r.feature, "value": finite(r.value), "contribution": finite(r.contribution), "text": r.text}
            for r in decision.reasons
        ],
        "rule_hits": [
            {"rule_id": h.rule_id, "action": ACTION_NAMES.get(h.action, "review"), "description": h.description}
            for h in decision.rule_hits
        ],
        "model_version": decision.model_version,
        "rule_set_version": decision.rule_set_version,
        "server_time_us": decision.server_time_us,
    }


def results_json(results: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for result in results:
        if result.WhichOneof("result") == "decision":
            out.append({"transaction_id": result.transaction_id, "decision": decision_json(result.decision)})
        else:
            error = result.error
            out.append({"transaction_id": result.transaction_id,
                        "error": {"code": error.code, "field": error.field, "message": error.message}})
    return out


def model_info_json(info: scoring_pb2.GetModelInfoResponse) -> dict[str, Any]:
    return {
        "model_version": info.model_version,
        "features": [{"index": f.index, "name": f.name, "dtype": f.dtype, "description": f.description}
                     for f in info.features],
        "thresholds": [{"action": ACTION_NAMES.get(t.action, "review"), "min_score": t.min_score}
                       for t in info.thresholds],
        "loaded_at": _time_or_none(info, "loaded_at"),
        "created_at": _time_or_none(info, "created_at"),
        "training_data_fingerprint": info.training_data_fingerprint,
        "metrics": {name: finite(value) for name, value in info.metrics.items()},
    }


def _time_or_none(message: Any, name: str) -> str | None:
    if not message.HasField(name):
        return None
    stamp: Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC).isoformat()

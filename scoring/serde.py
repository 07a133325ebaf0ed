"""The protobuf boundary, in pairs: transactions in (validated, to columns), decisions out.

Each protobuf field is read once per transaction, here, and nowhere else; the rest of
the scorer sees only ``TransactionBatch`` columns and ``ScoredBatch`` arrays. A bad
transaction becomes an ``ItemFailure`` naming its field; the others go on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features.batch import TransactionBatch
from scoring.features.keys import country_code, entity_key
from scoring.features.schema import FEATURES
from scoring.scorer import ScoredBatch

MIN_EVENT_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_S = 86_400.0
MAX_AMOUNT_MINOR = 10**15
MAX_ID_LEN = 128
_CHANNELS = frozenset(transaction_pb2.Channel.values())
_ENTRY_MODES = frozenset(transaction_pb2.EntryMode.values())
_IP = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DIGITS = re.compile(r"[0-9]+")
_COUNTRY = re.compile(r"[A-Z]{2}")

_key = lru_cache(maxsize=1 << 20)(entity_key)
_FEATURE_NAMES = tuple(f.name for f in FEATURES)


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """Transaction ``index`` of a message could not be scored."""

    index: int
    transaction_id: str
    error: ValidationError


def _check_id(value: str, field: str, required: bool) -> None:
    if not value:
        if required:
            raise ValidationError(field, "required")
        return
    if len(value) > MAX_ID_LEN:
        raise ValidationError(field, f"at most {MAX_ID_LEN} characters, got {len(value)}")
    if not value.isprintable():
        raise ValidationError(field, "must be printable characters only")


def _card_token(card: transaction_pb2.Card, tokenizer: PanTokenizer, prefix: str) -> str:
    if card.pan:
        # tokenized here, at the edge; the PAN goes no further than this frame
        try:
            return tokenizer.tokenize(card.pan).token
        except ValidationError as exc:
            raise ValidationError(prefix + "card.pan", exc.message) from None
    _check_id(card.token, prefix + "card.token", required=True)
    if card.bin and (not _DIGITS.fullmatch(card.bin) or not 6 <= len(card.bin) <= 8):
        raise ValidationError(prefix + "card.bin", "must be 6 to 8 digits")
    if card.last4 and (len(card.last4) != 4 or not _DIGITS.fullmatch(card.last4)):
        raise ValidationError(prefix + "card.last4", "must be 4 digits")
    return card.token


def _validate(tx: transaction_pb2.Transaction, prefix: str, now: float, tokenizer: PanTokenizer) -> tuple:  # type: ignore[type-arg]
    """One transaction's column values, or ValidationError naming the first bad field."""
    _check_id(tx.transaction_id, prefix + "transaction_id", required=True)
    if not tx.HasField("event_time"):
        raise ValidationError(prefix + "event_time", "required")
    ts = tx.event_time
    t = ts.seconds + ts.nanos * 1e-9
    if not 0 <= ts.nanos < 1_000_000_000 or not MIN_EVENT_TIME <= t <= now + MAX_FUTURE_SKEW_S:
        raise ValidationError(prefix + "event_time", "must lie between 2000-01-01 and one day from now")
    if not 0 <= tx.amount_minor <= MAX_AMOUNT_MINOR:
        raise ValidationError(prefix + "amount_minor", f"must be between 0 and {MAX_AMOUNT_MINOR}")
    unit = MINOR_UNIT.get(tx.currency)
    if unit is None:
        raise ValidationError(prefix + "currency", f"not an ISO-4217 currency code: {tx.currency[:8]!r}")
    if not tx.HasField("card"):
        raise ValidationError(prefix + "card", "required")
    token = _card_token(tx.card, tokenizer, prefix)
    _check_id(tx.customer_id, prefix + "customer_id", required=False)
    _check_id(tx.merchant_id, prefix + "merchant_id", required=False)
    _check_id(tx.device_id, prefix + "device_id", required=False)
    if tx.mcc > 9999:
        raise ValidationError(prefix + "mcc", "must be between 0 and 9999")
    if tx.merchant_country and not _COUNTRY.fullmatch(tx.merchant_country):
        raise ValidationError(prefix + "merchant_country", "must be an ISO-3166 alpha-2 code in upper case")
    if tx.ip_address and not _IP.fullmatch(tx.ip_address):
        raise ValidationError(prefix + "ip_address", "must be an IPv4 or IPv6 address")
    lat = lon = math.nan
    if tx.HasField("location"):
        lat, lon = tx.location.latitude, tx.location.longitude
        if not -90.0 <= lat <= 90.0:
            raise ValidationError(prefix + "location.latitude", "must be between -90 and 90")
        if not -180.0 <= lon <= 180.0:
            raise ValidationError(prefix + "location.longitude", "must be between -180 and 180")
    if tx.channel not in _CHANNELS:
        raise ValidationError(prefix + "channel", f"unknown value {tx.channel}")
    if tx.entry_mode not in _ENTRY_MODES:
        raise ValidationError(prefix + "entry_mode", f"unknown value {tx.entry_mode}")
    return (
        tx.transaction_id,
        t,
        tx.amount_minor * unit,
        _key(token),
        _key(tx.customer_id),
        _key(tx.merchant_id),
        _key(tx.device_id),
        _key(tx.ip_address),
        country_code(tx.merchant_country),
        tx.mcc,
        tx.channel,
        tx.entry_mode,
        lat,
        lon,
        _key(tx.transaction_id),
    )


def batch_from_proto(
    transactions: Sequence[transaction_pb2.Transaction],
    field: str,
    now: float,
    tokenizer: PanTokenizer,
) -> tuple[TransactionBatch, list[int], list[ItemFailure]]:
    """Validate and convert. Returns (batch of the good ones, their indices, failures).

    ``field`` is the path prefix for error messages: ``"transaction"`` for one,
    ``"transactions"`` for a repeated field (then indexed: ``transactions[3].amount_minor``).
    """
    rows = []
    kept: list[int] = []
    failures: list[ItemFailure] = []
    indexed = len(transactions) != 1 or field.endswith("s")
    for i, tx in enumerate(transactions):
        prefix = f"{field}[{i}]." if indexed else f"{field}."
        try:
            rows.append(_validate(tx, prefix, now, tokenizer))
            kept.append(i)
        except ValidationError as exc:
            failures.append(ItemFailure(i, tx.transaction_id[:MAX_ID_LEN], exc))
    return _columns(rows), kept, failures


def _columns(rows: list[tuple]) -> TransactionBatch:  # type: ignore[type-arg]
    if not rows:
        cols: list[tuple] = [()] * 15  # type: ignore[type-arg]
    else:
        cols = list(zip(*rows, strict=True))
    return TransactionBatch(
        transaction_ids=cols[0],
        event_time=np.array(cols[1], np.float64),
        amount=np.array(cols[2], np.float64),
        card_key=np.array(cols[3], np.int64),
        customer_key=np.array(cols[4], np.int64),
        merchant_key=np.array(cols[5], np.int64),
        device_key=np.array(cols[6], np.int64),
        ip_key=np.array(cols[7], np.int64),
        country_code=np.array(cols[8], np.int32),
        mcc=np.array(cols[9], np.int32),
        channel=np.array(cols[10], np.int32),
        entry_mode=np.array(cols[11], np.int32),
        latitude=np.array(cols[12], np.float64),
        longitude=np.array(cols[13], np.float64),
        txn_key=np.array(cols[14], np.int64),
    )


def _reason_text(feature: int, value: float) -> str:
    return FEATURES[feature].reason.format(value=value)


def decisions_to_proto(
    scored: ScoredBatch,
    transaction_ids: Sequence[str],
    rule_set_version: str = "",
) -> list[scoring_pb2.Decision]:
    """One ``Decision`` per row of ``scored``, reasons strongest first."""
    names = _FEATURE_NAMES
    x = scored.features.tolist()
    scores = scored.scores.tolist()
    actions = scored.actions.tolist()
    r_idx = scored.reason_index.tolist()
    r_val = scored.reason_contribution.tolist()
    decisions = []
    for i, tx_id in enumerate(transaction_ids):
        row = x[i]
        reasons = [
            scoring_pb2.Reason(feature=names[f], value=row[f], contribution=c, text=_reason_text(f, row[f]))
            for f, c in zip(r_idx[i], r_val[i], strict=True)
        ]
        decisions.append(
            scoring_pb2.Decision(
                transaction_id=tx_id,
                score=scores[i],
                action=actions[i],
                reasons=reasons,
                model_version=scored.model_version,
                rule_set_version=rule_set_version,
                server_time_us=scored.server_time_us,
            )
        )
    return decisions


def item_error_to_proto(failure: ItemFailure) -> scoring_pb2.ScoreResult:
    """The per-transaction error result of a batch or stream (code 3 = INVALID_ARGUMENT)."""
    err = failure.error
    return scoring_pb2.ScoreResult(
        transaction_id=failure.transaction_id,
        error=scoring_pb2.ItemError(code=3, field=err.field, message=err.message),
    )

"""The protobuf boundary, in pairs: transactions in (validated, to columns), decisions out.

Each protobuf field is read once per transaction, here, and nowhere else; the rest of
the scorer sees only ``TransactionBatch`` columns and ``ScoredBatch`` arrays. A bad
transaction becomes an ``ItemFailure`` naming its field; the others go on.
"""

from __future__ import annotations

import math
import re
from collections.abc import MutableSequence, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features.batch import N_INTS, N_REALS, TransactionBatch
from scoring.features.keys import country_code, entity_key
from scoring.features.schema import FEATURES

if TYPE_CHECKING:
    from scoring.scorer import ScoredBatch

MIN_EVENT_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_S = 86_400.0
MAX_AMOUNT_MINOR = 10**15
MAX_ID_LEN = 128
MAX_EMAIL_LEN = 254  # RFC 5321's limit on a path, less its angle brackets
_CHANNELS = frozenset(transaction_pb2.Channel.values())
_ENTRY_MODES = frozenset(transaction_pb2.EntryMode.values())
_IP = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_DIGITS = re.compile(r"[0-9]+")
_COUNTRY = re.compile(r"[A-Z]{2}")

_key = entity_key
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


def _check_country(value: str, field: str) -> None:
    if not _COUNTRY.fullmatch(value):
        raise ValidationError(field, "must be an ISO-3166 alpha-2 code in upper case")


def _check_email(value: str) -> None:
    """A given e-mail: at most MAX_EMAIL_LEN printable characters with one "@" inside. No more than that: the
    processor has checked it, and a stricter rule would refuse payments over an address we only store. Messages
    never quote it (personal data)."""
    if len(value) > MAX_EMAIL_LEN:
        raise ValidationError("email", f"at most {MAX_EMAIL_LEN} characters, got {len(value)}")
    if not value.isprintable():
        raise ValidationError("email", "must be printable characters only")
    at = value.find("@")
    if at <= 0 or at == len(value) - 1 or value.count("@") != 1:
        raise ValidationError("email", 'must be an e-mail address: one "@" with text either side')


def _card_token(card: transaction_pb2.Card, tokenizer: PanTokenizer) -> str:
    if card.country:
        _check_country(card.country, "card.country")
    if card.pan:
        # tokenized here, at the edge; the PAN goes no further than this frame (errors name card.pan)
        return tokenizer.tokenize(card.pan).token
    _check_id(card.token, "card.token", required=True)
    if card.bin and (not _DIGITS.fullmatch(card.bin) or not 6 <= len(card.bin) <= 8):
        raise ValidationError("card.bin", "must be 6 to 8 digits")
    if card.last4 and (len(card.last4) != 4 or not _DIGITS.fullmatch(card.last4)):
        raise ValidationError("card.last4", "must be 4 digits")
    return card.token


def _validate(
    tx: transaction_pb2.Transaction, now: float, tokenizer: PanTokenizer
) -> tuple[tuple[float, float, float, float], tuple[int, ...]]:
    """One transaction's column values (reals, ints), or ValidationError naming the first bad field
    relative to the transaction (the caller adds the path of the transaction itself)."""
    tx_id = tx.transaction_id
    _check_id(tx_id, "transaction_id", required=True)
    if not tx.HasField("event_time"):
        raise ValidationError("event_time", "required")
    ts = tx.event_time
    nanos = ts.nanos
    t = ts.seconds + nanos * 1e-9
    if not 0 <= nanos < 1_000_000_000 or not MIN_EVENT_TIME <= t <= now + MAX_FUTURE_SKEW_S:
        raise ValidationError("event_time", "must lie between 2000-01-01 and one day from now")
    amount_minor = tx.amount_minor
    if not 0 <= amount_minor <= MAX_AMOUNT_MINOR:
        raise ValidationError("amount_minor", f"must be between 0 and {MAX_AMOUNT_MINOR}")
    unit = MINOR_UNIT.get(tx.currency)
    if unit is None:
        raise ValidationError("currency", f"not an ISO-4217 currency code: {tx.currency[:8]!r}")
    if not tx.HasField("card"):
        raise ValidationError("card", "required")
    token = _card_token(tx.card, tokenizer)
    customer, merchant, device, ip = tx.customer_id, tx.merchant_id, tx.device_id, tx.ip_address
    if customer:
        _check_id(customer, "customer_id", required=False)
    if merchant:
        _check_id(merchant, "merchant_id", required=False)
    if device:
        _check_id(device, "device_id", required=False)
    if ip and not _IP.fullmatch(ip):
        raise ValidationError("ip_address", "must be an IPv4 or IPv6 address")
    mcc = tx.mcc
    if mcc > 9999:
        raise ValidationError("mcc", "must be between 0 and 9999")
    country = tx.merchant_country
    if country:
        _check_country(country, "merchant_country")
    lat = lon = math.nan
    if tx.HasField("location"):
        loc = tx.location
        lat, lon = loc.latitude, loc.longitude
        if not -90.0 <= lat <= 90.0:
            raise ValidationError("location.latitude", "must be between -90 and 90")
        if not -180.0 <= lon <= 180.0:
            raise ValidationError("location.longitude", "must be between -180 and 180")
    channel, entry_mode = tx.channel, tx.entry_mode
    if channel not in _CHANNELS:
        raise ValidationError("channel", f"unknown value {channel}")
    if entry_mode not in _ENTRY_MODES:
        raise ValidationError("entry_mode", f"unknown value {entry_mode}")
    billing, shipping, email = tx.billing_country, tx.shipping_country, tx.email
    if billing:
        _check_country(billing, "billing_country")
    if shipping:
        _check_country(shipping, "shipping_country")
    if email:
        _check_email(email)
    return (t, amount_minor * unit, lat, lon), (
        _key(token), _key(customer), _key(merchant), _key(device), _key(ip),
        country_code(country), mcc, channel, entry_mode, _key(tx_id),
    )  # fmt: skip


def batch_from_proto(
    transactions: Sequence[transaction_pb2.Transaction],
    field: str,
    now: float,
    tokenizer: PanTokenizer,
) -> tuple[TransactionBatch, list[ItemFailure]]:
    """Validate and convert. Returns (batch of the good ones, in request order; failures).

    ``field`` is the path prefix for error messages: ``"transaction"`` for one,
    ``"transactions"`` for a repeated field (then indexed: ``transactions[3].amount_minor``).
    """
    ids: list[str] = []
    reals: list[tuple[float, float, float, float]] = []
    ints: list[tuple[int, ...]] = []
    failures: list[ItemFailure] = []
    indexed = len(transactions) != 1 or field.endswith("s")
    for i, tx in enumerate(transactions):
        try:
            r, k = _validate(tx, now, tokenizer)
        except ValidationError as exc:
            path = f"{field}[{i}].{exc.field}" if indexed else f"{field}.{exc.field}"
            failures.append(ItemFailure(i, tx.transaction_id[:MAX_ID_LEN], ValidationError(path, exc.message)))
            continue
        ids.append(tx.transaction_id)
        reals.append(r)
        ints.append(k)
    n = len(ids)
    if n == 1:  # already column-shaped once reshaped: no transpose copy
        real_block = np.array(reals[0], np.float64).reshape(N_REALS, 1)
        int_block = np.array(ints[0], np.int64).reshape(N_INTS, 1)
    else:
        real_block = np.array(reals, np.float64).reshape(n, N_REALS).T.copy()
        int_block = np.array(ints, np.int64).reshape(n, N_INTS).T.copy()
    return TransactionBatch.packed(tuple(ids), real_block, int_block), failures


_REASON_FORMATS = tuple(f.reason.format for f in FEATURES)


def fill_decisions(
    targets: Sequence[scoring_pb2.Decision],
    scored: ScoredBatch,
    transaction_ids: Sequence[str],
    rule_set_version: str = "",
) -> None:
    """Write row i of ``scored`` into ``targets[i]`` in place (no message copies), reasons strongest first, then
    the rules that hit it. ``rule_set_version`` defaults to that of ``scored``."""
    names = _FEATURE_NAMES
    formats = _REASON_FORMATS
    reason_index = scored.reason_index.tolist()
    reason_value = np.take_along_axis(scored.features, scored.reason_index, axis=1).tolist()
    reason_contribution = scored.reason_contribution.tolist()
    scores = scored.scores.tolist()
    actions = scored.actions.tolist()
    model_version = scored.model_version
    server_time_us = scored.server_time_us
    rule_set_version = rule_set_version or scored.rule_set_version
    hits = scored.rule_hits
    rules = scored.rule_set.rules if scored.rule_set is not None else ()
    for i, decision in enumerate(targets):
        decision.transaction_id = transaction_ids[i]
        decision.score = scores[i]
        decision.action = actions[i]
        decision.model_version = model_version
        decision.server_time_us = server_time_us
        if rule_set_version:
            decision.rule_set_version = rule_set_version
        add = decision.reasons.add
        for f, v, c in zip(reason_index[i], reason_value[i], reason_contribution[i], strict=True):
            add(feature=names[f], value=v, contribution=c, text=formats[f](value=v))
        if hits is not None and rules:
            for r in np.flatnonzero(hits[i]).tolist():
                rule = rules[r]
                decision.rule_hits.add(rule_id=rule.rule_id, action=rule.action.value, description=rule.description)


def results_into(
    results: MutableSequence[scoring_pb2.ScoreResult],
    scored: ScoredBatch | None,
    batch: TransactionBatch,
    n_requested: int,
    failures: Sequence[ItemFailure],
) -> None:
    """Append one ``ScoreResult`` per requested transaction, in request order: a decision for each
    scored one (``scored`` row k answers the k-th good transaction), its own error for each failure."""
    failed = {f.index: f for f in failures}
    ids = batch.transaction_ids
    targets: list[scoring_pb2.Decision] = []
    for i in range(n_requested):
        failure = failed.get(i)
        if failure is None:
            targets.append(results.add(transaction_id=ids[len(targets)]).decision)  # type: ignore[attr-defined]
        else:
            results.append(error_result(failure))
    if scored is not None and targets:
        fill_decisions(targets, scored, ids)


def error_result(failure: ItemFailure) -> scoring_pb2.ScoreResult:
    """The ``ScoreResult`` that answers a transaction which could not be scored."""
    err = failure.error
    return scoring_pb2.ScoreResult(
        transaction_id=failure.transaction_id,
        error=scoring_pb2.ItemError(code=_INVALID_ARGUMENT, field=err.field, message=err.message),
    )


_INVALID_ARGUMENT = 3  # grpc.StatusCode.INVALID_ARGUMENT, without importing grpc here

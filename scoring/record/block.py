"""The decisions of one scored request message, as the scoring server hands them to the recorder.

The hot path must not pay per transaction for recording, so it does not build a row per transaction: it keeps
the request message's bytes (with any PAN already replaced by its token) and the arrays the scorer produced,
in one :class:`DecisionBlock` per message — a few NumPy ``tobytes`` and one journal append. The background
writer expands a block into table rows (:func:`block_rows`): it parses the message with protobuf, seals the
personal fields (device id, IP address, e-mail) with AES-256-GCM, and lays out one tuple per scored transaction.

Journal payload (version 2, or 4 when rules decided; versions 1 and 3 are a single
:class:`~scoring.record.rows.DecisionRecord`), little-endian::

    u8 version | u8 kind | u16 k | u32 n | u32 n_features | i64 decided_at_us | f64 server_time_us
    | u16 len + model version (UTF-8) | u32 len + request message
    | n × u32 position | n × f64 score | n × u8 action
    | n × n_features × f32 features | n × k × u16 reason feature | n × k × f32 reason contribution
    version 4 only: | u16 len + rule set version | u16 n_rules | n_rules × (u16 len + rule entry JSON)
    | n × n_rules × u8 hit

``position`` is the index of the transaction in the message (rows that failed validation were answered with
their own error and are not recorded). A rule entry is the JSON object a hit of that rule stores in
``rule_hits`` (``{"rule_id": "...", "action": "block"}``); ``rule_versions`` is ``{"rule_set": VERSION}``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import itertools
import json
import re
import string
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.redaction import redact_pans
from fraudguard.security.pan import PanTokenizer
from scoring.decision import ACTION_NAMES
from scoring.features.schema import FEATURES
from scoring.record.rows import (
    COPY_COLUMNS,
    COPY_NULL,
    FLOAT4_OID,
    JSONB_VERSION,
    PG_EPOCH_DAY,
    PG_EPOCH_US,
    CopyEncodingError,
    CopyRows,
    copy_text,
    tuple_copy_rows,
)
from scoring.rules import RuleSet

BLOCK_VERSION = 2  # a block without rules (as written before rules existed)
BLOCK_VERSION_RULES = 4  # with the rule set's version, entries and hits
BLOCK_VERSIONS = frozenset({BLOCK_VERSION, BLOCK_VERSION_RULES})
_HEADER = struct.Struct("<BBHIIqd")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
_FEATURE_NAMES = tuple(f.name for f in FEATURES)
_CHANNELS = {v.number: v.name.removeprefix("CHANNEL_").lower()
             for v in transaction_pb2.DESCRIPTOR.enum_types_by_name["Channel"].values}
_ENTRY_MODES = {v.number: v.name.removeprefix("ENTRY_MODE_").lower()
                for v in transaction_pb2.DESCRIPTOR.enum_types_by_name["EntryMode"].values}

Seal = Callable[[str, str, str], bytes]  # (column, transaction_id, clear text) -> nonce || ciphertext || tag


class MessageKind(enum.IntEnum):
    """Which request message a block's bytes hold."""

    SCORE = 0  # ScoreRequest: one transaction
    BATCH = 1  # ScoreBatchRequest
    STREAM = 2  # ScoreStreamRequest


_MESSAGE_TYPES: dict[MessageKind, Any] = {
    MessageKind.SCORE: scoring_pb2.ScoreRequest,
    MessageKind.BATCH: scoring_pb2.ScoreBatchRequest,
    MessageKind.STREAM: scoring_pb2.ScoreStreamRequest,
}


@dataclass(frozen=True, slots=True)
class DecisionBlock:
    """The scored transactions of one request message (row i is the transaction at ``positions[i]``)."""

    kind: MessageKind
    request: bytes  # the request message, PAN-free (see scrub_pans)
    positions: npt.NDArray[np.uint32]
    scores: npt.NDArray[np.float64]
    actions: npt.NDArray[np.uint8]  # fraud.v1.Action values
    features: npt.NDArray[np.float32]  # [n, n_features]
    reason_index: npt.NDArray[np.uint16]  # [n, k]
    reason_contribution: npt.NDArray[np.float32]  # [n, k]
    model_version: str
    server_time_us: float  # per transaction, amortised over the message
    decided_at_us: int
    rule_set_version: str = ""  # "": no rules decided
    rule_entries: tuple[str, ...] = ()  # per rule, the JSON object a hit stores (see rule_entries())
    rule_hits: npt.NDArray[np.bool_] | None = None  # [n, len(rule_entries)]

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    def encode(self) -> bytes:
        n, n_features = self.features.shape
        k = self.reason_index.shape[1]
        version = self.model_version.encode()
        ruled = bool(self.rule_set_version)
        parts = [
            _HEADER.pack(BLOCK_VERSION_RULES if ruled else BLOCK_VERSION, self.kind, k, n, n_features,
                         self.decided_at_us, self.server_time_us),
            _U16.pack(len(version)), version, _U32.pack(len(self.request)), self.request,
            self.positions.astype("<u4", copy=False).tobytes(),
            self.scores.astype("<f8", copy=False).tobytes(), self.actions.astype("u1", copy=False).tobytes(),
            self.features.astype("<f4", copy=False).tobytes(), self.reason_index.astype("<u2", copy=False).tobytes(),
            self.reason_contribution.astype("<f4", copy=False).tobytes(),
        ]  # fmt: skip
        if ruled:
            rules = self.rule_set_version.encode()
            parts += [_U16.pack(len(rules)), rules, _U16.pack(len(self.rule_entries))]
            for entry in self.rule_entries:
                data = entry.encode()
                parts += [_U16.pack(len(data)), data]
            hits = self.rule_hits if self.rule_hits is not None else np.zeros((n, len(self.rule_entries)), np.bool_)
            parts.append(hits.astype("u1", copy=False).tobytes())
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes) -> DecisionBlock:
        """The block :meth:`encode` wrote; ValueError for another version or a damaged payload."""
        if len(payload) < _HEADER.size or payload[0] not in BLOCK_VERSIONS:
            raise ValueError(f"decision block: version {payload[:1]!r} is not one of {sorted(BLOCK_VERSIONS)}")
        version, kind, k, n, n_features, decided_at_us, server_time_us = _HEADER.unpack_from(payload)
        reader = _Reader(payload, _HEADER.size)
        model_version = reader.take(reader.length(_U16)).decode()
        request = reader.take(reader.length(_U32))
        block = cls(
            kind=MessageKind(kind), request=request,
            positions=reader.array("<u4", n), scores=reader.array("<f8", n),
            actions=reader.array("u1", n), features=reader.array("<f4", n * n_features).reshape(n, n_features),
            reason_index=reader.array("<u2", n * k).reshape(n, k),
            reason_contribution=reader.array("<f4", n * k).reshape(n, k),
            model_version=model_version, server_time_us=server_time_us, decided_at_us=decided_at_us,
        )  # fmt: skip
        if version == BLOCK_VERSION_RULES:
            rule_set_version = reader.take(reader.length(_U16)).decode()
            entries = tuple(reader.take(reader.length(_U16)).decode() for _ in range(reader.length(_U16)))
            hits = reader.array("u1", n * len(entries)).reshape(n, len(entries)).astype(np.bool_)
            block = dataclasses.replace(block, rule_set_version=rule_set_version, rule_entries=entries,
                                        rule_hits=hits)
        if reader.offset != len(payload):
            raise ValueError(f"decision block: {len(payload) - reader.offset} bytes after the last field")
        return block


class _Reader:
    def __init__(self, payload: bytes, offset: int) -> None:
        self.payload, self.offset = payload, offset

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.payload):
            raise ValueError("decision block: cut short")
        data, self.offset = self.payload[self.offset:end], end
        return data

    def length(self, prefix: struct.Struct) -> int:
        (size,) = prefix.unpack(self.take(prefix.size))
        return int(size)

    def array(self, dtype: str, count: int) -> Any:
        data = self.take(np.dtype(dtype).itemsize * count)
        return np.frombuffer(data, dtype, count).copy()


def scrub_pans(request: bytes, kind: MessageKind, tokenizer: PanTokenizer) -> bytes:
    """``request`` with every ``card.pan`` removed: a valid PAN becomes its token, BIN and last four (as the
    scorer saw it), an invalid one is simply dropped (its transaction was refused). A card number inside an
    ``email`` becomes ``[PAN]`` as the log filter writes it (``[PAN]@example.com``), and that is what is sealed.
    Called only for messages the wire decoder did not take wholly on its fast path, which is where any PAN is."""
    message = _MESSAGE_TYPES[kind].FromString(request)
    changed = False
    for tx in _transactions(message, kind):
        if tx.email:
            email = redact_pans(tx.email)
            if email != tx.email:
                tx.email = email
                changed = True
        if tx.card.pan:
            try:
                ref = tokenizer.tokenize(tx.card.pan)
            except ValidationError:  # the transaction was answered with its error, not scored
                tx.card.pan = ""
            else:
                tx.card.token, tx.card.bin, tx.card.last4, tx.card.pan = ref.token, ref.bin, ref.last4, ""
            changed = True
    return bytes(message.SerializeToString()) if changed else request


def _transactions(message: Any, kind: MessageKind) -> list[transaction_pb2.Transaction]:
    if kind is MessageKind.SCORE:
        return [message.transaction] if message.HasField("transaction") else []
    return list(message.transactions)


def _time(time_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=time_us)


@functools.lru_cache(maxsize=8)
def rule_entries(rules: RuleSet) -> tuple[str, ...]:
    """Per rule of ``rules``, the JSON object a hit of it stores in ``rule_hits`` (made once per rule set)."""
    return tuple(json.dumps({"rule_id": r.rule_id, "action": ACTION_NAMES[r.action.value]}) for r in rules.rules)


def rule_versions_json(rule_set_version: str) -> str:
    """The ``rule_versions`` column: ``{"rule_set": VERSION}``, or ``{}`` when no rules decided."""
    return json.dumps({"rule_set": rule_set_version}) if rule_set_version else "{}"


def _hits_json(entries: Sequence[str], hits: npt.NDArray[np.bool_] | None) -> list[str]:
    """Each row's ``rule_hits`` text: ``json.dumps`` of its hits' objects (the entries joined as it joins them)."""
    if hits is None or not entries:
        return ["[]"] * (0 if hits is None else hits.shape[0])
    return ["[" + ", ".join(entries[r] for r in np.flatnonzero(row).tolist()) + "]" for row in hits]


def _number(value: float) -> float | None:
    """JSON has no NaN: a feature without a value (a field the transaction did not carry) is null."""
    return value if value == value else None


def block_rows(block: DecisionBlock, seal: Seal | None, key_id: str | None) -> list[tuple[Any, ...]]:
    """One ``decisions`` row per scored transaction, in :data:`scoring.record.rows.COLUMNS` order.

    ``seal`` encrypts the personal fields (device id, IP address, e-mail) under key ``key_id``; without it they are
    not stored at all. ``reasons`` name each top feature with its value and log-odds contribution."""
    transactions = _transactions(_MESSAGE_TYPES[block.kind].FromString(block.request), block.kind)
    features = block.features.tolist()
    scores, actions = block.scores.tolist(), block.actions.tolist()
    reason_index, reason_contribution = block.reason_index.tolist(), block.reason_contribution.tolist()
    decided_at = _time(block.decided_at_us)
    model_version, server_time_us = block.model_version, block.server_time_us
    rule_versions = rule_versions_json(block.rule_set_version)
    hits = _hits_json(block.rule_entries, block.rule_hits) if block.rule_hits is not None else None
    names = _FEATURE_NAMES
    rows = []
    for i, position in enumerate(block.positions.tolist()):
        tx = transactions[position]
        time_us = tx.event_time.seconds * 1_000_000 + tx.event_time.nanos // 1000
        tx_id, card = tx.transaction_id, tx.card
        row_features = features[i]
        reasons = json.dumps([{"feature": names[f], "value": _number(row_features[f]), "contribution": round(c, 6)}
                              for f, c in zip(reason_index[i], reason_contribution[i], strict=True)])
        device_enc = ip_enc = email_enc = None
        if seal is not None:
            if tx.device_id:
                device_enc = seal("device_id", tx_id, tx.device_id)
            if tx.ip_address:
                ip_enc = seal("ip_address", tx_id, tx.ip_address)
            if tx.email:
                email_enc = seal("email", tx_id, tx.email)
        has_location = tx.HasField("location")
        rows.append((
            tx_id, _time(time_us), _EPOCH_DAY + timedelta(days=time_us // 86_400_000_000), card.token,
            card.bin or None, card.last4 or None, tx.customer_id or None, tx.merchant_id or None, tx.mcc or None,
            tx.merchant_country or None, _CHANNELS[tx.channel], _ENTRY_MODES[tx.entry_mode], tx.amount_minor,
            tx.currency, tx.location.latitude if has_location else None,
            tx.location.longitude if has_location else None, device_enc, ip_enc, email_enc,
            key_id if device_enc is not None or ip_enc is not None or email_enc is not None else None,
            row_features, model_version, None, rule_versions, "[]" if hits is None else hits[i], scores[i],
            ACTION_NAMES[actions[i]], reasons,
            server_time_us, decided_at, card.country or None, tx.billing_country or None,
            tx.shipping_country or None,
        ))  # fmt: skip
    return rows


# -- the same rows in PostgreSQL's binary COPY format ---------------------------------------------------------------
# Per block, the numbers are laid out with NumPy in one record per row (field count, fixed-width columns, the
# block's constants, the features array); per row, Python only reads the protobuf fields, seals, and prefixes
# each text with its length. The reasons of the whole block are one %-format call.

_I4 = struct.Struct(">i").pack
_I4_I4 = struct.Struct(">ii").pack
_LOCATION = struct.Struct(">idid").pack
_NULL2 = COPY_NULL * 2
_US_PER_DAY = 86_400_000_000
SMALL_BLOCK = 8
_MAX_SECONDS = 9_000_000_000_000  # far beyond PostgreSQL's timestamps; keeps the microseconds inside int64
if not all(re.fullmatch(r"[A-Za-z0-9_]+", name) for name in _FEATURE_NAMES):
    raise RuntimeError("feature names must need no JSON escaping (the reasons are formatted, not json.dumps'd)")
_NAMES = np.array(_FEATURE_NAMES, dtype=object)
_REASON = '{"feature": "%s", "value": %s, "contribution": %s}'  # json.dumps's separators: the same text
_ROW_SEPARATOR = "\x00"  # never inside the reasons' JSON (names are checked above; numbers are ASCII digits)
_CHANNEL_FIELDS = {number: copy_text(name) for number, name in _CHANNELS.items()}
_ENTRY_MODE_FIELDS = {number: copy_text(name) for number, name in _ENTRY_MODES.items()}
_ACTION_FIELDS = {number: copy_text(name) for number, name in ACTION_NAMES.items()}
_FIXED_NUMBERS = [
    ("fields", ">i2"), ("event_time_length", ">i4"), ("event_time", ">i8"), ("event_day_length", ">i4"),
    ("event_day", ">i4"), ("amount_length", ">i4"), ("amount", ">i8"), ("score_length", ">i4"), ("score", ">f8"),
    ("server_time_length", ">i4"), ("server_time", ">f8"), ("decided_at_length", ">i4"), ("decided_at", ">i8"),
]
_VARIABLE_FROM = COPY_COLUMNS.index("transaction_id")  # the columns before it are in the fixed record
assert COPY_COLUMNS[:_VARIABLE_FROM] == (
    "event_time", "event_day", "amount_minor", "score", "server_time_us", "decided_at", "anomaly_score",
    "rule_versions", "model_version", "features")
assert COPY_COLUMNS[-3:] == ("action", "rule_hits", "reasons")
_NO_HITS = _I4(3) + JSONB_VERSION + b"[]"


@functools.lru_cache(maxsize=16)
def _fixed_dtype(constants: int, n_features: int) -> np.dtype[Any]:
    element = np.dtype([("length", ">i4"), ("value", ">f4")])
    return np.dtype([*_FIXED_NUMBERS, ("constants", f"V{constants}"), ("features", element, (n_features,))])


def _text(value: str) -> bytes:
    data = value.encode()
    return _I4(len(data)) + data


def _optional_text(value: str) -> bytes:
    """``value or None``: an empty string is NULL."""
    if not value:
        return COPY_NULL
    data = value.encode()
    return _I4(len(data)) + data


def _bytes(value: bytes) -> bytes:
    return _I4(len(value)) + value


class _CountryFields(dict[str, bytes]):
    """Country code -> its field (``value or None``), made once for "" and every two upper-case letters (all that
    validation lets through); anything else is made when asked for, and not kept."""

    def __missing__(self, value: str) -> bytes:
        return _optional_text(value)


_COUNTRY_FIELDS = _CountryFields({code: _optional_text(code) for code in
                                  ["", *map("".join, itertools.product(string.ascii_uppercase, repeat=2))]})


@functools.lru_cache(maxsize=16_384)
def _mcc(value: int) -> bytes:
    if not value:
        return COPY_NULL
    try:
        return _I4_I4(4, value)
    except struct.error as exc:
        raise CopyEncodingError(f"mcc {value} does not fit an integer column") from exc


def _location(tx: transaction_pb2.Transaction) -> bytes:
    if not tx.HasField("location"):
        return _NULL2
    location = tx.location
    return _LOCATION(8, location.latitude, 8, location.longitude)


class _Merged(NamedTuple):
    """Several small blocks' arrays laid end to end (one model version), for the vectorised layout: a unary call's
    block of one row costs more in NumPy's per-call overhead than row by row, but a writer batch of hundreds of
    them, merged, costs what a big block does."""

    features: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float64]
    actions: npt.NDArray[np.uint8]
    reason_index: npt.NDArray[np.uint16]
    reason_contribution: npt.NDArray[np.float32]
    model_version: str
    server_time_us: npt.NDArray[np.float64]  # per row
    decided_at_us: npt.NDArray[np.int64]  # per row
    rule_set_version: str
    rule_entries: tuple[str, ...]
    rule_hits: npt.NDArray[np.bool_] | None


_Layout = DecisionBlock | _Merged


def _fixed(block: _Layout, transactions: list[transaction_pb2.Transaction]) -> tuple[bytes, Any]:
    """The fixed-width head of every row, as one buffer, and the rows' event days (days since 1970-01-01)."""
    n, n_features = block.features.shape
    stamps = [tx.event_time for tx in transactions]
    seconds = np.fromiter((t.seconds for t in stamps), np.int64, n)
    if n and int(np.abs(seconds).max()) > _MAX_SECONDS:
        raise CopyEncodingError("an event time is out of PostgreSQL's range")
    time_us = seconds * 1_000_000 + np.fromiter((t.nanos for t in stamps), np.int64, n) // 1000
    days = time_us // _US_PER_DAY
    version = block.model_version.encode()
    rule_versions = rule_versions_json(block.rule_set_version).encode()
    constants = b"".join((
        COPY_NULL,  # anomaly_score
        _I4(len(rule_versions) + 1), JSONB_VERSION, rule_versions,
        _I4(len(version)), version,
        struct.pack(">iiiiii", 20 + 8 * n_features, 1, 0, FLOAT4_OID, n_features, 1),  # features: one dimension
    ))  # fmt: skip
    fixed = np.empty(n, _fixed_dtype(len(constants), n_features))
    fixed["fields"] = len(COPY_COLUMNS)
    for name, size in (("event_time", 8), ("event_day", 4), ("amount", 8), ("score", 8), ("server_time", 8),
                       ("decided_at", 8)):
        fixed[name + "_length"] = size
    fixed["event_time"] = time_us - PG_EPOCH_US
    fixed["event_day"] = days - PG_EPOCH_DAY
    fixed["amount"] = np.fromiter((tx.amount_minor for tx in transactions), np.int64, n)
    fixed["score"] = block.scores
    fixed["server_time"] = block.server_time_us
    fixed["decided_at"] = block.decided_at_us - PG_EPOCH_US
    fixed["constants"] = np.frombuffer(constants, f"V{len(constants)}")[0]
    fixed["features"]["length"] = 4
    fixed["features"]["value"] = block.features
    return fixed.tobytes(), days


def _rule_hits(block: _Layout, n: int) -> list[bytes]:
    """Each row's ``rule_hits`` jsonb field (the text of :func:`block_rows`)."""
    if block.rule_hits is None or not block.rule_entries or not block.rule_hits.any():
        return [_NO_HITS] * n
    fields = []
    for text in _hits_json(block.rule_entries, block.rule_hits):
        data = text.encode()
        fields.append(_I4(len(data) + 1) + JSONB_VERSION + data)
    return fields


def _reasons(block: _Layout) -> list[bytes]:
    """Each row's ``reasons`` jsonb field: the text :func:`block_rows` makes with ``json.dumps``, formatted for
    the whole block at once."""
    n, k = block.reason_index.shape
    if n == 0:
        return []
    index = block.reason_index.astype(np.intp)
    values = np.take_along_axis(block.features, index, axis=1).astype(np.float64).ravel()
    shown: list[Any] = values.tolist()
    for j in np.flatnonzero(~np.isfinite(values)).tolist():  # JSON has no NaN: a missing value is null
        shown[j] = "null" if values[j] != values[j] else ("Infinity" if values[j] > 0 else "-Infinity")
    args = np.empty((n, k, 3), dtype=object)
    args[:, :, 0] = _NAMES[index]
    args[:, :, 1] = np.array(shown, dtype=object).reshape(n, k)
    args[:, :, 2] = np.array([round(c, 6) for c in block.reason_contribution.astype(np.float64).ravel().tolist()],
                             dtype=object).reshape(n, k)
    row = "[" + ", ".join([_REASON] * k) + "]"
    text = (_ROW_SEPARATOR.join([row] * n) % tuple(args.ravel().tolist())).encode()
    return [_I4(len(r) + 1) + JSONB_VERSION + r for r in text.split(_ROW_SEPARATOR.encode())]


def block_copy_rows(block: DecisionBlock, seal: Seal | None, key_id: str | None) -> CopyRows:
    """The rows of :func:`block_rows`, value for value, in PostgreSQL's binary COPY format (:data:`COPY_COLUMNS`
    order)."""
    if is_small(block):  # a unary call's block: row by row costs less than NumPy's per-call overhead
        try:
            return tuple_copy_rows(block_rows(block, seal, key_id))
        except (struct.error, OverflowError) as exc:
            raise CopyEncodingError(f"decision block: {exc}") from exc
    return _vector_copy_rows(block, _scored_transactions(block), seal, key_id)


def is_small(block: DecisionBlock) -> bool:
    """Whether the block is laid out row by row alone, or merged with its neighbours (see :class:`_Merged`)."""
    return len(block) < SMALL_BLOCK


def mergeable(a: DecisionBlock, b: DecisionBlock) -> bool:
    """Whether two blocks' arrays can be laid end to end: one model version and rule set, as many features and
    reasons."""
    return (a.model_version == b.model_version and a.features.shape[1] == b.features.shape[1]
            and a.reason_index.shape[1] == b.reason_index.shape[1] and a.rule_set_version == b.rule_set_version
            and a.rule_entries == b.rule_entries)


def merged_copy_rows(blocks: Sequence[DecisionBlock], seal: Seal | None, key_id: str | None) -> CopyRows:
    """The rows of several blocks of one model version, laid out together (what :func:`block_copy_rows` gives
    for each, concatenated): the writer's way for runs of small blocks."""
    if not all(mergeable(blocks[0], b) for b in blocks):
        raise ValueError("merged_copy_rows: the blocks must share one model version and their array widths")
    counts = [len(b) for b in blocks]
    merged = _Merged(
        np.concatenate([b.features for b in blocks]), np.concatenate([b.scores for b in blocks]),
        np.concatenate([b.actions for b in blocks]), np.concatenate([b.reason_index for b in blocks]),
        np.concatenate([b.reason_contribution for b in blocks]), blocks[0].model_version,
        np.repeat(np.array([b.server_time_us for b in blocks], np.float64), counts),
        np.repeat(np.array([b.decided_at_us for b in blocks], np.int64), counts),
        blocks[0].rule_set_version, blocks[0].rule_entries, _merged_hits(blocks),
    )  # fmt: skip
    transactions = [tx for b in blocks for tx in _scored_transactions(b)]
    return _vector_copy_rows(merged, transactions, seal, key_id)


def _merged_hits(blocks: Sequence[DecisionBlock]) -> npt.NDArray[np.bool_] | None:
    if not blocks[0].rule_entries:
        return None
    width = len(blocks[0].rule_entries)
    return np.concatenate([np.zeros((len(b), width), np.bool_) if b.rule_hits is None else b.rule_hits
                           for b in blocks])


def _scored_transactions(block: DecisionBlock) -> list[transaction_pb2.Transaction]:
    every = _transactions(_MESSAGE_TYPES[block.kind].FromString(block.request), block.kind)
    return [every[p] for p in block.positions.tolist()]


def _vector_copy_rows(block: _Layout, transactions: list[transaction_pb2.Transaction], seal: Seal | None,
                      key_id: str | None) -> CopyRows:
    n = len(transactions)
    fixed, days = _fixed(block, transactions)
    width = len(fixed) // n if n else 0
    heads = [fixed[i:i + width] for i in range(0, len(fixed), width)] if n else []
    ids = [tx.transaction_id for tx in transactions]
    cards = [tx.card for tx in transactions]
    countries = _COUNTRY_FIELDS
    if seal is None:
        devices = addresses = emails = key_ids = [COPY_NULL] * n
    else:
        key_field, devices, addresses, emails, key_ids = copy_text(key_id), [], [], [], []
        for tx, tx_id in zip(transactions, ids, strict=True):
            device, address, email = tx.device_id, tx.ip_address, tx.email
            devices.append(_bytes(seal("device_id", tx_id, device)) if device else COPY_NULL)
            addresses.append(_bytes(seal("ip_address", tx_id, address)) if address else COPY_NULL)
            emails.append(_bytes(seal("email", tx_id, email)) if email else COPY_NULL)
            key_ids.append(key_field if device or address or email else COPY_NULL)
    columns = (
        heads, list(map(_text, ids)), [_text(c.token) for c in cards], [_optional_text(c.bin) for c in cards],
        [_optional_text(c.last4) for c in cards], [_optional_text(tx.customer_id) for tx in transactions],
        [_optional_text(tx.merchant_id) for tx in transactions], [_mcc(tx.mcc) for tx in transactions],
        [countries[tx.merchant_country] for tx in transactions], [countries[c.country] for c in cards],
        [countries[tx.billing_country] for tx in transactions],
        [countries[tx.shipping_country] for tx in transactions],
        [_CHANNEL_FIELDS[tx.channel] for tx in transactions],
        [_ENTRY_MODE_FIELDS[tx.entry_mode] for tx in transactions],
        [_text(tx.currency) for tx in transactions], list(map(_location, transactions)), devices, addresses, emails,
        key_ids, [_ACTION_FIELDS[a] for a in block.actions.tolist()], _rule_hits(block, n), _reasons(block),
    )  # fmt: skip
    return CopyRows(list(itertools.chain.from_iterable(zip(*columns, strict=True))), len(columns), days)

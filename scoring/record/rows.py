"""One decision as the scorer hands it to the writer, and its two encodings: a row of the ``decisions`` table
(for ``COPY``) and a compact, versioned journal payload.

Times are integers, microseconds since the Unix epoch (UTC): the scorer has them as numbers, they make no
``datetime`` on the hot path, and they round-trip exactly. Personal fields arrive already sealed (AES-256-GCM
``nonce || ciphertext || tag``) with the id of their key; this module never sees a clear value.

The journal payload (version 3, little-endian; version 2 is a block, see :mod:`scoring.record.block`)::

    u8 version | u8 flags | i64 event_time_us | i64 decided_at_us | i64 amount_minor | i32 mcc
    | f64 latitude | f64 longitude | f64 anomaly_score | f64 score | f64 server_time_us | u32 n_features
    | n_features × f32 features
    | then each text/bytes field in ``_VARIABLE`` order: u32 length (0xFFFFFFFF: None) and the bytes

``flags`` says which optional numbers are present (mcc, location, anomaly score). Texts are UTF-8; the JSON
columns (rule versions, rule hits, reasons) travel as their JSON text, so they round-trip byte for byte. Version 1
(written before the countries existed) is the same without the last three texts, and is still read.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudguard.errors import ValidationError

FORMAT_VERSION = 3
_FORMAT_V1 = 1  # no card_country, billing_country, shipping_country
READ_VERSIONS = frozenset({FORMAT_VERSION, _FORMAT_V1})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000
_FIXED = struct.Struct("<BBqqqidddddI")
_LENGTH = struct.Struct("<I")
_NONE = 0xFFFF_FFFF
_HAS_MCC, _HAS_LOCATION, _HAS_ANOMALY = 1, 2, 4
_F32 = np.dtype("<f4")

# the table's columns the writer fills, in COPY order (recorded_at keeps its default: when the row was stored)
COLUMNS: tuple[str, ...] = (
    "transaction_id", "event_time", "event_day", "card_token", "card_bin", "card_last4", "customer_id",
    "merchant_id", "mcc", "merchant_country", "channel", "entry_mode", "amount_minor", "currency", "latitude",
    "longitude", "device_id_enc", "ip_address_enc", "email_enc", "personal_key_id", "features", "model_version",
    "anomaly_score", "rule_versions", "rule_hits", "score", "action", "reasons", "server_time_us", "decided_at",
    "card_country", "billing_country", "shipping_country",
)
# the text and bytes fields of the payload, in order (texts are str, *_enc are bytes); version 1 ends at "reasons"
_VARIABLE: tuple[str, ...] = (
    "transaction_id", "card_token", "card_bin", "card_last4", "customer_id", "merchant_id", "merchant_country",
    "channel", "entry_mode", "currency", "device_id_enc", "ip_address_enc", "email_enc", "personal_key_id",
    "model_version", "rule_versions", "rule_hits", "action", "reasons", "card_country", "billing_country",
    "shipping_country",
)
_VARIABLE_V1 = _VARIABLE[: _VARIABLE.index("reasons") + 1]
_BYTES = frozenset({"device_id_enc", "ip_address_enc", "email_enc"})

# -- PostgreSQL's binary COPY format (https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format") --
# The writer sends rows in this column order: the fixed-width fields and the block's constants first (a block lays
# them out with NumPy in one go), then the variable ones.
COPY_COLUMNS: tuple[str, ...] = (
    "event_time", "event_day", "amount_minor", "score", "server_time_us", "decided_at", "anomaly_score",
    "rule_versions", "model_version", "features",
    "transaction_id", "card_token", "card_bin", "card_last4", "customer_id", "merchant_id", "mcc",
    "merchant_country", "card_country", "billing_country", "shipping_country", "channel", "entry_mode", "currency",
    "latitude", "longitude", "device_id_enc", "ip_address_enc", "email_enc", "personal_key_id", "action", "rule_hits",
    "reasons",
)
assert sorted(COPY_COLUMNS) == sorted(COLUMNS)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
COPY_FIELDS = struct.pack(">h", len(COPY_COLUMNS))  # each tuple starts with its field count
COPY_NULL = struct.pack(">i", -1)
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in Unix microseconds
PG_EPOCH_DAY = 10_957  # the same day, in days since 1970-01-01
FLOAT4_OID = 700
JSONB_VERSION = b"\x01"
_I4 = struct.Struct(">i").pack
_I4_I8 = struct.Struct(">iq").pack
_I4_F8 = struct.Struct(">id").pack
_I4_I4 = struct.Struct(">ii").pack


class CopyEncodingError(ValueError):
    """A value that PostgreSQL's binary format cannot carry (a number out of its column type's range): the row
    is refused for what it is, as the driver would refuse it."""


@dataclass(slots=True)
class CopyRows:
    """Rows in PostgreSQL's binary COPY format: ``pieces`` joined are the tuples, ``per_row`` pieces each (so row
    ``i`` is ``pieces[i * per_row:(i + 1) * per_row]``); ``days`` holds each row's event day (days since
    1970-01-01), which says which partitions the rows need."""

    pieces: list[bytes]
    per_row: int
    days: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.pieces) // self.per_row if self.per_row else 0

    def row(self, index: int) -> CopyRows:
        """Row ``index`` alone."""
        start = index * self.per_row
        return CopyRows([b"".join(self.pieces[start:start + self.per_row])], 1, self.days[index:index + 1])

    def event_days(self) -> set[date]:
        return {_EPOCH_DAY + timedelta(days=int(d)) for d in np.unique(self.days)}


def copy_payload(rows: Sequence[CopyRows]) -> bytes:
    """One binary COPY stream (header, tuples, trailer) holding ``rows``."""
    pieces = [COPY_HEADER]
    for r in rows:
        pieces.extend(r.pieces)
    pieces.append(COPY_TRAILER)
    return b"".join(pieces)


def copy_text(value: str | None) -> bytes:
    """A text field: its UTF-8 length, then the bytes (or NULL)."""
    if value is None:
        return COPY_NULL
    data = value.encode()
    return _I4(len(data)) + data


def _copy_bytes(value: bytes | None) -> bytes:
    return COPY_NULL if value is None else _I4(len(value)) + value


def _copy_jsonb(text: str) -> bytes:
    data = JSONB_VERSION + text.encode()
    return _I4(len(data)) + data


def _copy_f8(value: float | None) -> bytes:
    return COPY_NULL if value is None else _I4_F8(8, value)


def copy_float4_array(values: npt.NDArray[np.float32]) -> bytes:
    """A one-dimensional ``real[]`` field (no NULL elements)."""
    n = values.shape[0]
    elements = np.empty(n, dtype=[("length", ">i4"), ("value", ">f4")])
    elements["length"] = 4
    elements["value"] = values
    header = struct.pack(">iiiiii", 20 + 8 * n, 1, 0, FLOAT4_OID, n, 1)
    return header + elements.tobytes()


def record_copy_rows(record: DecisionRecord) -> CopyRows:
    """``record`` as one binary COPY tuple in :data:`COPY_COLUMNS` order: its :func:`to_row`, laid out by
    :func:`tuple_copy_rows`."""
    if np.ndim(record.features) != 1:  # the table's CHECK (array_ndims(features) = 1) refuses it
        raise CopyEncodingError(f"decision features must have one dimension, got shape {np.shape(record.features)}")
    try:
        return tuple_copy_rows([to_row(record)])
    except (struct.error, OverflowError) as exc:
        raise CopyEncodingError(f"decision {record.transaction_id!r}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """Everything the ``decisions`` table keeps of one scored transaction, as the scorer knows it.

    ``features`` is the model's input row (float32, one dimension; kept as given: do not mutate it after
    submitting). ``rule_versions``, ``rule_hits`` and ``reasons`` are JSON texts (an object, an array, an
    array). Nothing is checked here (this is built once per transaction on the hot path); the database's
    CHECK constraints refuse a bad row, and the writer sets such a row aside (see :mod:`scoring.record.writer`).
    """

    transaction_id: str
    event_time_us: int
    card_token: str
    merchant_id: str
    amount_minor: int
    currency: str
    features: npt.NDArray[np.float32]
    model_version: str
    score: float
    action: str  # allow, challenge, review, block
    server_time_us: float
    decided_at_us: int
    card_bin: str | None = None
    card_last4: str | None = None
    customer_id: str | None = None
    mcc: int | None = None
    merchant_country: str | None = None
    channel: str = "unspecified"
    entry_mode: str = "unspecified"
    latitude: float | None = None
    longitude: float | None = None
    device_id_enc: bytes | None = None
    ip_address_enc: bytes | None = None
    email_enc: bytes | None = None
    personal_key_id: str | None = None
    anomaly_score: float | None = None
    rule_versions: str = "{}"
    rule_hits: str = "[]"
    reasons: str = "[]"
    card_country: str | None = None  # ISO-3166-1 alpha-2, as merchant_country
    billing_country: str | None = None
    shipping_country: str | None = None

    @property
    def event_day(self) -> date:
        """The UTC calendar day of the event: with the transaction id, the table's key."""
        return event_day(self.event_time_us)


def event_day(time_us: int) -> date:
    return _EPOCH_DAY + timedelta(days=time_us // _US_PER_DAY)


def _time(time_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=time_us)


def to_row(record: DecisionRecord) -> tuple[Any, ...]:
    """The record as a tuple in :data:`COLUMNS` order, as asyncpg's ``copy_records_to_table`` takes it."""
    r = record
    return (
        r.transaction_id, _time(r.event_time_us), event_day(r.event_time_us), r.card_token, r.card_bin,
        r.card_last4, r.customer_id, r.merchant_id, r.mcc, r.merchant_country, r.channel, r.entry_mode,
        r.amount_minor, r.currency, r.latitude, r.longitude, r.device_id_enc, r.ip_address_enc, r.email_enc,
        r.personal_key_id, r.features.tolist(), r.model_version, r.anomaly_score, r.rule_versions, r.rule_hits,
        r.score, r.action, r.reasons, r.server_time_us, _time(r.decided_at_us), r.card_country, r.billing_country,
        r.shipping_country,
    )


def encode(record: DecisionRecord) -> bytes:
    """The journal payload of ``record`` (see the module's documentation); :func:`decode` is its inverse."""
    r = record
    features = np.ascontiguousarray(r.features, dtype=_F32)
    if features.ndim != 1:
        raise ValidationError("decision.features", f"must have one dimension, got shape {features.shape}")
    flags = ((_HAS_MCC if r.mcc is not None else 0) | (_HAS_LOCATION if r.latitude is not None else 0)
             | (_HAS_ANOMALY if r.anomaly_score is not None else 0))
    parts = [_FIXED.pack(
        FORMAT_VERSION, flags, r.event_time_us, r.decided_at_us, r.amount_minor, r.mcc or 0,
        r.latitude if r.latitude is not None else 0.0, r.longitude if r.longitude is not None else 0.0,
        r.anomaly_score if r.anomaly_score is not None else 0.0, r.score, r.server_time_us, features.shape[0],
    ), features.tobytes()]
    pack = _LENGTH.pack
    for name in _VARIABLE:
        value = getattr(r, name)
        if value is None:
            parts.append(pack(_NONE))
        else:
            data = value if name in _BYTES else value.encode()
            parts.append(pack(len(data)))
            parts.append(data)
    return b"".join(parts)


def decode(payload: bytes) -> DecisionRecord:
    """The record :func:`encode` wrote (or version 1 wrote). A payload of another version, or cut short, raises
    ValueError."""
    if not payload or payload[0] not in READ_VERSIONS:
        raise ValueError(f"decision payload: version {payload[:1]!r} is not {FORMAT_VERSION}")
    (_, flags, event_us, decided_us, amount, mcc, lat, lon, anomaly, score, server_us,
     n) = _FIXED.unpack_from(payload, 0)
    offset = _FIXED.size
    end = offset + 4 * n
    if end > len(payload):
        raise ValueError("decision payload: cut short in the features")
    features = np.frombuffer(payload, _F32, n, offset).astype(np.float32)
    offset = end
    values: dict[str, Any] = {}
    for name in _VARIABLE if payload[0] == FORMAT_VERSION else _VARIABLE_V1:
        if offset + 4 > len(payload):
            raise ValueError(f"decision payload: cut short before {name}")
        (length,) = _LENGTH.unpack_from(payload, offset)
        offset += 4
        if length == _NONE:
            values[name] = None
            continue
        if offset + length > len(payload):
            raise ValueError(f"decision payload: cut short in {name}")
        data = payload[offset:offset + length]
        offset += length
        values[name] = data if name in _BYTES else data.decode()
    if offset != len(payload):
        raise ValueError(f"decision payload: {len(payload) - offset} bytes after the last field")
    location = flags & _HAS_LOCATION
    return DecisionRecord(
        event_time_us=event_us, decided_at_us=decided_us, amount_minor=amount,
        mcc=mcc if flags & _HAS_MCC else None, latitude=lat if location else None,
        longitude=lon if location else None, anomaly_score=anomaly if flags & _HAS_ANOMALY else None,
        score=score, server_time_us=server_us, features=features, **values,
    )


_COLUMN = {name: i for i, name in enumerate(COLUMNS)}
_ONE_US = timedelta(microseconds=1)


def tuple_copy_rows(rows: Sequence[tuple[Any, ...]]) -> CopyRows:
    """Rows as :func:`to_row` lays them out (:data:`COLUMNS` order), in the binary COPY format: the path for a
    few rows at a time, where the per-call cost of laying out a block with NumPy would dominate."""
    c = _COLUMN
    pieces, days = [], []
    for row in rows:
        event_us = (row[c["event_time"]] - _EPOCH) // _ONE_US
        days.append(event_us // _US_PER_DAY)
        pieces.append(b"".join((
            COPY_FIELDS, _I4_I8(8, event_us - PG_EPOCH_US),
            _I4_I4(4, (row[c["event_day"]] - _EPOCH_DAY).days - PG_EPOCH_DAY), _I4_I8(8, row[c["amount_minor"]]),
            _I4_F8(8, row[c["score"]]), _I4_F8(8, row[c["server_time_us"]]),
            _I4_I8(8, (row[c["decided_at"]] - _EPOCH) // _ONE_US - PG_EPOCH_US), _copy_f8(row[c["anomaly_score"]]),
            _copy_jsonb(row[c["rule_versions"]]), copy_text(row[c["model_version"]]),
            copy_float4_array(np.asarray(row[c["features"]], np.float32)),
            copy_text(row[c["transaction_id"]]), copy_text(row[c["card_token"]]), copy_text(row[c["card_bin"]]),
            copy_text(row[c["card_last4"]]), copy_text(row[c["customer_id"]]), copy_text(row[c["merchant_id"]]),
            COPY_NULL if row[c["mcc"]] is None else _I4_I4(4, row[c["mcc"]]), copy_text(row[c["merchant_country"]]),
            copy_text(row[c["card_country"]]), copy_text(row[c["billing_country"]]),
            copy_text(row[c["shipping_country"]]), copy_text(row[c["channel"]]), copy_text(row[c["entry_mode"]]),
            copy_text(row[c["currency"]]), _copy_f8(row[c["latitude"]]), _copy_f8(row[c["longitude"]]),
            _copy_bytes(row[c["device_id_enc"]]), _copy_bytes(row[c["ip_address_enc"]]),
            _copy_bytes(row[c["email_enc"]]), copy_text(row[c["personal_key_id"]]), copy_text(row[c["action"]]),
            _copy_jsonb(row[c["rule_hits"]]), _copy_jsonb(row[c["reasons"]]),
        )))  # fmt: skip
    return CopyRows(pieces, 1, np.array(days, np.int64))

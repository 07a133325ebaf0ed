"""Payments as columns: the one table the generator writes, the importer reads and the trainer replays.

Row ``i`` of every column is one payment; rows are in time order. Optional fields that a
source does not have are empty strings (ids), NaN (coordinates) or 0 (enums, MCC).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from google.protobuf.timestamp_pb2 import Timestamp

from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B = npt.NDArray[np.bool_]
S = npt.NDArray[np.str_]


@dataclass(frozen=True, slots=True, eq=False)
class Payments:
    """Payments as read-only columns, sorted by ``event_time``. Row ``i`` of every column is one payment.

    Empty strings mean "not given" (``device_id``, ``ip_address``); NaN coordinates mean
    "no location"; ``label_time`` is +inf for rows that never get a fraud label.
    """

    transaction_id: S
    event_time: I64  # epoch seconds, UTC
    amount_minor: I64
    currency: S
    card_token: S
    card_bin: S
    card_last4: S
    customer_id: S
    merchant_id: S
    mcc: I32
    merchant_country: S
    device_id: S
    ip_address: S
    latitude: F64
    longitude: F64
    channel: I32  # fraud.v1.Channel
    entry_mode: I32  # fraud.v1.EntryMode
    is_fraud: B
    scenario: S  # the fraud scenario's name where known, e.g. "card_testing"; "" for none
    label_time: F64  # epoch seconds when the fraud label arrives; +inf: never

    def __post_init__(self) -> None:
        n = len(self.transaction_id)
        for f in fields(self):
            column = getattr(self, f.name)
            if column.shape != (n,):
                raise ValidationError(f.name, f"has shape {column.shape}, expected ({n},)")
            column.setflags(write=False)

    def __len__(self) -> int:
        return len(self.transaction_id)

    @property
    def fraud_rate(self) -> float:
        return float(self.is_fraud.mean()) if len(self) else 0.0

    def take(self, rows: slice | I64) -> Payments:
        """A subset of the rows (keep them in time order): views for a slice (the columns are read-only, so
        sharing them is safe and a 5 M-row table is not copied), copies for an index array."""
        if isinstance(rows, slice):
            return Payments(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})
        return Payments(**{f.name: np.array(getattr(self, f.name)[rows]) for f in fields(self)})

    def fingerprint(self) -> str:
        """sha256 over every column's name, dtype and bytes: identical data, identical fingerprint."""
        h = hashlib.sha256()
        for f in fields(self):
            column = _narrowest(np.ascontiguousarray(getattr(self, f.name)))
            h.update(f"{f.name}:{column.dtype.str}:{column.shape}\n".encode())
            h.update(column.tobytes())
        return h.hexdigest()

    def to_transaction_proto(self, i: int) -> pb.Transaction:
        """Row ``i`` as the ``fraud.v1.Transaction`` a caller would send."""
        return next(self.iter_transaction_protos(i, i + 1))

    def iter_transaction_protos(self, start: int = 0, stop: int | None = None) -> Iterator[pb.Transaction]:
        """Rows ``start:stop`` as ``fraud.v1.Transaction`` messages, in time order."""
        rows = slice(start, len(self) if stop is None else stop)
        cols = {f.name: getattr(self, f.name)[rows].tolist() for f in fields(self)}
        for j in range(len(cols["transaction_id"])):
            lat, lon = cols["latitude"][j], cols["longitude"][j]
            yield pb.Transaction(
                transaction_id=cols["transaction_id"][j],
                event_time=Timestamp(seconds=cols["event_time"][j]),
                amount_minor=cols["amount_minor"][j],
                currency=cols["currency"][j],
                card=pb.Card(token=cols["card_token"][j], bin=cols["card_bin"][j], last4=cols["card_last4"][j]),
                customer_id=cols["customer_id"][j],
                merchant_id=cols["merchant_id"][j],
                mcc=cols["mcc"][j],
                merchant_country=cols["merchant_country"][j],
                device_id=cols["device_id"][j],
                ip_address=cols["ip_address"][j],
                location=None if math.isnan(lat) else pb.GeoPoint(latitude=lat, longitude=lon),
                channel=cols["channel"][j],
                entry_mode=cols["entry_mode"][j],
            )


def _narrowest(column: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A text column at the width of its longest value, so equal values hash equally whatever the padding."""
    if column.dtype.kind != "U" or len(column) == 0:
        return column
    width = max(1, int(np.char.str_len(column).max()))
    return column if column.dtype.itemsize == 4 * width else column.astype(f"<U{width}")


def per_unique(values: npt.NDArray[Any], fn: Callable[[Any], Any], dtype: type[Any]) -> npt.NDArray[Any]:
    """``fn`` of each value of a column, computed once per distinct value (ids and codes repeat a lot)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    table = np.array([fn(u) for u in uniq.tolist()], dtype=dtype)
    return table[inverse.reshape(-1)]

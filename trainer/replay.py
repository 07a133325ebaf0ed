"""Point-in-time features: replay payments in time order through the scoring server's own kernels.

Columns are built exactly as ``scoring.serde`` builds them from a protobuf ``Transaction``
(same entity keys of the same id strings, amounts in major units, NaN coordinates when no
location, the merchant country's code), and fed to ``FeatureEngine.process``, so a feature
means the same thing offline and online. Fraud labels reach the engine through
``apply_labels`` only once their arrival time has passed: a payment never sees a label
that arrives after it (nor its own).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from scoring.features import N_FEATURES, EngineCapacity, FeatureEngine
from scoring.features.batch import TransactionBatch
from scoring.features.keys import country_code, entity_key
from trainer.payments import Payments, per_unique

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def replay_features(
    payments: Payments,
    capacity: EngineCapacity | None = None,
    batch_size: int = 256,
    label_delay_s: float | None = None,
    progress: bool = False,
) -> F32:
    """Features of every payment (float32 [n, N_FEATURES]), as the server would have computed them live.

    ``capacity``: the engine's size; by default ample for the data (see ``capacity_for``), so no entity
    is evicted. ``label_delay_s``: when given, each fraud label arrives that long after its payment
    instead of at ``payments.label_time`` (``inf``: labels never arrive). Only fraud labels are
    applied: a legitimate outcome does not change any feature.
    """
    if batch_size < 1:
        raise ValidationError("batch_size", f"must be at least 1, got {batch_size}")
    n = len(payments)
    columns = _Columns.of(payments, 0, n)
    engine = FeatureEngine(capacity or capacity_for(payments))
    labels = _LabelQueue(payments, columns, label_delay_s)
    out = np.empty((n, N_FEATURES), np.float32)
    cuts = np.union1d(np.arange(0, n, batch_size), labels.positions)
    cuts = np.append(cuts[cuts < n], n)
    with tqdm(total=n, unit="tx", desc="replay", disable=not progress) as bar:
        for lo, hi in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True):
            labels.apply_due(engine, lo)
            engine.process(columns.batch(lo, hi), out=out[lo:hi])
            bar.update(hi - lo)
    return out


def capacity_for(payments: Payments, headroom: int = 4) -> EngineCapacity:
    """An engine size with ``headroom`` times the distinct cards and entities (so evictions are rare)."""
    entities = max(len(np.unique(c)) for c in (payments.customer_id, payments.merchant_id, payments.device_id,
                                                   payments.ip_address))  # fmt: skip
    return EngineCapacity(
        cards=headroom * max(len(np.unique(payments.card_token)), 1),
        entities=headroom * entities,
        recent_transactions=4096,  # ReportOutcome look-ups: unused by the replay
    )


def batch_from_payments(payments: Payments, start: int, stop: int) -> TransactionBatch:
    """Rows ``start:stop`` as the ``TransactionBatch`` the server builds from the same transactions."""
    return _Columns.of(payments, start, stop).batch(0, stop - start)


@dataclass(frozen=True, slots=True)
class _Columns:
    """The server's column values of a run of payments, computed once for the whole run."""

    transaction_ids: npt.NDArray[np.str_]  # made a tuple per batch: a tuple of millions of ids is costly
    event_time: F64
    amount: F64
    card_key: I64
    customer_key: I64
    merchant_key: I64
    device_key: I64
    ip_key: I64
    country_code: I64
    mcc: I64
    channel: I64
    entry_mode: I64
    latitude: F64
    longitude: F64
    txn_key: I64

    @classmethod
    def of(cls, p: Payments, start: int, stop: int) -> _Columns:
        rows = slice(start, stop)
        ids = p.transaction_id[rows].tolist()
        unit = per_unique(p.currency[rows], lambda c: MINOR_UNIT[c], np.float64)
        return cls(
            transaction_ids=p.transaction_id[rows],
            event_time=p.event_time[rows].astype(np.float64),  # whole seconds: Timestamp(seconds, nanos=0)
            amount=p.amount_minor[rows] * unit,  # as serde: amount_minor * MINOR_UNIT[currency]
            card_key=_keys(p.card_token[rows]),
            customer_key=_keys(p.customer_id[rows]),
            merchant_key=_keys(p.merchant_id[rows]),
            device_key=_keys(p.device_id[rows]),
            ip_key=_keys(p.ip_address[rows]),
            country_code=per_unique(p.merchant_country[rows], country_code, np.int64),
            mcc=p.mcc[rows].astype(np.int64),
            channel=p.channel[rows].astype(np.int64),
            entry_mode=p.entry_mode[rows].astype(np.int64),
            latitude=p.latitude[rows].astype(np.float64),
            longitude=p.longitude[rows].astype(np.float64),
            txn_key=np.fromiter((entity_key(t) for t in ids), np.int64, len(ids)),
        )

    def batch(self, lo: int, hi: int) -> TransactionBatch:
        return TransactionBatch(
            transaction_ids=tuple(self.transaction_ids[lo:hi].tolist()), event_time=self.event_time[lo:hi],
            amount=self.amount[lo:hi], card_key=self.card_key[lo:hi], customer_key=self.customer_key[lo:hi],
            merchant_key=self.merchant_key[lo:hi], device_key=self.device_key[lo:hi], ip_key=self.ip_key[lo:hi],
            country_code=self.country_code[lo:hi], mcc=self.mcc[lo:hi], channel=self.channel[lo:hi],
            entry_mode=self.entry_mode[lo:hi], latitude=self.latitude[lo:hi], longitude=self.longitude[lo:hi],
            txn_key=self.txn_key[lo:hi],
        )  # fmt: skip


class _LabelQueue:
    """Fraud labels in arrival order, each with the first payment that may see it; a cursor over them."""

    __slots__ = ("_applied", "device_key", "known_time", "merchant_key", "positions")

    def __init__(self, p: Payments, columns: _Columns, label_delay_s: float | None) -> None:
        fraud = np.flatnonzero(p.is_fraud)
        arrival = p.label_time[fraud] if label_delay_s is None else p.event_time[fraud] + float(label_delay_s)
        known = np.isfinite(arrival)
        fraud, arrival = fraud[known], arrival[known]
        order = np.argsort(arrival, kind="stable")
        fraud = fraud[order]
        self.known_time: F64 = np.asarray(arrival[order], np.float64)
        # strictly after: a label arriving at time t is seen by payments later than t, not by those at t
        self.positions: I64 = np.searchsorted(columns.event_time, self.known_time, side="right").astype(np.int64)
        self.merchant_key = columns.merchant_key[fraud]
        self.device_key = columns.device_key[fraud]
        self._applied = 0

    def apply_due(self, engine: FeatureEngine, position: int) -> None:
        """Apply every label that the payment at ``position`` may see and that is not applied yet."""
        lo = self._applied
        hi = int(np.searchsorted(self.positions, position, side="right"))
        if hi > lo:
            engine.apply_labels(self.merchant_key[lo:hi], self.device_key[lo:hi], np.ones(hi - lo, np.bool_),
                                self.known_time[lo:hi])  # fmt: skip
            self._applied = hi


def _keys(ids: npt.NDArray[np.str_]) -> I64:
    """``entity_key`` of each id, hashing every distinct id once ('' gives 0)."""
    return per_unique(ids, entity_key, np.int64)


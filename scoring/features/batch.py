"""A batch of validated transactions as columns (struct of arrays), ready for the kernels.

Built once per request message by ``scoring.serde``; the kernels, the model and
the decision code only ever see these arrays, never protobuf objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class TransactionBatch:
    """``n`` transactions. Entity keys are stable 64-bit hashes; 0 means "not given"."""

    transaction_ids: tuple[str, ...]
    event_time: F64  # epoch seconds, UTC
    amount: F64  # major currency units (minor / 10**exponent)
    card_key: I64  # never 0: a card is required
    customer_key: I64
    merchant_key: I64
    device_key: I64
    ip_key: I64
    country_code: I32  # merchant country, 0 when not given
    mcc: I32
    channel: I32
    entry_mode: I32
    latitude: F64  # NaN when no location
    longitude: F64  # NaN when no location
    txn_key: I64  # hash of transaction_id, for ReportOutcome look-ups

    def __len__(self) -> int:
        return len(self.transaction_ids)

"""A batch of validated transactions as two packed column blocks, ready for the kernels.

Built once per request message by ``scoring.serde`` (or by the trainer's replay); the
kernels, the model and the decision code only see these arrays, never protobuf objects.
Packing every numeric column into two C-contiguous blocks keeps the per-message cost to
a couple of NumPy calls and the kernel call to a handful of arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# rows of ``reals`` (float64 [N_REALS, n])
R_TIME, R_AMOUNT, R_LAT, R_LON = 0, 1, 2, 3
N_REALS = 4
# rows of ``ints`` (int64 [N_INTS, n]); entity keys are stable 64-bit hashes, 0 = "not given"
K_CARD, K_CUSTOMER, K_MERCHANT, K_DEVICE, K_IP, K_COUNTRY, K_MCC, K_CHANNEL, K_ENTRY, K_TXN = range(10)
N_INTS = 10


A = TypeVar("A", F64, I64)


def _row(block: A, index: int) -> A:
    row: A = block[index]
    return row


class TransactionBatch:
    """``n`` transactions. Column views: ``event_time`` (epoch s, UTC), ``amount`` (major units),
    ``latitude``/``longitude`` (NaN when unknown), ``card_key`` (never 0), ``customer_key``,
    ``merchant_key``, ``device_key``, ``ip_key``, ``country_code`` (merchant country, 0 when
    unknown), ``mcc``, ``channel``, ``entry_mode`` and ``txn_key`` (hash of the transaction id)."""

    __slots__ = ("ints", "reals", "transaction_ids")
    transaction_ids: tuple[str, ...]
    reals: F64
    ints: I64

    def __init__(
        self,
        transaction_ids: Sequence[str],
        event_time: npt.ArrayLike,
        amount: npt.ArrayLike,
        card_key: npt.ArrayLike,
        customer_key: npt.ArrayLike,
        merchant_key: npt.ArrayLike,
        device_key: npt.ArrayLike,
        ip_key: npt.ArrayLike,
        country_code: npt.ArrayLike,
        mcc: npt.ArrayLike,
        channel: npt.ArrayLike,
        entry_mode: npt.ArrayLike,
        latitude: npt.ArrayLike,
        longitude: npt.ArrayLike,
        txn_key: npt.ArrayLike,
    ) -> None:
        reals = np.array([event_time, amount, latitude, longitude], np.float64).reshape(N_REALS, -1)
        ints = np.array(
            [card_key, customer_key, merchant_key, device_key, ip_key, country_code, mcc, channel, entry_mode, txn_key],
            np.int64,
        ).reshape(N_INTS, -1)
        self._init(tuple(transaction_ids), reals, ints)

    def _init(self, transaction_ids: tuple[str, ...], reals: F64, ints: I64) -> None:
        n = len(transaction_ids)
        if reals.shape != (N_REALS, n) or ints.shape != (N_INTS, n):
            raise ValueError(f"column blocks {reals.shape} and {ints.shape} do not fit {n} transactions")
        self.transaction_ids = transaction_ids
        self.reals = np.ascontiguousarray(reals, np.float64)
        self.ints = np.ascontiguousarray(ints, np.int64)

    @classmethod
    def packed(cls, transaction_ids: tuple[str, ...], reals: F64, ints: I64) -> TransactionBatch:
        """From ready blocks (float64 [N_REALS, n], int64 [N_INTS, n]); no copies when contiguous."""
        batch = cls.__new__(cls)
        batch._init(transaction_ids, reals, ints)
        return batch

    def slice(self, start: int, stop: int) -> TransactionBatch:
        """Transactions ``start:stop`` (copies, so the slice is contiguous)."""
        return TransactionBatch.packed(
            self.transaction_ids[start:stop], self.reals[:, start:stop].copy(), self.ints[:, start:stop].copy()
        )

    def __len__(self) -> int:
        return len(self.transaction_ids)

    @property
    def event_time(self) -> F64:
        return _row(self.reals, R_TIME)

    @property
    def amount(self) -> F64:
        return _row(self.reals, R_AMOUNT)

    @property
    def latitude(self) -> F64:
        return _row(self.reals, R_LAT)

    @property
    def longitude(self) -> F64:
        return _row(self.reals, R_LON)

    @property
    def card_key(self) -> I64:
        return _row(self.ints, K_CARD)

    @property
    def customer_key(self) -> I64:
        return _row(self.ints, K_CUSTOMER)

    @property
    def merchant_key(self) -> I64:
        return _row(self.ints, K_MERCHANT)

    @property
    def device_key(self) -> I64:
        return _row(self.ints, K_DEVICE)

    @property
    def ip_key(self) -> I64:
        return _row(self.ints, K_IP)

    @property
    def country_code(self) -> I64:
        return _row(self.ints, K_COUNTRY)

    @property
    def mcc(self) -> I64:
        return _row(self.ints, K_MCC)

    @property
    def channel(self) -> I64:
        return _row(self.ints, K_CHANNEL)

    @property
    def entry_mode(self) -> I64:
        return _row(self.ints, K_ENTRY)

    @property
    def txn_key(self) -> I64:
        return _row(self.ints, K_TXN)

"""The feature engine: entity state in NumPy arrays, driven by the Numba kernels.

Not thread-safe: one engine is driven by one thread (the server's event loop, or the
trainer's replay loop). Memory is allocated once, at construction, and never grows.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fraudguard.errors import FraudguardError
from scoring.features import kernels, layout, schema
from scoring.features.batch import TransactionBatch

_SNAPSHOT_FORMAT = 1


class SnapshotError(FraudguardError):
    """A state snapshot cannot be read or does not fit this engine."""


def _power_of_two(n: int) -> int:
    return max(layout.WAYS, 1 << max(0, (n - 1).bit_length()))


@dataclass(frozen=True, slots=True)
class EngineCapacity:
    """How many entities of each kind the engine tracks (each rounded up to a power of two)."""

    cards: int = 131_072
    entities: int = 65_536
    recent_transactions: int = 262_144

    def rounded(self) -> EngineCapacity:
        return EngineCapacity(
            _power_of_two(self.cards), _power_of_two(self.entities), _power_of_two(self.recent_transactions)
        )


@dataclass(frozen=True, slots=True)
class EngineStats:
    cards_tracked: int
    entities_tracked: tuple[int, int, int, int]  # customer, device, ip, merchant
    card_evictions: int
    entity_evictions: tuple[int, int, int, int]
    recent_evictions: int
    labels_applied: int
    labels_unknown: int
    state_bytes: int


BYTES_PER_CARD = 8 * (1 + layout.CARD_F64 + layout.CARD_I64) + 4 * layout.CARD_F32
BYTES_PER_ENTITY = 8 * (1 + layout.ENT_F64 + layout.ENT_I64) + 4 * layout.ENT_F32


class FeatureEngine:
    """Computes feature vectors and keeps the per-entity state they need."""

    def __init__(self, capacity: EngineCapacity | None = None) -> None:
        cap = (capacity or EngineCapacity()).rounded()
        self.capacity = cap
        n_e = len(layout.ENTITY_TYPES)
        # np.zeros maps untouched pages lazily: memory is committed as entities arrive
        self._arrays: dict[str, npt.NDArray[np.generic]] = {
            "card_keys": np.zeros(cap.cards, np.int64),
            "card_f64": np.zeros((cap.cards, layout.CARD_F64), np.float64),
            "card_f32": np.zeros((cap.cards, layout.CARD_F32), np.float32),
            "card_i64": np.zeros((cap.cards, layout.CARD_I64), np.int64),
            "ent_keys": np.zeros((n_e, cap.entities), np.int64),
            "ent_f64": np.zeros((n_e, cap.entities, layout.ENT_F64), np.float64),
            "ent_f32": np.zeros((n_e, cap.entities, layout.ENT_F32), np.float32),
            "ent_i64": np.zeros((n_e, cap.entities, layout.ENT_I64), np.int64),
            "recent_keys": np.zeros(cap.recent_transactions, np.int64),
            "recent_vals": np.zeros((cap.recent_transactions, layout.RECENT_I64), np.int64),
            "recent_t": np.zeros((cap.recent_transactions, 1), np.float64),
            "stats": np.zeros(layout.N_STATS, np.int64),
        }
        self._bind()

    def _bind(self) -> None:
        a = self._arrays
        self._state = (
            a["card_keys"],
            a["card_f64"],
            a["card_f32"],
            a["card_i64"],
            a["ent_keys"],
            a["ent_f64"],
            a["ent_f32"],
            a["ent_i64"],
            a["recent_keys"],
            a["recent_vals"],
            a["recent_t"],
            a["stats"],
        )

    # --- the hot path ------------------------------------------------------------------

    def process(self, batch: TransactionBatch, out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """Features of each transaction (float32 [n, N_FEATURES]); folds the batch into the state."""
        n = len(batch)
        if out is None:
            out = np.empty((n, schema.N_FEATURES), np.float32)
        kernels.process_batch(batch.reals, batch.ints, *self._state, out)
        return out

    def apply_labels(
        self,
        merchant_key: npt.NDArray[np.int64],
        device_key: npt.NDArray[np.int64],
        is_fraud: npt.NDArray[np.bool_],
        known_time: npt.NDArray[np.float64],
    ) -> int:
        """Fold outcomes known at ``known_time`` into the label-derived features.

        Returns how many found their merchant or device in the state.
        """
        a = self._arrays
        before = int(a["stats"][layout.S_LABELS_APPLIED])
        kernels.apply_labels(
            np.ascontiguousarray(merchant_key, np.int64),
            np.ascontiguousarray(device_key, np.int64),
            np.ascontiguousarray(is_fraud, np.bool_),
            np.ascontiguousarray(known_time, np.float64),
            a["ent_keys"],
            a["ent_f64"],
            a["stats"],
        )
        return int(a["stats"][layout.S_LABELS_APPLIED]) - before

    def lookup_transaction(self, txn_key: int) -> tuple[int, int] | None:
        """(merchant key, device key) of a recently processed transaction, if remembered."""
        found, merchant, device = kernels.lookup_recent(
            self._arrays["recent_keys"], self._arrays["recent_vals"], txn_key
        )
        return (int(merchant), int(device)) if found else None

    # --- introspection ------------------------------------------------------------------

    def stats(self) -> EngineStats:
        a = self._arrays
        s = a["stats"]
        ent_keys = a["ent_keys"]
        return EngineStats(
            cards_tracked=int(np.count_nonzero(a["card_keys"])),
            entities_tracked=tuple(int(np.count_nonzero(ent_keys[e])) for e in range(4)),  # type: ignore[arg-type]
            card_evictions=int(s[layout.S_CARD_EVICT]),
            entity_evictions=tuple(int(s[layout.S_ENTITY_EVICT + e]) for e in range(4)),  # type: ignore[arg-type]
            recent_evictions=int(s[layout.S_RECENT_EVICT]),
            labels_applied=int(s[layout.S_LABELS_APPLIED]),
            labels_unknown=int(s[layout.S_LABELS_UNKNOWN]),
            state_bytes=sum(int(v.nbytes) for v in a.values()),
        )

    # --- snapshots ----------------------------------------------------------------------

    def copy(self) -> FeatureEngine:
        """A deep copy of the whole state (for a consistent snapshot written off the event loop)."""
        twin = FeatureEngine.__new__(FeatureEngine)
        twin.capacity = self.capacity
        twin._arrays = {name: arr.copy() for name, arr in self._arrays.items()}
        twin._bind()
        return twin

    def save(self, path: Path) -> None:
        """Write the whole state atomically (temp file, fsync, rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = np.array(
            [_SNAPSHOT_FORMAT, self.capacity.cards, self.capacity.entities, self.capacity.recent_transactions], np.int64
        )
        schema_id = np.frombuffer(schema.SCHEMA_VERSION.encode(), np.uint8)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, __meta__=meta, __schema__=schema_id, **self._arrays)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> FeatureEngine:
        """An engine restored from a snapshot written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = data["__meta__"]
                schema_id = bytes(data["__schema__"]).decode()
                if int(meta[0]) != _SNAPSHOT_FORMAT:
                    raise SnapshotError(f"{path}: snapshot format {int(meta[0])}, expected {_SNAPSHOT_FORMAT}")
                if schema_id != schema.SCHEMA_VERSION:
                    raise SnapshotError(
                        f"{path}: taken with feature schema {schema_id}, this build has {schema.SCHEMA_VERSION}"
                    )
                engine = cls.__new__(cls)
                engine.capacity = EngineCapacity(int(meta[1]), int(meta[2]), int(meta[3]))
                fresh = FeatureEngine._shapes(engine.capacity)
                arrays: dict[str, npt.NDArray[np.generic]] = {}
                for name, (shape, dtype) in fresh.items():
                    arr = data[name]
                    if arr.shape != shape or arr.dtype != dtype:
                        raise SnapshotError(
                            f"{path}: array {name} has shape {arr.shape} {arr.dtype}, expected {shape} {dtype}"
                        )
                    arrays[name] = np.ascontiguousarray(arr)
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise SnapshotError(f"{path}: unreadable snapshot ({exc})") from exc
        engine._arrays = arrays
        engine._bind()
        return engine

    @staticmethod
    def _shapes(cap: EngineCapacity) -> dict[str, tuple[tuple[int, ...], np.dtype[np.generic]]]:
        probe = FeatureEngine(EngineCapacity(layout.WAYS, layout.WAYS, layout.WAYS))
        out: dict[str, tuple[tuple[int, ...], np.dtype[np.generic]]] = {}
        sizes = {"card": cap.cards, "ent": cap.entities, "recent": cap.recent_transactions}
        for name, arr in probe._arrays.items():
            shape = list(arr.shape)
            prefix = name.split("_")[0]
            if prefix in sizes:
                shape[1 if prefix == "ent" else 0] = sizes[prefix]
            out[name] = (tuple(shape), arr.dtype)
        return out

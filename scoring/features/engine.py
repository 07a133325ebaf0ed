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

_SNAPSHOT_FORMAT = 3  # 3: XXH3 entity keys


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
        self._bind(_allocate(cap))

    def _bind(self, state: npt.NDArray[np.uint8]) -> None:
        self._state = state
        self._arrays: dict[str, npt.NDArray[np.generic]] = _regions(state, self.capacity)

    # --- the hot path ------------------------------------------------------------------

    def process(self, batch: TransactionBatch, out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
        """Features of each transaction (float32 [n, N_FEATURES]); folds the batch into the state."""
        if out is None:
            out = np.empty((len(batch.transaction_ids), schema.N_FEATURES), np.float32)
        kernels.process_batch(batch.reals, batch.ints, self._state, out)
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
        state = _allocate(self.capacity)
        state[:] = self._state
        twin._bind(state)
        return twin

    def sparse_state(self) -> dict[str, npt.NDArray[np.generic]]:
        """Copies of the occupied rows only (cheap enough to take on the event loop) for :func:`write_snapshot`."""
        out: dict[str, npt.NDArray[np.generic]] = {"stats": self._arrays["stats"].copy()}
        for table, (key_name, row_names) in _TABLES.items():
            keys = self._arrays[key_name].reshape(-1)
            idx = np.flatnonzero(keys)
            out[table + "_idx"] = idx
            out[key_name] = keys[idx]
            for name in row_names:
                out[name] = self._arrays[name].reshape(keys.shape[0], -1)[idx]
        return out

    def save(self, path: Path) -> None:
        """Write the state atomically (temp file, fsync, rename); only occupied rows are stored."""
        write_snapshot(path, self.capacity, self.sparse_state())

    @classmethod
    def load(cls, path: Path) -> FeatureEngine:
        """An engine restored from a snapshot written by :func:`write_snapshot`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = data["__meta__"]
                if meta.shape != (4,) or int(meta[0]) != _SNAPSHOT_FORMAT:
                    raise SnapshotError(f"{path}: not a snapshot of format {_SNAPSHOT_FORMAT}")
                schema_id = bytes(data["__schema__"]).decode()
                if schema_id != schema.SCHEMA_VERSION:
                    raise SnapshotError(
                        f"{path}: taken with feature schema {schema_id}, this build has {schema.SCHEMA_VERSION}"
                    )
                engine = cls(EngineCapacity(int(meta[1]), int(meta[2]), int(meta[3])))
                engine._scatter(path, {name: data[name] for name in data.files})
        except (OSError, KeyError, ValueError, EOFError, UnicodeDecodeError) as exc:
            raise SnapshotError(f"{path}: unreadable snapshot ({exc})") from exc
        return engine

    def _scatter(self, path: Path, data: dict[str, npt.NDArray[np.generic]]) -> None:
        stats = self._arrays["stats"]
        if data["stats"].shape != stats.shape:
            raise SnapshotError(f"{path}: stats have shape {data['stats'].shape}, expected {stats.shape}")
        stats[:] = data["stats"]
        for table, (key_name, row_names) in _TABLES.items():
            keys = self._arrays[key_name].reshape(-1)
            idx = data[table + "_idx"]
            if idx.ndim != 1 or idx.dtype.kind != "i" or (idx.size and not 0 <= idx.min() <= idx.max() < keys.size):
                raise SnapshotError(f"{path}: {table} slot indices out of range for this capacity")
            for name in (key_name, *row_names):
                target = self._arrays[name].reshape(keys.shape[0], -1)
                rows = data[name].reshape(len(idx), -1) if data[name].size == len(idx) * target.shape[1] else None
                if rows is None or data[name].dtype != target.dtype:
                    raise SnapshotError(f"{path}: array {name} does not fit this build's layout")
                target[idx] = rows


def _shapes(cap: EngineCapacity) -> dict[str, tuple[type[np.generic], tuple[int, ...]]]:
    """dtype and shape of each table, by name."""
    n_e = len(layout.ENTITY_TYPES)
    return {
        "card_keys": (np.int64, (cap.cards,)),
        "card_f64": (np.float64, (cap.cards, layout.CARD_F64)),
        "card_f32": (np.float32, (cap.cards, layout.CARD_F32)),
        "card_i64": (np.int64, (cap.cards, layout.CARD_I64)),
        "ent_keys": (np.int64, (n_e, cap.entities)),
        "ent_f64": (np.float64, (n_e, cap.entities, layout.ENT_F64)),
        "ent_f32": (np.float32, (n_e, cap.entities, layout.ENT_F32)),
        "ent_i64": (np.int64, (n_e, cap.entities, layout.ENT_I64)),
        "recent_keys": (np.int64, (cap.recent_transactions,)),
        "recent_vals": (np.int64, (cap.recent_transactions, layout.RECENT_I64)),
        "recent_t": (np.float64, (cap.recent_transactions, 1)),
        "stats": (np.int64, (layout.N_STATS,)),
    }


def _offsets(cap: EngineCapacity) -> tuple[list[int], int]:
    """Byte offset of each region in ``layout.STATE_REGIONS`` order (after the header, each aligned to a cache
    line) and the total size. The kernels read the offsets from the header, in the same order."""
    offsets = []
    end = layout.HEADER_BYTES
    shapes = _shapes(cap)
    for name in layout.STATE_REGIONS:
        dtype, shape = shapes[name]
        offsets.append(end)
        size = int(np.dtype(dtype).itemsize * np.prod(shape))
        end += -(-size // layout.REGION_ALIGN) * layout.REGION_ALIGN
    return offsets, end


def _allocate(cap: EngineCapacity) -> npt.NDArray[np.uint8]:
    """A zeroed state buffer with its header written, starting on a cache line.

    ``np.zeros`` maps untouched pages lazily: memory is committed as entities arrive.
    """
    offsets, size = _offsets(cap)
    raw = np.zeros(size + layout.REGION_ALIGN, np.uint8)
    start = -raw.ctypes.data % layout.REGION_ALIGN
    state = raw[start : start + size]
    header = state[: layout.HEADER_BYTES].view(np.int64)
    header[[layout.H_CARDS, layout.H_ENTITIES, layout.H_RECENT]] = cap.cards, cap.entities, cap.recent_transactions
    header[layout.H_OFFSETS : layout.H_OFFSETS + len(offsets)] = offsets
    return state


def _regions(state: npt.NDArray[np.uint8], cap: EngineCapacity) -> dict[str, npt.NDArray[np.generic]]:
    """Each table as a view of the state buffer, by name."""
    offsets, _ = _offsets(cap)
    shapes = _shapes(cap)
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for name, start in zip(layout.STATE_REGIONS, offsets, strict=True):
        dtype, shape = shapes[name]
        size = int(np.dtype(dtype).itemsize * np.prod(shape))
        arrays[name] = state[start : start + size].view(dtype).reshape(shape)
    return arrays


# table -> (key array, row arrays); rows share the key array's slot index
_TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "card": ("card_keys", ("card_f64", "card_f32", "card_i64")),
    "ent": ("ent_keys", ("ent_f64", "ent_f32", "ent_i64")),
    "recent": ("recent_keys", ("recent_vals", "recent_t")),
}


def write_snapshot(path: Path, capacity: EngineCapacity, state: dict[str, npt.NDArray[np.generic]]) -> None:
    """Write a :meth:`FeatureEngine.sparse_state` atomically (temp file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = np.array([_SNAPSHOT_FORMAT, capacity.cards, capacity.entities, capacity.recent_transactions], np.int64)
    schema_id = np.frombuffer(schema.SCHEMA_VERSION.encode(), np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __meta__=meta, __schema__=schema_id, **state)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

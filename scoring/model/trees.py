"""LightGBM trees flattened into arrays, for the contribution kernel (reason codes).

Nodes of all trees live in one set of parallel arrays, each tree in pre-order (a node's
left child is the next node), tree ``t`` spanning ``tree_offsets[t]:tree_offsets[t + 1]``
with its root first. Leaves have ``feature == -1``. ``value`` is LightGBM's
``internal_value`` for a split node and ``leaf_value`` for a leaf, so walking root → leaf
and summing ``value(child) - value(node)`` per split feature gives Saabas contributions.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fraudguard.errors import BundleError

if TYPE_CHECKING:
    import lightgbm

LEAF = -1
# missing_type codes, as in LightGBM's MissingType enum
MISSING_NONE = 0
MISSING_ZERO = 1
MISSING_NAN = 2
_MISSING_TYPES = {"None": MISSING_NONE, "Zero": MISSING_ZERO, "NaN": MISSING_NAN}

_ARRAY_DTYPES: dict[str, type[np.generic]] = {
    "feature": np.int32,
    "threshold": np.float64,
    "left": np.int32,
    "right": np.int32,
    "default_left": np.bool_,
    "missing_type": np.uint8,
    "value": np.float64,
    "tree_offsets": np.int64,
}
_NODE_ARRAYS = ("feature", "threshold", "left", "right", "default_left", "missing_type", "value")


@dataclass(frozen=True, slots=True, eq=False)
class TreeArrays:
    """A binary LightGBM model as flat node arrays (see the module docstring)."""

    feature: npt.NDArray[np.int32]  # split feature index, -1 for a leaf
    threshold: npt.NDArray[np.float64]  # x <= threshold goes left
    left: npt.NDArray[np.int32]  # absolute node index, -1 for a leaf
    right: npt.NDArray[np.int32]
    default_left: npt.NDArray[np.bool_]  # where a missing value goes
    missing_type: npt.NDArray[np.uint8]  # MISSING_NONE / MISSING_ZERO / MISSING_NAN
    value: npt.NDArray[np.float64]  # internal_value (split) or leaf_value (leaf), log-odds
    tree_offsets: npt.NDArray[np.int64]  # [n_trees + 1]
    n_features: int

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def n_trees(self) -> int:
        return len(self.tree_offsets) - 1

    @property
    def n_nodes(self) -> int:
        return len(self.feature)

    @property
    def expected_value(self) -> float:
        """Sum of the root values: the raw score before any split is taken into account."""
        return float(self.value[self.tree_offsets[:-1]].sum())

    @property
    def uses_zero_as_missing(self) -> bool:
        """True if some split treats zero as missing (LightGBM ``zero_as_missing=true``)."""
        return bool(np.any((self.missing_type == MISSING_ZERO) & (self.feature != LEAF)))

    def save(self, path: Path | IO[bytes]) -> None:
        """Write as an uncompressed ``.npz`` (no pickles)."""
        np.savez(path, n_features=np.int64(self.n_features), **{name: getattr(self, name) for name in _ARRAY_DTYPES})

    @classmethod
    def load(cls, path: Path | IO[bytes]) -> TreeArrays:
        """Read what ``save`` wrote; ``BundleError`` if it is not a consistent tree set."""
        source = str(path) if isinstance(path, Path) else "trees"
        try:
            if isinstance(path, Path):
                with open(path, "rb") as f:  # our own handle: np.load leaks its own when the zip is corrupt
                    arrays = _read_npz(f)
            else:
                arrays = _read_npz(path)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{source}: not a readable .npz: {exc}") from exc
        missing = sorted({*_ARRAY_DTYPES, "n_features"} - set(arrays))
        if missing:
            raise BundleError(f"{source}: missing arrays {', '.join(missing)}")
        for name, dtype in _ARRAY_DTYPES.items():
            if arrays[name].dtype != dtype or arrays[name].ndim != 1:
                raise BundleError(f"{source}: array {name!r} must be 1-d {np.dtype(dtype).name}, "
                                  f"got {arrays[name].ndim}-d {arrays[name].dtype}")
        n_features = arrays.pop("n_features")
        if n_features.shape != () or not np.issubdtype(n_features.dtype, np.integer):
            raise BundleError(f"{source}: n_features must be an integer scalar")
        try:
            return cls(n_features=int(n_features), **arrays)
        except BundleError as exc:
            raise BundleError(f"{source}: {exc}") from exc

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.save(buffer)
        return buffer.getvalue()


def _read_npz(f: IO[bytes]) -> dict[str, npt.NDArray[Any]]:
    loaded = np.load(f, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz archive")
    with loaded as npz:
        return {name: npz[name] for name in npz.files}


def _validate(trees: TreeArrays) -> None:
    """Refuse anything the (unchecked) Numba kernel could loop on or read out of bounds with."""
    n = trees.n_nodes
    for name in _NODE_ARRAYS:
        array = getattr(trees, name)
        if array.dtype != _ARRAY_DTYPES[name] or array.shape != (n,):
            raise BundleError(f"tree array {name!r} must have shape ({n},) and dtype {np.dtype(_ARRAY_DTYPES[name])}")
    offsets = trees.tree_offsets
    if offsets.dtype != np.int64 or offsets.ndim != 1 or len(offsets) < 2:
        raise BundleError("tree_offsets must be a 1-d int64 array with at least one tree")
    if offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) <= 0):
        raise BundleError("tree_offsets must rise strictly from 0 to the node count")
    if trees.n_features <= 0:
        raise BundleError(f"n_features must be positive, got {trees.n_features}")
    tree_end = np.repeat(offsets[1:], np.diff(offsets))
    node = np.arange(n)
    split = trees.feature != LEAF
    if np.any(trees.feature[split] < 0) or np.any(trees.feature[split] >= trees.n_features):
        raise BundleError(f"split feature index out of range 0..{trees.n_features - 1}")
    if np.any(trees.left[split] != node[split] + 1):
        raise BundleError("trees are not in pre-order: a split's left child must be the next node")
    right = trees.right[split]
    if np.any(right <= node[split] + 1) or np.any(right >= tree_end[split]):
        raise BundleError("a split's right child lies outside its own subtree")
    if np.any(trees.left[~split] != LEAF) or np.any(trees.right[~split] != LEAF):
        raise BundleError("a leaf has children")
    if np.any(trees.missing_type > MISSING_NAN):
        raise BundleError("unknown missing_type code")
    if not np.all(np.isfinite(trees.value)) or np.any(np.isnan(trees.threshold[split])):
        raise BundleError("node values must be finite and split thresholds not NaN")
    # Every node must be reached exactly once from its tree's root, else the arrays do not form trees.
    parents = np.zeros(n, dtype=np.int64)
    np.add.at(parents, trees.left[split], 1)
    np.add.at(parents, trees.right[split], 1)
    expected = np.ones(n, dtype=np.int64)
    expected[offsets[:-1]] = 0
    if not np.array_equal(parents, expected):
        raise BundleError("node links do not form one tree per offset range")


def trees_from_booster(booster: lightgbm.Booster) -> TreeArrays:
    """Flatten a binary-objective LightGBM booster (numerical splits only) from ``dump_model()``."""
    dump = booster.dump_model()
    if dump.get("num_tree_per_iteration") != 1 or not str(dump.get("objective", "")).startswith("binary"):
        raise BundleError(f"only binary LightGBM models are supported, got objective {dump.get('objective')!r}")
    if dump.get("average_output"):
        raise BundleError("random-forest boosters (average_output) are not supported")
    columns: dict[str, list[Any]] = {name: [] for name in _NODE_ARRAYS}
    offsets = [0]
    for tree in dump["tree_info"]:
        _flatten_tree(tree["tree_structure"], columns)
        offsets.append(len(columns["feature"]))
    return TreeArrays(
        **{name: np.asarray(columns[name], dtype=_ARRAY_DTYPES[name]) for name in _NODE_ARRAYS},
        tree_offsets=np.asarray(offsets, dtype=np.int64),
        n_features=int(dump["max_feature_idx"]) + 1,
    )


def _flatten_tree(root: dict[str, Any], columns: dict[str, list[Any]]) -> None:
    """Append one tree in pre-order, iteratively (deep trees must not hit the recursion limit)."""
    stack: list[tuple[dict[str, Any], int, str]] = [(root, -1, "")]
    while stack:
        node, parent, side = stack.pop()
        index = len(columns["feature"])
        if parent >= 0:
            columns[side][parent] = index
        if "split_feature" in node:
            if node["decision_type"] != "<=":
                raise BundleError(f"unsupported split decision_type {node['decision_type']!r} (categorical features?)")
            if node["missing_type"] not in _MISSING_TYPES:
                raise BundleError(f"unsupported split missing_type {node['missing_type']!r}")
            row = (int(node["split_feature"]), float(node["threshold"]), -1, -1, bool(node["default_left"]),
                   _MISSING_TYPES[node["missing_type"]], float(node["internal_value"]))
            stack.append((node["right_child"], index, "right"))
            stack.append((node["left_child"], index, "left"))
        else:
            row = (LEAF, 0.0, LEAF, LEAF, False, MISSING_NONE, float(node["leaf_value"]))
        for name, item in zip(_NODE_ARRAYS, row, strict=True):
            columns[name].append(item)

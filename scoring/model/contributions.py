"""Per-feature contributions (Saabas path attribution) over ``TreeArrays``, in Numba.

For each row and tree, walk root → leaf following LightGBM's decision rule exactly and
credit ``value(child) - value(node)`` to the node's split feature. Per row, the
contributions plus ``expected_value`` equal the booster's raw score (log-odds).

The walk is bound by the latency of dependent loads, so the kernel reads a compact copy of
the trees: per node one int64 of bit fields (split feature, right child, missing-value
rule), the threshold, and the value difference to the parent stored on the child.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from fraudguard.errors import BundleError
from scoring.model.trees import LEAF, MISSING_NONE, MISSING_ZERO, TreeArrays

# Bit fields of ``ContributionKernel.info``: feature + 1 (0 for a leaf), right child, flags.
_FEATURE_BITS, _RIGHT_SHIFT, _RIGHT_BITS, _FLAGS_SHIFT = 0xFFFF, 16, 0xFFFFFFFF, 48
# Flag bits: where NaN goes; whether zero counts as missing; where a missing zero goes.
_NAN_LEFT, _ZERO_MISSING, _DEFAULT_LEFT = 1, 2, 4
# LightGBM's kZeroThreshold: the float 1e-35f, compared as a double.
_ZERO_THRESHOLD = float(np.float32(1e-35))


@dataclass(frozen=True, slots=True, eq=False)
class ContributionKernel:
    """Trees compiled for the contribution walk. Immutable; safe to share between threads."""

    info: npt.NDArray[np.int64]  # [n_nodes] bit fields, see _FEATURE_BITS
    threshold: npt.NDArray[np.float64]  # [n_nodes]; x <= threshold goes left
    delta: npt.NDArray[np.float64]  # [n_nodes]: value(node) - value(parent), 0 at roots
    roots: npt.NDArray[np.int64]  # [n_trees]
    n_features: int
    expected_value: float  # sum of the root values

    @classmethod
    def from_trees(cls, trees: TreeArrays) -> ContributionKernel:
        if trees.n_features >= _FEATURE_BITS or trees.n_nodes > _RIGHT_BITS:
            raise BundleError(f"model too large for the contribution kernel: {trees.n_features} features, "
                              f"{trees.n_nodes} nodes")
        is_split = trees.feature != LEAF
        default_left = trees.default_left.astype(bool)
        # A NaN is missing for missing_type NaN, becomes a (missing) zero for Zero, and plain 0.0 for None.
        nan_left = np.where(trees.missing_type == MISSING_NONE, trees.threshold >= 0.0, default_left)
        flags = (np.where(nan_left, _NAN_LEFT, 0) | np.where(trees.missing_type == MISSING_ZERO, _ZERO_MISSING, 0)
                 | np.where(default_left, _DEFAULT_LEFT, 0))
        info = np.where(is_split, (trees.feature.astype(np.int64) + 1) | (trees.right.astype(np.int64) << _RIGHT_SHIFT)
                        | (flags.astype(np.int64) << _FLAGS_SHIFT), 0)
        parent_value = np.zeros(trees.n_nodes, dtype=np.float64)
        split_nodes = np.flatnonzero(is_split)
        parent_value[split_nodes + 1] = trees.value[split_nodes]
        parent_value[trees.right[split_nodes]] = trees.value[split_nodes]
        delta = trees.value - parent_value
        delta[trees.tree_offsets[:-1]] = 0.0
        return cls(np.ascontiguousarray(info, dtype=np.int64), np.where(is_split, trees.threshold, 0.0), delta,
                   np.ascontiguousarray(trees.tree_offsets[:-1]), trees.n_features, trees.expected_value)

    def contributions(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Contributions [n, n_features] of every feature to every row's raw score."""
        rows = self._rows(x)
        out = np.zeros((rows.shape[0], self.n_features), dtype=np.float64)
        _add_contributions(rows, self.info, self.threshold, self.delta, self.roots, out)
        return out

    def top(self, x: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ``k`` largest contributions per row, largest first; ties go to the lower feature index."""
        if not 0 <= k <= self.n_features:
            raise ValueError(f"k must be in 0..{self.n_features}, got {k}")
        index, largest = _top_contributions(self._rows(x), self.info, self.threshold, self.delta, self.roots,
                                            self.n_features, k)
        return index, largest

    def _rows(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape [n, {self.n_features}], got {list(x.shape)}")
        return np.ascontiguousarray(x, dtype=np.float32)


@njit(cache=True, nogil=True)
def _add_contributions(x: npt.NDArray[np.float32], info: npt.NDArray[np.int64], threshold: npt.NDArray[np.float64],
                       delta: npt.NDArray[np.float64], roots: npt.NDArray[np.int64],
                       out: npt.NDArray[np.float64]) -> None:
    """Add every row's contributions into ``out`` [n, n_features]. Trees outer: a tree stays in L1 over the batch."""
    for t in range(roots.shape[0]):
        root = roots[t]
        for i in range(x.shape[0]):
            node = root
            bits = info[node]
            f = (bits & _FEATURE_BITS) - 1
            while f >= 0:
                fval = np.float64(x[i, f])
                flags = bits >> _FLAGS_SHIFT
                # LightGBM's NumericalDecision, with the NaN outcome precomputed per node.
                if fval != fval:
                    go_left = (flags & _NAN_LEFT) != 0
                elif (flags & _ZERO_MISSING) != 0 and -_ZERO_THRESHOLD <= fval <= _ZERO_THRESHOLD:
                    go_left = (flags & _DEFAULT_LEFT) != 0
                else:
                    go_left = fval <= threshold[node]
                node = node + 1 if go_left else (bits >> _RIGHT_SHIFT) & _RIGHT_BITS
                out[i, f] += delta[node]
                bits = info[node]
                f = (bits & _FEATURE_BITS) - 1


@njit(cache=True, nogil=True)
def _top_contributions(x: npt.NDArray[np.float32], info: npt.NDArray[np.int64], threshold: npt.NDArray[np.float64],
                       delta: npt.NDArray[np.float64], roots: npt.NDArray[np.int64], n_features: int,
                       k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Contributions, then the k largest per row: one call, so a single row pays one dispatch."""
    contributions = np.zeros((x.shape[0], n_features), dtype=np.float64)
    index = np.empty((x.shape[0], k), dtype=np.int64)
    largest = np.empty((x.shape[0], k), dtype=np.float64)
    _add_contributions(x, info, threshold, delta, roots, contributions)
    _select_largest(contributions, index, largest)
    return index, largest


@njit(cache=True, nogil=True)
def _select_largest(contributions: npt.NDArray[np.float64], index: npt.NDArray[np.int64],
                    largest: npt.NDArray[np.float64]) -> None:
    """Per row, the k largest values, largest first; ties to the lower index (k is a handful)."""
    n_features = contributions.shape[1]
    taken = np.empty(n_features, dtype=np.bool_)
    for i in range(contributions.shape[0]):
        taken[:] = False
        for j in range(index.shape[1]):
            best = -1
            for f in range(n_features):
                if not taken[f] and (best < 0 or contributions[i, f] > contributions[i, best]):
                    best = f
            taken[best] = True
            index[i, j] = best
            largest[i, j] = contributions[i, best]

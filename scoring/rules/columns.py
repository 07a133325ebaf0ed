"""What evaluation reads: the batch's two column blocks, the feature matrix and the scores — no copies.

``RuleInputs`` says which of them a rule set needs (so a caller can skip work, and a test can see at
a glance what the rules read); ``RuleColumns`` holds the arrays for one batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.features.batch import N_INTS, N_REALS, TransactionBatch
from scoring.features.schema import N_FEATURES
from scoring.rules.fields import FieldDef, Source

_F64, _I64, _F32 = np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.float32)


@dataclass(frozen=True, slots=True)
class RuleInputs:
    """The columns a rule set reads: canonical field names, and per source the rows/columns."""

    fields: tuple[str, ...]
    real_rows: tuple[int, ...]  # of TransactionBatch.reals
    int_rows: tuple[int, ...]  # of TransactionBatch.ints
    feature_columns: tuple[int, ...]  # of the float32 [n, N_FEATURES] feature matrix
    score: bool

    @classmethod
    def of(cls, fields: Iterable[FieldDef]) -> RuleInputs:
        used = sorted(set(fields), key=lambda f: f.name)

        def rows(source: Source) -> tuple[int, ...]:
            return tuple(sorted({f.index for f in used if f.source is source}))

        return cls(
            tuple(f.name for f in used), rows(Source.REAL), rows(Source.INT), rows(Source.FEATURE),
            any(f.source is Source.SCORE for f in used),
        )  # fmt: skip

    @property
    def needs_features(self) -> bool:
        return bool(self.feature_columns)


@dataclass(frozen=True, slots=True)
class RuleColumns:
    """One batch of ``n`` transactions: reals float64 [N_REALS, n], ints int64 [N_INTS, n],
    features float32 [n, N_FEATURES] (or [n, 0] when no rule reads one), scores float64 [n] (or [0])."""

    reals: npt.NDArray[np.float64]
    ints: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float64]

    @classmethod
    def of(
        cls,
        batch: TransactionBatch,
        features: npt.NDArray[np.float32] | None = None,
        scores: npt.NDArray[np.float64] | None = None,
    ) -> RuleColumns:
        n = len(batch)
        feats = np.zeros((n, 0), np.float32) if features is None else np.ascontiguousarray(features, np.float32)
        sc = np.zeros(0, np.float64) if scores is None else np.ascontiguousarray(scores, np.float64)
        return cls(batch.reals, batch.ints, feats, sc)

    def __len__(self) -> int:
        return int(self.reals.shape[1])

    def check(self, inputs: RuleInputs) -> None:
        """``ValueError`` unless the arrays fit each other and hold what ``inputs`` needs."""
        n = len(self)
        if self.reals.shape != (N_REALS, n) or self.ints.shape != (N_INTS, n):
            raise ValueError(f"column blocks {self.reals.shape} and {self.ints.shape} do not fit")
        if (self.reals.dtype, self.ints.dtype, self.features.dtype, self.scores.dtype) != (_F64, _I64, _F32, _F64):
            raise ValueError("reals and scores must be float64, ints int64, features float32")
        if inputs.needs_features and self.features.shape != (n, N_FEATURES):
            raise ValueError(f"the rules read features: expected [{n}, {N_FEATURES}], got {self.features.shape}")
        if self.features.shape[0] != n:
            raise ValueError(f"features have {self.features.shape[0]} rows for {n} transactions")
        if inputs.score and self.scores.shape != (n,):
            raise ValueError(f"the rules read the score: expected [{n}] scores, got {self.scores.shape}")

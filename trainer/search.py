"""Hyper-parameters (and the imbalance treatment) chosen on the validation slice, within a time budget.

The first candidate is the default; the rest are drawn from a seeded sequence, so two
runs with the same seed try the same candidates in the same order. ``max_trials`` alone
makes the choice reproducible; a time budget caps the search by the clock, and then a
slower machine may try fewer candidates (the bundle lists the ones that ran).
The winner is the candidate with the highest average precision on validation — the
metric that matters when fraud is rare — and ties go to the earlier candidate.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from fraudguard.errors import ValidationError
from trainer.calibrate import OperatingTargets
from trainer.periods import TimeSplit
from trainer.train import Imbalance, TrainingParams, TrainingResult, train_model

F32 = npt.NDArray[np.float32]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class SearchBudget:
    """When to stop trying candidates: after ``max_trials``, or once ``seconds`` have passed (whichever first).

    A candidate is only started if the budget left is at least the slowest trial so far, so the
    search ends near the budget, not one long trial beyond it.
    """

    max_trials: int = 8
    seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.max_trials < 1:
            raise ValidationError("--max-trials", f"must be at least 1, got {self.max_trials}")
        if not self.seconds > 0:
            raise ValidationError("--time-budget", f"must be > 0, got {self.seconds}")


@dataclass(frozen=True, slots=True)
class Trial:
    """One candidate and how it did on validation."""

    params: TrainingParams
    valid_average_precision: float
    valid_auc: float
    n_trees: int
    seconds: float

    def describe(self) -> dict[str, object]:
        changed = {k: v for k, v in self.params.describe().items() if v != getattr(_DEFAULT, k)}
        return {"params": changed, "valid_average_precision": round(self.valid_average_precision, 6),
                "valid_auc": round(self.valid_auc, 6), "n_trees": self.n_trees, "seconds": round(self.seconds, 2)}


@dataclass(frozen=True, slots=True, eq=False)
class SearchResult:
    best: TrainingResult
    trials: tuple[Trial, ...]
    stopped_by: str  # "max_trials" or "time_budget"


_DEFAULT = TrainingParams()


def search(
    x: F32, y: B, split: TimeSplit, base: TrainingParams, budget: SearchBudget,
    targets: OperatingTargets | None = None, progress: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Train each candidate until the budget is spent; the best on validation average precision wins."""
    start = clock()
    trials: list[Trial] = []
    best: TrainingResult | None = None
    slowest, stopped_by = 0.0, "max_trials"
    with tqdm(total=budget.max_trials, unit="model", desc="search", disable=not progress) as bar:
        for params in _candidates(base, budget.max_trials):
            if trials and clock() - start + slowest > budget.seconds:
                stopped_by = "time_budget"
                break
            began = clock()
            result = train_model(x, y, split, params, targets)
            took = clock() - began
            slowest = max(slowest, took)
            trials.append(Trial(params, result.valid_average_precision, result.metrics["valid_auc"],
                                int(result.metrics["n_trees"]), took))  # fmt: skip
            if best is None or result.valid_average_precision > best.valid_average_precision:
                best = result
            bar.update(1)
            bar.set_postfix(best_ap=f"{best.valid_average_precision:.4f}")
    assert best is not None  # the first candidate always runs
    return SearchResult(best, tuple(trials), stopped_by)


def _candidates(base: TrainingParams, n: int) -> Iterator[TrainingParams]:
    """``base`` first, then ``n - 1`` seeded draws around it (imbalance treatment included)."""
    yield base
    rng = np.random.default_rng([base.seed, 0x5EA7C4])
    for _ in range(n - 1):
        imbalance: Imbalance = "downsample" if rng.random() < 0.35 else "weight"
        weight = None if imbalance == "downsample" or rng.random() < 0.5 else float(rng.choice([1.0, 3.0, 10.0]))
        yield dataclasses.replace(
            base,
            num_leaves=int(rng.choice([15, 31, 63, 127])),
            learning_rate=float(rng.choice([0.03, 0.05, 0.08, 0.12])),
            min_data_in_leaf=int(rng.choice([20, 40, 100, 200])),
            feature_fraction=float(rng.choice([0.6, 0.75, 0.9, 1.0])),
            bagging_fraction=float(rng.choice([0.7, 0.8, 1.0])),
            lambda_l2=float(rng.choice([0.0, 1.0, 5.0, 20.0])),
            imbalance=imbalance,
            scale_pos_weight=weight,
            negative_rate=float(rng.choice([0.1, 0.25, 0.5])),
        )  # fmt: skip

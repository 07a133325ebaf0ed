"""LightGBM training on replayed features: time-ordered split, early stopping, calibrated thresholds.

The split is by time, never random: the model is fitted on the past, stopped early on the
following period (validation, which also sets the thresholds) and judged on the period
after that (test). Payments of the first days are left out: the entity state behind their
features was still empty, unlike anything the server sees once it has run for a while.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudguard.errors import ValidationError
from scoring.features import FEATURE_NAMES, N_FEATURES
from scoring.model import Thresholds
from trainer.calibrate import OperatingTargets, action_metrics, calibrate_thresholds

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TrainingParams:
    """The knobs of a training run. Same data and params, same model (fixed seeds, deterministic mode)."""

    num_trees: int = 300  # cap; early stopping usually ends sooner
    num_leaves: int = 31
    learning_rate: float = 0.08
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 30
    scale_pos_weight: float | None = None  # None: sqrt(legitimate / fraud) of the training slice
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    warmup_s: float = 3 * 86_400.0  # payments this close to the first one are not used
    seed: int = 7
    num_threads: int = 1  # more threads is not faster on small data, and far slower on a busy machine

    def __post_init__(self) -> None:
        if self.num_trees < 1 or self.num_leaves < 2 or self.early_stopping_rounds < 1:
            raise ValidationError("params", "need num_trees >= 1, num_leaves >= 2, early_stopping_rounds >= 1")
        valid, test = self.validation_fraction, self.test_fraction
        if not (valid > 0 and test > 0 and valid + test < 1):
            raise ValidationError("params", "validation_fraction and test_fraction must be > 0 and sum to < 1")
        if self.scale_pos_weight is not None and not self.scale_pos_weight > 0:
            raise ValidationError("scale_pos_weight", f"must be > 0, got {self.scale_pos_weight}")

    def lightgbm(self, scale_pos_weight: float) -> dict[str, object]:
        return {
            "objective": "binary",
            "metric": ["average_precision", "auc"],
            "first_metric_only": True,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "scale_pos_weight": scale_pos_weight,
            "zero_as_missing": False,  # the ONNX export does not reproduce it
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Row ranges of a time-sorted data set: train < validation < test in time, warm-up rows dropped."""

    train: slice
    valid: slice
    test: slice

    @classmethod
    def of(cls, event_time: npt.NDArray[np.generic], params: TrainingParams) -> TimeSplit:
        t = np.asarray(event_time, np.float64)
        n = len(t)
        if n and np.any(np.diff(t) < 0):
            raise ValidationError("event_time", "rows must be sorted by time")
        first = int(np.searchsorted(t, t[0] + params.warmup_s, side="left")) if n else 0
        used = n - first
        v = first + round(used * (1.0 - params.validation_fraction - params.test_fraction))
        s = first + round(used * (1.0 - params.test_fraction))
        # payments of the same second stay on one side of a boundary
        v = int(np.searchsorted(t, t[v], side="left")) if v < n else n
        s = int(np.searchsorted(t, t[s], side="left")) if s < n else n
        return cls(slice(first, v), slice(v, s), slice(s, n))


@dataclass(frozen=True, slots=True, eq=False)
class TrainingResult:
    """A trained booster (trees up to the best validation iteration), its thresholds and test metrics."""

    booster: lgb.Booster
    params: TrainingParams
    split: TimeSplit
    thresholds: Thresholds
    metrics: Mapping[str, float]  # auc, average_precision, <band>_rate/_recall/_precision on test; sizes


def train_model(
    x: F32, y: B, event_time: npt.NDArray[np.generic],
    params: TrainingParams | None = None, targets: OperatingTargets | None = None,
) -> TrainingResult:
    """Fit on the train slice, stop early on validation, set thresholds on validation, evaluate on test."""
    p = params or TrainingParams()
    if x.ndim != 2 or x.shape[1] != N_FEATURES or len(x) != len(y) or len(y) != len(event_time):
        raise ValidationError("features", f"expected [n, {N_FEATURES}] features with n labels and times, got "
                              f"{list(x.shape)}, {len(y)} labels, {len(event_time)} times")  # fmt: skip
    y = np.asarray(y, np.bool_)
    split = TimeSplit.of(event_time, p)
    for name, rows in (("train", split.train), ("validation", split.valid), ("test", split.test)):
        fraud = int(y[rows].sum())
        if fraud == 0 or fraud == len(y[rows]):
            raise ValidationError("training data", f"the {name} slice ({len(y[rows])} rows) needs both fraud and "
                                  "legitimate payments; use more data or a higher fraud rate")  # fmt: skip
    booster = _fit(x, y, split, p)
    p_valid, p_test = predict(booster, x[split.valid]), predict(booster, x[split.test])
    thresholds = calibrate_thresholds(y[split.valid], p_valid, targets)
    metrics = {
        **_ranking(y[split.test], p_test),
        **{f"valid_{k}": v for k, v in _ranking(y[split.valid], p_valid).items()},
        **action_metrics(y[split.test], p_test, thresholds),
        "n_train": float(len(y[split.train])),
        "n_valid": float(len(y[split.valid])),
        "n_test": float(len(y[split.test])),
        "fraud_rate": float(y[split.train.start:].mean()),
        "n_trees": float(booster.num_trees()),
    }
    return TrainingResult(booster, p, split, thresholds, MappingProxyType(metrics))


def predict(booster: lgb.Booster, x: F32) -> F64:
    """P(fraud) per row of ``x``, from the booster itself (not its ONNX export)."""
    return np.asarray(booster.predict(x), np.float64)


def _fit(x: F32, y: B, split: TimeSplit, p: TrainingParams) -> lgb.Booster:
    y_train = y[split.train]
    weight = p.scale_pos_weight or math.sqrt((len(y_train) - y_train.sum()) / y_train.sum())
    train = lgb.Dataset(x[split.train], y_train.astype(np.float32), feature_name=list(FEATURE_NAMES),
                        free_raw_data=True)  # fmt: skip
    valid = lgb.Dataset(x[split.valid], y[split.valid].astype(np.float32), reference=train)
    booster = lgb.train(
        p.lightgbm(weight), train, num_boost_round=p.num_trees, valid_sets=[valid],
        callbacks=[lgb.early_stopping(p.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    # keep only the trees up to the best iteration: the exported model is exactly what was validated
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _ranking(y: B, p: F64) -> dict[str, float]:
    return {"auc": float(roc_auc_score(y, p)), "average_precision": float(average_precision_score(y, p))}

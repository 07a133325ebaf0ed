"""LightGBM training on replayed features: one model for one set of hyper-parameters, judged by time.

The rows come from a ``TimeSplit`` (``trainer.periods``): the model is fitted on the first
part of the training period, stopped early on its last part (validation, which also sets
the thresholds) and judged on the test period, after the gap. ``trainer.search`` calls
``train_model`` once per candidate and keeps the best on validation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudguard.errors import ValidationError
from scoring.features import FEATURE_NAMES, N_FEATURES
from scoring.model import Thresholds
from trainer.calibrate import OperatingTargets, action_metrics, calibrate_thresholds
from trainer.periods import TimeSplit

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

Imbalance = Literal["weight", "downsample"]


@dataclass(frozen=True, slots=True)
class TrainingParams:
    """The knobs of one training run. Same data and params, same model (fixed seeds, deterministic mode).

    Imbalance: ``weight`` multiplies every fraud row's weight by ``scale_pos_weight``
    (default sqrt(legitimate / fraud) of the fit slice); ``downsample`` keeps every fraud row
    and a seeded ``negative_rate`` share of the legitimate ones. Which one wins is for the
    validation slice to say (``trainer.search``).
    """

    num_trees: int = 300  # cap; early stopping usually ends sooner
    num_leaves: int = 31
    learning_rate: float = 0.08
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 30
    imbalance: Imbalance = "weight"
    scale_pos_weight: float | None = None  # None: sqrt(legitimate / fraud) of the fit slice
    negative_rate: float = 0.25  # share of legitimate rows kept by "downsample"
    seed: int = 7
    num_threads: int = 1  # more threads is not faster on small data, and far slower on a busy machine

    def __post_init__(self) -> None:
        if self.num_trees < 1 or self.num_leaves < 2 or self.early_stopping_rounds < 1 or self.min_data_in_leaf < 1:
            raise ValidationError("params", "need num_trees >= 1, num_leaves >= 2, early_stopping_rounds >= 1, "
                                  "min_data_in_leaf >= 1")  # fmt: skip
        if not (0 < self.learning_rate <= 1 and 0 < self.feature_fraction <= 1 and 0 < self.bagging_fraction <= 1):
            raise ValidationError("params", "learning_rate, feature_fraction and bagging_fraction must be in (0, 1]")
        if self.imbalance not in ("weight", "downsample"):
            raise ValidationError("imbalance", f"must be 'weight' or 'downsample', got {self.imbalance!r}")
        if self.scale_pos_weight is not None and not self.scale_pos_weight > 0:
            raise ValidationError("scale_pos_weight", f"must be > 0, got {self.scale_pos_weight}")
        if not 0 < self.negative_rate <= 1:
            raise ValidationError("negative_rate", f"must be in (0, 1], got {self.negative_rate}")
        if self.num_threads < 1:
            raise ValidationError("num_threads", f"must be at least 1, got {self.num_threads}")

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

    def describe(self) -> dict[str, object]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True, eq=False)
class TrainingResult:
    """A trained booster (trees up to the best validation iteration), its thresholds and its metrics."""

    booster: lgb.Booster
    params: TrainingParams
    split: TimeSplit
    thresholds: Thresholds
    # auc, average_precision, <band>_rate/_recall/_precision on test; valid_auc, valid_average_precision; sizes
    metrics: Mapping[str, float]

    @property
    def valid_average_precision(self) -> float:
        return self.metrics["valid_average_precision"]


def train_model(x: F32, y: B, split: TimeSplit, params: TrainingParams | None = None,
                targets: OperatingTargets | None = None) -> TrainingResult:  # fmt: skip
    """Fit on ``split.train``, stop early on ``split.valid``, set thresholds on validation, evaluate on test."""
    p = params or TrainingParams()
    if x.ndim != 2 or x.shape[1] != N_FEATURES or len(x) != len(y):
        raise ValidationError("features", f"expected [n, {N_FEATURES}] features and n labels, got {list(x.shape)} "
                              f"and {len(y)} labels")  # fmt: skip
    y = np.asarray(y, np.bool_)
    for name, rows in (("training", split.train), ("validation", split.valid), ("test", split.test)):
        fraud = int(y[rows].sum())
        if fraud == 0 or fraud == len(y[rows]):
            raise ValidationError("training data", f"the {name} slice ({len(y[rows])} rows) needs both fraud "
                                  "and legitimate payments; use more data, other periods or a higher fraud rate")
    booster = _fit(x, y, split, p)
    p_valid, p_test = predict(booster, x[split.valid]), predict(booster, x[split.test])
    thresholds = calibrate_thresholds(y[split.valid], p_valid, targets)
    metrics = {
        **ranking(y[split.test], p_test),
        **{f"valid_{k}": v for k, v in ranking(y[split.valid], p_valid).items()},
        **action_metrics(y[split.test], p_test, thresholds),
        "n_train": float(len(y[split.train])),
        "n_valid": float(len(y[split.valid])),
        "n_test": float(len(y[split.test])),
        "fraud_rate": float(y[split.train.start:split.valid.stop].mean()),
        "n_trees": float(booster.num_trees()),
    }
    return TrainingResult(booster, p, split, thresholds, MappingProxyType(metrics))


def predict(booster: lgb.Booster, x: F32) -> F64:
    """P(fraud) per row of ``x``, from the booster itself (not its ONNX export)."""
    return np.asarray(booster.predict(x), np.float64)


def ranking(y: B, p: F64) -> dict[str, float]:
    return {"auc": float(roc_auc_score(y, p)), "average_precision": float(average_precision_score(y, p))}


def _fit(x: F32, y: B, split: TimeSplit, p: TrainingParams) -> lgb.Booster:
    rows = _fit_rows(y, split.train, p)
    y_fit = y[rows]
    weight = 1.0 if p.imbalance == "downsample" else (
        p.scale_pos_weight or math.sqrt((len(y_fit) - y_fit.sum()) / y_fit.sum()))
    train = lgb.Dataset(x[rows], y_fit.astype(np.float32), feature_name=list(FEATURE_NAMES), free_raw_data=True)
    valid = lgb.Dataset(x[split.valid], y[split.valid].astype(np.float32), reference=train)
    booster = lgb.train(
        p.lightgbm(weight), train, num_boost_round=p.num_trees, valid_sets=[valid],
        callbacks=[lgb.early_stopping(p.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    best = booster.best_iteration or booster.current_iteration()
    # keep only the trees up to the best iteration: the exported model is exactly what was validated
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _fit_rows(y: B, train: slice, p: TrainingParams) -> slice | npt.NDArray[np.int64]:
    """The training rows, or for ``downsample`` every fraud row and a seeded share of the others (in time order)."""
    if p.imbalance == "weight" or p.negative_rate >= 1.0:
        return train
    rows = np.arange(train.start, train.stop, dtype=np.int64)
    keep = y[rows] | (np.random.default_rng([p.seed, 0xD0]).random(len(rows)) < p.negative_rate)
    return rows[keep]

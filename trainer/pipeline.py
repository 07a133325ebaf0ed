"""From payments to a model bundle: replay → mask → search → export + parity → calibrate → evaluate → write.

One function, ``train_bundle``, used by ``fraudguard train`` (any file, through a column
mapping) and by the demo bundle (synthetic data), so both make bundles the same way. The
bundle holds, beside the model (``scoring.model.write_bundle``), ``training.json`` — where the
data came from, the periods, which features were left out and why, every candidate tried
and the parity check — and the test period's evaluation report under ``report/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fraudguard.errors import ValidationError
from scoring.features import FEATURE_NAMES, SCHEMA_VERSION
from scoring.model import BundleManifest, ModelBundle, promote, trees_from_booster, write_bundle
from trainer.anomaly import ANOMALY_FILE, fit_anomaly
from trainer.calibrate import OperatingTargets
from trainer.export import ParityReport, check_parity, export_onnx
from trainer.fields import FeatureSelection
from trainer.holdout import evaluate_test_period
from trainer.payments import Payments
from trainer.periods import DAY_S, TimeSplit, TrainingPeriods
from trainer.replay import replay_features
from trainer.search import SearchBudget, SearchResult, search
from trainer.train import TrainingParams, TrainingResult, ranking

log = logging.getLogger("fraudguard.trainer")


@dataclass(frozen=True, slots=True, eq=False)
class TrainingSource:
    """Payments to train on and what is known about them."""

    payments: Payments
    provided: frozenset[str]  # the optional fields the source has (``trainer.files`` canonical names)
    description: str  # e.g. "data/payments.parquet" or "synthetic, seed 7"
    mapping: Mapping[str, str] = field(default_factory=dict)  # canonical field -> source column


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Everything about a training run but the data."""

    periods: TrainingPeriods = field(default_factory=TrainingPeriods)
    params: TrainingParams = field(default_factory=TrainingParams)  # the search's first candidate and its seed
    budget: SearchBudget = field(default_factory=SearchBudget)
    targets: OperatingTargets = field(default_factory=OperatingTargets)
    label_delay_s: float | None = None  # None: each payment's own label time (the source's or the import default)
    version: str | None = None  # None: "<prefix>-<utc time>-<data fingerprint>"
    version_prefix: str = "model"
    description: str = ""
    promote: bool = False
    progress: bool = False
    report: bool = True  # write the test period's evaluation report into the bundle
    anomaly: bool = False  # also fit an Isolation Forest anomaly score (``anomaly.onnx``)

    def __post_init__(self) -> None:
        if self.label_delay_s is not None and not self.label_delay_s >= 0:
            raise ValidationError("--label-delay", f"must be >= 0, got {self.label_delay_s}")


@dataclass(frozen=True, slots=True, eq=False)
class TrainOutcome:
    bundle: ModelBundle
    split: TimeSplit
    selection: FeatureSelection
    search: SearchResult
    parity: ParityReport
    seconds: Mapping[str, float]


def train_bundle(source: TrainingSource, models_dir: Path, config: TrainConfig | None = None) -> TrainOutcome:
    """Train on ``source`` and write (and optionally promote) a bundle in ``models_dir``.

    ``ValidationError`` for data that cannot make a model (no labels, empty periods, a
    period without fraud); ``BundleError`` if the export disagrees with the booster.
    """
    cfg = config or TrainConfig()
    laps = _Laps()
    if "label" not in source.provided:
        raise ValidationError("--map", "training needs labels: map a 'label' column (e.g. label=IS_FRAUD)")
    selection = FeatureSelection.for_fields(source.provided)
    split = cfg.periods.split(source.payments.event_time)
    payments = source.payments.take(slice(0, split.test.stop))  # later payments can change nothing used here
    x = selection.apply(replay_features(payments, label_delay_s=cfg.label_delay_s, progress=cfg.progress))
    y = payments.is_fraud
    laps.lap("replay")
    targets = cfg.targets.for_volume(_payments_per_day(payments.event_time, split.valid))
    found = search(x, y, split, cfg.params, cfg.budget, targets, cfg.progress)
    result = found.best
    laps.lap("search")
    onnx_model = export_onnx(result.booster)
    parity = check_parity(result.booster, onnx_model, x[split.valid], result.thresholds)
    laps.lap("export")
    test = evaluate_test_period(payments, x, result, onnx_model, with_report=cfg.report)
    laps.lap("evaluate")
    metrics = {**result.metrics, **test.scenario_metrics, "parity_max_abs_diff": parity.max_abs_diff}
    extras: dict[str, bytes] = {f"report/{name}": data for name, data in test.report_files.items()}
    if cfg.anomaly:
        anomaly = fit_anomaly(x[split.train.start:split.valid.stop], selection, cfg.params.seed)
        extras[ANOMALY_FILE] = anomaly.onnx_model
        metrics |= {f"anomaly_{k}": v for k, v in ranking(y[split.test], anomaly.score(x[split.test])).items()}
        metrics["anomaly_parity_max_abs_diff"] = anomaly.parity_max_abs_diff
        laps.lap("anomaly")
    manifest = _manifest(models_dir, source, cfg, result, metrics)
    record = _training_record(source, cfg, split, selection, found, targets, parity, laps.seconds)
    extras["training.json"] = record
    bundle = write_bundle(models_dir, manifest, onnx_model, trees_from_booster(result.booster),
                          result.booster.model_to_string(), extras)  # fmt: skip
    if cfg.promote:
        promote(models_dir, manifest.version)
    laps.lap("write")
    log.info("model bundle written", extra={
        "model_version": manifest.version, "promoted": cfg.promote, "auc": round(metrics["auc"], 4),
        "average_precision": round(metrics["average_precision"], 4), **laps.seconds,
    })  # fmt: skip
    return TrainOutcome(bundle, split, selection, found, parity, dict(laps.seconds))


def _manifest(models_dir: Path, source: TrainingSource, cfg: TrainConfig, result: TrainingResult,
              metrics: Mapping[str, float]) -> BundleManifest:  # fmt: skip
    created = datetime.now(UTC)
    fingerprint = source.payments.fingerprint()
    default = f"{cfg.version_prefix}-{created:%Y%m%d-%H%M%S}-{fingerprint[:8]}"
    version = cfg.version or _free_version(models_dir, default)
    summary = (f"{len(source.payments)} payments from {source.description}, {result.booster.num_trees()} trees; "
               f"test AUC {metrics['auc']:.4f}, AP {metrics['average_precision']:.4f}")  # fmt: skip
    return BundleManifest(
        version=version, created_at=created, schema_version=SCHEMA_VERSION, feature_names=FEATURE_NAMES,
        thresholds=result.thresholds, metrics=metrics, training_data_fingerprint=fingerprint,
        description=f"{cfg.description}: {summary}" if cfg.description else summary,
    )


def _training_record(source: TrainingSource, cfg: TrainConfig, split: TimeSplit, selection: FeatureSelection,
                     found: SearchResult, targets: OperatingTargets, parity: ParityReport,
                     seconds: Mapping[str, float]) -> bytes:  # fmt: skip
    record = {
        "source": source.description,
        "mapping": dict(source.mapping),
        "provided_fields": sorted(source.provided),
        "rows": len(source.payments),
        "periods": split.describe(),
        "gap_s": cfg.periods.gap_s,
        "label_delay_s": cfg.label_delay_s,
        "features": selection.to_dict(),
        "search": {"stopped_by": found.stopped_by, "budget": {"max_trials": cfg.budget.max_trials,
                                                                "seconds": cfg.budget.seconds},
                   "chosen": found.best.params.describe(), "trials": [t.describe() for t in found.trials]},
        "operating_targets": dataclasses.asdict(targets),
        "parity": {"rows": parity.rows, "max_abs_diff": parity.max_abs_diff, "actions_changed": parity.actions_changed},
        "seconds": dict(seconds),
    }  # fmt: skip
    return (json.dumps(record, indent=2, allow_nan=False, default=str) + "\n").encode()


def _payments_per_day(event_time: npt.NDArray[np.int64], rows: slice) -> float:
    """Payments a day in ``rows`` (at least a day's span is assumed, so a short slice does not inflate it)."""
    t = event_time[rows]
    days = max((float(t[-1]) - float(t[0])) / DAY_S, 1.0) if len(t) else 1.0
    return len(t) / days


def _free_version(models_dir: Path, version: str) -> str:
    """``version``, or ``version-2``, ``-3``… if a bundle of that name exists already."""
    candidate, k = version, 1
    while (models_dir / candidate).exists():
        k += 1
        candidate = f"{version}-{k}"
    return candidate


class _Laps:
    """Seconds spent in each stage, for the log and the training record."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[f"{stage}_s"] = round(now - self._last, 2)
        self._last = now


"""The demo bundle: synthetic payments → replayed features → LightGBM → ONNX (+ parity) → thresholds → promoted.

Small enough to build in seconds on a laptop (``make run`` builds it on a new machine and
the test suite builds one per session), big enough that every fraud scenario is learnt.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from scoring.features import FEATURE_NAMES, SCHEMA_VERSION
from scoring.model import BundleManifest, ModelBundle, promote, trees_from_booster, write_bundle
from trainer.calibrate import action_bands
from trainer.export import check_parity, export_onnx
from trainer.replay import replay_features
from trainer.synthetic import FraudType, SyntheticConfig, SyntheticPayments, generate_payments
from trainer.train import TrainingParams, TrainingResult, predict, train_model

log = logging.getLogger("fraudguard.trainer")

DEMO_TRANSACTIONS = 60_000
DEMO_DAYS = 45


def build_demo_bundle(
    models_dir: Path, seed: int = 7, n_transactions: int = DEMO_TRANSACTIONS, progress: bool = False,
) -> ModelBundle:
    """Generate, replay, train, export, check, calibrate; write the bundle into ``models_dir`` and promote it.

    ``BundleError`` if the ONNX export disagrees with the booster or the bundle cannot be written.
    """
    laps = _Laps()
    payments = generate_payments(SyntheticConfig(n_transactions=n_transactions, seed=seed, days=DEMO_DAYS))
    laps.lap("generate")
    x = replay_features(payments, progress=progress)
    laps.lap("replay")
    result = train_model(x, payments.is_fraud, payments.event_time, TrainingParams(seed=seed))
    laps.lap("train")
    onnx_model = export_onnx(result.booster)
    parity = check_parity(result.booster, onnx_model, x[result.split.valid], result.thresholds)
    laps.lap("export")
    metrics = {**result.metrics, **_scenario_recall(payments, x, result), "parity_max_abs_diff": parity.max_abs_diff}
    manifest = _manifest(models_dir, payments, seed, result, metrics)
    bundle = write_bundle(models_dir, manifest, onnx_model, trees_from_booster(result.booster),
                          result.booster.model_to_string())  # fmt: skip
    promote(models_dir, manifest.version)
    laps.lap("write")
    log.info("demo model bundle built and promoted", extra={
        "model_version": manifest.version, "auc": round(metrics["auc"], 4),
        "average_precision": round(metrics["average_precision"], 4), **laps.seconds,
    })  # fmt: skip
    return bundle


def _manifest(models_dir: Path, payments: SyntheticPayments, seed: int, result: TrainingResult,
              metrics: dict[str, float]) -> BundleManifest:  # fmt: skip
    created = datetime.now(UTC)
    fingerprint = payments.fingerprint()
    return BundleManifest(
        version=_free_version(models_dir, f"demo-{created:%Y%m%d-%H%M%S}-{fingerprint[:8]}"),
        created_at=created,
        schema_version=SCHEMA_VERSION,
        feature_names=FEATURE_NAMES,
        thresholds=result.thresholds,
        metrics=metrics,
        training_data_fingerprint=fingerprint,
        description=(f"demo model: {len(payments)} synthetic payments over {DEMO_DAYS} days (seed {seed}), "
                     f"{result.booster.num_trees()} trees; test AUC {metrics['auc']:.4f}, "
                     f"AP {metrics['average_precision']:.4f}"),
    )  # fmt: skip


class _Laps:
    """Seconds spent in each stage, for the log."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[f"{stage}_s"] = round(now - self._last, 2)
        self._last = now


def _scenario_recall(
    payments: SyntheticPayments, x: npt.NDArray[np.float32], result: TrainingResult,
) -> dict[str, float]:
    """Per fraud scenario present in the test period: the share sent to review or block."""
    test = result.split.test
    kinds = payments.fraud_type[test]
    bands = action_bands(predict(result.booster, x[test]), result.thresholds)
    out: dict[str, float] = {}
    for kind in FraudType:
        rows = kinds == kind
        if kind is not FraudType.NONE and rows.any():
            out[f"review_recall_{kind.name.lower()}"] = float((bands[rows] >= 2).mean())
    return out


def _free_version(models_dir: Path, version: str) -> str:
    """``version``, or ``version-2``, ``-3``… if a bundle of that name exists already."""
    candidate, k = version, 1
    while (models_dir / candidate).exists():
        k += 1
        candidate = f"{version}-{k}"
    return candidate

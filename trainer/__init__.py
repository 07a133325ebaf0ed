"""The trainer: synthetic data, point-in-time feature replay, training, ONNX export, thresholds, bundles.

Names are re-exported lazily, so that ``fraudguard models list`` does not pay for importing
LightGBM and the ONNX converters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.calibrate import OperatingTargets, action_bands, action_metrics, calibrate_thresholds
    from trainer.demo import build_demo_bundle
    from trainer.evaluation import Evaluation, EvaluationInput, evaluate
    from trainer.export import ParityReport, check_parity, export_onnx
    from trainer.files import ColumnMapping, ImportedPayments, ImportOptions, read_payments, write_payments
    from trainer.payments import Payments
    from trainer.periods import TimeSplit, TrainingPeriods
    from trainer.pipeline import TrainConfig, TrainingSource, TrainOutcome, train_bundle
    from trainer.replay import batch_from_payments, capacity_for, replay_features
    from trainer.synthetic import FraudType, ScenarioMix, SyntheticConfig, generate_payments
    from trainer.train import TrainingParams, TrainingResult, train_model

_EXPORTS = {
    "trainer.calibrate": ("OperatingTargets", "action_bands", "action_metrics", "calibrate_thresholds"),
    "trainer.demo": ("build_demo_bundle",),
    "trainer.evaluation": ("Evaluation", "EvaluationInput", "evaluate"),
    "trainer.export": ("ParityReport", "check_parity", "export_onnx"),
    "trainer.files": ("ColumnMapping", "ImportOptions", "ImportedPayments", "read_payments", "write_payments"),
    "trainer.pipeline": ("TrainConfig", "TrainOutcome", "TrainingSource", "train_bundle"),
    "trainer.replay": ("batch_from_payments", "capacity_for", "replay_features"),
    "trainer.payments": ("Payments",),
    "trainer.synthetic": ("FraudType", "ScenarioMix", "SyntheticConfig", "generate_payments"),
    "trainer.periods": ("TimeSplit", "TrainingPeriods"),
    "trainer.train": ("TrainingParams", "TrainingResult", "train_model"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "ColumnMapping",
    "Evaluation",
    "EvaluationInput",
    "FraudType",
    "ImportOptions",
    "ImportedPayments",
    "OperatingTargets",
    "ParityReport",
    "Payments",
    "ScenarioMix",
    "SyntheticConfig",
    "TimeSplit",
    "TrainConfig",
    "TrainOutcome",
    "TrainingParams",
    "TrainingPeriods",
    "TrainingResult",
    "TrainingSource",
    "action_bands",
    "action_metrics",
    "batch_from_payments",
    "build_demo_bundle",
    "calibrate_thresholds",
    "capacity_for",
    "check_parity",
    "evaluate",
    "export_onnx",
    "generate_payments",
    "read_payments",
    "replay_features",
    "train_bundle",
    "train_model",
    "write_payments",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

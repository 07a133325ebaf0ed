"""Scores of a period evaluated the way ``fraudguard evaluate`` does, for the training run's test period too.

``evaluation_input`` turns payments, their scores and a bundle's thresholds into what
``trainer.evaluation`` measures (segments: merchant country, channel; amount bands are
added there). ``evaluate_test_period`` scores the test period with the exported ONNX model
— what the server will run — and renders the report into bytes for the bundle.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fraudguard.currencies import MINOR_UNIT
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from scoring.features import FEATURE_NAMES
from scoring.model import Thresholds
from trainer.evaluation import Evaluation, EvaluationInput, evaluate
from trainer.export import onnx_probabilities
from trainer.payments import Payments, per_unique
from trainer.report import write_report
from trainer.train import TrainingResult

_CHANNEL_NAMES = {value: name.removeprefix("CHANNEL_").lower() for name, value in pb.Channel.items()}


@dataclass(frozen=True, slots=True)
class HoldoutEvaluation:
    evaluation: Evaluation
    scenario_metrics: Mapping[str, float]  # review_recall_<scenario>, for the manifest
    report_files: Mapping[str, bytes]  # file name -> contents; empty when no report was asked for


def evaluation_input(payments: Payments, scores: npt.NDArray[np.float64], thresholds: Thresholds,
                     labelled: bool) -> EvaluationInput:  # fmt: skip
    """``payments`` (already cut to the period) with their ``scores``, as ``trainer.evaluation`` takes them."""
    unit = per_unique(payments.currency, lambda c: MINOR_UNIT.get(c, 1.0), np.float64)
    country = np.where(payments.merchant_country == "", "unknown", payments.merchant_country)
    channel = per_unique(payments.channel, lambda c: _CHANNEL_NAMES.get(int(c), str(c)), np.str_)
    return EvaluationInput(
        transaction_id=payments.transaction_id, event_time=payments.event_time, score=scores,
        is_fraud=payments.is_fraud, card=payments.card_token, amount=payments.amount_minor * unit,
        currency=payments.currency, scenario=payments.scenario,
        segments={"merchant_country": country.astype(np.str_), "channel": channel}, thresholds=thresholds,
        labelled=labelled,
    )


def evaluate_test_period(payments: Payments, x: npt.NDArray[np.float32], result: TrainingResult, onnx_model: bytes,
                         with_report: bool) -> HoldoutEvaluation:  # fmt: skip
    """Score ``result.split.test`` with ``onnx_model``, measure it, and (``with_report``) render the report."""
    rows = result.split.test
    data = evaluation_input(payments.take(rows), onnx_probabilities(onnx_model, x[rows]), result.thresholds, True)
    evaluation = evaluate(data)
    recall = {f"review_recall_{r.scenario}": r.recall_review_or_block for r in evaluation.scenarios}
    files: dict[str, bytes] = {}
    if with_report:
        importance = dict(zip(FEATURE_NAMES, result.booster.feature_importance("gain").tolist(), strict=True))
        files = render_report(evaluation, data, importance, "Test period of the training run")
    return HoldoutEvaluation(evaluation, recall, files)


def render_report(evaluation: Evaluation, data: EvaluationInput, importance: Mapping[str, float] | None,
                  title: str) -> dict[str, bytes]:  # fmt: skip
    """The report's files as bytes (written to a scratch directory and read back)."""
    with tempfile.TemporaryDirectory(prefix="fraudguard-report-") as scratch:
        folder = Path(scratch)
        write_report(evaluation, data, folder, importance, title)
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


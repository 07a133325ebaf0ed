"""LightGBM → ONNX, and the parity check that the exported model decides as the booster does."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnxmltools
import onnxruntime as ort
from onnxmltools.convert.common.data_types import FloatTensorType

from fraudguard.errors import BundleError
from scoring.model import Thresholds
from trainer.calibrate import action_bands
from trainer.train import predict

INPUT_NAME = "features"
PROBABILITY_OUTPUT = "probabilities"
# The highest opset onnxmltools' LightGBM converter supports; onnxruntime 1.32 runs it (and everything newer).
TARGET_OPSET = 15
MAX_PROBABILITY_DIFF = 1e-4


@dataclass(frozen=True, slots=True)
class ParityReport:
    """How the ONNX model compared with the booster on a validation sample."""

    rows: int
    max_abs_diff: float
    actions_changed: int


def export_onnx(booster: lgb.Booster) -> bytes:
    """The booster as a serialised ONNX model: input ``features`` float [n, F], output ``probabilities`` [n, 2]."""
    n_features = booster.num_feature()
    try:
        model = onnxmltools.convert_lightgbm(
            booster, name="fraudguard", initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            zipmap=False, target_opset=TARGET_OPSET,
        )
    except Exception as exc:  # the converter raises assorted types (RuntimeError, KeyError, ...)
        raise BundleError(f"cannot export the LightGBM model to ONNX: {exc}") from exc
    data: bytes = model.SerializeToString()
    return data


def onnx_probabilities(onnx_model: bytes, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """P(fraud) from the ONNX model, as onnxruntime computes it in the scorer."""
    try:
        session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
        out = session.run([PROBABILITY_OUTPUT], {INPUT_NAME: np.ascontiguousarray(x, np.float32)})[0]
    except Exception as exc:  # onnxruntime has its own exception types for invalid models and inputs
        raise BundleError(f"cannot run the ONNX model: {exc}") from exc
    return np.asarray(out[:, 1], np.float64)


def check_parity(
    booster: lgb.Booster, onnx_model: bytes, x_valid: npt.NDArray[np.float32], thresholds: Thresholds,
) -> ParityReport:
    """Compare the ONNX model with the booster on ``x_valid``; ``BundleError`` if any probability differs by
    more than ``MAX_PROBABILITY_DIFF`` or any payment would get another action."""
    if len(x_valid) == 0:
        raise BundleError("parity check needs at least one validation row")
    p_booster = predict(booster, x_valid)
    p_onnx = onnx_probabilities(onnx_model, x_valid)
    diff = np.abs(p_onnx - p_booster)
    worst = int(np.argmax(diff))
    changed = action_bands(p_onnx, thresholds) != action_bands(p_booster, thresholds)
    report = ParityReport(len(x_valid), float(diff[worst]), int(np.count_nonzero(changed)))
    if report.max_abs_diff > MAX_PROBABILITY_DIFF or report.actions_changed:
        raise BundleError(
            f"the ONNX model disagrees with the booster on {report.rows} validation rows: max |p_onnx - p_lgb| = "
            f"{report.max_abs_diff:.3g} (row {worst}: {p_onnx[worst]:.6f} vs {p_booster[worst]:.6f}, limit "
            f"{MAX_PROBABILITY_DIFF:g}); {report.actions_changed} actions changed"
        )
    return report

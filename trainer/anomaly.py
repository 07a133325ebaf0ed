"""An optional Isolation Forest anomaly score: a second, label-free view of the same features.

Fraud that nobody has labelled yet — a new pattern — can still look unlike everything
else. ``fit_anomaly`` fits scikit-learn's ``IsolationForest`` on the training period's
features (no labels involved), ``export_anomaly`` converts it with skl2onnx, and the parity
check holds the ONNX model to the forest within ``MAX_SCORE_DIFF``. The score is the
original paper's ``s = 2^(-E[h(x)] / c(psi)) in (0, 1]``: near 1 is anomalous, near 0.5 and
below is ordinary. The bundle carries it as ``anomaly.onnx`` with its test-period AUC and
average precision; the scoring server does not run it yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import IsolationForest

from fraudguard.errors import BundleError
from trainer.fields import FeatureSelection

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

ANOMALY_FILE = "anomaly.onnx"
INPUT_NAME = "features"
SCORES_OUTPUT = "scores"  # skl2onnx's name for decision_function = score_samples - offset_
MAX_SCORE_DIFF = 1e-4
_OPSETS = {"": 17, "ai.onnx.ml": 3}


@dataclass(frozen=True, slots=True, eq=False)
class AnomalyModel:
    forest: IsolationForest
    selection: FeatureSelection
    onnx_model: bytes
    parity_max_abs_diff: float

    def score(self, x: F32) -> F64:
        """The anomaly score in (0, 1] of each row, from the forest itself."""
        return np.asarray(-self.forest.score_samples(_inputs(x, self.selection)), np.float64)


def fit_anomaly(x_train: F32, selection: FeatureSelection, seed: int, max_rows: int = 250_000,
                n_trees: int = 100) -> AnomalyModel:  # fmt: skip
    """Fit on (a seeded sample of at most ``max_rows`` of) ``x_train``; export and check it."""
    rows = x_train
    if len(rows) > max_rows:
        pick = np.sort(np.random.default_rng([seed, 0x1F]).choice(len(rows), max_rows, replace=False))
        rows = rows[pick]
    inputs = _inputs(rows, selection)
    forest = IsolationForest(n_estimators=n_trees, max_samples=min(256, len(inputs)), random_state=seed)
    forest.fit(inputs)
    onnx_model = export_anomaly(forest, inputs.shape[1])
    sample = inputs[: min(len(inputs), 20_000)]
    diff = float(np.max(np.abs(onnx_anomaly_scores(onnx_model, forest, sample) + forest.score_samples(sample))))
    if not diff <= MAX_SCORE_DIFF:
        raise BundleError(f"the ONNX anomaly model disagrees with the forest by {diff:.3g} (limit {MAX_SCORE_DIFF:g})")
    return AnomalyModel(forest, selection, onnx_model, diff)


def export_anomaly(forest: IsolationForest, n_features: int) -> bytes:
    try:
        model = convert_sklearn(forest, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                                target_opset=_OPSETS)  # fmt: skip
    except Exception as exc:  # the converter raises assorted types
        raise BundleError(f"cannot export the Isolation Forest to ONNX: {exc}") from exc
    data: bytes = model.SerializeToString()
    return data


def onnx_anomaly_scores(onnx_model: bytes, forest: IsolationForest, inputs: F32) -> F64:
    """The anomaly score in (0, 1] from the ONNX model (``-(decision_function + offset_)``)."""
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    decision = session.run([SCORES_OUTPUT], {INPUT_NAME: np.ascontiguousarray(inputs, np.float32)})[0]
    return np.asarray(-(np.ravel(decision) + forest.offset_), np.float64)


def _inputs(x: F32, selection: FeatureSelection) -> F32:
    """Features the forest sees: excluded ones (NaN in training) as a constant 0, which it cannot split on."""
    return np.ascontiguousarray(np.where(selection.mask, np.nan_to_num(x, nan=0.0), 0.0), np.float32)

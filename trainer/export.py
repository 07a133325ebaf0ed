"""LightGBM → ONNX, and the parity check that the exported model decides as the booster does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import onnxruntime as ort
from onnxmltools.convert.common.data_types import FloatTensorType

from fraudguard.errors import BundleError
from scoring.model import Thresholds
from scoring.model.contributions import float32_at_most
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
    _exact_thresholds(model, booster)
    data: bytes = model.SerializeToString()
    return data


def _exact_thresholds(model: onnx.ModelProto, booster: lgb.Booster) -> None:
    """Give every split the float32 threshold that routes float32 features exactly as LightGBM's double does.

    LightGBM tests ``x <= t`` with a double ``t`` (often the midpoint of two feature values);
    the converter stores ``t`` rounded to the *nearest* float32, so a feature equal to a
    threshold rounded up goes left in ONNX and right in LightGBM — and takes another leaf.
    With millions of rows that happens (seen: 0.035 in probability at 1 M payments). The
    largest float32 not above ``t`` makes the two agree for every float32 input. The ONNX
    nodes are matched to LightGBM's by walking both trees from the root, true branch = left.
    """
    (node,) = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    attrs = {a.name: a for a in node.attribute}
    tree_ids, node_ids = list(attrs["nodes_treeids"].ints), list(attrs["nodes_nodeids"].ints)
    features, modes = list(attrs["nodes_featureids"].ints), list(attrs["nodes_modes"].strings)
    true_ids, false_ids = list(attrs["nodes_truenodeids"].ints), list(attrs["nodes_falsenodeids"].ints)
    at = {(tree, nid): i for i, (tree, nid) in enumerate(zip(tree_ids, node_ids, strict=True))}
    exact = np.array(attrs["nodes_values"].floats, np.float64)
    is_split = np.zeros(len(exact), np.bool_)
    branches = [i for i, mode in enumerate(modes) if mode != b"LEAF"]
    children = {(tree_ids[i], c) for i in branches for c in (true_ids[i], false_ids[i])}
    roots = {tree: nid for (tree, nid) in sorted(at, reverse=True) if (tree, nid) not in children}
    for tree, info in enumerate(booster.dump_model()["tree_info"]):
        stack: list[tuple[dict[str, Any], int]] = [(info["tree_structure"], roots.get(tree, 0))]
        while stack:
            split, nid = stack.pop()
            if "split_index" not in split:
                continue
            i = at.get((tree, nid))
            if i is None or modes[i] != b"BRANCH_LEQ" or features[i] != split["split_feature"] \
                    or split.get("decision_type") != "<=":
                raise BundleError(f"the ONNX trees do not match LightGBM's at tree {tree}, node {nid}")
            exact[i], is_split[i] = float(split["threshold"]), True
            stack += [(split["left_child"], true_ids[i]), (split["right_child"], false_ids[i])]
    values = np.where(is_split, float32_at_most(exact), exact.astype(np.float32))
    del attrs["nodes_values"].floats[:]
    attrs["nodes_values"].floats.extend(values.tolist())


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

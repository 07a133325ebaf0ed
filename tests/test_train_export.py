"""Training on replayed features, ONNX export with its parity check, threshold calibration."""

from __future__ import annotations

import dataclasses

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
import onnxmltools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnxmltools.convert.common.data_types import FloatTensorType

from fraudguard.errors import BundleError, ValidationError
from scoring.decision import decide
from scoring.model import Thresholds
from trainer.calibrate import OperatingTargets, action_bands, action_metrics, calibrate_thresholds
from trainer.export import MAX_PROBABILITY_DIFF, check_parity, export_onnx, onnx_probabilities
from trainer.payments import Payments
from trainer.periods import TrainingPeriods
from trainer.replay import replay_features
from trainer.synthetic import SyntheticConfig, generate_payments
from trainer.train import TrainingParams, TrainingResult, predict, train_model

PARAMS = TrainingParams(num_trees=60, seed=3)
PERIODS = TrainingPeriods(validation_fraction=0.18, test_fraction=0.15)


@dataclasses.dataclass(frozen=True)
class Trained:
    payments: Payments
    x: npt.NDArray[np.float32]
    result: TrainingResult
    onnx_model: bytes

    @property
    def x_valid(self) -> npt.NDArray[np.float32]:
        return self.x[self.result.split.valid]


@pytest.fixture(scope="module")
def trained() -> Trained:
    payments = generate_payments(SyntheticConfig(n_transactions=20_000, seed=3, days=30))
    x = replay_features(payments)
    result = train_model(x, payments.is_fraud, PERIODS.split(payments.event_time), PARAMS)
    return Trained(payments, x, result, export_onnx(result.booster))


def test_split_is_by_time_after_the_warm_up(trained: Trained) -> None:
    t = trained.payments.event_time
    split = trained.result.split
    assert t[split.train.start] >= t[0] + PERIODS.warmup_s
    assert t[split.train.start - 1] < t[0] + PERIODS.warmup_s
    assert t[split.train.stop - 1] < t[split.valid.start] and split.train.stop == split.valid.start
    assert t[split.valid.stop - 1] < t[split.test.start] and split.test.stop == len(t)
    used = len(t) - split.train.start
    assert split.test.stop - split.test.start == pytest.approx(PERIODS.test_fraction * used, rel=0.05)


def test_the_model_separates_fraud(trained: Trained) -> None:
    m = trained.result.metrics
    assert m["auc"] > 0.9 and m["average_precision"] > 0.5  # the data has friendly fraud and look-alikes
    assert m["n_train"] > m["n_valid"] > 0 and m["n_test"] > 0
    assert 0.0 < m["fraud_rate"] < 0.05
    assert m["block_precision"] >= m["review_precision"] >= m["challenge_precision"]
    assert m["challenge_recall"] >= m["review_recall"] >= m["block_recall"] > 0
    assert trained.result.booster.num_trees() == m["n_trees"] <= PARAMS.num_trees


def test_training_is_deterministic(trained: Trained) -> None:
    p = trained.payments
    again = train_model(trained.x, p.is_fraud, trained.result.split, PARAMS)
    assert again.booster.model_to_string() == trained.result.booster.model_to_string()
    assert again.thresholds == trained.result.thresholds


def test_training_refuses_a_slice_without_fraud(trained: Trained) -> None:
    p = trained.payments
    with pytest.raises(ValidationError, match="needs both fraud and legitimate"):
        train_model(trained.x, np.zeros(len(p), np.bool_), trained.result.split, PARAMS)


def test_onnx_export_agrees_with_the_booster(trained: Trained) -> None:
    report = check_parity(trained.result.booster, trained.onnx_model, trained.x_valid, trained.result.thresholds)
    assert report.rows == len(trained.x_valid)
    assert report.max_abs_diff <= MAX_PROBABILITY_DIFF and report.actions_changed == 0


def _with_shifted_thresholds(onnx_model: bytes) -> bytes:
    model = onnx.load_from_string(onnx_model)
    (trees,) = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    (values,) = [a for a in trees.attribute if a.name == "nodes_values"]
    shifted = [v * 1.5 + 1.0 for v in values.floats]
    del values.floats[:]
    values.floats.extend(shifted)
    return bytes(model.SerializeToString())


def test_a_corrupted_onnx_model_fails_the_parity_check(trained: Trained) -> None:
    corrupted = _with_shifted_thresholds(trained.onnx_model)
    with pytest.raises(BundleError, match=r"max \|p_onnx - p_lgb\| = "):
        check_parity(trained.result.booster, corrupted, trained.x_valid, trained.result.thresholds)


def test_a_changed_action_fails_the_parity_check_even_when_probabilities_are_close(trained: Trained) -> None:
    p_lgb = predict(trained.result.booster, trained.x_valid)
    p_onnx = onnx_probabilities(trained.onnx_model, trained.x_valid)
    i = int(np.argmax(np.abs(p_onnx - p_lgb)))
    assert p_onnx[i] != p_lgb[i]
    between = float((p_onnx[i] + p_lgb[i]) / 2)  # a threshold exactly between the two scores of one payment
    with pytest.raises(BundleError, match="1 actions changed"):
        check_parity(trained.result.booster, trained.onnx_model, trained.x_valid,
                     Thresholds(between, between, between))


def test_thresholds_meet_the_targets_on_validation(trained: Trained) -> None:
    y = trained.payments.is_fraud[trained.result.split.valid]
    p = predict(trained.result.booster, trained.x_valid)
    targets = OperatingTargets()
    t = calibrate_thresholds(y, p, targets)
    m = action_metrics(y, p, t)
    assert m["challenge_rate"] <= targets.challenge_rate and m["review_rate"] <= targets.review_rate
    assert m["block_rate"] <= targets.block_rate
    if m["block_rate"] > 0:
        assert m["block_precision"] >= targets.block_precision


@settings(max_examples=40, deadline=None)
@given(
    # a score of exactly 1.0 meets every threshold, which may be at most 1: leave it out of the rate checks
    st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.booleans()), min_size=1, max_size=200),
    st.floats(0.05, 1.0), st.floats(0.0, 0.2), st.floats(0.0, 0.2),
)
def test_thresholds_are_always_ordered(rows: list[tuple[float, bool]], precision: float, rate_a: float,
                                       rate_b: float) -> None:
    p = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    review, challenge = sorted((rate_a, rate_b))
    t = calibrate_thresholds(y, p, OperatingTargets(block_precision=precision, block_rate=review / 2,
                                                    review_rate=review, challenge_rate=challenge))
    assert 0.0 < t.challenge <= t.review <= t.block <= 1.0
    bands = action_bands(p, t)
    assert np.mean(bands >= 1) <= challenge + 1e-12 and np.mean(bands >= 2) <= review + 1e-12
    assert not np.isin(p, [t.challenge, t.review, t.block]).any()  # never exactly on a score


def test_action_bands_follow_the_scorers_decision() -> None:
    p = np.array([0.0, 0.1, 0.2, 0.29, 0.3, 0.5, 0.6, 0.89, 0.9, 1.0])
    t = Thresholds(0.2, 0.3, 0.9)
    edges = np.array([t.challenge, t.review, t.block])
    assert np.array_equal(action_bands(p, t), decide(p, edges) - 1)


def test_exported_thresholds_route_float32_features_exactly_as_lightgbm() -> None:
    """Features equal to adjacent float32 values put LightGBM's double thresholds between two float32s; rounded to
    the nearest float32 (as the converter does) half of them would send a payment to the other leaf."""
    rng = np.random.default_rng(0)
    base = np.float32(1_000.0) * rng.integers(1, 400, 4000).astype(np.float32)
    x = np.stack([base, np.nextafter(base, np.float32(np.inf)), rng.random(4000).astype(np.float32)], axis=1)
    x[::2, 0] = x[::2, 1]  # every other row: the next float32 up
    y = (x[:, 0] > base) ^ (rng.random(4000) < 0.05)
    params = {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 5, "seed": 1, "deterministic": True,
              "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y.astype(np.float32)), 30)
    naive = onnxmltools.convert_lightgbm(booster, initial_types=[("features", FloatTensorType([None, 3]))],
                                         zipmap=False, target_opset=15).SerializeToString()  # fmt: skip
    p_lgb = predict(booster, x)
    assert np.max(np.abs(onnx_probabilities(naive, x) - p_lgb)) > 1e-3  # the converter alone gets it wrong
    assert np.max(np.abs(onnx_probabilities(export_onnx(booster), x) - p_lgb)) < 1e-6

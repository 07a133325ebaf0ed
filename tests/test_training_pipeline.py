"""The training pipeline: no leakage across time, a reproducible search, features left out when fields are missing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from fraudguard.errors import ValidationError
from scoring.features import FEATURE_NAMES
from scoring.model import load_bundle, promoted_version
from scoring.model.bundle import BOOSTER_FILE
from trainer.fields import ALL_OPTIONAL_FIELDS, FeatureSelection
from trainer.payments import Payments
from trainer.periods import DAY_S, TrainingPeriods
from trainer.pipeline import TrainConfig, TrainingSource, train_bundle
from trainer.replay import replay_features
from trainer.search import SearchBudget, search
from trainer.synthetic import SyntheticConfig, generate_payments
from trainer.train import TrainingParams

SMALL = TrainingParams(num_trees=40, seed=3)
ALL_FIELDS = ALL_OPTIONAL_FIELDS | {"label"}


@pytest.fixture(scope="module")
def payments() -> Payments:
    return generate_payments(SyntheticConfig(n_transactions=16_000, seed=3, days=28))


@pytest.fixture(scope="module")
def features(payments: Payments) -> np.ndarray:
    return replay_features(payments)


def _periods(p: Payments) -> TrainingPeriods:
    t0 = float(p.event_time[0])
    return TrainingPeriods(train_from=t0 + 3 * DAY_S, train_to=t0 + 19 * DAY_S, gap_s=DAY_S, test_to=t0 + 26 * DAY_S)


def _config(p: Payments, **changes: object) -> TrainConfig:
    base = TrainConfig(periods=_periods(p), params=SMALL, budget=SearchBudget(max_trials=1), report=False)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# --- leakage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut_day", [6, 13, 19])
def test_no_future_payment_or_label_reaches_a_feature(payments: Payments, features: np.ndarray, cut_day: int) -> None:
    """The features of every payment before a cut are the same when everything after the cut (payments and
    labels arriving later) does not exist."""
    cut = float(payments.event_time[0]) + cut_day * DAY_S
    before = int(np.searchsorted(payments.event_time, cut, side="left"))
    past = payments.take(slice(0, before))
    past = dataclasses.replace(past, label_time=np.where(past.label_time < cut, past.label_time, np.inf))
    assert np.array_equal(replay_features(past), features[:before], equal_nan=True)


def test_the_leakage_check_would_see_labels_that_arrive_too_early(payments: Payments, features: np.ndarray) -> None:
    """The check above can fail: labels known at once change the label-derived features."""
    leaky = replay_features(payments, label_delay_s=0.0)
    rates = [FEATURE_NAMES.index("merchant_fraud_rate"), FEATURE_NAMES.index("device_fraud_rate")]
    assert not np.array_equal(leaky[:, rates], features[:, rates])


def _model_text(bundle_dir: Path) -> str:
    return (bundle_dir / BOOSTER_FILE).read_text()


def test_the_model_is_blind_to_the_test_period_and_the_future(payments: Payments, tmp_path: Path) -> None:
    """Payments after the test period and every label in the test period may change metrics, never the model."""
    t0 = float(payments.event_time[0])
    base = train_bundle(TrainingSource(payments, ALL_FIELDS, "synthetic"), tmp_path / "a", _config(payments))
    test_rows = (payments.event_time >= t0 + 20 * DAY_S)
    flipped = dataclasses.replace(payments, is_fraud=np.where(test_rows, ~payments.is_fraud, payments.is_fraud))
    other = train_bundle(TrainingSource(flipped, ALL_FIELDS, "synthetic"), tmp_path / "b", _config(payments))
    assert _model_text(base.bundle.path) == _model_text(other.bundle.path)
    assert base.bundle.manifest.thresholds == other.bundle.manifest.thresholds
    assert base.bundle.manifest.metrics["auc"] != other.bundle.manifest.metrics["auc"]


# --- search -------------------------------------------------------------------------------------


def test_search_is_reproducible_and_keeps_the_best(payments: Payments, features: np.ndarray) -> None:
    split = _periods(payments).split(payments.event_time)
    x, y = features, payments.is_fraud
    first = search(x, y, split, SMALL, SearchBudget(max_trials=4))
    again = search(x, y, split, SMALL, SearchBudget(max_trials=4))
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert first.best.booster.model_to_string() == again.best.booster.model_to_string()
    assert first.trials[0].params == SMALL and len({t.params for t in first.trials}) == 4
    assert first.best.valid_average_precision == max(t.valid_average_precision for t in first.trials)
    assert first.stopped_by == "max_trials"


def test_search_stops_on_the_time_budget(payments: Payments, features: np.ndarray) -> None:
    ticks: Iterator[float] = iter(np.arange(0.0, 1e6, 10.0).tolist())  # every clock read: 10 s later
    split = _periods(payments).split(payments.event_time)
    found = search(features, payments.is_fraud, split, SMALL, SearchBudget(max_trials=8, seconds=45.0),
                   clock=lambda: next(ticks))  # fmt: skip
    assert found.stopped_by == "time_budget" and 1 <= len(found.trials) < 8


def test_downsampling_keeps_every_fraud_and_is_seeded(payments: Payments, features: np.ndarray) -> None:
    split = _periods(payments).split(payments.event_time)
    params = dataclasses.replace(SMALL, imbalance="downsample", negative_rate=0.3)
    a = search(features, payments.is_fraud, split, params, SearchBudget(max_trials=1)).best
    b = search(features, payments.is_fraud, split, params, SearchBudget(max_trials=1)).best
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.metrics["auc"] > 0.9


# --- fields -------------------------------------------------------------------------------------


def test_features_needing_missing_fields_are_left_out(payments: Payments, tmp_path: Path) -> None:
    provided = frozenset({"merchant", "label"})
    selection = FeatureSelection.for_fields(provided)
    assert "merchant_count_1h" in selection.used and "amount" in selection.used
    for gone in ("device_count_1h", "geo_speed_kmh", "customer_amount_24h", "ip_count_24h", "card_new_device",
                 "device_fraud_rate", "mcc", "channel"):
        assert gone in selection.excluded, gone
    assert selection.excluded["geo_speed_kmh"] == ("latitude", "longitude")
    outcome = train_bundle(TrainingSource(payments, provided, "only merchant"), tmp_path, _config(payments))
    booster = lgb.Booster(model_str=outcome.search.best.booster.model_to_string())
    gain = dict(zip(booster.feature_name(), booster.feature_importance("gain").tolist(), strict=True))
    assert all(gain[name] == 0 for name in selection.excluded)
    assert sum(gain[name] for name in selection.used) > 0
    record = json.loads((outcome.bundle.path / "training.json").read_text())
    assert record["features"]["excluded"]["device_count_1h"] == ["device"]
    assert outcome.bundle.manifest.metrics["auc"] > 0.8  # card and merchant velocity alone still see fraud


def test_training_needs_labels(payments: Payments, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="label"):
        train_bundle(TrainingSource(payments, frozenset({"merchant"}), "no labels"), tmp_path, _config(payments))


# --- the bundle ---------------------------------------------------------------------------------


def test_the_bundle_records_how_it_was_made_and_can_be_promoted(payments: Payments, tmp_path: Path) -> None:
    config = _config(payments, promote=True, version="m-1", budget=SearchBudget(max_trials=2), report=True)
    outcome = train_bundle(TrainingSource(payments, ALL_FIELDS, "synthetic", {"card": "CARD"}), tmp_path, config)
    bundle = load_bundle(tmp_path / "m-1")
    assert promoted_version(tmp_path) == "m-1" and bundle.manifest == outcome.bundle.manifest
    record = json.loads((bundle.path / "training.json").read_text())
    assert record["mapping"] == {"card": "CARD"} and record["source"] == "synthetic"
    assert len(record["search"]["trials"]) == 2 and record["parity"]["actions_changed"] == 0
    assert record["periods"]["train_from"].endswith("Z") and record["gap_s"] == DAY_S
    assert (bundle.path / "report" / "report.html").is_file()
    assert (bundle.path / "report" / "precision_recall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = bundle.manifest.metrics
    assert m["auc"] > 0.9 and "review_recall_account_takeover" in m


def test_the_optional_anomaly_score_is_exported_and_sees_fraud(payments: Payments, tmp_path: Path) -> None:
    outcome = train_bundle(TrainingSource(payments, ALL_FIELDS, "synthetic"), tmp_path,
                           _config(payments, anomaly=True))  # fmt: skip
    m = outcome.bundle.manifest.metrics
    assert (outcome.bundle.path / "anomaly.onnx").stat().st_size > 1000
    assert m["anomaly_parity_max_abs_diff"] <= 1e-4
    assert 0.5 < m["anomaly_auc"] < 1.0  # label-free, so weaker than the model, but better than chance

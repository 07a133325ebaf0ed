"""ModelRuntime against the LightGBM booster it came from: probabilities, contributions, reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from fraudguard.errors import BundleError
from scoring.features.schema import N_FEATURES
from scoring.model import ModelBundle, ModelRuntime, load_bundle, write_bundle
from scoring.model.contributions import ContributionKernel
from tests._model_helpers import make_bundle, make_manifest, onnx_bytes, random_features, train_booster, tree_arrays

# Boosters whose splits exercise every missing-value rule: NaN seen in training (missing_type NaN),
# no NaN in training (None: NaN is read as 0), use_missing=false (None), zero_as_missing (Zero).
BOOSTERS: dict[str, dict[str, Any]] = {
    "nan_missing": {},
    "no_nan_in_training": {"nan_rate": 0.0},
    "use_missing_false": {"use_missing": False},
    "zero_as_missing": {"zero_as_missing": True},
    "zero_as_missing_without_nan": {"nan_rate": 0.0, "zero_as_missing": True},
}
SERVABLE = ["nan_missing", "no_nan_in_training", "use_missing_false"]  # ONNX cannot express zero_as_missing


def _booster(name: str) -> lgb.Booster:
    return train_booster(n_trees=30, num_leaves=15, **BOOSTERS[name])


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelRuntime]:
    models_dir = tmp_path_factory.mktemp("models")
    return {name: ModelRuntime.load(make_bundle(models_dir, name, booster=_booster(name))) for name in SERVABLE}


@pytest.mark.parametrize("name", SERVABLE)
@pytest.mark.parametrize("n", [1, 256])
def test_onnx_probabilities_match_the_booster(runtimes: dict[str, ModelRuntime], name: str, n: int) -> None:
    x = random_features(n, seed=100 + n)
    p = runtimes[name].predict(x)
    assert p.shape == (n,) and p.dtype == np.float64
    np.testing.assert_allclose(p, _booster(name).predict(x), rtol=0, atol=1e-4)


def test_predict_accepts_other_layouts_and_refuses_wrong_widths(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["nan_missing"]
    x = random_features(64, seed=7)
    expected = runtime.predict(x)
    np.testing.assert_array_equal(runtime.predict(np.asfortranarray(x)), expected)
    np.testing.assert_array_equal(runtime.predict(x.astype(np.float64)), expected)
    with pytest.raises(ValueError, match=rf"shape \[n, {N_FEATURES}\]"):
        runtime.predict(x[:, :-1])
    with pytest.raises(ValueError, match=rf"shape \[n, {N_FEATURES}\]"):
        runtime.top_reasons(x[0], 3)


@pytest.mark.parametrize("name", list(BOOSTERS))
def test_contributions_sum_to_the_raw_score(name: str) -> None:
    booster = _booster(name)
    kernel = ContributionKernel.from_trees(tree_arrays(booster))
    x = random_features(2000, seed=3)
    x[:50] = 0.0  # whole rows of zeros, and of tiny values that LightGBM counts as zero
    x[50:100] = np.float32(1e-36)
    x[100:150] = np.nan
    contributions = kernel.contributions(x)
    assert contributions.shape == (2000, N_FEATURES)
    raw = booster.predict(x, raw_score=True)
    np.testing.assert_allclose(contributions.sum(axis=1) + kernel.expected_value, raw, rtol=0, atol=1e-4)
    assert np.ptp(raw) > 1.0  # the rows really do take different paths


def test_runtime_contributions_explain_its_own_scores(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["nan_missing"]
    x = random_features(300, seed=11)
    log_odds = runtime.contributions(x).sum(axis=1) + runtime.expected_value
    np.testing.assert_allclose(1.0 / (1.0 + np.exp(-log_odds)), runtime.predict(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("n", [1, 256])
@pytest.mark.parametrize("k", [1, 3, N_FEATURES])
def test_top_reasons_are_the_largest_contributions_in_order(runtimes: dict[str, ModelRuntime], n: int,
                                                            k: int) -> None:
    runtime = runtimes["nan_missing"]
    x = random_features(n, seed=20 + n)
    index, contribution = runtime.top_reasons(x, k)
    assert index.shape == contribution.shape == (n, k)
    assert index.dtype == np.int64 and contribution.dtype == np.float64
    full = runtime.contributions(x)
    # Strongest first, ties to the lower feature index: a stable sort of the negated contributions.
    expected = np.argsort(-full, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_array_equal(contribution, np.take_along_axis(full, expected, axis=1))
    assert np.all(np.diff(contribution, axis=1) <= 0)
    if k == N_FEATURES:  # every row has fewer positive contributions than k: the rest is filled, largest first
        assert np.all((contribution <= 0).any(axis=1))
        assert all(len(set(row)) == N_FEATURES for row in index.tolist())


def test_top_reasons_rank_a_feature_that_drives_the_score_first(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["nan_missing"]
    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    x[0, 0] = 4.0  # the label's main driver, far into fraud territory
    index, contribution = runtime.top_reasons(x, 3)
    assert index[0, 0] == 0 and contribution[0, 0] > 0


def test_top_reasons_k_bounds(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["nan_missing"]
    x = random_features(4, seed=1)
    index, contribution = runtime.top_reasons(x, 0)
    assert index.shape == contribution.shape == (4, 0)
    with pytest.raises(ValueError, match="k must be"):
        runtime.top_reasons(x, N_FEATURES + 1)


def test_load_refuses_a_corrupt_onnx_model(tmp_path: Path) -> None:
    booster = train_booster()
    bundle = write_bundle(tmp_path, make_manifest("v1"), b"\x08\x07 not a protobuf model", tree_arrays(booster))
    with pytest.raises(BundleError, match="cannot load ONNX model"):
        ModelRuntime.load(load_bundle(bundle.path))


def test_load_refuses_onnx_and_trees_of_different_widths(tmp_path: Path) -> None:
    narrow = train_booster(n_features=10)
    bundle = write_bundle(tmp_path, make_manifest("v1"), onnx_bytes(narrow), tree_arrays(train_booster()))
    with pytest.raises(BundleError, match=rf"expected \[n, {N_FEATURES}\]"):
        ModelRuntime.load(bundle)


def test_load_refuses_tampered_trees(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "v1")
    bundle.trees_path.write_bytes(b"not an npz")
    with pytest.raises(BundleError, match=r"trees\.npz"):
        ModelRuntime.load(bundle)


def test_threads_must_be_positive(tmp_path: Path) -> None:
    bundle: ModelBundle = make_bundle(tmp_path, "v1")
    with pytest.raises(ValueError, match="threads"):
        ModelRuntime.load(bundle, threads=0)

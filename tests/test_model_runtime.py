"""ModelRuntime against the LightGBM booster it came from: probabilities, contributions, reasons."""

from __future__ import annotations

import dataclasses
import gc
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudguard.errors import BundleError
from scoring.features import EngineCapacity, FeatureEngine
from scoring.features.batch import TransactionBatch
from scoring.features.keys import country_code, entity_key
from scoring.features.schema import N_FEATURES
from scoring.model import ActiveModel, ModelBundle, ModelRuntime, load_bundle, write_bundle
from scoring.model.contributions import ContributionKernel, _select_largest, float32_at_most
from scoring.model.registry import activate
from scoring.model.runtime import _scoring_graph, _session_options, _unchecked_run
from scoring.model.trees import LEAF
from scoring.scorer import Scorer
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


# --- the lockstep contribution kernels ---------------------------------------------------------------------------

BATCH_SIZES = [1, 2, 7, 8, 9, 31, 32, 33, 64, 257]


def _plain_walk(kernel: ContributionKernel) -> ContributionKernel:
    """The same trees through the plain (branchy, one row and tree at a time) walk: the reference."""
    return dataclasses.replace(kernel, lockstep=None)


def _adversarial_features(n: int, seed: int) -> npt.NDArray[np.float32]:
    """Random rows plus values sitting exactly on, just below and just above split thresholds (in float32),
    infinities and signed zeros: where a float32 comparison could part from LightGBM's double one."""
    x = random_features(n, seed=seed)
    rng = np.random.default_rng(seed)
    thresholds = tree_arrays(_booster("nan_missing")).threshold
    on = rng.choice(thresholds, size=x.shape).astype(np.float32)
    below = np.nextafter(on, np.float32(-np.inf))
    above = np.nextafter(on, np.float32(np.inf))
    pick = rng.integers(0, 8, size=x.shape)
    x = np.select([pick == 0, pick == 1, pick == 2], [on, below, above], x).astype(np.float32)
    x[rng.random(x.shape) < 0.01] = np.inf
    x[rng.random(x.shape) < 0.01] = -np.inf
    x[rng.random(x.shape) < 0.02] = np.float32(-0.0)
    return x


@pytest.mark.parametrize("name", list(BOOSTERS))
def test_lockstep_kernels_match_the_plain_walk_bit_for_bit(name: str) -> None:
    kernel = ContributionKernel.from_trees(tree_arrays(_booster(name)))
    assert (kernel.lockstep is None) == name.startswith("zero_as_missing")  # the fast path covers servable models
    reference = _plain_walk(kernel)
    x = _adversarial_features(max(BATCH_SIZES), seed=5)
    for n in BATCH_SIZES:
        np.testing.assert_array_equal(kernel.contributions(x[:n]), reference.contributions(x[:n]))
        for k in (0, 3, N_FEATURES):
            for got, expected in zip(kernel.top(x[:n], k), reference.top(x[:n], k), strict=True):
                np.testing.assert_array_equal(got, expected)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 80), seed=st.integers(0, 2**32 - 1), k=st.integers(0, 5))
def test_lockstep_top_reasons_match_the_plain_walk(n: int, seed: int, k: int) -> None:
    kernel = ContributionKernel.from_trees(tree_arrays(_booster("nan_missing")))
    x = _adversarial_features(n, seed)
    for got, expected in zip(kernel.top(x, k), _plain_walk(kernel).top(x, k), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_lockstep_kernels_handle_stumps_deep_trees_and_every_feature_width() -> None:
    # Stumps (min_gain_to_split so high that trees stop at the root), 70 features (beyond the scratch rows:
    # the plain walk takes over), and deep narrow trees (leaf-wise growth, many leaves).
    cases = [train_booster(n_trees=9, min_gain_to_split=1e9), train_booster(n_features=70, n_trees=9),
             train_booster(n_features=63, n_trees=9), train_booster(n_trees=11, num_leaves=120, rows=6000)]
    for booster in cases:
        trees = tree_arrays(booster)
        kernel = ContributionKernel.from_trees(trees)
        assert (kernel.lockstep is None) == (trees.n_features >= 64)
        x = random_features(40, seed=9, n_features=trees.n_features)
        np.testing.assert_array_equal(kernel.contributions(x), _plain_walk(kernel).contributions(x))
        raw = booster.predict(x, raw_score=True)
        np.testing.assert_allclose(kernel.contributions(x).sum(axis=1) + kernel.expected_value, raw, atol=1e-4)
    assert ContributionKernel.from_trees(tree_arrays(cases[0])).lockstep is not None
    assert np.all(tree_arrays(cases[0]).feature == LEAF)


@settings(max_examples=300, deadline=None)
@given(threshold=st.floats(allow_nan=False, width=64), value=st.floats(allow_nan=False, width=32))
def test_float32_thresholds_decide_as_lightgbm_does(threshold: float, value: float) -> None:
    """``v <= t`` in doubles (LightGBM) equals ``v <= t32`` in float32, t32 the largest float32 not above t:
    for a random v and for the float32 values right around t."""
    t32 = float32_at_most(np.array([threshold]))[0]
    assert t32.dtype == np.float32 and float(t32) <= threshold
    candidates = [np.float32(value)]
    with np.errstate(over="ignore"):
        for start in (t32, np.float32(threshold)):
            for direction in (np.float32(np.inf), np.float32(-np.inf)):
                one = np.nextafter(start, direction)
                candidates += [start, one, np.nextafter(one, direction)]
    for v in candidates:
        assert (float(v) <= threshold) == bool(v <= t32), v


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.sampled_from([-2.0, -0.5, 0.0, 0.5, 0.5, 1.0, 3.0]), min_size=1, max_size=12),
       k=st.integers(0, 12))
def test_select_largest_is_a_stable_descending_sort(values: list[float], k: int) -> None:
    array = np.array(values, dtype=np.float64)
    k = min(k, len(values))
    index, largest = np.empty(k, dtype=np.int64), np.empty(k, dtype=np.float64)
    _select_largest(array, 0, len(values), index, largest)
    expected = np.argsort(-array, kind="stable")[:k]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_array_equal(largest, array[expected])


# --- the trimmed scoring graph -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVABLE)
def test_trimmed_graph_scores_exactly_as_the_exported_model(runtimes: dict[str, ModelRuntime], name: str) -> None:
    full = ort.InferenceSession(onnx_bytes(_booster(name)), _session_options(1), providers=["CPUExecutionProvider"])
    x = _adversarial_features(2000, seed=13)
    expected = full.run(["probabilities"], {"input": x})[0][:, 1].astype(np.float64)
    np.testing.assert_array_equal(runtimes[name].predict(x), expected)
    trimmed = onnx.load_from_string(_scoring_graph(onnx.load_from_string(onnx_bytes(_booster(name))),
                                                   "probabilities"))
    assert [n.op_type for n in trimmed.graph.node] == ["TreeEnsembleClassifier", "Identity", "Identity"]
    assert [o.name for o in trimmed.graph.output] == ["probabilities"]


def _tiny_model(factor: float, with_subgraph: bool = False) -> onnx.ModelProto:
    """probabilities = Mul(Identity(input), factor), plus an unused output ``other`` (an If node when
    ``with_subgraph``)."""
    h = onnx.helper
    branch = h.make_graph([h.make_node("Identity", ["input"], ["branch_out"])], "branch", [],
                          [h.make_tensor_value_info("branch_out", onnx.TensorProto.FLOAT, [None, 2])])
    nodes = [h.make_node("Identity", ["input"], ["copy"]), h.make_node("Mul", ["copy", "factor"], ["probabilities"]),
             h.make_node("Neg", ["copy"], ["other"])]
    initializers = [onnx.numpy_helper.from_array(np.array([factor], np.float32), "factor")]
    if with_subgraph:
        initializers.append(onnx.numpy_helper.from_array(np.array(True), "flag"))
        nodes[2] = h.make_node("If", ["flag"], ["other"], then_branch=branch, else_branch=branch)
    graph = h.make_graph(nodes, "tiny", [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 2])],
                         [h.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, [None, 2]),
                          h.make_tensor_value_info("other", onnx.TensorProto.FLOAT, [None, 2])], initializers)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("factor, with_subgraph, ops", [
    (1.0, False, ["Identity", "Identity"]),  # the Mul by one becomes Identity, the unused Neg goes
    (2.0, False, ["Identity", "Mul"]),  # any other factor stays
    (1.0, True, ["Identity", "Mul", "If"]),  # subgraphs may read outer values: the graph is left whole
])
def test_scoring_graph_trims_only_what_cannot_change_the_output(factor: float, with_subgraph: bool,
                                                               ops: list[str]) -> None:
    model = _tiny_model(factor, with_subgraph)
    trimmed_bytes = _scoring_graph(onnx.load_from_string(model.SerializeToString()), "probabilities")
    trimmed = onnx.load_from_string(trimmed_bytes)
    onnx.checker.check_model(trimmed)
    assert [n.op_type for n in trimmed.graph.node] == ops
    x = np.array([[0.25, -0.0], [np.nan, 3e38], [-np.inf, 1e-45]], np.float32)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(trimmed_bytes, providers=["CPUExecutionProvider"])
    expected = before.run(["probabilities"], {"input": x})[0]
    got = after.run(["probabilities"], {"input": x})[0]
    np.testing.assert_array_equal(got, expected)
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_predict_from_several_threads_at_once(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["nan_missing"]
    batches = [random_features(n, seed=n) for n in (1, 3, 64, 200, 1, 17)]
    expected = [runtime.predict(x) for x in batches]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            for got, want in zip(pool.map(runtime.predict, batches), expected, strict=True):
                np.testing.assert_array_equal(got, want)


# --- Scorer: the reasons on a helper thread ----------------------------------------------------------------------

K = 3


def _transactions(n: int, seed: int) -> TransactionBatch:
    """``n`` plausible transactions of 40 cards at 25 merchants, ten minutes after the previous seed's."""
    rng = np.random.default_rng(seed)
    ids = [f"tx-{seed}-{i}" for i in range(n)]

    def keys(kind: str, count: int) -> list[int]:
        return [entity_key(f"{kind}-{v}") for v in rng.integers(0, count, n)]

    return TransactionBatch(
        transaction_ids=ids, event_time=1.75e9 + 600 * seed + np.sort(rng.uniform(0, 600, n)),
        amount=rng.lognormal(3, 1.5, n), card_key=keys("card", 40), customer_key=keys("customer", 40),
        merchant_key=keys("merchant", 25), device_key=keys("device", 60), ip_key=keys("ip", 60),
        country_code=[country_code(c) for c in rng.choice(["FR", "DE", "US"], n)], mcc=rng.choice([5411, 5812], n),
        channel=rng.integers(1, 4, n), entry_mode=rng.integers(1, 4, n), latitude=rng.uniform(40, 50, n),
        longitude=rng.uniform(-5, 10, n), txn_key=[entity_key(i) for i in ids],
    )


@pytest.fixture(scope="module")
def active_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ActiveModel]:
    models_dir = tmp_path_factory.mktemp("scorer-models")
    boosters = {"model-a": train_booster(seed=21, n_trees=25), "model-b": train_booster(seed=22, n_trees=35)}
    return {version: activate(make_bundle(models_dir, version, booster=booster).path)
            for version, booster in boosters.items()}


def _scorer(model: ActiveModel, overlap_min_rows: int | None) -> Scorer:
    return Scorer(FeatureEngine(EngineCapacity(1024, 1024, 1024)), model, top_reasons=K,
                  overlap_min_rows=overlap_min_rows)


def _helper_threads(scorer: Scorer) -> list[threading.Thread]:
    """The live helper threads of ``scorer`` (named after it; the pool numbers its one thread ``_0``)."""
    name = f"fraudguard-scorer-{id(scorer):x}_0"
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_reasons_on_the_helper_thread_equal_the_sequential_ones(active_models: dict[str, ActiveModel]) -> None:
    overlapped, sequential = _scorer(active_models["model-a"], 1), _scorer(active_models["model-a"], None)
    for seed, n in enumerate([1, 5, 64, 200, 1, 64, 3]):
        a, b = overlapped.score(_transactions(n, seed)), sequential.score(_transactions(n, seed))
        for field in ("features", "scores", "actions", "reason_index", "reason_contribution"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.model_version == b.model_version == "model-a" and a.reason_index.shape == (n, K)
    overlapped.close()


def test_model_swaps_while_scoring_keep_each_batch_consistent(active_models: dict[str, ActiveModel]) -> None:
    """Scores and reasons of a batch always come from one model, the one its model_version names."""
    scorer = _scorer(active_models["model-a"], 1)
    stop = threading.Event()

    def swap_back_and_forth() -> None:
        while not stop.is_set():
            for model in active_models.values():
                scorer.swap_model(model)

    swapper = threading.Thread(target=swap_back_and_forth)
    swapper.start()
    try:
        scored = [scorer.score(_transactions(n, seed)) for seed, n in enumerate([40, 1, 70, 8] * 15)]
    finally:
        stop.set()
        swapper.join()
        scorer.close()
    assert {s.model_version for s in scored} == set(active_models)  # both models were really used
    for s in scored:
        runtime = active_models[s.model_version].runtime
        np.testing.assert_array_equal(s.scores, runtime.predict(s.features))
        index, contribution = runtime.top_reasons(s.features, K)
        np.testing.assert_array_equal(s.reason_index, index)
        np.testing.assert_array_equal(s.reason_contribution, contribution)


def test_an_error_on_the_helper_thread_reaches_the_caller(active_models: dict[str, ActiveModel]) -> None:
    scorer = _scorer(active_models["model-a"], 1)
    scorer.top_reasons = N_FEATURES + 1
    with pytest.raises(ValueError, match="k must be in"):
        scorer.score(_transactions(10, 1))
    scorer.top_reasons = K
    assert scorer.score(_transactions(10, 2)).reason_index.shape == (10, K)  # the helper survived the error
    scorer.close()


def test_helper_thread_starts_on_demand_and_stops_with_its_scorer(active_models: dict[str, ActiveModel]) -> None:
    scorer = _scorer(active_models["model-a"], 16)
    scorer.score(_transactions(15, 1))
    assert _helper_threads(scorer) == []  # small batches stay on the caller's thread
    scorer.score(_transactions(16, 2))
    (helper,) = _helper_threads(scorer)
    scorer.close()
    helper.join(timeout=10)
    assert not helper.is_alive()
    scorer.score(_transactions(30, 3))  # a closed scorer starts a new helper when it needs one
    (helper,) = _helper_threads(scorer)
    del scorer
    gc.collect()
    helper.join(timeout=10)
    assert not helper.is_alive()


def test_overlap_min_rows_must_be_positive(active_models: dict[str, ActiveModel]) -> None:
    with pytest.raises(ValueError, match="overlap_min_rows"):
        _scorer(active_models["model-a"], 0)


def test_an_empty_batch_gives_empty_answers(runtimes: dict[str, ModelRuntime]) -> None:
    runtime = runtimes["nan_missing"]
    x = np.zeros((0, N_FEATURES), dtype=np.float32)
    assert runtime.predict(x).shape == (0,)
    index, contribution = runtime.top_reasons(x, 3)
    assert index.shape == contribution.shape == (0, 3)
    assert runtime.contributions(x).shape == (0, N_FEATURES)


class _WrapperWithoutNativeSession:
    """An onnxruntime-like session whose wrapper lacks the ``_sess`` attribute: only ``run`` is there."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def run(self, output_names: list[str], feed: dict[str, Any], run_options: None = None) -> list[Any]:
        self.calls.append((output_names, feed))
        return [np.zeros((1, 2), np.float32)]


def test_unchecked_run_uses_the_native_session_and_falls_back_to_the_public_run() -> None:
    session = ort.InferenceSession(onnx_bytes(_booster("nan_missing")), _session_options(1),
                                   providers=["CPUExecutionProvider"])
    x = random_features(5, seed=3)
    run = _unchecked_run(session)
    assert run != session.run  # this onnxruntime has the native session: its checks are skipped
    np.testing.assert_array_equal(run(["probabilities"], {"input": x}, None)[0],
                                  session.run(["probabilities"], {"input": x})[0])
    wrapper = _WrapperWithoutNativeSession()
    run = _unchecked_run(wrapper)
    assert run == wrapper.run
    run(["probabilities"], {"input": x}, None)
    assert wrapper.calls == [(["probabilities"], {"input": x})]

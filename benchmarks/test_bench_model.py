"""Model cost per call: onnxruntime P(fraud), Numba reason codes, LightGBM's own predict as the
baseline, and ``Scorer.score`` as a whole.

Two models:

- ``random``: a 200-tree × 31-leaf binary model over the N_FEATURES scoring features, fed
  random rows (8% NaN), every call different rows (cycling through a pool), so the branch
  predictor cannot learn one path;
- ``demo``: the demo bundle (``fraudguard models demo``), fed the features a warm scorer
  computes for generated traffic — what the server sees.

``test_scorer_score`` times ``Scorer.score`` on the demo bundle, features included (the
feature engine is warmed with 20k generated transactions; request parsing is not timed).

    .venv/bin/pytest benchmarks/test_bench_model.py --benchmark-enable -o testpaths=benchmarks
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.conftest import PerTransactionRecorder
from benchmarks.loadgen_transactions import TransactionFactory
from fraudguard.security.pan import PanTokenizer
from scoring.features import EngineCapacity, FeatureEngine
from scoring.features.batch import TransactionBatch
from scoring.features.schema import N_FEATURES
from scoring.model import ModelRuntime, load_promoted
from scoring.scorer import Scorer
from scoring.serde import batch_from_proto
from tests._model_helpers import make_bundle, random_features, train_booster
from trainer.demo import build_demo_bundle

N_TREES, NUM_LEAVES, TOP_K = 200, 31, 3
BATCHES = [1, 256]
POOL_ROWS = 4096
WARM_TRANSACTIONS = 20_000


@dataclass(frozen=True, slots=True)
class BenchModel:
    runtime: ModelRuntime
    pool: npt.NDArray[np.float32]  # [POOL_ROWS, N_FEATURES] rows to score
    booster: lgb.Booster


@pytest.fixture(scope="module")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("bench-model-demo") / "models"
    build_demo_bundle(models)
    return models


@dataclass(frozen=True, slots=True)
class DemoTraffic:
    scorer: Scorer  # warmed with WARM_TRANSACTIONS generated transactions
    features: npt.NDArray[np.float32]  # [POOL_ROWS, N_FEATURES] the warm scorer's features for the next ones
    batches: list[TransactionBatch]  # parsed transactions that follow those


@pytest.fixture(scope="module")
def demo_traffic(demo_models: Path) -> DemoTraffic:
    traffic = TransactionFactory(seed=11).build(WARM_TRANSACTIONS + 2 * POOL_ROWS, stream_seed=5, id_prefix="bench",
                                                span_s=3600)
    tokenizer = PanTokenizer(b"k" * 32)
    batches = [batch_from_proto(traffic[i:i + 256], "transactions", time.time(), tokenizer)[0]
               for i in range(0, len(traffic), 256)]
    scorer = Scorer(FeatureEngine(EngineCapacity(131_072, 131_072, 1_048_576)), load_promoted(demo_models))
    warm, pool = WARM_TRANSACTIONS // 256, POOL_ROWS // 256
    for batch in batches[:warm]:
        scorer.score(batch)
    features = np.concatenate([scorer.score(batch).features for batch in batches[warm:warm + pool]])
    return DemoTraffic(scorer, features, batches[warm + pool:])


@pytest.fixture(scope="module", params=["random", "demo"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> BenchModel:
    if request.param == "random":
        booster = train_booster(seed=42, n_trees=N_TREES, num_leaves=NUM_LEAVES, rows=20_000)
        assert booster.num_trees() == N_TREES and booster.num_feature() == N_FEATURES
        runtime = ModelRuntime.load(make_bundle(tmp_path_factory.mktemp("models"), "bench", booster=booster))
        pool = random_features(POOL_ROWS, seed=7)
    else:
        demo: DemoTraffic = request.getfixturevalue("demo_traffic")
        runtime = demo.scorer.model.runtime
        booster = lgb.Booster(model_file=str(demo.scorer.model.bundle.booster_path))
        pool = demo.features
    warm = pool[:1]  # first calls load the Numba kernels and size onnxruntime's buffers
    runtime.predict(warm)
    runtime.top_reasons(warm, TOP_K)
    return BenchModel(runtime, np.ascontiguousarray(pool), booster)


def _batches(pool: npt.NDArray[np.float32], n: int) -> Iterator[npt.NDArray[np.float32]]:
    return itertools.cycle([np.ascontiguousarray(pool[i:i + n]) for i in range(0, len(pool) - n + 1, n)])


def _run(benchmark: Any, per_transaction: PerTransactionRecorder, pool: npt.NDArray[np.float32], n: int,
         call: Callable[[npt.NDArray[np.float32]], object]) -> None:
    batches = _batches(pool, n)
    benchmark.extra_info["rows_per_call"] = n
    benchmark(lambda: call(next(batches)))
    per_transaction(benchmark, n)


@pytest.mark.parametrize("n", BATCHES)
def test_onnx_predict(benchmark: Any, per_transaction: PerTransactionRecorder, model: BenchModel, n: int) -> None:
    _run(benchmark, per_transaction, model.pool, n, model.runtime.predict)


@pytest.mark.parametrize("n", BATCHES)
def test_top_reasons(benchmark: Any, per_transaction: PerTransactionRecorder, model: BenchModel, n: int) -> None:
    _run(benchmark, per_transaction, model.pool, n, lambda x: model.runtime.top_reasons(x, TOP_K))


@pytest.mark.parametrize("n", BATCHES)
def test_predict_and_top_reasons(benchmark: Any, per_transaction: PerTransactionRecorder, model: BenchModel,
                                 n: int) -> None:
    """Both model calls one after the other, on one thread."""
    runtime = model.runtime
    _run(benchmark, per_transaction, model.pool, n, lambda x: (runtime.predict(x), runtime.top_reasons(x, TOP_K)))


@pytest.mark.parametrize("n", BATCHES)
def test_lightgbm_predict_baseline(benchmark: Any, per_transaction: PerTransactionRecorder, model: BenchModel,
                                   n: int) -> None:
    _run(benchmark, per_transaction, model.pool, n, lambda x: model.booster.predict(x, num_threads=1))


@pytest.mark.parametrize("n", BATCHES)
def test_scorer_score(benchmark: Any, per_transaction: PerTransactionRecorder, demo_traffic: DemoTraffic,
                      n: int) -> None:
    """``Scorer.score`` on the demo bundle: features, model, reasons (overlapped for large batches), actions."""
    chunks = itertools.cycle([batch.slice(i, i + n) for batch in demo_traffic.batches
                              for i in range(0, len(batch) - n + 1, n)])
    benchmark.pedantic(lambda: demo_traffic.scorer.score(next(chunks)), rounds=3000 if n == 1 else 300,
                       warmup_rounds=20)
    per_transaction(benchmark, n)

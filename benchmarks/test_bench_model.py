"""Model cost per call: onnxruntime P(fraud), Numba reason codes, and LightGBM's own predict as the baseline.

A 200-tree × 31-leaf binary model over the N_FEATURES scoring features. Each call gets
different rows (cycling through a pool), so the branch predictor cannot learn one path.

    .venv/bin/pytest benchmarks/test_bench_model.py --benchmark-enable -o testpaths=benchmarks
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pytest

from scoring.features.schema import N_FEATURES
from scoring.model import ModelRuntime
from tests._model_helpers import make_bundle, random_features, train_booster

N_TREES, NUM_LEAVES, TOP_K = 200, 31, 3
BATCHES = [1, 256]
POOL_ROWS = 4096


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    booster = train_booster(seed=42, n_trees=N_TREES, num_leaves=NUM_LEAVES, rows=20_000)
    assert booster.num_trees() == N_TREES and booster.num_feature() == N_FEATURES
    return booster


@pytest.fixture(scope="module")
def runtime(booster: lgb.Booster, tmp_path_factory: pytest.TempPathFactory) -> ModelRuntime:
    models_dir: Path = tmp_path_factory.mktemp("models")
    runtime = ModelRuntime.load(make_bundle(models_dir, "bench", booster=booster), threads=1)
    warm = random_features(1, seed=1)  # first calls load the Numba kernels and size onnxruntime's buffers
    runtime.predict(warm)
    runtime.top_reasons(warm, TOP_K)
    return runtime


def _batches(n: int) -> Iterator[npt.NDArray[np.float32]]:
    pool = random_features(POOL_ROWS, seed=7)
    return itertools.cycle([np.ascontiguousarray(pool[i:i + n]) for i in range(0, POOL_ROWS - n + 1, n)])


def _run(benchmark: Any, n: int, call: Callable[[npt.NDArray[np.float32]], object]) -> None:
    batches = _batches(n)
    benchmark.extra_info["rows_per_call"] = n
    benchmark(lambda: call(next(batches)))


@pytest.mark.parametrize("n", BATCHES)
def test_onnx_predict(benchmark: Any, runtime: ModelRuntime, n: int) -> None:
    _run(benchmark, n, runtime.predict)


@pytest.mark.parametrize("n", BATCHES)
def test_top_reasons(benchmark: Any, runtime: ModelRuntime, n: int) -> None:
    _run(benchmark, n, lambda x: runtime.top_reasons(x, TOP_K))


@pytest.mark.parametrize("n", BATCHES)
def test_predict_and_top_reasons(benchmark: Any, runtime: ModelRuntime, n: int) -> None:
    """What the scorer spends on the model per batch."""
    _run(benchmark, n, lambda x: (runtime.predict(x), runtime.top_reasons(x, TOP_K)))


@pytest.mark.parametrize("n", BATCHES)
def test_lightgbm_predict_baseline(benchmark: Any, booster: lgb.Booster, n: int) -> None:
    _run(benchmark, n, lambda x: booster.predict(x, num_threads=1))

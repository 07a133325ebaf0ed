"""The whole server-side path, per transaction, at batch 1 and 256, on the demo model:
validate + columns (serde) -> features (Numba) -> model (onnxruntime) -> reasons -> action,
then the response messages. Beside it, LightGBM's own ``predict`` on the same model and rows.

Run: ``make bench`` (or ``pytest benchmarks --benchmark-enable -o testpaths=benchmarks``).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from benchmarks.conftest import PerTransactionRecorder
from benchmarks.loadgen_transactions import TransactionFactory
from fraudguard.proto.fraud.v1 import transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features import EngineCapacity, FeatureEngine
from scoring.model import load_promoted
from scoring.scorer import Scorer
from scoring.serde import batch_from_proto, decisions_to_proto
from trainer.demo import build_demo_bundle

WARM_TRANSACTIONS = 100_000


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("bench-demo") / "models"
    build_demo_bundle(models)
    return models


@pytest.fixture(scope="session")
def traffic(transaction_factory: TransactionFactory) -> list[transaction_pb2.Transaction]:
    return transaction_factory.build(WARM_TRANSACTIONS + 60_000, stream_seed=5, id_prefix="bench", span_s=6 * 3600)


@pytest.fixture(scope="session")
def warm_scorer(demo_models: Path, traffic: list[transaction_pb2.Transaction]) -> Scorer:
    """The server's defaults for capacity, state warmed with 100k transactions."""
    scorer = Scorer(FeatureEngine(EngineCapacity(131_072, 131_072, 1_048_576)), load_promoted(demo_models))
    tokenizer = PanTokenizer(b"k" * 32)
    for i in range(0, WARM_TRANSACTIONS, 256):
        batch, _ = batch_from_proto(traffic[i : i + 256], "transactions", time.time(), tokenizer)
        scorer.score(batch)
    return scorer


@pytest.mark.parametrize("batch_size", [1, 256])
def test_server_side_pipeline(benchmark: Any, per_transaction: PerTransactionRecorder, warm_scorer: Scorer,
                              traffic: list[transaction_pb2.Transaction], batch_size: int) -> None:
    """validate -> features -> model -> reasons -> decision (what Decision.server_time_us reports)."""
    tokenizer = PanTokenizer(b"k" * 32)
    chunks = itertools.cycle([traffic[i : i + batch_size] for i in range(WARM_TRANSACTIONS, len(traffic), batch_size)])

    def run() -> None:
        batch, _ = batch_from_proto(next(chunks), "transactions", time.time(), tokenizer)
        warm_scorer.score(batch)

    benchmark.pedantic(run, rounds=2000 if batch_size == 1 else 150, warmup_rounds=10)
    per_transaction(benchmark, batch_size)


@pytest.mark.parametrize("batch_size", [1, 256])
def test_pipeline_with_response_messages(benchmark: Any, per_transaction: PerTransactionRecorder,
                                         warm_scorer: Scorer, traffic: list[transaction_pb2.Transaction],
                                         batch_size: int) -> None:
    """The above plus building the Decision messages (what a handler does before grpc serialises)."""
    tokenizer = PanTokenizer(b"k" * 32)
    chunks = itertools.cycle([traffic[i : i + batch_size] for i in range(WARM_TRANSACTIONS, len(traffic), batch_size)])

    def run() -> None:
        batch, _ = batch_from_proto(next(chunks), "transactions", time.time(), tokenizer)
        decisions_to_proto(warm_scorer.score(batch), batch.transaction_ids)

    benchmark.pedantic(run, rounds=2000 if batch_size == 1 else 150, warmup_rounds=10)
    per_transaction(benchmark, batch_size)


@pytest.mark.parametrize("batch_size", [1, 256])
def test_demo_model_onnxruntime(benchmark: Any, per_transaction: PerTransactionRecorder, warm_scorer: Scorer,
                                batch_size: int) -> None:
    x = np.random.default_rng(1).normal(size=(batch_size, warm_scorer.model.runtime.n_features)).astype(np.float32)
    benchmark(warm_scorer.model.runtime.predict, x)
    per_transaction(benchmark, batch_size)


@pytest.mark.parametrize("batch_size", [1, 256])
def test_demo_model_lightgbm_predict_baseline(benchmark: Any, per_transaction: PerTransactionRecorder,
                                              warm_scorer: Scorer, batch_size: int) -> None:
    """The same model through LightGBM's own ``predict``: what a user would reach for otherwise."""
    booster = lgb.Booster(model_file=str(warm_scorer.model.bundle.path / "model.lgb.txt"))
    x = np.random.default_rng(1).normal(size=(batch_size, booster.num_feature())).astype(np.float32)
    benchmark(booster.predict, x, num_threads=1)
    per_transaction(benchmark, batch_size)

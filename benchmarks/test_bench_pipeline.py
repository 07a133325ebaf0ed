"""The whole server-side path, per transaction, at batch 1 and 256, on the demo model, from request bytes
to response bytes — what a scoring handler does between grpc's receive and send:

    wire decode + validate (Numba) -> features (Numba) -> model (onnxruntime) -> reasons (Numba)
    -> action -> wire encode (Numba)

Beside it, the protobuf-object path it replaced (``FromString`` + ``batch_from_proto`` … ``fill_decisions`` +
``SerializeToString``) and LightGBM's own ``predict`` on the same model and rows, as the baselines a user
would otherwise reach for.

Run: ``make bench`` (or ``pytest benchmarks --benchmark-enable -o testpaths=benchmarks``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from benchmarks.conftest import PerTransactionRecorder
from benchmarks.loadgen_transactions import TransactionFactory
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features import EngineCapacity, FeatureEngine
from scoring.model import load_promoted
from scoring.scorer import Scorer
from scoring.serde import batch_from_proto, results_into
from scoring.servicer import ScoringServicer
from trainer.demo import build_demo_bundle

WARM_TRANSACTIONS = 100_000
MAX_BATCH = 1024
ROUNDS = {1: 2000, 256: 150}


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("bench-demo") / "models"
    build_demo_bundle(models)
    return models


@pytest.fixture(scope="session")
def traffic(transaction_factory: TransactionFactory) -> list[transaction_pb2.Transaction]:
    return transaction_factory.build(WARM_TRANSACTIONS + 60_000, stream_seed=5, id_prefix="bench", span_s=6 * 3600)


@pytest.fixture(scope="session")
def warm_servicer(demo_models: Path, traffic: list[transaction_pb2.Transaction]) -> ScoringServicer:
    """The server's defaults for capacity, state warmed with 100k transactions through the wire path."""
    scorer = Scorer(FeatureEngine(EngineCapacity(131_072, 131_072, 1_048_576)), load_promoted(demo_models))
    servicer = ScoringServicer(scorer, PanTokenizer(b"k" * 32), MAX_BATCH)
    for i in range(0, WARM_TRANSACTIONS, 256):
        servicer.score_many(_batch_bytes(traffic[i : i + 256]), scoring_pb2.ScoreBatchRequest)
    return servicer


def _batch_bytes(transactions: list[transaction_pb2.Transaction]) -> bytes:
    return scoring_pb2.ScoreBatchRequest(transactions=transactions).SerializeToString()


def _requests(traffic: list[transaction_pb2.Transaction], batch_size: int) -> Iterator[bytes]:
    """Request messages never seen by the warm-up, as a client would send them (Score for one, batches else)."""
    fresh = traffic[WARM_TRANSACTIONS:]
    if batch_size == 1:
        return itertools.cycle([scoring_pb2.ScoreRequest(transaction=tx).SerializeToString() for tx in fresh])
    return itertools.cycle([_batch_bytes(fresh[i : i + batch_size]) for i in range(0, len(fresh), batch_size)])


def _handler(servicer: ScoringServicer, batch_size: int) -> Callable[[bytes], bytes]:
    if batch_size == 1:
        return servicer.score_one
    return lambda request: servicer.score_many(request, scoring_pb2.ScoreBatchRequest)


@pytest.mark.parametrize("batch_size", [1, 256])
def test_request_bytes_to_response_bytes(benchmark: Any, per_transaction: PerTransactionRecorder,
                                         warm_servicer: ScoringServicer, traffic: list[transaction_pb2.Transaction],
                                         batch_size: int) -> None:
    """decode -> features -> model -> reasons -> action -> encode: all a handler does per message."""
    requests = _requests(traffic, batch_size)
    handle = _handler(warm_servicer, batch_size)
    benchmark.pedantic(lambda: handle(next(requests)), rounds=ROUNDS[batch_size], warmup_rounds=10)
    per_transaction(benchmark, batch_size)


@pytest.mark.parametrize("batch_size", [1, 256])
def test_protobuf_objects_baseline(benchmark: Any, per_transaction: PerTransactionRecorder,
                                   warm_servicer: ScoringServicer, traffic: list[transaction_pb2.Transaction],
                                   batch_size: int) -> None:
    """The same work through protobuf objects in Python (the path the wire codecs replaced), same scorer."""
    requests = _requests(traffic, batch_size)
    scorer = warm_servicer.scorer
    tokenizer = PanTokenizer(b"k" * 32)

    def run() -> bytes:
        parsed = scoring_pb2.ScoreBatchRequest.FromString(next(requests))
        batch, failures = batch_from_proto(parsed.transactions, "transactions", time.time(), tokenizer)
        scored = scorer.score(batch)
        response = scoring_pb2.ScoreBatchResponse()
        results_into(response.results, scored, batch, len(parsed.transactions), failures)
        return response.SerializeToString()

    benchmark.pedantic(run, rounds=ROUNDS[batch_size], warmup_rounds=10)
    per_transaction(benchmark, batch_size)


@pytest.mark.parametrize("batch_size", [1, 256])
def test_demo_model_onnxruntime(benchmark: Any, per_transaction: PerTransactionRecorder,
                                warm_servicer: ScoringServicer, batch_size: int) -> None:
    runtime = warm_servicer.scorer.model.runtime
    x = np.random.default_rng(1).normal(size=(batch_size, runtime.n_features)).astype(np.float32)
    benchmark(runtime.predict, x)
    per_transaction(benchmark, batch_size)


@pytest.mark.parametrize("batch_size", [1, 256])
def test_demo_model_lightgbm_predict_baseline(benchmark: Any, per_transaction: PerTransactionRecorder,
                                              warm_servicer: ScoringServicer, batch_size: int) -> None:
    """The same model through LightGBM's own ``predict``: what a user would reach for otherwise."""
    booster = lgb.Booster(model_file=str(warm_servicer.scorer.model.bundle.path / "model.lgb.txt"))
    x = np.random.default_rng(1).normal(size=(batch_size, booster.num_feature())).astype(np.float32)
    benchmark(booster.predict, x, num_threads=1)
    per_transaction(benchmark, batch_size)

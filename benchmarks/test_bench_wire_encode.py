"""Response bytes per transaction, at batch 1 and 256, from real scored batches of the demo model:
the Numba wire encoder (``scoring.wire.encode``) against what it replaces, ``fill_decisions`` /
``results_into`` building ``Decision`` messages and protobuf's ``SerializeToString``.

Run: ``pytest benchmarks/test_bench_wire_encode.py --benchmark-enable -o testpaths=benchmarks``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.conftest import PerTransactionRecorder
from benchmarks.loadgen_transactions import TransactionFactory
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features import EngineCapacity, FeatureEngine
from scoring.features.batch import TransactionBatch
from scoring.model import load_promoted
from scoring.scorer import ScoredBatch, Scorer
from scoring.serde import batch_from_proto, fill_decisions, results_into
from scoring.wire.encode import encode_results, encode_score_response
from trainer.demo import build_demo_bundle

WARM_TRANSACTIONS = 30_000
SAMPLES = {1: 500, 256: 24}  # scored messages cycled through, per batch size
ROUNDS = {1: 3000, 256: 200}


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored message and its transaction ids, as the wire decoder hands them over."""

    batch: TransactionBatch
    scored: ScoredBatch
    id_buffer: npt.NDArray[np.uint8]
    id_start: npt.NDArray[np.int64]
    id_len: npt.NDArray[np.int64]


def _scored(batch: TransactionBatch, scored: ScoredBatch) -> Scored:
    encoded = [i.encode() for i in batch.transaction_ids]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    buffer = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return Scored(batch, scored, buffer, np.cumsum(lengths) - lengths, lengths)


@pytest.fixture(scope="session")
def scored_messages(tmp_path_factory: pytest.TempPathFactory,
                    transaction_factory: TransactionFactory) -> dict[int, list[Scored]]:
    """Scored messages of 1 and 256 transactions, after the state was warmed with 30k transactions."""
    models = tmp_path_factory.mktemp("bench-wire-encode") / "models"
    build_demo_bundle(models)
    scorer = Scorer(FeatureEngine(EngineCapacity(131_072, 131_072, 1_048_576)), load_promoted(models))
    tokenizer = PanTokenizer(b"k" * 32)
    need = WARM_TRANSACTIONS + sum(size * n for size, n in SAMPLES.items())
    traffic = iter(transaction_factory.build(need, stream_seed=5, id_prefix="bench", span_s=6 * 3600))

    def score(size: int) -> Scored:
        batch, _ = batch_from_proto(list(itertools.islice(traffic, size)), "transactions", time.time(), tokenizer)
        return _scored(batch, scorer.score(batch))

    for _ in range(WARM_TRANSACTIONS // 256):
        score(256)
    return {size: [score(size) for _ in range(n)] for size, n in SAMPLES.items()}


def _numba(message: str) -> Callable[[Scored], bytes]:
    if message == "ScoreResponse":
        return lambda s: encode_score_response(s.scored, s.id_buffer, int(s.id_start[0]), int(s.id_len[0]))
    return lambda s: encode_results(s.scored, s.id_buffer, s.id_start, s.id_len, [], len(s.batch))


def _protobuf(message: str) -> Callable[[Scored], bytes]:
    def score_response(s: Scored) -> bytes:
        response = scoring_pb2.ScoreResponse()
        fill_decisions([response.decision], s.scored, s.batch.transaction_ids)
        return response.SerializeToString()

    def batch_response(s: Scored) -> bytes:
        response = scoring_pb2.ScoreBatchResponse()
        results_into(response.results, s.scored, s.batch, len(s.batch), [])
        return response.SerializeToString()

    return score_response if message == "ScoreResponse" else batch_response


@pytest.mark.parametrize("encoder", ["numba", "protobuf"])
@pytest.mark.parametrize(("message", "batch_size"), [("ScoreResponse", 1), ("ScoreBatchResponse", 1),
                                                     ("ScoreBatchResponse", 256)])
def test_response_bytes(benchmark: Any, per_transaction: PerTransactionRecorder,
                        scored_messages: dict[int, list[Scored]], encoder: str, message: str, batch_size: int) -> None:
    """Scored arrays -> response bytes (what grpc sends), the same bytes either way."""
    encode = (_numba if encoder == "numba" else _protobuf)(message)
    samples = scored_messages[batch_size]
    assert all(_numba(message)(s) == _protobuf(message)(s) for s in samples[:8])
    cycle: Iterator[Scored] = itertools.cycle(samples)
    benchmark.pedantic(lambda: encode(next(cycle)), rounds=ROUNDS[batch_size], warmup_rounds=20)
    per_transaction(benchmark, batch_size)

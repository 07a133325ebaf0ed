"""Request bytes to a validated ``TransactionBatch``, per transaction, at batch 1 and 256: the Numba wire
decoder (``scoring.wire.decode``) against what it replaces, protobuf's ``FromString`` then
``serde.batch_from_proto``. Traffic is the load generator's (``TransactionFactory``), serialized before
timing; each call takes the next message of a pool, so no call sees the bytes of the one before.

    .venv/bin/pytest benchmarks/test_bench_wire.py --benchmark-enable -o testpaths=benchmarks
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from benchmarks.conftest import PerTransactionRecorder
from benchmarks.loadgen_transactions import TransactionFactory, serialized_requests
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features.batch import TransactionBatch
from scoring.serde import batch_from_proto
from scoring.wire.decode import decode_batch, decode_single

POOL = {1: 2048, 256: 64}  # messages per batch size, cycled through
PLANS = {1: (200, 200), 256: (50, 4)}  # transactions per message -> (rounds, calls per round)
WARMUP_ROUNDS = 5
MAX_BATCH = 256


@pytest.fixture(scope="module")
def tokenizer() -> PanTokenizer:
    return PanTokenizer(bytes(range(32)))


@pytest.fixture(scope="module")
def requests(transaction_factory: TransactionFactory) -> dict[int, list[bytes]]:
    """Serialized ScoreRequests (batch 1) and ScoreBatchRequests (batch 256) of distinct transactions."""
    out = {}
    for n, count in POOL.items():
        transactions = transaction_factory.build(n * count, stream_seed=300 + n, id_prefix=f"wire-{n}")
        out[n] = serialized_requests(transactions, "score" if n == 1 else "batch", n)
    return out


def _numba(n: int, now: float, tokenizer: PanTokenizer) -> Callable[[bytes], TransactionBatch]:
    if n == 1:
        return lambda data: decode_single(data, now, tokenizer).batch
    return lambda data: decode_batch(data, scoring_pb2.ScoreBatchRequest, now, tokenizer, MAX_BATCH).batch


def _protobuf(n: int, now: float, tokenizer: PanTokenizer) -> Callable[[bytes], TransactionBatch]:
    """What the servicer does today with the bytes grpc hands it (its deserializer, then its handler)."""
    if n == 1:

        def single(data: bytes) -> TransactionBatch:
            request = scoring_pb2.ScoreRequest.FromString(data)
            assert request.HasField("transaction")
            return batch_from_proto([request.transaction], "transaction", now, tokenizer)[0]

        return single
    parse = scoring_pb2.ScoreBatchRequest.FromString
    return lambda data: batch_from_proto(parse(data).transactions, "transactions", now, tokenizer)[0]


@pytest.mark.parametrize("path", ["numba", "protobuf"])
@pytest.mark.parametrize("n", sorted(PLANS))
def test_decode_request(benchmark: Any, per_transaction: PerTransactionRecorder, requests: dict[int, list[bytes]],
                        tokenizer: PanTokenizer, n: int, path: str) -> None:
    """Validate and convert one request message's bytes; every transaction is good (no failures)."""
    rounds, calls = PLANS[n]
    decode = (_numba if path == "numba" else _protobuf)(n, time.time(), tokenizer)
    messages = itertools.cycle(requests[n])

    def run() -> None:
        batch = decode(next(messages))
        assert len(batch) == n

    benchmark.pedantic(run, rounds=rounds, iterations=calls, warmup_rounds=WARMUP_ROUNDS)
    per_transaction(benchmark, n)

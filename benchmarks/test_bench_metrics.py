"""What the Prometheus metrics cost the hot path: the same scorer with and without ``ScoringMetrics``, calls
interleaved in one run (one off, one on, alternating which goes first), so that drift in the machine, the entity
state and the traffic hits both sides alike; reported as medians and their ratio. Beside it, the metrics update
alone (``ScoringMetrics.decided`` and ``call_finished``), which is the whole difference without the noise.

Targets: < 2% on a batch of 256, < 3 µs on a unary call.

Run: ``make bench``, or ``pytest benchmarks/test_bench_metrics.py --benchmark-enable -o testpaths=benchmarks -s``
(``-s`` shows the comparison lines; pytest-benchmark's own table times an off+on pair per round).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from benchmarks.test_bench_pipeline import WARM_TRANSACTIONS, demo_models, traffic  # noqa: F401  (fixtures)
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features import EngineCapacity, FeatureEngine
from scoring.metrics import ScoringMetrics
from scoring.model import load_promoted
from scoring.scorer import Scorer
from scoring.servicer import ScoringServicer

MAX_BATCH = 1024
ROUNDS = {"score_one": 4000, "Score handler": 4000, "score_many 256": 300}
SMOKE_ROUNDS = 20  # with --benchmark-disable (the default in tests): just run it


@dataclass(frozen=True, slots=True)
class Comparison:
    """Median times of the interleaved calls, without and with metrics."""

    name: str
    transactions_per_call: int
    off_us: float
    on_us: float

    @property
    def ratio(self) -> float:
        return self.on_us / self.off_us

    def line(self) -> str:
        return (f"{self.name:<16} {self.transactions_per_call:4d} tx/call  off {self.off_us:9.2f} us  "
                f"on {self.on_us:9.2f} us  diff {self.on_us - self.off_us:+7.2f} us  ratio {self.ratio:.4f}")


class _Context:
    """What a unary scoring handler asks of grpc's context when the call goes well."""

    def time_remaining(self) -> float | None:
        return None


def _run_handler(servicer: ScoringServicer, request: bytes, context: _Context) -> bytes:
    """Drive the ``Score`` coroutine (decorator included) to its end without an event loop: without a recorder
    it never suspends."""
    coroutine = servicer.Score(request, context)
    try:
        coroutine.send(None)
    except StopIteration as done:
        return bytes(done.value)
    coroutine.close()
    raise RuntimeError("the handler suspended")


@pytest.fixture(scope="module")
def servicers(demo_models: Path, traffic: list[transaction_pb2.Transaction],  # noqa: F811
              ) -> tuple[ScoringServicer, ScoringServicer]:
    """(without, with) metrics, over one scorer whose state is warmed with 100k transactions."""
    scorer = Scorer(FeatureEngine(EngineCapacity(131_072, 131_072, 1_048_576)), load_promoted(demo_models))
    tokenizer = PanTokenizer(b"k" * 32)
    off = ScoringServicer(scorer, tokenizer, MAX_BATCH)
    on = ScoringServicer(scorer, tokenizer, MAX_BATCH, metrics=ScoringMetrics())
    for i in range(0, WARM_TRANSACTIONS, 256):
        batch = scoring_pb2.ScoreBatchRequest(transactions=traffic[i : i + 256]).SerializeToString()
        (on if i % 512 else off).score_many(batch, scoring_pb2.ScoreBatchRequest)
    return off, on


def _requests(transactions: list[transaction_pb2.Transaction], batch_size: int) -> Iterator[bytes]:
    """Request messages the warm-up never saw (as in test_bench_pipeline), in a cycle."""
    fresh = transactions[WARM_TRANSACTIONS:]
    if batch_size == 1:
        return itertools.cycle([scoring_pb2.ScoreRequest(transaction=tx).SerializeToString() for tx in fresh])
    return itertools.cycle([scoring_pb2.ScoreBatchRequest(transactions=fresh[i : i + batch_size]).SerializeToString()
                            for i in range(0, len(fresh) - batch_size + 1, batch_size)])


def _callers(name: str, off: ScoringServicer, on: ScoringServicer) -> tuple[Callable[[bytes], bytes], ...]:
    if name == "score_one":
        return off.score_one, on.score_one
    if name == "Score handler":
        context = _Context()
        return (lambda r: _run_handler(off, r, context)), (lambda r: _run_handler(on, r, context))
    message = scoring_pb2.ScoreBatchRequest
    return (lambda r: off.score_many(r, message)), (lambda r: on.score_many(r, message))


@pytest.mark.parametrize("name", list(ROUNDS))
def test_interleaved_with_and_without_metrics(benchmark: Any, capsys: pytest.CaptureFixture[str],
                                              servicers: tuple[ScoringServicer, ScoringServicer],
                                              traffic: list[transaction_pb2.Transaction],  # noqa: F811
                                              name: str) -> None:
    batch_size = 256 if name.endswith("256") else 1
    requests = _requests(traffic, batch_size)
    calls = _callers(name, *servicers)
    times: tuple[list[int], list[int]] = ([], [])
    flip = [0]

    def pair() -> None:
        first = flip[0] = flip[0] ^ 1
        for side in (first, first ^ 1):
            payload = next(requests)
            started = time.perf_counter_ns()
            calls[side](payload)
            times[side].append(time.perf_counter_ns() - started)

    disabled = bool(benchmark.disabled)
    rounds = SMOKE_ROUNDS if disabled else ROUNDS[name]
    benchmark.pedantic(pair, rounds=rounds, warmup_rounds=0 if disabled else 20)
    result = Comparison(name, batch_size, statistics.median(times[0]) / 1e3, statistics.median(times[1]) / 1e3)
    benchmark.extra_info.update(off_median_us=result.off_us, on_median_us=result.on_us, ratio=result.ratio)
    with capsys.disabled():
        print("\n" + result.line())


@pytest.mark.parametrize("batch_size", [1, 256])
def test_metrics_update_alone(benchmark: Any, batch_size: int) -> None:
    """The work a scoring call adds with metrics on: decisions and scores counted, the call counted and timed."""
    metrics = ScoringMetrics()
    rng = np.random.default_rng(3)
    scores = rng.random(batch_size)
    actions = np.searchsorted(np.array([0.3, 0.6, 0.9]), scores, side="right").astype(np.int64) + 1
    ok = grpc.StatusCode.OK

    def update() -> None:
        metrics.decided(scores, actions)
        metrics.call_finished("Score", ok, 87_000)

    benchmark(update)

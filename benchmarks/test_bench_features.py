"""Pipeline cost per transaction: the feature engine (Numba kernels) and the protobuf → columns path.

The engine is pre-filled with ~100k cards (and their customers, devices, IPs and
merchants) seen over the previous week, as a server's would be after a while. Each
measured call gets a different batch with cards drawn across that whole population
(and a few new ones), in time order, so state rows come from memory rather than a warm
cache line and no transaction is replayed. Runs are sized so that no batch is used twice.

    .venv/bin/pytest benchmarks/test_bench_features.py --benchmark-enable -o testpaths=benchmarks
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from benchmarks.conftest import PerTransactionRecorder
from benchmarks.loadgen_transactions import TransactionFactory
from fraudguard.proto.fraud.v1 import transaction_pb2
from fraudguard.security.pan import PanTokenizer
from fraudguard.settings import Settings
from scoring.features import EngineCapacity, FeatureEngine
from scoring.features.batch import N_INTS, N_REALS, TransactionBatch
from scoring.features.keys import country_code
from scoring.serde import batch_from_proto

CARDS, CUSTOMERS, MERCHANTS, DEVICES, IPS = 100_000, 85_000, 20_000, 60_000, 60_000
NEW_CARD_SHARE = 0.05
PREFILL_EVENTS = 300_000
PREFILL_SPAN_S = 7 * 86_400.0
WARMUP_ROUNDS = 5
EXTRA_CALLS = 1  # pedantic calls the function once more, for its return value
# transactions per call -> (rounds, calls per round); each call gets a batch of its own
ENGINE_PLANS = {1: (200, 200), 256: (100, 5)}
SERDE_PLANS = {1: (100, 100), 256: (30, 2)}
_COUNTRIES = np.array([country_code(c) for c in ("US", "GB", "DE", "FR", "NL", "ES", "IT", "CA", "JP", "BR")])
_MCCS = np.array([5411, 5812, 5814, 5541, 5999, 5311, 5732, 4111, 7011, 4829, 6011])


@dataclass(frozen=True, slots=True)
class _Population:
    """Random 64-bit keys standing for each entity's id hash."""

    cards: np.ndarray[Any, np.dtype[np.int64]]
    customers: np.ndarray[Any, np.dtype[np.int64]]
    merchants: np.ndarray[Any, np.dtype[np.int64]]
    devices: np.ndarray[Any, np.dtype[np.int64]]
    ips: np.ndarray[Any, np.dtype[np.int64]]

    @staticmethod
    def draw(rng: np.random.Generator) -> _Population:
        def keys(n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
            return rng.integers(1, np.iinfo(np.int64).max, n, dtype=np.int64)

        return _Population(keys(CARDS), keys(CUSTOMERS), keys(MERCHANTS), keys(DEVICES), keys(IPS))


def _events(rng: np.random.Generator, pop: _Population, n: int, t0: float, t1: float,
            new_card_share: float) -> TransactionBatch:
    """``n`` transactions spread in time order over [t0, t1), cards drawn uniformly from ``pop``."""
    cards = pop.cards[rng.integers(0, len(pop.cards), n)]
    fresh = rng.random(n) < new_card_share
    cards[fresh] = rng.integers(1, np.iinfo(np.int64).max, int(fresh.sum()), dtype=np.int64)
    online = rng.random(n) < 0.5
    located = rng.random(n) < 0.7
    return TransactionBatch(
        transaction_ids=[f"t{i}" for i in range(n)],
        event_time=np.sort(rng.uniform(t0, t1, n)),
        amount=rng.lognormal(3.5, 1.0, n),
        card_key=cards,
        customer_key=pop.customers[rng.integers(0, len(pop.customers), n)],
        merchant_key=pop.merchants[rng.integers(0, len(pop.merchants), n)],
        device_key=np.where(online, pop.devices[rng.integers(0, len(pop.devices), n)], 0),
        ip_key=np.where(online, pop.ips[rng.integers(0, len(pop.ips), n)], 0),
        country_code=_COUNTRIES[rng.integers(0, len(_COUNTRIES), n)],
        mcc=_MCCS[rng.integers(0, len(_MCCS), n)],
        channel=np.where(online, 2, 1),
        entry_mode=np.where(online, 5, 2),
        latitude=np.where(located, rng.uniform(-60.0, 70.0, n), np.nan),
        longitude=np.where(located, rng.uniform(-180.0, 180.0, n), np.nan),
        txn_key=rng.integers(1, np.iinfo(np.int64).max, n, dtype=np.int64),
    )


class _Prefilled:
    """An engine with history, and the time after which new traffic must come."""

    def __init__(self) -> None:
        settings = Settings()
        self.engine = FeatureEngine(EngineCapacity(settings.max_cards, settings.max_entities,
                                                   settings.max_recent_transactions))
        self._rng = np.random.default_rng(5)
        self.population = _Population.draw(self._rng)
        self.clock = time.time() - 3_600.0
        history = _events(self._rng, self.population, PREFILL_EVENTS, self.clock - PREFILL_SPAN_S, self.clock, 0.0)
        for start in range(0, PREFILL_EVENTS, 4096):
            self.engine.process(history.slice(start, min(start + 4096, PREFILL_EVENTS)))

    def fresh_batches(self, n: int, count: int, per_second: float = 1_000.0) -> Iterator[TransactionBatch]:
        """``count`` batches of ``n`` at ``per_second``, later than everything before them."""
        total = n * count
        start, self.clock = self.clock, self.clock + total / per_second
        events = _events(self._rng, self.population, total, start, self.clock, NEW_CARD_SHARE)
        return iter([events.slice(i, i + n) for i in range(0, total, n)])


@pytest.fixture(scope="module")
def prefilled() -> _Prefilled:
    """An engine sized as the server's defaults, pre-filled with a week of ~100k cards' payments."""
    prefilled = _Prefilled()
    assert prefilled.engine.stats().cards_tracked > 0.8 * CARDS  # some evicted: the table is set-associative
    return prefilled


@pytest.mark.parametrize("n", sorted(ENGINE_PLANS))
def test_feature_engine_process(benchmark: Any, per_transaction: PerTransactionRecorder, prefilled: _Prefilled,
                                n: int) -> None:
    rounds, calls = ENGINE_PLANS[n]
    batches = prefilled.fresh_batches(n, (rounds + WARMUP_ROUNDS) * calls + EXTRA_CALLS)
    engine = prefilled.engine
    benchmark.pedantic(lambda: engine.process(next(batches)), rounds=rounds, iterations=calls,
                       warmup_rounds=WARMUP_ROUNDS)
    per_transaction(benchmark, n)


def test_feature_engine_fixed_cost(benchmark: Any, prefilled: _Prefilled) -> None:
    """The cost of a call that carries no transaction: Python, the kernel's dispatch (per argument), setup."""
    engine = prefilled.engine
    empty = TransactionBatch.packed((), np.zeros((N_REALS, 0)), np.zeros((N_INTS, 0), np.int64))
    benchmark.pedantic(lambda: engine.process(empty), rounds=200, iterations=200, warmup_rounds=WARMUP_ROUNDS)


@pytest.fixture(scope="module")
def tokenizer() -> PanTokenizer:
    return PanTokenizer(bytes(range(32)))


def _proto_batches(factory: TransactionFactory, n: int, count: int) -> Iterator[list[transaction_pb2.Transaction]]:
    transactions = factory.build(n * count, stream_seed=100 + n, id_prefix=f"serde-{n}")
    return iter([transactions[i:i + n] for i in range(0, n * count, n)])


@pytest.mark.parametrize("n", sorted(SERDE_PLANS))
def test_batch_from_proto(benchmark: Any, per_transaction: PerTransactionRecorder,
                          transaction_factory: TransactionFactory, tokenizer: PanTokenizer, n: int) -> None:
    """Validation and conversion of one request message's transactions (unique ids: no key-cache hits on them)."""
    rounds, calls = SERDE_PLANS[n]
    batches = _proto_batches(transaction_factory, n, (rounds + WARMUP_ROUNDS) * calls + EXTRA_CALLS)
    field = "transaction" if n == 1 else "transactions"
    now = time.time()

    def convert() -> None:
        batch, failures = batch_from_proto(next(batches), field, now, tokenizer)
        assert not failures and len(batch) == n

    benchmark.pedantic(convert, rounds=rounds, iterations=calls, warmup_rounds=WARMUP_ROUNDS)
    per_transaction(benchmark, n)


"""Shared by the pytest-benchmark suites: generated traffic, and medians per transaction.

pytest-benchmark reports time per call; a call may carry one transaction or 256, so
``per_transaction(benchmark, n)`` records the median and the 99th percentile of the rounds
divided by ``n`` (also written to the benchmark's ``extra_info``, hence to ``--benchmark-json``)
and the session ends with a table of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from benchmarks.loadgen_transactions import TransactionFactory


@dataclass(frozen=True, slots=True)
class PerTransaction:
    test: str
    transactions_per_call: int
    median_s: float
    p99_s: float  # of the rounds' times: with one call per round, the 99th percentile of single calls

    @property
    def median_us_per_transaction(self) -> float:
        return self.median_s / self.transactions_per_call * 1e6

    @property
    def p99_us_per_transaction(self) -> float:
        return self.p99_s / self.transactions_per_call * 1e6


def p99(data: list[float]) -> float:
    """The 99th percentile (nearest rank) of ``data``."""
    ordered = sorted(data)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


_RECORDED: list[PerTransaction] = []

PerTransactionRecorder = Callable[[Any, int], None]


@pytest.fixture(scope="session")
def transaction_factory() -> TransactionFactory:
    """One population of ~100k cards and 20k merchants, the same one ``fraudguard bench`` draws from."""
    return TransactionFactory(seed=11)


@pytest.fixture
def per_transaction(request: pytest.FixtureRequest) -> PerTransactionRecorder:
    """Call after the benchmark ran: ``per_transaction(benchmark, transactions_per_call)``."""

    def record(benchmark: Any, transactions_per_call: int) -> None:
        benchmark.extra_info["transactions_per_call"] = transactions_per_call
        if benchmark.stats is None:  # --benchmark-disable: the function ran once, untimed
            return
        stats = benchmark.stats.stats
        entry = PerTransaction(request.node.name, transactions_per_call, float(stats.median), p99(stats.data))
        benchmark.extra_info["median_us_per_transaction"] = entry.median_us_per_transaction
        benchmark.extra_info["p99_us_per_transaction"] = entry.p99_us_per_transaction
        _RECORDED.append(entry)

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RECORDED:
        return
    terminalreporter.section("medians per transaction")
    width = max(len(e.test) for e in _RECORDED)
    for e in _RECORDED:
        terminalreporter.write_line(
            f"{e.test:<{width}}  {e.median_s * 1e6:10.2f} us/call  {e.transactions_per_call:4d} tx/call  "
            f"{e.median_us_per_transaction:8.3f} us/tx  (p99 {e.p99_us_per_transaction:8.3f})  "
            f"{1 / e.median_us_per_transaction * 1e6:12,.0f} tx/s"
        )

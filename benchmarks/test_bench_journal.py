"""The decision journal (``scoring.record``): appends of ~300-byte records, made durable by one flush
(write + fdatasync) every 256 records, as the background writer batches them; and the append alone.

Run: ``pytest benchmarks/test_bench_journal.py --benchmark-enable -o testpaths=benchmarks``.
The per-record table at the end gives records/s; ``extra_info`` also holds MB/s of payload.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.conftest import PerTransactionRecorder
from scoring.record import Journal

BATCH = 256
RECORD_BYTES = 300
ROUNDS = 400  # ~31 MB of payload per benchmark


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "journal", max_bytes=4 << 30) as opened:
        yield opened


@pytest.fixture(scope="module")
def payloads() -> list[bytes]:
    return [os.urandom(RECORD_BYTES) for _ in range(BATCH)]


def _payload_rate(benchmark: Any) -> None:
    if benchmark.stats is not None:
        benchmark.extra_info["payload_mb_per_s"] = BATCH * RECORD_BYTES / float(benchmark.stats.stats.median) / 1e6


def test_append_and_flush_every_256(benchmark: Any, per_transaction: PerTransactionRecorder, journal: Journal,
                                    payloads: list[bytes]) -> None:
    append, flush = journal.append, journal.flush

    def batch() -> int:
        for payload in payloads:
            append(payload)
        return flush()

    benchmark.pedantic(batch, rounds=ROUNDS, iterations=1, warmup_rounds=10)
    assert journal.durable_seq == journal.last_seq >= BATCH
    per_transaction(benchmark, BATCH)
    _payload_rate(benchmark)


def test_append_only(benchmark: Any, per_transaction: PerTransactionRecorder, journal: Journal,
                     payloads: list[bytes]) -> None:
    append = journal.append

    def batch() -> None:
        for payload in payloads:
            append(payload)

    def flush_untimed() -> None:
        journal.flush()

    benchmark.pedantic(batch, setup=flush_untimed, rounds=ROUNDS, iterations=1, warmup_rounds=10)
    assert journal.last_seq >= BATCH
    per_transaction(benchmark, BATCH)
    _payload_rate(benchmark)

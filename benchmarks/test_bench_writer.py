"""The decision writer (``scoring.record.writer``): rows/s it sustains into the embedded PostgreSQL (fsync and
synchronous commit on, as shipped) with 46-float feature vectors, records submitted as fast as the loop can;
and the per-record Python cost of the two encodings (COPY row, journal payload).

``test_writer_blocks_rows_per_second``: the scoring server's case, blocks of 256 rows (a stream message's
decisions: protobuf parse, AES-GCM sealing of device id and IP, binary COPY), into the embedded server and, when
``FRAUDGUARD_BENCH_DSN`` is set (e.g. ``postgresql://postgres@127.0.0.1:5432/test``), into a database
``fg_bench_<random>`` made on that server and dropped after.

Run: ``pytest benchmarks/test_bench_writer.py --benchmark-enable -o testpaths=benchmarks -s``.
``extra_info`` holds rows_per_s.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.recording_blocks import KEY_ID, make_blocks, sealer
from benchmarks.scratch_database import scratch_database_sync
from fraudguard.db import Database, EmbeddedPostgres
from scoring.record import DecisionRecord, DecisionWriter, Journal
from scoring.record.block import DecisionBlock
from scoring.record.rows import encode, to_row

ROWS = 60_000
FEATURES = 46


@pytest.fixture(scope="module")
def pg_dir() -> Iterator[Path]:
    """Outside pytest's temporary root (as root, the server runs as 'pgserver': see tests/test_db.py)."""
    path = Path(tempfile.mkdtemp(prefix="fraudguard-bench-db-"))
    try:
        EmbeddedPostgres.start(path).stop()
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _records(n: int, prefix: str) -> list[DecisionRecord]:
    now = int(time.time() * 1e6)
    features = np.random.default_rng(1).normal(size=(64, FEATURES)).astype(np.float32)
    return [DecisionRecord(
        transaction_id=f"{prefix}{i}", event_time_us=now + i, card_token="tok_" + "cd" * 16, merchant_id="m-1",
        amount_minor=1999, currency="EUR", features=features[i % 64], model_version="m-1", score=0.1,
        action="allow", server_time_us=30.0, decided_at_us=now + i + 30, card_bin="411111", card_last4="1111",
        mcc=5411, merchant_country="DE", channel="ecommerce", entry_mode="chip",
        reasons='[{"feature": "amount_z", "contribution": 0.2}]',
    ) for i in range(n)]


async def _sustain(pg_dir: Path, journal_dir: Path, batch_rows: int, records: list[DecisionRecord]) -> float:
    async with await Database.open(None, pg_dir) as db:
        with Journal(journal_dir) as journal:
            writer = DecisionWriter(db, journal, batch_rows=batch_rows, queue_rows=len(records))
            started = time.perf_counter()
            async with writer:
                for i in range(0, len(records), 256):  # as a stream message's batch arrives
                    await writer.submit_wait_many(records[i:i + 256])
                    await asyncio.sleep(0)
            elapsed = time.perf_counter() - started
            assert writer.stats.written == len(records) and writer.stats.journaled == 0
    return len(records) / elapsed


@pytest.mark.parametrize("batch_rows", [512, 4096])
def test_writer_rows_per_second(benchmark: Any, pg_dir: Path, tmp_path: Path, batch_rows: int) -> None:
    rounds = iter(range(100))

    def run() -> float:
        records = _records(ROWS, f"b{batch_rows}-{next(rounds)}-")
        return asyncio.run(_sustain(pg_dir, tmp_path / f"journal-{time.monotonic_ns()}", batch_rows, records))

    rate = benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info["rows_per_s"] = rate
    print(f"\nwriter, batch_rows={batch_rows}: {rate:,.0f} rows/s (last round)")


@pytest.mark.parametrize("encoding", ["copy_row", "journal_payload"])
def test_encoding_cost_per_record(benchmark: Any, encoding: str) -> None:
    records = _records(1024, "e-")
    convert = to_row if encoding == "copy_row" else encode

    def run() -> None:
        for record in records:
            convert(record)

    benchmark(run)
    if benchmark.stats is not None:
        benchmark.extra_info["us_per_record"] = float(benchmark.stats.stats.median) / len(records) * 1e6


BLOCKS = 160  # x 256 rows per round


@pytest.fixture(scope="module", params=["embedded", "external"])
def server_dsn(request: pytest.FixtureRequest, pg_dir: Path) -> Iterator[str | None]:
    """None: the embedded server in pg_dir; else a fresh database on FRAUDGUARD_BENCH_DSN's server."""
    if request.param == "embedded":
        yield None
        return
    admin = os.environ.get("FRAUDGUARD_BENCH_DSN")
    if not admin:
        pytest.skip("set FRAUDGUARD_BENCH_DSN to measure the writer on that PostgreSQL too")
    with scratch_database_sync(admin) as dsn:
        yield dsn


async def _sustain_blocks(dsn: str | None, pg_dir: Path, journal_dir: Path, batch_rows: int,
                          blocks: list[DecisionBlock]) -> float:
    rows = sum(len(b) for b in blocks)
    async with await Database.open(dsn, pg_dir) as db:
        with Journal(journal_dir) as journal:
            writer = DecisionWriter(db, journal, batch_rows=batch_rows, queue_rows=rows, seal=sealer(), key_id=KEY_ID)
            started = time.perf_counter()
            async with writer:
                for block in blocks:  # one stream message after another, as fast as the loop goes
                    await writer.submit_wait(block)
                    await asyncio.sleep(0)
            elapsed = time.perf_counter() - started
            assert writer.stats.written == rows and writer.stats.duplicates == 0 and writer.stats.journaled == 0
    return rows / elapsed


@pytest.mark.parametrize("batch_rows", [512, 2048, 8192])
def test_writer_blocks_rows_per_second(benchmark: Any, server_dsn: str | None, pg_dir: Path, tmp_path: Path,
                                       batch_rows: int) -> None:
    rounds = iter(range(100))

    def run() -> float:
        blocks = make_blocks(BLOCKS, f"blk{batch_rows}-{secrets.token_hex(3)}-{next(rounds)}")
        return asyncio.run(_sustain_blocks(server_dsn, pg_dir, tmp_path / f"journal-{time.monotonic_ns()}",
                                           batch_rows, blocks))

    rates = [benchmark.pedantic(run, rounds=1, iterations=1)]
    rates += [run() for _ in range(2)]
    rate = float(np.median(rates))
    benchmark.extra_info["rows_per_s"] = rate
    benchmark.extra_info["rows_per_s_rounds"] = rates
    where = "embedded" if server_dsn is None else "external"
    print(f"\nwriter, 256-row blocks, {where}, batch_rows={batch_rows}: median {rate:,.0f} rows/s "
          f"({', '.join(f'{r:,.0f}' for r in rates)})")

"""Where the decision writer's time goes, at blocks of 256 rows: building rows (protobuf parse, sealing, layout),
the driver's encoding, and PostgreSQL's COPY, ON CONFLICT and index maintenance, each timed on its own.

Run: ``python -m benchmarks.writer_stages [--dsn postgresql://postgres@127.0.0.1:5432/test] [--blocks 80]``.
Without ``--dsn`` it uses an embedded PostgreSQL in a fresh data directory; with one, it makes and drops its own
database ``fg_bench_<random>`` on that server. Each stage runs ``--rounds`` times over fresh transaction ids;
medians are printed (and written as JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.recording_blocks import KEY_ID, make_blocks, sealer
from benchmarks.scratch_database import scratch_database
from fraudguard.db import Database
from scoring.record.block import DecisionBlock, Seal, block_copy_rows, block_rows
from scoring.record.rows import COLUMNS, COPY_COLUMNS, copy_payload
from scoring.record.writer import STAGING_TABLE

_PREPARE = ("SET LOCAL client_min_messages = warning; "
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} (LIKE decisions INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS")
_COLS = ", ".join(COLUMNS)
_MOVE = (f"INSERT INTO decisions ({_COLS}) SELECT {_COLS} FROM {STAGING_TABLE} "
         "ON CONFLICT (transaction_id, event_day) DO NOTHING")


def _rows(blocks: list[DecisionBlock], seal: Seal | None) -> list[list[tuple[Any, ...]]]:
    return [block_rows(b, seal, KEY_ID) for b in blocks]


def _binary(blocks: list[DecisionBlock], seal: Seal | None) -> list[bytes]:
    return [copy_payload([block_copy_rows(b, seal, KEY_ID)]) for b in blocks]


async def _timed(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    await run()
    return time.perf_counter() - wall, time.process_time() - cpu


async def _stages(db: Database, n_blocks: int, rounds: int) -> dict[str, dict[str, float]]:
    seal = sealer()
    results: dict[str, list[tuple[float, float]]] = {}

    def note(name: str, wall: float, cpu: float) -> None:
        results.setdefault(name, []).append((wall, cpu))

    for r in range(rounds):
        tag = secrets.token_hex(3)
        blocks = {kind: make_blocks(n_blocks, f"{kind}-{tag}-{r}", seed=r) for kind in
                  ("plain", "staging", "direct", "bindirect", "binstaging", "big")}
        started = time.perf_counter()
        _rows(blocks["plain"], None)
        note("build rows, no sealing", time.perf_counter() - started, 0.0)
        started = time.perf_counter()
        rows = _rows(blocks["staging"], seal)
        note("build rows (tuples, sealed)", time.perf_counter() - started, 0.0)
        direct_rows = _rows(blocks["direct"], seal)
        started = time.perf_counter()
        _binary(blocks["plain"], None)
        note("build binary COPY payload, no sealing", time.perf_counter() - started, 0.0)
        started = time.perf_counter()
        payloads = _binary(blocks["bindirect"], seal)
        note("build binary COPY payload (sealed)", time.perf_counter() - started, 0.0)
        bin_staging = _binary(blocks["binstaging"], seal)
        async with db.connection() as conn:
            await conn.execute("DROP TABLE IF EXISTS fg_bare; "
                               "CREATE TEMP TABLE fg_bare (LIKE decisions INCLUDING DEFAULTS)")

            async def bare(data: list[list[tuple[Any, ...]]] = rows) -> None:
                for block in data:
                    await conn.copy_records_to_table("fg_bare", records=block, columns=COLUMNS)

            note("COPY tuples -> temp table, no indexes/checks", *await _timed(bare))
            await conn.execute("TRUNCATE fg_bare")

            async def staging(data: list[list[tuple[Any, ...]]] = rows) -> None:
                for block in data:
                    async with conn.transaction():
                        await conn.execute(_PREPARE)
                        await conn.copy_records_to_table(STAGING_TABLE, records=block, columns=COLUMNS)
                        await conn.execute(_MOVE)

            note("COPY tuples -> staging + INSERT ON CONFLICT (before)", *await _timed(staging))

            async def direct(data: list[list[tuple[Any, ...]]] = direct_rows) -> None:
                for block in data:
                    await conn.copy_records_to_table("decisions", records=block, columns=COLUMNS)

            note("COPY tuples -> decisions directly", *await _timed(direct))
            if payloads:
                async def bin_bare(data: list[bytes] = payloads) -> None:
                    for payload in data:
                        await conn.copy_to_table("fg_bare", source=memoryview(payload), columns=COPY_COLUMNS,
                                                 format="binary")

                note("COPY binary -> temp table, no indexes/checks", *await _timed(bin_bare))

                async def bin_direct(data: list[bytes] = payloads) -> None:
                    for payload in data:
                        await conn.copy_to_table("decisions", source=memoryview(payload), columns=COPY_COLUMNS,
                                                 format="binary")

                note("COPY binary -> decisions directly", *await _timed(bin_direct))
                big = [copy_payload([block_copy_rows(b, seal, KEY_ID) for b in blocks["big"][i:i + 8]])
                       for i in range(0, len(blocks["big"]), 8)]

                async def bin_direct_big(data: list[bytes] = big) -> None:
                    for payload in data:
                        await conn.copy_to_table("decisions", source=memoryview(payload), columns=COPY_COLUMNS,
                                                 format="binary")

                note("COPY binary -> decisions directly, 2048 rows per COPY", *await _timed(bin_direct_big))

                async def bin_staging_run(data: list[bytes] = bin_staging) -> None:
                    for payload in data:
                        async with conn.transaction():
                            await conn.execute(_PREPARE)
                            await conn.copy_to_table(STAGING_TABLE, source=memoryview(payload), columns=COPY_COLUMNS,
                                                     format="binary")
                            await conn.execute(_MOVE)

                note("COPY binary -> staging + INSERT ON CONFLICT", *await _timed(bin_staging_run))
    n_rows = n_blocks * 256
    out = {}
    for name, samples in results.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        out[name] = {"rows_per_s": n_rows / wall, "us_per_row": wall / n_rows * 1e6,
                     "client_cpu_us_per_row": cpu / n_rows * 1e6}
    return out


async def _on_server(dsn: str | None, n_blocks: int, rounds: int) -> dict[str, dict[str, float]]:
    data_dir = Path(tempfile.mkdtemp(prefix="fraudguard-bench-db-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            target = None if dsn is None else await stack.enter_async_context(scratch_database(dsn))
            async with await Database.open(target, data_dir) as db:
                return await _stages(db, n_blocks, rounds)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=None, help="a server to make a database on (default: embedded)")
    parser.add_argument("--blocks", type=int, default=80, help="blocks of 256 rows per stage and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = asyncio.run(_on_server(args.dsn, args.blocks, args.rounds))
    server = "embedded" if args.dsn is None else args.dsn
    print(f"server: {server}; {args.blocks} blocks x 256 rows, median of {args.rounds} rounds")
    for name, r in results.items():
        print(f"  {name:<52} {r['rows_per_s']:>10,.0f} rows/s  {r['us_per_row']:7.2f} us/row wall  "
              f"{r['client_cpu_us_per_row']:6.2f} us/row client CPU")
    if args.json is not None:
        args.json.write_text(json.dumps({"server": server, "stages": results}, indent=2))


if __name__ == "__main__":
    main()

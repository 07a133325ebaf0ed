"""What recording costs the scoring server: the same server, driven by the same load generator, with
``FRAUDGUARD_RECORD=false`` and then ``true``.

Per server: open-loop unary ``Score`` at a fixed rate (p50/p99 latency from the intended send time), then
closed-loop ``ScoreStream`` and ``ScoreBatch`` with 256 transactions per message (capacity). While recording, after
each run the bench waits until the decision journals are empty (every answered decision stored): ``drain s`` is
how long the writer needed after the run (a database slower than the scorer spills to the outage journal and is
replayed, so the scorer is not held to its pace until the journal fills). Ratios on/off are computed within the
one run; machines are noisy, so compare ratios.

Run: ``make bench-recording`` or ``python -m benchmarks.recording_bench [--dsn postgresql://...] [--embedded]
[--duration 10] [--rate 1500] [--output results/recording.json]``. With a DSN (the default is the machine's
PostgreSQL), it makes its own database ``fg_bench_<random>`` there and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks.scratch_database import scratch_database_sync
from tests._server_process import ServerProcess

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _journal_bytes(data_dir: Path) -> int:
    """Bytes in the decision journals' segment files: 0 once every answered decision is in the database."""
    return sum(p.stat().st_size for p in (data_dir / "journal").rglob("*.seg"))


def _drain(data_dir: Path, timeout_s: float) -> float:
    """Wait until the journals are empty (the write-ahead journal is acknowledged as blocks are stored, the
    outage journal as it is replayed); the seconds waited."""
    started = time.monotonic()
    while _journal_bytes(data_dir) and time.monotonic() - started < timeout_s:
        time.sleep(0.1)
    return time.monotonic() - started


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM decisions"))
    finally:
        await conn.close()


def _bench(target: str, out: Path, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "fraudguard.cli", "bench", "--target", target, "--output", str(out), *args]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    run: dict[str, Any] = json.loads(out.read_text())["runs"][0]
    return run


def _runs(target: str, work: Path, args: argparse.Namespace, dsn: str | None) -> dict[str, Any]:
    """Each run, then (recording) the wait until the writer has stored everything; so no run pays for the
    previous one's backlog."""
    timing = ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    plans = {
        f"score open {args.rate:g}/s": ["--rpc", "score", "--mode", "open", "--rate", str(args.rate),
                                        "--concurrency", "8", *timing],
        "stream-256 closed": ["--rpc", "stream", "--mode", "closed", "--batch-size", "256", "--concurrency", "2",
                              "--pipeline", "2", *timing],
        "batch-256 closed": ["--rpc", "batch", "--mode", "closed", "--batch-size", "256", "--concurrency", "4",
                             *timing],
    }
    results: dict[str, Any] = {}
    for name, plan in plans.items():
        out = work / f"{name.split()[0]}.json"
        if dsn is None:
            run = _bench(target, out, *plan)
            results[name] = {"run": run}
            continue
        before = asyncio.run(_count(dsn))
        started = time.monotonic()
        run = _bench(target, out, *plan)
        ended = time.monotonic()
        drain_s = _drain(work / "data", 600.0)
        stored = asyncio.run(_count(dsn)) - before
        # the load generator cycles through a pool of transactions, so rows_stored counts distinct ids (a resent id
        # is stored once), not answers: the writer's own rows/s is benchmarks/test_bench_writer.py's
        results[name] = {"run": run, "rows_stored": stored, "drain_after_s": drain_s,
                         "seconds_to_stored": ended - started + drain_s}
    return results


def _serve(data_dir: Path, record: bool, database: str, batch_rows: int) -> ServerProcess:
    env = {"FRAUDGUARD_RECORD": "true" if record else "false", "FRAUDGUARD_RECORD_BATCH_ROWS": str(batch_rows)}
    if database:
        env["FRAUDGUARD_DATABASE_URL"] = database
    return ServerProcess(data_dir, env=env).start(timeout=300)


def _summary(off: dict[str, Any], on: dict[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for name in off:
        a, b = off[name]["run"], on[name]["run"]
        entry = {
            "tx_per_s_off": a["transactions_per_s"], "tx_per_s_on": b["transactions_per_s"],
            "tx_per_s_ratio": b["transactions_per_s"] / max(a["transactions_per_s"], 1e-9),
            "p50_us_off": a["latency_us"]["p50"], "p50_us_on": b["latency_us"]["p50"],
            "p99_us_off": a["latency_us"]["p99"], "p99_us_on": b["latency_us"]["p99"],
            "p99_ratio": b["latency_us"]["p99"] / max(a["latency_us"]["p99"], 1e-9),
            "errors_on": {**b["rpc_errors"], **b["item_errors"]},
        }
        for key in ("rows_stored", "drain_after_s"):
            if key in on[name]:
                entry[key] = on[name][key]
        table[name] = entry
    return table


def _print(table: dict[str, Any]) -> None:
    print(f"{'run':<22} {'tx/s off':>10} {'tx/s on':>10} {'ratio':>6} {'p50 off':>9} {'p50 on':>9} "
          f"{'p99 off':>9} {'p99 on':>9} {'p99 ratio':>9} {'drain s':>8}")
    for name, e in table.items():
        print(f"{name:<22} {e['tx_per_s_off']:>10,.0f} {e['tx_per_s_on']:>10,.0f} {e['tx_per_s_ratio']:>6.2f} "
              f"{e['p50_us_off'] / 1000:>7.2f}ms {e['p50_us_on'] / 1000:>7.2f}ms {e['p99_us_off'] / 1000:>7.2f}ms "
              f"{e['p99_us_on'] / 1000:>7.2f}ms {e['p99_ratio']:>9.2f} {e.get('drain_after_s', 0):>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("FRAUDGUARD_BENCH_DSN", DEFAULT_DSN),
                        help="server on which to make the database fg_bench_<random> (default %(default)s)")
    parser.add_argument("--embedded", action="store_true", help="use the embedded PostgreSQL instead of --dsn")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop unary Score requests/s")
    parser.add_argument("--batch-rows", type=int, default=2048, help="FRAUDGUARD_RECORD_BATCH_ROWS")
    parser.add_argument("--output", type=Path, default=Path("results/recording.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fraudguard-bench-rec-"))
    try:
        with contextlib.ExitStack() as stack:
            database = "" if args.embedded else stack.enter_context(scratch_database_sync(args.dsn))
            _run_all(args, work, database)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_all(args: argparse.Namespace, work: Path, database: str) -> None:
    env = {**os.environ, **({"FRAUDGUARD_DATABASE_URL": database} if database else {})}
    subprocess.run([sys.executable, "-m", "fraudguard.cli", "models", "demo", "--data-dir", str(work / "data"),
                    "--transactions", "20000"], check=True, env=env, stdout=subprocess.DEVNULL)
    counted = database or None  # the embedded server's rows are not counted (its socket is the server's)
    results: dict[str, Any] = {}
    for record in (False, True):
        server = _serve(work / "data", record, database, args.batch_rows)
        try:
            results["on" if record else "off"] = _runs(server.target, work, args, counted if record else None)
        finally:
            server.terminate()
    table = _summary(results["off"], results["on"])
    document = {"tool": "benchmarks.recording_bench", "database": "embedded" if args.embedded else args.dsn,
                "parameters": {k: str(v) for k, v in vars(args).items()}, "summary": table, "runs": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2))
    _print(table)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()

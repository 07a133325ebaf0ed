"""The hot path with and without recording: what a scoring handler does per message — wire decode, features,
model, reasons, decision, wire encode and, when recording, the decision block and its write-ahead journal
append — timed call by call, while the decision writer runs on the same event loop and stores into PostgreSQL.

Calls are paced (one every ``--interval-us``, yielding to the event loop between calls, as a server between
requests), so the writer's batches, row building and COPYs interleave with them as they do in the server. The
same servicer state and the same transactions are used for both, in alternating rounds (off, on, off, on, ...),
and p50/p99/p99.9 of the per-call times are reported with their on/off ratios.

Run: ``python -m benchmarks.hot_path_recording [--dsn postgresql://...] [--calls 20000]`` (``make
bench-recording`` runs it after ``recording_bench``). With a DSN (default: the machine's PostgreSQL), a database
``fg_bench_<random>`` is made there and dropped; ``--embedded`` uses an embedded server in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.loadgen_transactions import TransactionFactory
from benchmarks.scratch_database import scratch_database
from fraudguard.db import Database
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.pan import PanTokenizer
from fraudguard.security.personal import Keyring, personal_aad
from scoring.features import EngineCapacity, FeatureEngine
from scoring.model import load_promoted
from scoring.record import DecisionWriter
from scoring.record.recorder import Recorder
from scoring.scorer import Scorer
from scoring.servicer import ScoringServicer
from trainer.demo import build_demo_bundle

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
WARM = 50_000


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    us = np.asarray(samples_ns, np.float64) / 1000.0
    return {"p50": float(np.percentile(us, 50)), "p99": float(np.percentile(us, 99)),
            "p99.9": float(np.percentile(us, 99.9)), "mean": float(us.mean()), "n": int(us.size)}


async def _paced(call: Callable[[bytes], bytes], messages: list[bytes], interval_s: float) -> list[int]:
    """Time each call; sleep between calls to the next slot, so the loop runs the writer as a server would."""
    times: list[int] = []
    next_at = time.perf_counter()
    for message in messages:
        t0 = time.perf_counter_ns()
        call(message)
        times.append(time.perf_counter_ns() - t0)
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return times


async def _measure(database: Database, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    models = work / "models"
    build_demo_bundle(models, report=False)
    scorer = Scorer(FeatureEngine(EngineCapacity(131_072, 131_072, 1_048_576)), load_promoted(models))
    tokenizer = PanTokenizer(secrets.token_bytes(32))
    factory = TransactionFactory(seed=7)
    warm = factory.build(WARM, stream_seed=1, id_prefix="warm", span_s=3600)
    plain = ScoringServicer(scorer, tokenizer, 4096)
    for i in range(0, WARM, 256):
        plain.score_many(scoring_pb2.ScoreBatchRequest(transactions=warm[i:i + 256]).SerializeToString(),
                         scoring_pb2.ScoreBatchRequest)
    keyring = Keyring("k-bench", {"k-bench": os.urandom(32)})

    def seal(column: str, transaction_id: str, text: str) -> bytes:
        return keyring.seal(text.encode(), personal_aad(column, transaction_id))

    ahead, outage = Recorder.open_journals(work / "journal", 1 << 30)
    writer = DecisionWriter(database, outage, batch_rows=2048, batch_interval_s=0.005, queue_rows=262_144,
                            seal=seal, key_id=keyring.current_id)
    recorder = Recorder(writer, ahead, tokenizer)
    await recorder.start()
    recording = ScoringServicer(scorer, tokenizer, 4096, recorder)
    results: dict[str, Any] = {}
    try:
        for batch in (1, args.batch):
            n = args.calls if batch == 1 else max(200, args.calls // 50)
            interval = args.interval_us / 1e6 * (1 if batch == 1 else 20)
            samples: dict[str, list[int]] = {"off": [], "on": []}
            for round_ in range(args.rounds):
                for name, servicer in (("off", plain), ("on", recording)):
                    txs = factory.build(n * batch, stream_seed=100 + round_ * 2 + (name == "on"),
                                        id_prefix=f"{name}{round_}b{batch}", span_s=600)
                    if batch == 1:
                        messages = [scoring_pb2.ScoreRequest(transaction=t).SerializeToString() for t in txs]
                        call: Callable[[bytes], bytes] = servicer.score_one
                    else:
                        messages = [scoring_pb2.ScoreBatchRequest(transactions=txs[i:i + batch]).SerializeToString()
                                    for i in range(0, len(txs), batch)]
                        call = _batch_call(servicer)
                    samples[name] += await _paced(call, messages, interval)
            off, on = _percentiles(samples["off"]), _percentiles(samples["on"])
            if batch > 1:  # per transaction
                off = {k: (v / batch if k != "n" else v) for k, v in off.items()}
                on = {k: (v / batch if k != "n" else v) for k, v in on.items()}
            results[f"batch {batch}"] = {"off_us": off, "on_us": on,
                                         "ratio": {k: on[k] / off[k] for k in ("p50", "p99", "p99.9", "mean")}}
        while writer.stats.queue_depth or writer.stats.journal_backlog:
            await asyncio.sleep(0.1)
        results["writer"] = {"written": writer.stats.written, "journaled": writer.stats.journaled,
                             "rejected": writer.stats.rejected}
    finally:
        await recorder.close()
    return results


def _batch_call(servicer: ScoringServicer) -> Callable[[bytes], bytes]:
    def call(message: bytes) -> bytes:
        return servicer.score_many(message, scoring_pb2.ScoreBatchRequest)
    return call


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fraudguard-bench-hot-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            dsn = None if args.embedded else await stack.enter_async_context(scratch_database(args.dsn))
            database = await Database.open(dsn, work)
            try:
                return await _measure(database, work, args)
            finally:
                await database.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("FRAUDGUARD_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--calls", type=int, default=10_000, help="single-transaction calls per round and mode")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval-us", type=float, default=400.0, help="pace of single calls (batches: x20)")
    parser.add_argument("--output", type=Path, default=Path("results/hot_path_recording.json"))
    args = parser.parse_args()
    results = asyncio.run(_main(args))
    print(f"{'per transaction':<16} {'p50 off':>9} {'p50 on':>9} {'p99 off':>9} {'p99 on':>9} {'p99.9 off':>10} "
          f"{'p99.9 on':>9} {'p99 ratio':>9}")
    for name, r in results.items():
        if name == "writer":
            continue
        off, on = r["off_us"], r["on_us"]
        print(f"{name:<16} {off['p50']:>7.1f}us {on['p50']:>7.1f}us {off['p99']:>7.1f}us {on['p99']:>7.1f}us "
              f"{off['p99.9']:>8.1f}us {on['p99.9']:>7.1f}us {r['ratio']['p99']:>9.2f}")
    print(f"writer: {results['writer']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"tool": "benchmarks.hot_path_recording",
                                       "parameters": {k: str(v) for k, v in vars(args).items()},
                                       "results": results}, indent=2))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()

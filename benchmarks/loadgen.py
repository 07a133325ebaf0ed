"""``fraudguard bench``: load-generate against a scoring server and report throughput and latency.

Closed loop (``--mode closed``) keeps ``--concurrency`` requests (or streams) busy as fast
as the server answers: it measures capacity. Open loop (``--mode open``) sends
``--rate`` request messages per second on a fixed schedule whatever the server does,
and measures latency from each request's *intended* send time, so a stall is counted
in full (no coordinated omission). One ``Score`` call, one ``ScoreBatch`` call and one
``ScoreStream`` message are each one request; a batch or stream message carries
``--batch-size`` transactions, so transactions/s = requests/s x batch size.

Latency is client-side, per request; ``server_time_us`` comes from the decisions.
Exit status (``fraudguard.exit_codes``): 0 when every run got answers, 40 when the target
(or the spawned server) does not answer, 1 when a run got no answer or a client failed,
2 for bad options.

Examples::

    fraudguard bench --target 127.0.0.1:50051 --rpc score --mode open --rate 2000 --duration 10
    fraudguard bench --spawn-server --data-dir data --scenario all --output results/load.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.loadgen_client import ClientPlan, check_reachable
from benchmarks.loadgen_report import RunParameters, RunSummary, human_summary, markdown_table, report_document
from benchmarks.loadgen_server import spawned_server
from benchmarks.loadgen_workers import TRAFFIC_SOURCES, LoadgenError, Traffic, run_in_processes
from fraudguard.errors import UnavailableError
from fraudguard.exit_codes import ExitCode

DEFAULT_TARGET = "127.0.0.1:50051"
_DEFAULT_BATCH = {"score": 1, "stream": 1, "batch": 256}
DEFAULT_RATE = 1000.0
SCENARIO_RATE = 2000.0
SCENARIO_PIPELINE = 8  # messages in flight per stream in the scenario's pipelined stream run
_DEFAULT = " (default %(default)s)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fraudguard bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", help=f"HOST:PORT of the scoring server (default {DEFAULT_TARGET})")
    p.add_argument("--rpc", choices=("score", "stream", "batch", "all"), default="score",
                   help="Score (unary), ScoreStream, ScoreBatch, or each of them in turn" + _DEFAULT)
    p.add_argument("--mode", choices=("open", "closed"), default="closed",
                   help="open: fixed send schedule; closed: --concurrency requests in flight" + _DEFAULT)
    p.add_argument("--rate", type=float,
                   help=f"open loop: request messages per second over all processes (x batch size = tx/s); "
                        f"default {DEFAULT_RATE:g}, or {SCENARIO_RATE:g} for the scenario's open-loop run")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured, per run" + _DEFAULT)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring, per run" + _DEFAULT)
    p.add_argument("--concurrency", type=int, default=4,
                   help="closed loop: requests in flight (unary) or streams; open loop: streams" + _DEFAULT)
    p.add_argument("--pipeline", type=int, default=1,
                   help="closed-loop streams: messages in flight per stream" + _DEFAULT)
    p.add_argument("--batch-size", type=int, help="transactions per ScoreBatch call or stream message "
                   "(default 1 for score and stream, 256 for batch)")
    p.add_argument("--processes", type=int, default=1, help="client processes sharing the load" + _DEFAULT)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds: connect timeout, per-call deadline" + _DEFAULT)
    p.add_argument("--pool-size", type=int, default=50_000,
                   help="distinct transactions built per process before each run (~2 s per 100k); a longer run "
                        "cycles through them, so ids and event times repeat" + _DEFAULT)
    p.add_argument("--traffic", choices=TRAFFIC_SOURCES, default="synthetic",
                   help="synthetic: trainer.synthetic's payments (what the demo model learned: realistic decisions); "
                        "builtin: the load generator's own, independent of the trainer" + _DEFAULT)
    p.add_argument("--seed", type=int, default=7, help="seed of the generated cards, merchants and payments" + _DEFAULT)
    p.add_argument("--output", type=Path, help="write the full report as JSON here")
    p.add_argument("--tls-ca", type=Path, help="PEM CA bundle: connect with TLS, trusting this CA")
    p.add_argument("--scenario", choices=("all",),
                   help="all: the README table (unary closed, unary open at --rate, default 2000 rps, stream "
                        f"batch 1 closed (pipeline --pipeline, then {SCENARIO_PIPELINE}), stream batch 64/256 closed, "
                        "batch 256 closed); ignores --rpc, --mode and --batch-size")
    p.add_argument("--spawn-server", action="store_true",
                   help="start a scoring server on --data-dir for the benchmark, stop it afterwards")
    p.add_argument("--data-dir", type=Path, default=Path("data"),
                   help="with --spawn-server: the server's data directory; a demo model is made if none"
                        + _DEFAULT)
    return p


def _check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    positive = {"--rate": 1.0 if args.rate is None else args.rate, "--duration": args.duration,
                "--timeout": args.timeout, "--concurrency": args.concurrency, "--pipeline": args.pipeline,
                "--processes": args.processes, "--pool-size": args.pool_size}
    for name, value in positive.items():
        if not value > 0:
            parser.error(f"{name} must be positive, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must not be negative, got {args.warmup}")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    if args.rpc == "score" and args.batch_size not in (None, 1) and not args.scenario:
        parser.error("--rpc score sends one transaction per call; --batch-size must be 1")
    if args.spawn_server and (args.target or args.tls_ca):
        parser.error("--spawn-server starts a plaintext server of its own; drop --target and --tls-ca")
    if args.processes > args.concurrency:
        parser.error(f"--processes ({args.processes}) cannot exceed --concurrency ({args.concurrency})")


def run_parameters(args: argparse.Namespace) -> list[RunParameters]:
    """The runs asked for, in order."""
    rate = args.rate or (SCENARIO_RATE if args.scenario else DEFAULT_RATE)

    def run(name: str, rpc: str, mode: str, batch: int, pipeline: int | None = None) -> RunParameters:
        return RunParameters(name=name, rpc=rpc, mode=mode, batch_size=batch, concurrency=args.concurrency,
                             pipeline=pipeline or args.pipeline, rate=rate if mode == "open" else None,
                             duration_s=args.duration, warmup_s=args.warmup, processes=args.processes)

    if args.scenario == "all":
        return [
            run("unary, closed", "score", "closed", 1),
            run(f"unary, open {rate:g} rps", "score", "open", 1),
            run("stream batch 1, closed", "stream", "closed", 1),
            run(f"stream batch 1, closed, pipeline {SCENARIO_PIPELINE}", "stream", "closed", 1, SCENARIO_PIPELINE),
            run("stream batch 64, closed", "stream", "closed", 64),
            run("stream batch 256, closed", "stream", "closed", 256),
            run("batch 256, closed", "batch", "closed", 256),
        ]
    rpcs = ("score", "stream", "batch") if args.rpc == "all" else (args.rpc,)
    out = []
    for rpc in rpcs:
        batch = 1 if rpc == "score" else args.batch_size or _DEFAULT_BATCH[rpc]
        label = {"score": "unary", "stream": f"stream batch {batch}", "batch": f"batch {batch}"}[rpc]
        out.append(run(f"{label}, {args.mode}", rpc, args.mode, batch))
    return out


def _client_plan(target: str, run: RunParameters, args: argparse.Namespace, tls_ca: bytes | None) -> ClientPlan:
    return ClientPlan(target=target, rpc=run.rpc, mode=run.mode, rate=run.rate or 0.0, concurrency=run.concurrency,
                      pipeline=run.pipeline, batch_size=run.batch_size, duration_s=run.duration_s,
                      warmup_s=run.warmup_s, timeout_s=args.timeout, tls_ca=tls_ca)


@contextlib.contextmanager
def _target(args: argparse.Namespace) -> Iterator[str]:
    if not args.spawn_server:
        yield args.target or DEFAULT_TARGET
        return
    print(f"starting a scoring server on {args.data_dir} ...", file=sys.stderr, flush=True)
    with spawned_server(args.data_dir) as target:
        yield target


def _jsonable(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def _bench(args: argparse.Namespace, runs: list[RunParameters]) -> ExitCode:
    tls_ca = args.tls_ca.read_bytes() if args.tls_ca else None
    summaries: list[RunSummary] = []
    tag = f"{int(time.time()):x}"
    with _target(args) as target:
        info = check_reachable(target, tls_ca, args.timeout)
        print(f"target {target}, model {info.model_version or '(unnamed)'}", file=sys.stderr, flush=True)
        for i, run in enumerate(runs):
            print(f"running {run.name} for {run.warmup_s:g} + {run.duration_s:g} s ...", file=sys.stderr, flush=True)
            traffic = Traffic(seed=args.seed, pool_size=args.pool_size, run_tag=f"{tag}{i}", source=args.traffic)
            raw = run_in_processes(_client_plan(target, run, args, tls_ca), traffic, run.processes)
            summary = RunSummary.of(run, raw)
            summaries.append(summary)
            print(human_summary(summary) + "\n", flush=True)
    if len(summaries) > 1:
        print(markdown_table(summaries), flush=True)
    if args.output:
        document = report_document(summaries, _jsonable(args), target, info.model_version)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document, indent=2) + "\n")
        print(f"report written to {args.output}", file=sys.stderr)
    silent = [s.parameters.name for s in summaries if s.requests_ok == 0]
    if silent:
        print(f"fraudguard bench: no request succeeded in: {', '.join(silent)}", file=sys.stderr)
        return ExitCode.FAILURE
    return ExitCode.SUCCESS


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check(args, parser)
    try:
        return int(_bench(args, run_parameters(args)))
    except UnavailableError as exc:
        print(f"fraudguard bench: {exc}", file=sys.stderr)
        return ExitCode.TARGET_UNREACHABLE
    except LoadgenError as exc:
        print(f"fraudguard bench: {exc}", file=sys.stderr)
    except OSError as exc:  # --tls-ca or --output unreadable / unwritable
        print(f"fraudguard bench: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("fraudguard bench: interrupted", file=sys.stderr)
    return ExitCode.FAILURE

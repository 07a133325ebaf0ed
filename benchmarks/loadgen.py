"""``fraudguard bench``: load-generate against a scoring server and report throughput and latency.

Closed loop (``--mode closed``) keeps ``--concurrency`` requests (or streams) busy as fast
as the server answers: it measures capacity. Open loop (``--mode open``) sends
``--rate`` request messages per second on a fixed schedule whatever the server does,
and measures latency from each request's *intended* send time, so a stall is counted
in full (no coordinated omission). One ``Score`` call, one ``ScoreBatch`` call and one
``ScoreStream`` message are each one request; a batch or stream message carries
``--batch-size`` transactions, so transactions/s = requests/s x batch size.

REST (``--protocol rest --gateway-url http://HOST:PORT``) sends the same traffic as JSON through the
gateway (``fraudguard gateway``): ``--rpc score`` posts ``/v1/score`` (one transaction per request),
``--rpc batch`` posts ``/v1/score:batch`` (``--batch-size`` per request), ``--rpc all`` both; the gateway
has no stream. HTTP/1.1 with keep-alive connections: one per request in flight in closed loop, a pool
of up to 256 in open loop. With ``--spawn-server`` a REST run starts the scoring server and a gateway in
front of it (same data directory, so the same embedded PostgreSQL; no rate limit).

``--scenario all`` is the gRPC table (unary, streams, batches). ``--scenario rest`` puts REST beside
gRPC, one transaction per request: unary ``Score`` and ``POST /v1/score`` in closed loop at
``--concurrency`` and at 16 in flight, then both in open loop at ``--rate`` (default 500 rps, what the
REST path sustains on two shared cores). It needs ``--spawn-server``, or ``--target`` and
``--gateway-url`` naming a scoring server and a gateway in front of it. Scenarios ignore
``--protocol``, ``--rpc``, ``--mode`` and ``--batch-size``. The Markdown table names each row's protocol.

Latency is client-side, per request; ``server_time_us`` comes from the decisions.
Exit status (``fraudguard.exit_codes``): 0 when every run got answers, 40 when the target
(or the spawned server, or the gateway) does not answer, 1 when a run got no answer or a client failed,
2 for bad options.

Examples::

    fraudguard bench --target 127.0.0.1:50051 --rpc score --mode open --rate 2000 --duration 10
    fraudguard bench --spawn-server --data-dir data --scenario all --output results/load.json
    fraudguard bench --protocol rest --gateway-url http://127.0.0.1:8080 --rpc batch --batch-size 64
    fraudguard bench --spawn-server --data-dir data --scenario rest --output results/load_rest.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.loadgen_client import ClientPlan, check_reachable
from benchmarks.loadgen_report import RunParameters, RunSummary, human_summary, markdown_table, report_document
from benchmarks.loadgen_rest_client import check_gateway
from benchmarks.loadgen_rest_http import Origin
from benchmarks.loadgen_rest_json import PATHS
from benchmarks.loadgen_server import spawned_gateway, spawned_server
from benchmarks.loadgen_workers import TRAFFIC_SOURCES, LoadgenError, Traffic, run_in_processes
from fraudguard.errors import UnavailableError
from fraudguard.exit_codes import ExitCode

DEFAULT_TARGET = "127.0.0.1:50051"
_DEFAULT_BATCH = {"score": 1, "stream": 1, "batch": 256}
DEFAULT_RATE = 1000.0
SCENARIO_RATE = 2000.0
SCENARIO_PIPELINE = 8  # messages in flight per stream in the scenario's pipelined stream run
REST_SCENARIO_RATE = 500.0
REST_SCENARIO_WIDE = 16  # requests in flight in the REST scenario's second closed-loop pair
_DEFAULT = " (default %(default)s)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fraudguard bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", help=f"HOST:PORT of the scoring server (default {DEFAULT_TARGET})")
    p.add_argument("--protocol", choices=("grpc", "rest"), default="grpc",
                   help="grpc: the scoring server itself; rest: the JSON API of the gateway at --gateway-url"
                        + _DEFAULT)
    p.add_argument("--gateway-url", help="http://HOST:PORT of the REST gateway (--protocol rest, --scenario rest)")
    p.add_argument("--rpc", choices=("score", "stream", "batch", "all"), default="score",
                   help="Score (unary), ScoreStream, ScoreBatch, or each of them in turn; over REST: "
                        "POST /v1/score, POST /v1/score:batch, or both (no stream)" + _DEFAULT)
    p.add_argument("--mode", choices=("open", "closed"), default="closed",
                   help="open: fixed send schedule; closed: --concurrency requests in flight" + _DEFAULT)
    p.add_argument("--rate", type=float,
                   help=f"open loop: request messages per second over all processes (x batch size = tx/s); "
                        f"default {DEFAULT_RATE:g}, or for the scenarios' open-loop runs {SCENARIO_RATE:g} (all) "
                        f"and {REST_SCENARIO_RATE:g} (rest)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds measured, per run" + _DEFAULT)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring, per run" + _DEFAULT)
    p.add_argument("--concurrency", type=int, default=4,
                   help="closed loop: requests in flight (unary, REST: one connection each) or streams; "
                        "open loop: streams" + _DEFAULT)
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
    p.add_argument("--tls-ca", type=Path, help="PEM CA bundle: connect with TLS (gRPC), or verify an https "
                                                 "--gateway-url (REST), trusting this CA")
    p.add_argument("--scenario", choices=("all", "rest"),
                   help="all: the README's gRPC table (unary closed, unary open at --rate, default 2000 rps, stream "
                        f"batch 1 closed (pipeline --pipeline, then {SCENARIO_PIPELINE}), stream batch 64/256 closed, "
                        "batch 256 closed); rest: REST beside gRPC, one transaction per request (unary Score and "
                        f"POST /v1/score, closed at --concurrency and {REST_SCENARIO_WIDE} in flight, open at --rate, "
                        f"default {REST_SCENARIO_RATE:g} rps); both ignore --protocol, --rpc, --mode and --batch-size")
    p.add_argument("--spawn-server", action="store_true",
                   help="start a scoring server on --data-dir for the benchmark (for REST runs, and a gateway in "
                        "front of it), stop it afterwards")
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
    if args.spawn_server and (args.target or args.tls_ca or args.gateway_url):
        parser.error("--spawn-server starts plaintext servers of its own; drop --target, --gateway-url and --tls-ca")
    if args.processes > args.concurrency:
        parser.error(f"--processes ({args.processes}) cannot exceed --concurrency ({args.concurrency})")
    _check_protocol(args, parser)


def _uses_rest(args: argparse.Namespace) -> bool:
    return args.scenario == "rest" or (args.protocol == "rest" and args.scenario is None)


def _check_protocol(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    if args.scenario == "all" and args.protocol == "rest":
        parser.error("--scenario all is the gRPC table (it has streams); for REST beside gRPC use --scenario rest")
    if not _uses_rest(args):
        if args.gateway_url:
            parser.error("--gateway-url is for --protocol rest or --scenario rest")
        return
    if args.scenario is None and args.rpc == "stream":
        parser.error("--protocol rest: the gateway has no stream call; use --rpc score, batch or all")
    if args.gateway_url is None and not args.spawn_server:
        parser.error(f"{'--scenario rest' if args.scenario else '--protocol rest'} needs --gateway-url "
                     "http://HOST:PORT (a running 'fraudguard gateway'), or --spawn-server")
    if args.gateway_url is not None:
        try:
            Origin.parse(args.gateway_url)
        except ValueError:
            parser.error(f"--gateway-url must look like http://HOST:PORT, got {args.gateway_url!r}")


def run_parameters(args: argparse.Namespace) -> list[RunParameters]:
    """The runs asked for, in order."""
    default_rate = {"all": SCENARIO_RATE, "rest": REST_SCENARIO_RATE}.get(args.scenario, DEFAULT_RATE)
    rate = args.rate or default_rate

    def run(name: str, rpc: str, mode: str, batch: int, pipeline: int | None = None, protocol: str = "grpc",
            concurrency: int | None = None) -> RunParameters:
        return RunParameters(name=name, rpc=rpc, mode=mode, batch_size=batch,
                             concurrency=concurrency or args.concurrency, pipeline=pipeline or args.pipeline,
                             rate=rate if mode == "open" else None, duration_s=args.duration, warmup_s=args.warmup,
                             processes=args.processes, protocol=protocol)

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
    labels = {"grpc": "unary Score", "rest": f"POST {PATHS['score']}"}
    if args.scenario == "rest":
        out = []
        for concurrency in dict.fromkeys((args.concurrency, REST_SCENARIO_WIDE)):
            out += [run(f"{labels[protocol]}, closed, {concurrency} in flight", "score", "closed", 1,
                        protocol=protocol, concurrency=concurrency) for protocol in ("grpc", "rest")]
        out += [run(f"{labels[protocol]}, open {rate:g} rps", "score", "open", 1, protocol=protocol)
                for protocol in ("grpc", "rest")]
        return out
    rest = args.protocol == "rest"
    rpcs = (("score", "batch") if rest else ("score", "stream", "batch")) if args.rpc == "all" else (args.rpc,)
    out = []
    for rpc in rpcs:
        batch = 1 if rpc == "score" else args.batch_size or _DEFAULT_BATCH[rpc]
        if rest:
            label = PATHS[rpc] + (f" batch {batch}" if rpc == "batch" else "")
        else:
            label = {"score": "unary", "stream": f"stream batch {batch}", "batch": f"batch {batch}"}[rpc]
        out.append(run(f"{label}, {args.mode}", rpc, args.mode, batch, protocol=args.protocol))
    return out


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the runs go: the scoring server (gRPC runs) and the gateway (REST runs); ``None`` when unused."""

    target: str | None
    gateway_url: str | None

    def of(self, protocol: str) -> str:
        endpoint = self.gateway_url if protocol == "rest" else self.target
        assert endpoint is not None, f"no endpoint for {protocol}"
        return endpoint


def _client_plan(endpoints: Endpoints, run: RunParameters, args: argparse.Namespace,
                 tls_ca: bytes | None) -> ClientPlan:
    return ClientPlan(target=endpoints.of(run.protocol), rpc=run.rpc, mode=run.mode, rate=run.rate or 0.0,
                      concurrency=run.concurrency, pipeline=run.pipeline, batch_size=run.batch_size,
                      duration_s=run.duration_s, warmup_s=run.warmup_s, timeout_s=args.timeout, tls_ca=tls_ca,
                      protocol=run.protocol)


@contextlib.contextmanager
def _endpoints(args: argparse.Namespace, runs: list[RunParameters]) -> Iterator[Endpoints]:
    protocols = {run.protocol for run in runs}
    grpc = "grpc" in protocols
    if not args.spawn_server:
        yield Endpoints(args.target or DEFAULT_TARGET if grpc else None, args.gateway_url)
        return
    print(f"starting a scoring server on {args.data_dir} ...", file=sys.stderr, flush=True)
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(spawned_server(args.data_dir))
        url = None
        if "rest" in protocols:
            print(f"starting a gateway in front of it on {args.data_dir} ...", file=sys.stderr, flush=True)
            url = stack.enter_context(spawned_gateway(args.data_dir, target))
        yield Endpoints(target, url)


def _check_endpoints(endpoints: Endpoints, args: argparse.Namespace, tls_ca: bytes | None) -> str:
    """Probe each endpoint the runs use; the model version they serve."""
    model_version = ""
    if endpoints.gateway_url is not None:
        model_version = check_gateway(endpoints.gateway_url, tls_ca, args.timeout)
        print(f"gateway {endpoints.gateway_url}, model {model_version or '(unnamed)'}", file=sys.stderr, flush=True)
    if endpoints.target is not None:
        model_version = check_reachable(endpoints.target, tls_ca, args.timeout).model_version
        print(f"target {endpoints.target}, model {model_version or '(unnamed)'}", file=sys.stderr, flush=True)
    return model_version


def _jsonable(args: argparse.Namespace) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def _bench(args: argparse.Namespace, runs: list[RunParameters]) -> ExitCode:
    tls_ca = args.tls_ca.read_bytes() if args.tls_ca else None
    summaries: list[RunSummary] = []
    tag = f"{int(time.time()):x}"
    with _endpoints(args, runs) as endpoints:
        model_version = _check_endpoints(endpoints, args, tls_ca)
        for i, run in enumerate(runs):
            print(f"running {run.protocol_label} {run.name} for {run.warmup_s:g} + {run.duration_s:g} s ...",
                  file=sys.stderr, flush=True)
            traffic = Traffic(seed=args.seed, pool_size=args.pool_size, run_tag=f"{tag}{i}", source=args.traffic)
            raw = run_in_processes(_client_plan(endpoints, run, args, tls_ca), traffic, run.processes)
            summary = RunSummary.of(run, raw)
            summaries.append(summary)
            print(human_summary(summary) + "\n", flush=True)
    if len(summaries) > 1:
        print(markdown_table(summaries), flush=True)
    if args.output:
        document = report_document(summaries, _jsonable(args), endpoints.target, model_version,
                                   endpoints.gateway_url)
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

"""Summaries of load-generator runs: percentiles, the JSON document, the human text, the Markdown table."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.loadgen_schedule import LATE_SEND_THRESHOLD_S, RawResult

REPORT_FORMAT = 1
_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
PROTOCOL_LABELS = {"grpc": "gRPC", "rest": "REST"}


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Microseconds. All zero when nothing was measured (``count`` says so)."""

    count: int
    p50: float
    p90: float
    p99: float
    p99_9: float
    max: float
    mean: float

    @staticmethod
    def of(values_us: npt.NDArray[np.float64]) -> Percentiles:
        if len(values_us) == 0:
            return Percentiles(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        p50, p90, p99, p999 = (float(v) for v in np.percentile(values_us, _PERCENTILES))
        return Percentiles(len(values_us), p50, p90, p99, p999, float(values_us.max()), float(values_us.mean()))


@dataclass(frozen=True, slots=True)
class RunParameters:
    """What was asked of one run. ``rate`` is request messages per second (open loop only)."""

    name: str
    rpc: str
    mode: str
    batch_size: int
    concurrency: int
    pipeline: int
    rate: float | None
    duration_s: float
    warmup_s: float
    processes: int
    protocol: str = "grpc"  # "grpc" or "rest" (through the gateway)

    @property
    def protocol_label(self) -> str:
        return PROTOCOL_LABELS.get(self.protocol, self.protocol)


@dataclass(frozen=True, slots=True)
class RunSummary:
    parameters: RunParameters
    transactions_per_s: float
    requests_per_s: float
    latency_us: Percentiles  # per request, from its intended send time (coordinated-omission safe)
    service_latency_us: Percentiles  # per request, from its actual send time
    server_time_us: Percentiles  # per transaction, Decision.server_time_us
    requests_ok: int
    transactions_ok: int
    rpc_errors: dict[str, int]  # status code -> requests
    item_errors: dict[str, int]  # status code -> transactions (batch and stream results)
    sends: int
    late_sends: int  # open loop: sent more than late_threshold_us after the intended time
    late_threshold_us: float
    max_send_lag_us: float

    @staticmethod
    def of(parameters: RunParameters, raw: RawResult) -> RunSummary:
        seconds = parameters.duration_s
        server = np.repeat(raw.server_time_us, raw.server_weight)
        return RunSummary(
            parameters=parameters,
            transactions_per_s=raw.transactions_ok / seconds,
            requests_per_s=raw.requests_ok / seconds,
            latency_us=Percentiles.of(raw.latency_s * 1e6),
            service_latency_us=Percentiles.of(raw.service_s * 1e6),
            server_time_us=Percentiles.of(server),
            requests_ok=raw.requests_ok,
            transactions_ok=raw.transactions_ok,
            rpc_errors=dict(sorted(raw.rpc_errors.items())),
            item_errors=dict(sorted(raw.item_errors.items())),
            sends=raw.sends,
            late_sends=raw.late_sends,
            late_threshold_us=LATE_SEND_THRESHOLD_S * 1e6,
            max_send_lag_us=raw.max_send_lag_s * 1e6,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in ("grpcio", "protobuf", "numpy", "uvicorn", "httptools", "uvloop"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        **versions,
    }


def report_document(runs: list[RunSummary], parameters: dict[str, Any], target: str | None,
                    model_version: str, gateway_url: str | None = None) -> dict[str, Any]:
    """The ``--output`` JSON: machine, every parameter, when, against what (``target``: the scoring server,
    ``gateway_url``: the REST gateway; ``None`` when not used), and each run's figures."""
    return {
        "tool": "fraudguard bench",
        "format": REPORT_FORMAT,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": parameters,
        "target": target,
        "gateway_url": gateway_url,
        "model_version": model_version,
        "runs": [run.to_json() for run in runs],
    }


def _ms(us: float) -> str:
    return f"{us / 1000:.2f}"


def _errors_text(summary: RunSummary) -> str:
    parts = [f"{code}={n:,}" for code, n in summary.rpc_errors.items()]
    parts += [f"item {code}={n:,}" for code, n in summary.item_errors.items()]
    return ", ".join(parts) or "none"


def human_summary(summary: RunSummary) -> str:
    p = summary.parameters
    lat, svc, srv = summary.latency_us, summary.service_latency_us, summary.server_time_us
    load = f"{p.rate:,.0f} req/s" if p.mode == "open" and p.rate else f"concurrency {p.concurrency}"
    lines = [
        f"{p.name}: {p.protocol_label} {p.rpc}, {p.mode} loop, {load}, batch {p.batch_size}, "
        f"{p.processes} process(es), {p.duration_s:g} s measured after {p.warmup_s:g} s warm-up",
        f"  throughput   {summary.transactions_per_s:,.0f} tx/s, {summary.requests_per_s:,.0f} req/s",
        f"  latency ms   p50 {_ms(lat.p50)}  p90 {_ms(lat.p90)}  p99 {_ms(lat.p99)}  "
        f"p99.9 {_ms(lat.p99_9)}  max {_ms(lat.max)}  ({lat.count:,} requests)",
        f"  server us    p50 {srv.p50:.1f}  p99 {srv.p99:.1f}  (per transaction, reported by the server)",
        f"  errors       {_errors_text(summary)}",
    ]
    if p.mode == "open":
        lines.insert(3, f"  service ms   p50 {_ms(svc.p50)}  p99 {_ms(svc.p99)}  (from actual send; "
                        "the line above counts from the intended send)")
        lines.append(f"  sends        {summary.late_sends:,} of {summary.sends:,} later than "
                     f"{summary.late_threshold_us / 1000:g} ms; max lag {_ms(summary.max_send_lag_us)} ms")
    return "\n".join(lines)


def markdown_table(runs: list[RunSummary]) -> str:
    """One row per run, its name led by its protocol (``gRPC`` or ``REST``, through the gateway)."""
    rows = [
        "| run | tx/s | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| server p50 µs | server p99 µs | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for s in runs:
        lat = s.latency_us
        rows.append(
            f"| {s.parameters.protocol_label} {s.parameters.name} | {s.transactions_per_s:,.0f} | "
            f"{s.requests_per_s:,.0f} | {_ms(lat.p50)} | {_ms(lat.p90)} | {_ms(lat.p99)} | {_ms(lat.p99_9)} | "
            f"{_ms(lat.max)} | {s.server_time_us.p50:.1f} | {s.server_time_us.p99:.1f} | {_errors_text(s)} |"
        )
    return "\n".join(rows)

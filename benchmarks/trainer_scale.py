"""Time and peak memory of ``fraudguard generate``, ``train`` and ``evaluate`` at 1 M and 5 M payments.

Each step runs as its own process (the real CLI), so its peak resident memory is its own:
``resource.getrusage(RUSAGE_CHILDREN)`` after each child has exited, in a fresh parent per
step. Usage::

    python -m benchmarks.trainer_scale --sizes 1000000 5000000 --output results/trainer_scale.json

prints a Markdown table (the README's) and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_MEASURE = """
import resource, subprocess, sys, time
began = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL).returncode
took = time.perf_counter() - began
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{code} {took} {peak_kib}")
"""


@dataclass(frozen=True, slots=True)
class Step:
    size: int
    step: str
    seconds: float
    peak_mib: float
    command: str


def run_step(size: int, step: str, argv: list[str]) -> Step:
    """Run ``argv`` in a measuring parent; ``RuntimeError`` if it fails."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *argv], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    try:
        code, seconds, peak_kib = out.stdout.strip().splitlines()[-1].split()
    except (IndexError, ValueError) as exc:
        raise RuntimeError(f"{step} at {size}: no measurement; stderr:\n{out.stderr[-2000:]}") from exc
    if int(code) != 0:
        raise RuntimeError(f"{step} at {size} exited with {code}; stderr:\n{out.stderr[-2000:]}")
    return Step(size, step, round(float(seconds), 1), round(int(peak_kib) / 1024, 0), " ".join(argv[1:]))


def measure(size: int, work: Path, seed: int, threads: int, max_trials: int) -> list[Step]:
    fraudguard = [sys.executable, "-m", "fraudguard.cli"]
    data = work / f"payments-{size}.parquet"
    data_dir = work / f"data-{size}"
    steps = [run_step(size, "generate", [*fraudguard, "generate", "-q", "-n", str(size), "--days", "60",
                                         "--seed", str(seed), "-o", str(data)])]  # fmt: skip
    steps.append(run_step(size, "train", [*fraudguard, "train", "--input", str(data), "--data-dir", str(data_dir),
                                          "--max-trials", str(max_trials), "--threads", str(threads),
                                          "--version", "bench", "--seed", str(seed)]))  # fmt: skip
    steps.append(run_step(size, "evaluate", [*fraudguard, "evaluate", "--input", str(data), "--data-dir",
                                             str(data_dir), "--bundle", "bench", "--from", "2024-02-20",
                                             "--report-dir", str(work / f"report-{size}"), "--scores-out",
                                             str(work / f"scores-{size}.csv")]))  # fmt: skip
    return steps


def table(steps: list[Step]) -> str:
    lines = ["| payments | step | wall time | peak memory (RSS) |", "| ---: | --- | ---: | ---: |"]
    lines += [f"| {s.size:,} | {s.step} | {s.seconds:,.1f} s | {s.peak_mib:,.0f} MiB |" for s in steps]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trainer_scale", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads (default 2: this machine's cores)")
    parser.add_argument("--max-trials", type=int, default=1, help="hyper-parameter candidates (default 1)")
    parser.add_argument("--output", type=Path, default=Path("results/trainer_scale.json"))
    args = parser.parse_args(argv)
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="fraudguard-scale-") as scratch:
        for size in args.sizes:
            for step in measure(size, Path(scratch), args.seed, args.threads, args.max_trials):
                print(f"{step.size:>10,} {step.step:<9} {step.seconds:>8.1f} s {step.peak_mib:>8,.0f} MiB",
                      file=sys.stderr, flush=True)  # fmt: skip
                steps.append(step)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "python": platform.python_version(), "threads": args.threads, "max_trials": args.max_trials}  # fmt: skip
    args.output.write_text(json.dumps({"meta": meta, "steps": [asdict(s) for s in steps]}, indent=2) + "\n")
    print(table(steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``fraudguard generate``: synthetic payments with labelled fraud scenarios, as Parquet or CSV.

The file's columns are the canonical field names that ``fraudguard train`` and
``fraudguard evaluate`` read without a ``--map``. Exit codes: 0 done; 2 bad command line;
1 the file cannot be written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.timeparse import parse_duration, parse_instant
from trainer.cli_common import error, parse_args

_DAY_S = 86_400.0


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard generate``; returns the exit code."""
    args = parse_args(_parser(), argv)
    if isinstance(args, int):
        return args
    from trainer.files import write_payments
    from trainer.synthetic import SyntheticConfig, generate_payments

    try:
        config = SyntheticConfig(
            n_transactions=args.transactions, seed=args.seed, days=args.days,
            start_time=int(parse_instant(args.start, "--start")), fraud_rate=args.fraud_rate,
            label_delay_days=(parse_duration(args.label_delay_min, "--label-delay-min") / _DAY_S,
                              parse_duration(args.label_delay_max, "--label-delay-max") / _DAY_S),
        )  # fmt: skip
        _check_output(args.output)
    except ValidationError as exc:
        error("generate", str(exc))
        return int(ExitCode.USAGE)
    began = time.perf_counter()
    with tqdm(total=2 * config.n_transactions, unit="row", unit_scale=True, desc="generate",
              disable=args.quiet or not sys.stderr.isatty()) as bar:  # fmt: skip
        payments = generate_payments(config, progress=lambda stage, rows: _advance(bar, stage, rows))
    try:
        write_payments(payments, args.output)
    except (OSError, ValidationError) as exc:
        error("generate", f"cannot write {args.output}: {exc}")
        return int(ExitCode.FAILURE)
    took = time.perf_counter() - began
    fraud = int(payments.is_fraud.sum())
    print(f"wrote {len(payments):,} payments ({fraud:,} fraud, {payments.fraud_rate:.2%}) to {args.output} "
          f"in {took:.1f} s")  # fmt: skip
    return int(ExitCode.SUCCESS)


def _advance(bar: tqdm, stage: str, rows: int) -> None:
    bar.set_postfix_str(stage, refresh=False)
    bar.update(rows)


def _check_output(path: Path) -> None:
    name = path.name.lower()
    if not name.endswith((".parquet", ".pq", ".csv", ".csv.gz")):
        raise ValidationError("--output", f"must end in .parquet, .pq, .csv or .csv.gz, got {path.name!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationError("--output", f"cannot create directory {path.parent}: {exc.strerror}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard generate",
        description="Generate synthetic payments: customers with homes and spending habits, their cards, devices "
        "and IPs, merchants, daily and weekly seasonality, travel, legitimate look-alikes (new phones, big tickets, "
        "bursts, shopping abroad and through VPNs, late nights) and nine labelled fraud scenarios (card testing, "
        "high velocity, amount spike, account takeover, impossible travel, compromised merchant, known-bad device, "
        "structuring, friendly fraud). Deterministic by seed.",
        epilog="times: 2024-01-01 or 2024-01-01T00:00:00Z; durations: 12h, 1d, 30d",
    )
    parser.add_argument("--output", "-o", type=Path, required=True, metavar="FILE",
                        help="where to write: .parquet, .pq, .csv or .csv.gz")
    parser.add_argument("--transactions", "-n", type=int, default=1_000_000, metavar="N",
                        help="payments to generate (default 1000000)")
    parser.add_argument("--days", type=int, default=60, help="days the payments span (default 60)")
    parser.add_argument("--start", default="2024-01-01", metavar="TIME", help="first day (default 2024-01-01)")
    parser.add_argument("--seed", type=int, default=7, help="same seed, same file (default 7)")
    parser.add_argument("--fraud-rate", type=float, default=0.02, metavar="R",
                        help="share of payments that are fraud (default 0.02)")
    parser.add_argument("--label-delay-min", default="1d", metavar="DURATION",
                        help="a chargeback arrives at least this long after the payment (default 1d)")
    parser.add_argument("--label-delay-max", default="30d", metavar="DURATION",
                        help="and at most this long after it (default 30d)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser

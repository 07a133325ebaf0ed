"""What the trainer's commands share: the input-file options, the data directory, argument parsing, errors."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.settings import ENV_PREFIX
from fraudguard.timeparse import parse_duration
from trainer.files import ColumnMapping, ImportedPayments, ImportOptions, read_payments

DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"


def input_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--input``, ``--map`` and how to read amounts, currencies and label times."""
    group = parser.add_argument_group("input")
    group.add_argument("--input", type=Path, required=required, metavar="FILE",
                       help="payments as .csv, .csv.gz, .parquet or .pq")
    group.add_argument("--map", metavar="FIELD=COLUMN,...",
                       help="which file column holds each field, e.g. transaction_id=ID,timestamp=TS,amount=AMT,"
                       "card=CARD,merchant=MERCHANT,label=IS_FRAUD; required: transaction_id, timestamp, amount, "
                       "card (default: columns named as the fields, as 'fraudguard generate' writes them)")
    group.add_argument("--amount-unit", choices=("major", "minor"), default="major",
                       help="amounts are in major units (12.34) or minor units (1234) (default major)")
    group.add_argument("--currency", default="USD", help="currency when the file has no currency column (default USD)")
    group.add_argument("--import-label-delay", default="7d", metavar="DURATION",
                       help="when the file has no label_time column, a fraud label is taken to arrive this long "
                       "after its payment (default 7d)")  # fmt: skip


def data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get(DATA_DIR_ENV) or "data"), metavar="DIR",
        help=f"data directory; bundles live in DIR/models [env {DATA_DIR_ENV}; default data]",
    )


def read_input(command: str, args: argparse.Namespace) -> ImportedPayments | int:
    """The ``--input`` file through ``--map``, its import summary printed to stderr; or, when it cannot be read,
    the error printed and the exit code ``BAD_INPUT_DATA``."""
    try:
        mapping = None if args.map is None else ColumnMapping.parse(args.map)
        options = ImportOptions(amount_unit=args.amount_unit, default_currency=args.currency,
                                label_delay_s=parse_duration(args.import_label_delay, "--import-label-delay"))
        imported = read_payments(args.input, mapping, options)
    except ValidationError as exc:
        error(command, str(exc))
        return int(ExitCode.BAD_INPUT_DATA)
    print(imported.report.summary(), file=sys.stderr)
    return imported

def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code when argparse already answered (--help: 0, bad usage: 2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)


def error(command: str, message: str) -> None:
    print(f"fraudguard {command}: error: {message}", file=sys.stderr)

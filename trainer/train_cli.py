"""``fraudguard train``: a payments file (CSV or Parquet, through a column mapping) → a model bundle.

Exit codes (``fraudguard.exit_codes``): 0 done; 2 bad command line; 31 the export failed its
parity check; 50 the input cannot be read or is mostly garbage; 51 the data cannot make a model.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from fraudguard.errors import BundleError, ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.timeparse import parse_duration, parse_instant
from trainer.cli_common import data_dir_option, error, input_options, parse_args, read_input

if TYPE_CHECKING:
    from trainer.pipeline import TrainConfig


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard train``; returns the exit code."""
    args = parse_args(_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        config = _config(args)
    except ValidationError as exc:
        error("train", str(exc))
        return int(ExitCode.USAGE)
    imported = read_input("train", args)
    if isinstance(imported, int):
        return imported
    from trainer.pipeline import TrainingSource, train_bundle  # LightGBM and ONNX only once the input is good

    source = TrainingSource(imported.payments, imported.provided, str(args.input), imported.mapping)
    models_dir = args.data_dir / "models"
    try:
        outcome = train_bundle(source, models_dir, config)
    except ValidationError as exc:
        error("train", str(exc))
        return int(ExitCode.CANNOT_TRAIN)
    except BundleError as exc:
        error("train", str(exc))
        return int(ExitCode.BAD_MODEL_BUNDLE)
    m = outcome.bundle.manifest
    excluded = ", ".join(sorted(outcome.selection.excluded)) or "none"
    print(f"wrote {outcome.bundle.path}")
    print(f"  test AUC {m.metrics['auc']:.4f}, AP {m.metrics['average_precision']:.4f}, "
          f"review recall {m.metrics['review_recall']:.3f} at review rate {m.metrics['review_rate']:.4f}")  # fmt: skip
    print(f"  {len(outcome.search.trials)} candidate(s) tried ({outcome.search.stopped_by}); features left out: "
          f"{excluded}")  # fmt: skip
    if (outcome.bundle.path / "report" / "report.html").exists():
        print(f"  report: {outcome.bundle.path / 'report' / 'report.html'}")
    if args.promote:  # recorded and audited in the database first, as 'fraudguard models promote' does
        from trainer import models_cli

        return models_cli.main(["promote", m.version, "--data-dir", str(args.data_dir),
                                "--note", "promoted by 'fraudguard train --promote'"])
    print(f"  serve it with: fraudguard models promote {m.version} --data-dir {args.data_dir}")
    return int(ExitCode.SUCCESS)


def _config(args: argparse.Namespace) -> TrainConfig:
    from trainer.calibrate import OperatingTargets
    from trainer.periods import TrainingPeriods
    from trainer.pipeline import TrainConfig
    from trainer.search import SearchBudget
    from trainer.train import TrainingParams

    def instant(value: str | None, flag: str) -> float | None:
        return None if value is None else parse_instant(value, flag)

    periods = TrainingPeriods(
        train_from=instant(args.train_from, "--train-from"), train_to=instant(args.train_to, "--train-to"),
        test_from=instant(args.test_from, "--test-from"), test_to=instant(args.test_to, "--test-to"),
        gap_s=parse_duration(args.gap, "--gap"), validation_fraction=args.validation_fraction,
        warmup_s=parse_duration(args.warmup, "--warmup"),
    )
    targets = OperatingTargets(
        block_precision=args.block_precision, block_rate=args.block_rate, review_rate=args.review_rate,
        challenge_rate=args.challenge_rate, review_per_day=args.review_per_day,
    )
    return TrainConfig(
        periods=periods, params=TrainingParams(seed=args.seed, num_threads=args.threads),
        budget=SearchBudget(max_trials=args.max_trials, seconds=parse_duration(args.time_budget, "--time-budget")),
        targets=targets,
        label_delay_s=None if args.label_delay is None else parse_duration(args.label_delay, "--label-delay"),
        version=args.version, description=args.description, promote=False,  # --promote: the audited command
        progress=sys.stderr.isatty(), report=not args.no_report, anomaly=args.anomaly,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard train",
        description="Train a LightGBM model on a payments file and write a model bundle (ONNX, thresholds, "
        "metrics, training record, evaluation report). Features are replayed in time order through the "
        "scoring server's own kernels; the split is by time: train, gap, test.",
        epilog="times: 2024-02-01, 2024-02-01T12:00:00Z or epoch seconds; durations: 90s, 15m, 6h, 7d, 2w. "
        "exit codes: 0 done, 2 bad usage, 31 export failed parity, 50 unreadable input, 51 cannot train",
    )
    input_options(parser)
    data_dir_option(parser)
    when = parser.add_argument_group("periods (half-open [from, to); unset bounds come from the data)")
    when.add_argument("--train-from", metavar="TIME", help="start of training (default: first payment + --warmup)")
    when.add_argument("--train-to", metavar="TIME", help="end of training (default: --test-from minus --gap)")
    when.add_argument("--test-from", metavar="TIME", help="start of the test period (default: the last 15%% of "
                      "payments, or --train-to plus --gap)")  # fmt: skip
    when.add_argument("--test-to", metavar="TIME", help="end of the test period (default: end of data)")
    when.add_argument("--gap", default="0s", metavar="DURATION", help="time between training and test (default 0s)")
    when.add_argument("--warmup", default="3d", metavar="DURATION",
                      help="payments replayed to warm the feature windows but not trained on, when --train-from "
                      "is not given (default 3d)")  # fmt: skip
    when.add_argument("--validation-fraction", type=float, default=0.2, metavar="F",
                      help="the last share of the training period used for early stopping, model choice and "
                      "thresholds (default 0.2)")  # fmt: skip
    when.add_argument("--label-delay", metavar="DURATION",
                      help="a fraud label becomes known this long after its payment (label-derived features see "
                      "it only then); default: the file's label_time column, else --import-label-delay")  # fmt: skip
    model = parser.add_argument_group("model")
    model.add_argument("--time-budget", default="10m", metavar="DURATION",
                       help="stop trying hyper-parameters after this long (default 10m)")
    model.add_argument("--max-trials", type=int, default=8, metavar="N",
                       help="hyper-parameter candidates to try at most; the first is the default (default 8)")
    model.add_argument("--seed", type=int, default=7, help="seed of sampling and LightGBM (default 7)")
    model.add_argument("--threads", type=int, default=1, help="LightGBM threads (default 1)")
    targets = parser.add_argument_group("operating targets (thresholds are set on the validation slice)")
    targets.add_argument("--block-precision", type=float, default=0.9, metavar="P",
                         help="of the payments blocked, at least this share is fraud (default 0.9)")
    targets.add_argument("--block-rate", type=float, default=0.01, metavar="R",
                         help="at most this share of payments blocked (default 0.01)")
    targets.add_argument("--review-rate", type=float, default=0.02, metavar="R",
                         help="at most this share reviewed or blocked (default 0.02)")
    targets.add_argument("--review-per-day", type=float, default=None, metavar="N",
                         help="and at most this many payments a day reviewed or blocked (analyst capacity)")
    targets.add_argument("--challenge-rate", type=float, default=0.05, metavar="R",
                         help="at most this share challenged, reviewed or blocked (default 0.05)")
    out = parser.add_argument_group("output")
    out.add_argument("--version", help="bundle version id (default model-<UTC time>-<data fingerprint>)")
    out.add_argument("--description", default="", help="a note stored in the manifest")
    out.add_argument("--promote", action="store_true",
                     help="promote the bundle (recorded and audited in the database, as 'fraudguard models promote' "
                     "does): running servers switch to it")
    out.add_argument("--no-report", action="store_true", help="skip the test period's evaluation report (plots)")
    model.add_argument("--anomaly", action="store_true",
                       help="also fit an Isolation Forest anomaly score (label-free; stored as anomaly.onnx with "
                       "its test AUC/AP)")  # fmt: skip
    return parser

"""``fraudguard evaluate``: score a period of a payments file with a bundle and report how it did.

Every payment before ``--to`` is replayed through the scoring kernels (so the period's
features see the history a live server would have); every payment in ``[--from, --to)``
is scored by the bundle's ONNX model, as the server scores it, and written to
``--scores-out`` as ``transaction_id,score`` for independent checking. Exit codes: 0 done;
2 bad command line; 30/31 unknown or bad bundle; 50 unreadable input; 51 nothing to evaluate.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fraudguard.errors import BundleError, NotFoundError, ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.timeparse import format_instant, parse_duration, parse_instant
from trainer.cli_common import data_dir_option, error, input_options, parse_args, read_input

if TYPE_CHECKING:
    from scoring.model import ActiveModel
    from trainer.files import ImportedPayments


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard evaluate``; returns the exit code."""
    args = parse_args(_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        start = -np.inf if args.start is None else parse_instant(args.start, "--from")
        stop = np.inf if args.stop is None else parse_instant(args.stop, "--to")
        label_delay = None if args.label_delay is None else parse_duration(args.label_delay, "--label-delay")
        if not start < stop:
            raise ValidationError("--to", "must be after --from")
    except ValidationError as exc:
        error("evaluate", str(exc))
        return int(ExitCode.USAGE)
    from scoring.model.registry import activate  # onnxruntime and the kernels only when there is work

    try:
        active = activate(_bundle_path(args.bundle, args.data_dir))
    except NotFoundError as exc:
        error("evaluate", str(exc))
        return int(ExitCode.UNKNOWN_MODEL_VERSION)
    except BundleError as exc:
        error("evaluate", str(exc))
        return int(ExitCode.BAD_MODEL_BUNDLE)
    imported = read_input("evaluate", args)
    if isinstance(imported, int):
        return imported
    try:
        return _evaluate(args, active, imported, float(start), float(stop), label_delay)
    except ValidationError as exc:
        error("evaluate", str(exc))
        return int(ExitCode.CANNOT_TRAIN)


def _evaluate(args: argparse.Namespace, active: ActiveModel, imported: ImportedPayments, start: float,
              stop: float, label_delay: float | None) -> int:  # fmt: skip
    from trainer.evaluation import evaluate
    from trainer.holdout import evaluation_input, render_report
    from trainer.replay import replay_features

    payments = imported.payments
    t = payments.event_time
    lo, hi = (int(v) for v in np.searchsorted(t, [start, stop], side="left"))
    if hi == lo:
        span = f"{format_instant(float(t[0]))} .. {format_instant(float(t[-1]))}"
        raise ValidationError("--from", f"no payments in the period; the file spans {span}")
    _warn_missing_fields(active.bundle.path, imported.provided)
    history = payments.take(slice(0, hi))
    x = replay_features(history, label_delay_s=label_delay, progress=sys.stderr.isatty())[lo:hi]
    scores = active.runtime.predict(x)
    period = history.take(slice(lo, hi))
    if args.scores_out is not None:
        _write_scores(args.scores_out, period.transaction_id, scores)
    labelled = "label" in imported.provided
    data = evaluation_input(period, scores, active.bundle.manifest.thresholds, labelled)
    evaluation = evaluate(data, k=args.k)
    report_dir: Path = args.report_dir or Path(f"evaluation-{active.bundle.manifest.version}")
    report_dir.mkdir(parents=True, exist_ok=True)
    title = f"{active.bundle.manifest.version} on {args.input.name}"
    for name, content in render_report(evaluation, data, _importance(active.bundle.path), title).items():
        (report_dir / name).write_bytes(content)
    _print_summary(evaluation.to_dict(), report_dir, args.scores_out, hi - lo)
    return int(ExitCode.SUCCESS)


def _bundle_path(bundle: str | None, data_dir: Path) -> Path:
    """``--bundle`` as a directory, or as a version under DATA_DIR/models; the promoted bundle when not given."""
    from scoring.model import promoted_version

    models_dir = data_dir / "models"
    if bundle is None:
        version = promoted_version(models_dir)
        if version is None:
            raise NotFoundError(f"no --bundle given and no promoted bundle in {models_dir}")
        return models_dir / version
    as_path = Path(bundle)
    if as_path.is_dir():
        return as_path
    from trainer.models_cli import bundle_dir

    return bundle_dir(models_dir, bundle)


def _warn_missing_fields(bundle_path: Path, provided: frozenset[str]) -> None:
    """Say which features the bundle relies on that this file cannot give it (they get the server's defaults)."""
    from trainer.fields import FEATURE_NEEDS

    try:
        used = json.loads((bundle_path / "training.json").read_text())["features"]["used"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # a bundle from before training records: nothing to compare
    lacking = sorted(name for name in used if not set(FEATURE_NEEDS.get(name, ())) - {"label"} <= provided)
    if lacking:
        print(f"warning: the bundle uses {len(lacking)} feature(s) this file has no fields for (they get the "
              f"server's defaults, as for a caller that does not send them): {', '.join(lacking)}",
              file=sys.stderr)  # fmt: skip


def _importance(bundle_path: Path) -> dict[str, float] | None:
    from scoring.model.bundle import BOOSTER_FILE

    path = bundle_path / BOOSTER_FILE
    if not path.is_file():
        return None
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(path))
    gains = booster.feature_importance("gain").tolist()
    return dict(zip(booster.feature_name(), (float(g) for g in gains), strict=True))


def _write_scores(path: Path, ids: npt.NDArray[np.str_], scores: npt.NDArray[np.float64]) -> None:
    """``transaction_id,score`` per payment, scores with 17 significant digits (exact float64 round trip)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("transaction_id", "score"))
        writer.writerows(zip(ids.tolist(), (repr(float(s)) for s in scores.tolist()), strict=True))
    tmp.replace(path)


def _print_summary(metrics: dict[str, object], report_dir: Path, scores_out: Path | None, n: int) -> None:
    def fmt(value: object) -> str:
        return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)

    print(f"evaluated {n:,} payments: AUC {fmt(metrics.get('auc_roc'))}, AP {fmt(metrics.get('average_precision'))}")
    print(f"  report: {report_dir / 'report.html'} (and report.md, metrics.json, plots)")
    if scores_out is not None:
        print(f"  scores: {scores_out}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard evaluate",
        description="Score every payment of a period with a model bundle and report AUC, average precision, "
        "precision/recall per action band, card precision@k per day, fraud amount caught, recall per scenario and "
        "false-positive rates by segment, with plots (PNG) and a Markdown/HTML report.",
        epilog="times: 2024-02-01, 2024-02-01T12:00:00Z or epoch seconds. exit codes: 0 done, 2 bad usage, "
        "30 unknown bundle, 31 bad bundle, 50 unreadable input, 51 nothing to evaluate",
    )
    parser.add_argument("--bundle", metavar="DIR|VERSION",
                        help="bundle directory, or a version in DATA_DIR/models (default: the promoted one)")
    input_options(parser)
    data_dir_option(parser)
    parser.add_argument("--from", dest="start", metavar="TIME", help="start of the period (default: first payment)")
    parser.add_argument("--to", dest="stop", metavar="TIME", help="end of the period, exclusive (default: end)")
    parser.add_argument("--label-delay", metavar="DURATION",
                        help="a fraud label becomes known this long after its payment, for the label-derived "
                        "features (default: the file's label_time, else --import-label-delay)")  # fmt: skip
    parser.add_argument("--scores-out", type=Path, metavar="FILE", help="write transaction_id,score for every "
                        "payment of the period")  # fmt: skip
    parser.add_argument("--report-dir", type=Path, metavar="DIR",
                        help="where the report goes (default evaluation-<bundle version>)")
    parser.add_argument("--k", type=int, default=100, help="cards an analyst checks a day, for card precision@k "
                        "(default 100)")  # fmt: skip
    return parser

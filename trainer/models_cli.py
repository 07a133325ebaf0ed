"""``fraudguard models``: list, show and promote model bundles; build the demo bundle.

Exit codes (``fraudguard.exit_codes``): 0 done; 2 bad command line (or too little demo data
to train on); 30 no bundle with that version; 31 the bundle (or the demo being built) is
malformed, fails its parity check or does not match the feature schema.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from fraudguard.errors import BundleError, NotFoundError, ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.settings import ENV_PREFIX
from scoring.model import ModelBundle, list_bundles, load_bundle, promote, promoted_version

_DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard models``; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)
    command: Callable[[argparse.Namespace], int] = args.run
    try:
        return command(args)
    except NotFoundError as exc:
        _error(f"{exc}; 'fraudguard models list --data-dir {args.data_dir}' shows them")
        return int(ExitCode.UNKNOWN_MODEL_VERSION)
    except BundleError as exc:
        _error(str(exc))
        return int(ExitCode.BAD_MODEL_BUNDLE)
    except ValidationError as exc:  # e.g. too few --transactions to train on
        _error(str(exc))
        return int(ExitCode.USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard models", description="List, show and promote model bundles; build the demo bundle.",
        epilog="exit codes: 0 done, 2 bad usage, 30 unknown version, 31 bad bundle",
    )
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get(_DATA_DIR_ENV) or "data"), metavar="DIR",
        help=f"data directory; bundles live in DIR/models [env {_DATA_DIR_ENV}; default data]",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", parents=[data_dir],
                               help="build a demo bundle from synthetic data and promote it",
                               description="Generate synthetic payments, replay their features, train, export to "
                               "ONNX (with a parity check), calibrate thresholds, write the bundle and promote it.")
    demo.add_argument("--if-missing", action="store_true",
                      help="do nothing when the promoted bundle loads (as 'make run' does)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic data and of training (default 7)")
    demo.add_argument("--transactions", type=_positive_int, default=None, metavar="N",
                      help="synthetic payments to train on (default 60000; fewer is faster and weaker)")
    demo.set_defaults(run=_demo)

    listing = commands.add_parser("list", parents=[data_dir], help="list the bundles, newest first",
                                  description="List the bundles, newest first; '*' marks the promoted one.")
    listing.set_defaults(run=_list)

    show = commands.add_parser("show", parents=[data_dir], help="show a bundle's manifest",
                               description="Show a bundle's manifest: thresholds, metrics, schema, fingerprint.")
    show.add_argument("version", help="bundle version id (see 'list')")
    show.add_argument("--json", action="store_true", help="print the manifest as JSON")
    show.set_defaults(run=_show)

    prom = commands.add_parser("promote", parents=[data_dir], help="make a bundle the one the scorer serves",
                               description="Make a bundle the served one; running servers pick it up by themselves. "
                               "A bundle that does not load is refused and the promoted one stays.")
    prom.add_argument("version", help="bundle version id (see 'list')")
    prom.set_defaults(run=_promote)
    return parser


def _demo(args: argparse.Namespace) -> int:
    models_dir = args.data_dir / "models"
    if args.if_missing:
        current = _usable_promoted(models_dir)
        if current is not None:
            print(f"promoted bundle {current.manifest.version} is in place; nothing to do")
            return int(ExitCode.SUCCESS)
    from trainer.demo import build_demo_bundle  # heavy imports (LightGBM, ONNX) only when building

    print(f"building a demo model bundle in {models_dir} ...", file=sys.stderr)
    size = {} if args.transactions is None else {"n_transactions": args.transactions}
    bundle = build_demo_bundle(models_dir, seed=args.seed, progress=sys.stderr.isatty(), **size)
    m = bundle.manifest
    print(f"built and promoted {m.version}: AUC {m.metrics['auc']:.4f}, AP {m.metrics['average_precision']:.4f}")
    return int(ExitCode.SUCCESS)


def _usable_promoted(models_dir: Path) -> ModelBundle | None:
    """The promoted bundle if it loads; None (with a note) when there is none or it is unusable."""
    try:
        version = promoted_version(models_dir)
        if version is None:
            return None
        return load_bundle(models_dir / version)
    except BundleError as exc:
        print(f"the promoted bundle is unusable ({exc}); building a new one", file=sys.stderr)
        return None


def _list(args: argparse.Namespace) -> int:
    models_dir = args.data_dir / "models"
    bundles = list_bundles(models_dir)
    if not bundles:
        print(f"no model bundles in {models_dir}; 'fraudguard models demo --data-dir {args.data_dir}' makes one")
        return int(ExitCode.SUCCESS)
    promoted = promoted_version(models_dir)
    width = max(len("VERSION"), *(len(b.manifest.version) for b in bundles))
    print(f"  {'VERSION':<{width}}  {'CREATED (UTC)':<19}  {'AUC':>6}  {'AP':>6}")
    for b in bundles:
        m = b.manifest
        mark = "*" if m.version == promoted else " "
        print(f"{mark} {m.version:<{width}}  {m.created_at:%Y-%m-%d %H:%M:%S}  {_metric(m.metrics, 'auc'):>6}  "
              f"{_metric(m.metrics, 'average_precision'):>6}")  # fmt: skip
    return int(ExitCode.SUCCESS)


def _show(args: argparse.Namespace) -> int:
    models_dir = args.data_dir / "models"
    bundle = _load(models_dir, args.version)
    m = bundle.manifest
    if args.json:
        print(m.to_json(), end="")
        return int(ExitCode.SUCCESS)
    t = m.thresholds
    lines = [
        f"version:      {m.version}" + ("  (promoted)" if promoted_version(models_dir) == m.version else ""),
        f"created:      {m.created_at:%Y-%m-%d %H:%M:%S} UTC",
        f"path:         {bundle.path}",
        f"schema:       {m.schema_version} ({len(m.feature_names)} features)",
        f"thresholds:   challenge >= {t.challenge:.6g}, review >= {t.review:.6g}, block >= {t.block:.6g}",
        f"fingerprint:  {m.training_data_fingerprint}",
        f"description:  {m.description or '-'}",
        "metrics:",
        *(f"  {name:<36} {value:.6g}" for name, value in m.metrics.items()),
        *_training_lines(bundle.path),
    ]
    print("\n".join(lines))
    return int(ExitCode.SUCCESS)


def _training_lines(path: Path) -> list[str]:
    """What ``training.json`` says about how the bundle was made (nothing for bundles without one)."""
    try:
        record = json.loads((path / "training.json").read_text())
        periods, features, search = record["periods"], record["features"], record["search"]
        lines = [
            "training:",
            f"  source:     {record['source']} ({record['rows']:,} rows)",
            f"  train:      {periods['train_from']} .. {periods['train_to']}",
            f"  test:       {periods['test_from']} .. {periods['test_to']}",
            f"  features:   {len(features['used'])} used, left out: {', '.join(sorted(features['excluded'])) or '-'}",
            f"  search:     {len(search['trials'])} candidate(s), stopped by {search['stopped_by']}",
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    report = path / "report" / "report.html"
    return lines + ([f"  report:     {report}"] if report.is_file() else [])


def _promote(args: argparse.Namespace) -> int:
    models_dir = args.data_dir / "models"
    _load(models_dir, args.version)
    bundle = promote(models_dir, args.version)
    print(f"promoted {bundle.manifest.version}")
    return int(ExitCode.SUCCESS)


def _load(models_dir: Path, version: str) -> ModelBundle:
    """The bundle ``version``; ``NotFoundError`` when there is no such bundle, ``BundleError`` when it is bad."""
    return load_bundle(bundle_dir(models_dir, version))


def bundle_dir(models_dir: Path, version: str) -> Path:
    """The directory of bundle ``version`` in ``models_dir``; ``NotFoundError`` for no such bundle or a version
    that is not a plain name (``..``, ``a/b``)."""
    path = models_dir / version
    if not version or version.startswith(".") or "/" in version or not path.is_dir():
        raise NotFoundError(f"no model bundle {version!r} in {models_dir}")
    return path


def _metric(metrics: Mapping[str, float], name: str) -> str:
    value = metrics.get(name)
    return "-" if value is None else f"{value:.4f}"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _error(message: str) -> None:
    print(f"fraudguard models: error: {message}", file=sys.stderr)

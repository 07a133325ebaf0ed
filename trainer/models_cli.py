"""``fraudguard models``: list, show, promote and roll back model bundles; their promotion history; the demo bundle.

Promoting is a privileged, audited action. ``promote``, ``rollback`` and ``demo`` first register the bundle in
PostgreSQL and record the promotion with its audit entry (``model.promote`` / ``model.rollback``) in one
transaction, and only after that commit flip ``DATA_DIR/models/PROMOTED``, the pointer running servers watch. So:

- the database cannot be reached or refuses: nothing is promoted (exit 60-62); a promotion without its audit row
  never happens;
- the pointer cannot be flipped after the commit (exit 31, saying so): the rows record an *intent* that did not
  take effect (the history shows it, the pointer does not); fix the cause and promote again, which records a second
  promotion.

Promotions on one database take turns (an advisory lock held from reading the pointer to flipping it). ``list`` and
``show`` read the bundle directories only and need no database.

Exit codes (``fraudguard.exit_codes``): 0 done; 2 bad command line, a version that is not a bundle id, a bad
--actor or --note (or too little demo data to train on); 10 bad setting; 30 no bundle with that version, or nothing
to roll back to; 31 the bundle (or the demo being built) is malformed, fails its parity check or does not match the
feature schema, is registered under its version with other content, or the pointer could not be flipped after the
promotion was recorded; 60-62 the database cannot be used (nothing was promoted).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import asyncpg

from fraudguard._cli_db import ErrorCodes, actor_of, actor_option, parse_args, run_with_database
from fraudguard.db import Database, DatabaseError
from fraudguard.errors import BundleError, FraudguardError, NotFoundError, ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.model_registry import (
    MAX_HISTORY,
    PROMOTE,
    ROLLBACK,
    BundleConflictError,
    BundleRecord,
    Promotion,
    RecordedPromotion,
    check_actor,
    check_note,
    check_version,
    promotion_history,
    promotion_lock,
    record_promotion,
    register_bundle,
)
from fraudguard.settings import ENV_PREFIX, Settings
from scoring.model import ModelBundle, list_bundles, load_bundle, promote, promoted_version

_DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"
DEMO_ACTOR = "system:demo"
_DB_ERRORS: ErrorCodes = ((NotFoundError, ExitCode.UNKNOWN_MODEL_VERSION), (BundleError, ExitCode.BAD_MODEL_BUNDLE),
                          (FraudguardError, ExitCode.FAILURE))  # e.g. a registry row changed under us: retry
_DB_ONLY = ("database_url", "db_connect_timeout_s")  # --data-dir is the models CLI's own


class NothingToRollBackError(NotFoundError):
    """No recorded promotion to undo, or the served bundle is not the one the last promotion recorded."""


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard models``; returns the exit code."""
    args = parse_args(_parser(), argv)  # --help (0) or a usage error (2) are answered by argparse
    if isinstance(args, int):
        return args
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
        prog="fraudguard models", description="List, show, promote and roll back model bundles (promotions are "
        "recorded and audited in the database); build the demo bundle.",
        epilog="exit codes: 0 done, 2 bad usage, 10 bad setting, 30 unknown version or nothing to roll back, 31 bad "
        "or conflicting bundle or pointer not flipped, 60-62 database unusable (nothing promoted)",
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
                               "ONNX (with a parity check), calibrate thresholds, write the bundle and promote it "
                               f"(recorded and audited as {DEMO_ACTOR!r}, like 'promote').")
    demo.add_argument("--if-missing", action="store_true",
                      help="do nothing when the promoted bundle loads (as 'make run' does)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the synthetic data and of training (default 7)")
    demo.add_argument("--transactions", type=_positive_int, default=None, metavar="N",
                      help="synthetic payments to train on (default 60000; fewer is faster and weaker)")
    _database_options(demo)
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
                               "A bundle that does not load is refused and the promoted one stays. The bundle is "
                               "registered and the promotion recorded and audited in the database first; if that "
                               "fails, nothing is promoted.")
    prom.add_argument("version", help="bundle version id (see 'list')")
    _actor_and_note(prom)
    _database_options(prom)
    prom.set_defaults(run=_promote)

    rollback = commands.add_parser("rollback", parents=[data_dir], help="promote again the bundle the last "
                                   "promotion replaced", description="Undo the last recorded promotion: promote the "
                                   "version it replaced (audited as model.rollback). A second rollback undoes the "
                                   "first. Refused when the served bundle is not the one the last promotion recorded.")
    _actor_and_note(rollback)
    _database_options(rollback)
    rollback.set_defaults(run=_rollback)

    history = commands.add_parser("history", parents=[data_dir], help="the recorded promotions, newest first",
                                  description="The promotions recorded in the database, newest first.")
    history.add_argument("--limit", type=_positive_int, default=20, metavar="N",
                         help=f"at most N promotions (default 20, at most {MAX_HISTORY})")
    history.add_argument("--json", action="store_true", help="one JSON object per line")
    _database_options(history)
    history.set_defaults(run=_history)
    return parser


def _actor_and_note(parser: argparse.ArgumentParser) -> None:
    actor_option(parser)
    parser.add_argument("--note", default="", help="why, recorded with the promotion (one line, at most 500 "
                        "characters)")


def _database_options(parser: argparse.ArgumentParser) -> None:
    """``--database-url``, ``--db-connect-timeout-s`` (also from ``FRAUDGUARD_*``)."""
    Settings.add_arguments(parser, only=_DB_ONLY)


def _demo(args: argparse.Namespace) -> int:
    models_dir = args.data_dir / "models"
    if args.if_missing:
        current = _usable_promoted(models_dir)
        if current is not None:
            print(f"promoted bundle {current.manifest.version} is in place; nothing to do")
            return int(ExitCode.SUCCESS)
    return run_with_database("models demo", args, lambda db: _build_and_promote(db, args, models_dir), _DB_ERRORS)


async def _build_and_promote(db: Database, args: argparse.Namespace, models_dir: Path) -> int:
    """With the database open (so an unusable one fails before minutes of training): build, register, promote."""
    print(f"building a demo model bundle in {models_dir} ...", file=sys.stderr)
    bundle = await asyncio.to_thread(_build_demo, models_dir, args.seed, args.transactions, sys.stderr.isatty())
    m = bundle.manifest
    try:
        recorded = await _promote_audited(db, models_dir, bundle, DEMO_ACTOR, "built by 'fraudguard models demo'",
                                          PROMOTE)
    except DatabaseError:
        print(f"built {m.version} but did not promote it: the promotion could not be recorded", file=sys.stderr)
        raise
    what = "built and promoted" if recorded is not None else "built"
    print(f"{what} {m.version}: AUC {m.metrics['auc']:.4f}, AP {m.metrics['average_precision']:.4f}")
    return int(ExitCode.SUCCESS)


def _build_demo(models_dir: Path, seed: int, transactions: int | None, progress: bool) -> ModelBundle:
    """Build the demo bundle in ``models_dir``, unpromoted (the caller promotes it through the audited path)."""
    from trainer.demo import DEMO_TRANSACTIONS, build_demo_bundle  # heavy imports (LightGBM, ONNX) only here

    n = DEMO_TRANSACTIONS if transactions is None else transactions
    return build_demo_bundle(models_dir, seed=seed, n_transactions=n, progress=progress, promote=False)


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
    actor, note = _actor_note(args)
    bundle = _load(models_dir, args.version)  # before the database: a bad bundle is refused at once

    async def work(db: Database) -> int:
        recorded = await _promote_audited(db, models_dir, bundle, actor, note, PROMOTE)
        if recorded is not None:
            _say_promoted(recorded)
        return int(ExitCode.SUCCESS)

    return run_with_database("models", args, work, _DB_ERRORS)


def _rollback(args: argparse.Namespace) -> int:
    models_dir = args.data_dir / "models"
    actor, note = _actor_note(args)

    async def work(db: Database) -> int:
        async with db.connection() as conn, promotion_lock(conn):
            last = await promotion_history(conn, 1)
            if not last:
                raise NothingToRollBackError("no promotion is recorded in the database: nothing to roll back")
            undone = last[0]
            served = _served_version(models_dir)
            if undone.previous_version is None:
                raise NothingToRollBackError(f"the last recorded promotion ({undone.id}, of {undone.version}) "
                                             "replaced no registered bundle: nothing to roll back to")
            if served != undone.version:
                raise NothingToRollBackError(
                    f"the served bundle is {served or 'none'}, but the last recorded promotion ({undone.id}) is of "
                    f"{undone.version}: the pointer was changed outside 'fraudguard models' (or a recorded promotion "
                    "did not take effect); promote the version you want explicitly")
            bundle = _load(models_dir, undone.previous_version)
            recorded = await _record_and_flip(conn, models_dir, bundle, actor, note, ROLLBACK)
        if recorded is not None:
            _say_promoted(recorded, f"rolled back promotion {undone.id}: ")
        return int(ExitCode.SUCCESS)

    return run_with_database("models rollback", args, work, _DB_ERRORS)


def _history(args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        async with db.connection() as conn:
            promotions = await promotion_history(conn, args.limit)
        _print_history(promotions, args.json)
        return int(ExitCode.SUCCESS)

    if args.limit > MAX_HISTORY:
        raise ValidationError("--limit", f"at most {MAX_HISTORY}, got {args.limit}")
    return run_with_database("models history", args, work, _DB_ERRORS)


def _print_history(promotions: list[Promotion], as_json: bool) -> None:
    if as_json:
        for p in promotions:
            print(json.dumps(p.to_json(), ensure_ascii=False))
        return
    if not promotions:
        print("no promotions recorded; 'fraudguard models promote VERSION' records one")
        return
    width = max(len("VERSION"), *(len(p.version) for p in promotions))
    previous = max(len("PREVIOUS"), *(len(p.previous_version or "-") for p in promotions))
    actor = max(len("ACTOR"), *(len(_printable(p.actor)) for p in promotions))
    print(f"{'ID':>6}  {'PROMOTED (UTC)':<19}  {'VERSION':<{width}}  {'PREVIOUS':<{previous}}  "
          f"{'ACTOR':<{actor}}  NOTE")
    for p in promotions:
        print(f"{p.id:>6}  {p.promoted_at:%Y-%m-%d %H:%M:%S}  {p.version:<{width}}  "
              f"{p.previous_version or '-':<{previous}}  {_printable(p.actor):<{actor}}  "
              f"{_printable(p.note)}")  # fmt: skip


async def _promote_audited(db: Database, models_dir: Path, bundle: ModelBundle, actor: str, note: str,
                           action: str) -> RecordedPromotion | None:
    async with db.connection() as conn, promotion_lock(conn):
        return await _record_and_flip(conn, models_dir, bundle, actor, note, action)


async def _record_and_flip(conn: asyncpg.Connection, models_dir: Path, bundle: ModelBundle, actor: str, note: str,
                           action: str) -> RecordedPromotion | None:
    """Under the promotion lock: register ``bundle`` (and the served one), record the promotion and its audit entry
    in one transaction, then flip the pointer. None when ``bundle`` is served already (nothing recorded)."""
    version = bundle.manifest.version
    previous, previous_bundle = _served(models_dir)
    if previous == version:
        print(f"{version} is the promoted bundle already; nothing to do")
        return None
    record = _record(bundle)
    async with conn.transaction():
        await register_bundle(conn, record)
        if previous_bundle is not None:
            try:
                await register_bundle(conn, _record(previous_bundle))
            except BundleConflictError as exc:  # its version is registered, which is all the promotion row needs
                print(f"warning: the served bundle differs from its registered self: {exc}", file=sys.stderr)
        recorded = await record_promotion(conn, version, None if previous_bundle is None else previous, actor, note,
                                          action=action)
    try:
        promote(models_dir, version)
    except BundleError as exc:
        raise BundleError(
            f"the promotion of {version} is recorded in the database (promotion {recorded.promotion.id}, audit entry "
            f"{recorded.audit.id}), but the served bundle was NOT switched: {exc}. The record now stands for an "
            f"intent that did not take effect; fix the cause and run 'fraudguard models promote {version}' again"
        ) from exc
    return recorded


def _served(models_dir: Path) -> tuple[str | None, ModelBundle | None]:
    """The promoted version and its bundle; the bundle is None (with a warning) when it does not load."""
    version = _served_version(models_dir)
    if version is None:
        return None, None
    try:
        return version, load_bundle(models_dir / version)
    except BundleError as exc:
        print(f"warning: the served bundle {version} does not load ({exc}); the promotion records no previous "
              "version", file=sys.stderr)
        return version, None


def _served_version(models_dir: Path) -> str | None:
    try:
        return promoted_version(models_dir)
    except BundleError as exc:
        print(f"warning: cannot tell which bundle is served: {exc}", file=sys.stderr)
        return None


def _record(bundle: ModelBundle) -> BundleRecord:
    """What the registry keeps of ``bundle``: its manifest and the SHA-256 of its ONNX model."""
    m = bundle.manifest
    t = m.thresholds
    digest = hashlib.sha256()
    try:
        with open(bundle.onnx_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise BundleError(f"cannot read {bundle.onnx_path}: {exc}") from exc
    return BundleRecord(
        version=m.version, created_at=m.created_at, model_sha256=digest.digest(),
        feature_schema={"schema_version": m.schema_version, "feature_names": list(m.feature_names)},
        thresholds={"challenge": t.challenge, "review": t.review, "block": t.block}, metrics=dict(m.metrics),
        training_data_fingerprint=m.training_data_fingerprint or None,
        origin="demo" if m.version.startswith("demo-") else "trained", location=str(bundle.path.resolve()),
    )


def _say_promoted(recorded: RecordedPromotion, prefix: str = "") -> None:
    p = recorded.promotion
    print(f"{prefix}promoted {p.version} (previous {p.previous_version or '-'}; promotion {p.id}, audit entry "
          f"{recorded.audit.id} by {recorded.audit.actor})")


def _actor_note(args: argparse.Namespace) -> tuple[str, str]:
    return check_actor(actor_of(args)), check_note(args.note)


def _printable(text: str) -> str:
    """``text`` with anything unprintable escaped (rows written by other tools are not checked here)."""
    return text if text.isprintable() else repr(text)[1:-1]


def _load(models_dir: Path, version: str) -> ModelBundle:
    """The bundle ``version``; ``ValidationError`` for a string that is no version id, ``NotFoundError`` when there
    is no such bundle, ``BundleError`` when it is bad."""
    return load_bundle(bundle_dir(models_dir, check_version(version)))


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

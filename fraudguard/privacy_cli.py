"""``fraudguard erase --customer ID`` and ``fraudguard keys rotate``: the commands of :mod:`fraudguard.privacy`.

Exit codes (``fraudguard.exit_codes``):

- ``erase``: 0 erased, or nothing to erase (an unknown or already erased customer: the message says so, and the
  request is audited all the same, so scripts may retry safely); 2 bad command line, an unusable customer id, or
  not confirmed (no ``--yes`` and no terminal to ask on); 10 bad setting; 12 ``DATA_DIR/keys/erasure.key``
  unusable; 60-62 the database cannot be used.
- ``keys rotate``: 0 every row is under the current key; 1 some rows could not be opened (unknown key, or altered
  bytes): they were left as they were and are listed; 2 bad command line; 10 bad setting; 12 the personal key file
  (or ``FRAUDGUARD_PERSONAL_KEYS``) unusable; 60-62 the database cannot be used. Interrupted, run it again with
  ``--no-new-key``: it resumes where it stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tqdm import tqdm

from fraudguard._cli_db import actor_of, actor_option, database_options, error, run_command
from fraudguard.audit import check_actor
from fraudguard.db import Database
from fraudguard.exit_codes import ExitCode
from fraudguard.privacy import (
    RotationReport,
    check_customer_id,
    check_rotation_args,
    count_customer_rows,
    erase_customer,
    keys_in_use,
    retire_unused_keys,
    rotate_personal_data,
)
from fraudguard.security.keyfile import KeyFileError, load_or_create_key
from fraudguard.security.personal import ENV_VAR, Keyring
from fraudguard.settings import Settings

_KEY_ERRORS = ((KeyFileError, ExitCode.KEY_FILE_UNUSABLE),)
_SHOWN_FAILURES = 10


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard erase``; returns the exit code."""
    return run_command("erase", _erase_parser(), argv, _KEY_ERRORS)


def rotate_main(argv: list[str]) -> int:
    """Entry point of ``fraudguard keys rotate``; returns the exit code."""
    return run_command("keys rotate", _rotate_parser(), argv, _KEY_ERRORS)


def _check_erase(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``--actor`` resolved, once the customer id and the actor pass (before the database opens)."""
    check_customer_id(args.customer)
    args.actor = check_actor(actor_of(args))
    return args


def _check_rotate(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``--actor`` resolved, once they pass (before the database opens, and so before a new key)."""
    args.actor = actor_of(args)
    check_rotation_args(args.actor, args.batch_rows)
    return args


def _erase_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard erase",
        description="GDPR erasure: remove a customer's personal data (customer id, device id, IP address, e-mail, "
        "location) from every decision and transaction, keeping the rows for accounting and statistics, and record "
        "it in the audit log under a keyed digest of the id (key: DATA_DIR/keys/erasure.key).",
        epilog="exit codes: 0 erased or nothing to erase, 2 bad usage or not confirmed, 10 bad setting, "
        "12 key file unusable, 60-62 database unusable",
    )
    parser.add_argument("--customer", required=True, metavar="ID", help="the customer id, exactly as stored")
    actor_option(parser, "who asks, for the audit log")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    database_options(parser)
    parser.set_defaults(check=_check_erase, run=_erase)
    return parser


async def _erase(db: Database, args: argparse.Namespace) -> int:
    settings = Settings.from_sources(args)
    subject_key = await asyncio.to_thread(load_or_create_key, settings.keys_dir / "erasure.key")
    counts = await count_customer_rows(db, args.customer)
    rows = sum(counts.values())
    if rows and not args.yes and not await asyncio.to_thread(_confirm, counts):
        error("erase", "not confirmed; nothing was changed (pass --yes to skip the question)")
        return int(ExitCode.USAGE)
    report = await erase_customer(db, args.customer, actor=args.actor, subject_key=subject_key)
    if report.rows:
        print(f"erased the personal data of {report.decisions} decisions and {report.transactions} transactions; "
              f"audit entry {report.audit_id} ({report.subject})")
    else:
        print(f"no rows carry that customer id (unknown, or already erased); the request is recorded as audit entry "
              f"{report.audit_id} ({report.subject})")
    print("decisions a running scoring server has answered but not yet stored (its queue and journals in "
          "DATA_DIR/journal) are written afterwards: run this again once the servers are drained or stopped",
          file=sys.stderr)
    return int(ExitCode.SUCCESS)


def _confirm(counts: dict[str, int]) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"erase the personal data in {counts['decisions']} decisions and {counts['transactions']} "
                   "transactions of this customer? This cannot be undone. [y/N] ")
    return answer.strip().lower() in {"y", "yes"}


def _rotate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard keys rotate",
        description="Make a new personal-data key current, then re-encrypt every decision and transaction sealed "
        f"under an older key. With keys from {ENV_VAR}, no key is made: put the new key there as 'current' first.",
        epilog="exit codes: 0 done, 1 some rows unreadable (left as they were), 2 bad usage, 10 bad setting, "
        "12 key file unusable, 60-62 database unusable",
    )
    parser.add_argument("--no-new-key", action="store_true",
                        help="re-encrypt to the current key without making a new one (resume an interrupted run)")
    parser.add_argument("--retire-old", action="store_true",
                        help="afterwards, drop from the key file the old keys no row uses any more (restart the "
                        "scoring servers first, so none still seals with an old key)")
    parser.add_argument("--batch-rows", type=int, default=5000, metavar="N",
                        help="rows re-encrypted per database transaction (default 5000)")
    actor_option(parser, "who rotates, for the audit log")
    database_options(parser)
    parser.set_defaults(check=_check_rotate, run=_rotate)
    return parser


async def _rotate(db: Database, args: argparse.Namespace) -> int:
    path = Settings.from_sources(args).personal_key_path
    keyring = await asyncio.to_thread(Keyring.load, path)
    if keyring.from_environment:
        print(f"keys come from {ENV_VAR}: re-encrypting to its current key {keyring.current_id}", file=sys.stderr)
    elif not args.no_new_key:
        new_id = await asyncio.to_thread(keyring.add_key, path)
        print(f"new current key {new_id} in {path}", file=sys.stderr)
    with tqdm(total=0, unit="rows", desc="re-encrypting", file=sys.stderr, disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total, bar.n = total, done
            bar.refresh()

        report = await rotate_personal_data(db, keyring, actor=args.actor, batch_rows=args.batch_rows,
                                            progress=progress)
    print(f"re-encrypted {report.decisions} decisions and {report.transactions} transactions under key "
          f"{report.key_id}; audit entry {report.audit_id}")
    if args.retire_old:
        await _retire(db, keyring, path, args.actor)
    if report.unreadable_count:
        _report_unreadable(report)
        return int(ExitCode.FAILURE)
    return int(ExitCode.SUCCESS)


async def _retire(db: Database, keyring: Keyring, path: Path, actor: str) -> None:
    if keyring.from_environment:
        used = await keys_in_use(db)
        unused = sorted(set(keyring.key_ids) - set(used) - {keyring.current_id})
        print(f"keys come from {ENV_VAR}: no row uses {', '.join(unused) or 'no old key'}; remove "
              f"{'them' if unused else 'nothing'} from the variable")
        return
    retired = await retire_unused_keys(db, keyring, path, actor=actor)
    print(f"retired keys: {', '.join(retired.retired) or 'none'}")
    for key_id, rows in retired.in_use:
        if key_id != keyring.current_id:
            print(f"kept key {key_id}: {rows} rows still use it")


def _report_unreadable(report: RotationReport) -> None:
    error("keys rotate", f"{report.unreadable_count} rows could not be opened and were left under their old key:")
    for row in report.unreadable[:_SHOWN_FAILURES]:
        print(f"  {row.table} {row.transaction_id} ({row.event_day}, key {row.key_id}): {row.reason}",
              file=sys.stderr)
    if report.unreadable_count > _SHOWN_FAILURES:
        print(f"  ... and {report.unreadable_count - _SHOWN_FAILURES} more", file=sys.stderr)

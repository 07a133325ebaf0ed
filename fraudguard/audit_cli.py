"""``fraudguard audit``: verify the hash chain of the audit log, and list its rows.

Exit codes (``fraudguard.exit_codes``): 0 intact (or listed); 2 bad command line; 10 bad setting; 60-62 the
database cannot be used; 71 the chain is broken (the message names the first bad row).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from fraudguard._cli_db import database_options, error, run_command
from fraudguard.audit import AuditEntry, list_audit, verify_audit
from fraudguard.db import Database
from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.timeparse import parse_instant

_HASH_HEX_CHARS = 64


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard audit``; returns the exit code."""
    return run_command("audit", _parser(), argv)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard audit", description="Verify and list the hash-chained audit log of privileged actions.",
        epilog="exit codes: 0 intact, 2 bad usage, 10 bad setting, 60-62 database unusable, 71 chain broken",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify", help="check every row's hash and link; print the head hash to record",
        description="Check the whole chain. Deleting the newest rows leaves a shorter chain that is still "
        "consistent: record the printed head hash somewhere else and pass it as --expect-head later to catch that.",
    )
    database_options(verify)
    verify.add_argument("--expect-head", metavar="HEX", help="a head hash printed earlier: it must still be in the log")
    verify.set_defaults(check=_check_verify, run=_verify)
    listing = commands.add_parser("list", help="print the newest rows, oldest first",
                                  description="Print the newest rows (oldest first). This does not verify them.")
    database_options(listing)
    listing.add_argument("--since", metavar="TIME", help="only rows at or after TIME (2024-02-01, ISO-8601 or epoch)")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N rows (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(check=_check_list, run=_list)
    return parser


def _check_verify(args: argparse.Namespace) -> bytes | None:
    if args.expect_head is None:
        return None
    text = args.expect_head.strip().lower()
    if len(text) != _HASH_HEX_CHARS or any(c not in "0123456789abcdef" for c in text):
        raise ValidationError("--expect-head", f"expected {_HASH_HEX_CHARS} hex digits (a SHA-256)")
    return bytes.fromhex(text)


async def _verify(db: Database, expect_head: bytes | None) -> int:
    async with db.connection() as conn:
        report = await verify_audit(conn, expect_head=expect_head)
    if not report.ok:
        error("audit", f"the audit log was altered: {report.reason}; first bad row: {report.first_bad_id} "
                       f"({report.rows_checked} rows before it are intact)")
        return int(ExitCode.AUDIT_CHAIN_BROKEN)
    print(f"audit log intact: {report.rows_checked} rows")
    if report.head_hex is not None:
        print(f"head: id {report.head_id}, hash {report.head_hex} (record it; check later with --expect-head)")
    return int(ExitCode.SUCCESS)


def _check_list(args: argparse.Namespace) -> tuple[datetime | None, int, bool]:
    if not 1 <= args.limit <= 1_000_000:
        raise ValidationError("--limit", f"must be between 1 and 1000000, got {args.limit}")
    since = None if args.since is None else datetime.fromtimestamp(parse_instant(args.since, "--since"), UTC)
    return since, args.limit, args.json


async def _list(db: Database, checked: tuple[datetime | None, int, bool]) -> int:
    since, limit, as_json = checked
    async with db.connection() as conn:
        entries = await list_audit(conn, since=since, limit=limit)
    for entry in entries:
        print(json.dumps(entry.to_json(), ensure_ascii=False) if as_json else _line(entry))
    return int(ExitCode.SUCCESS)


def _line(entry: AuditEntry) -> str:
    details = json.dumps(dict(entry.details), ensure_ascii=False, sort_keys=True)
    return f"{entry.id:>8}  {entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor:<20}  {entry.action:<24}  {entry.subject}  " \
           f"{details}"

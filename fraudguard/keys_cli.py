"""``fraudguard keys``: create, list and revoke API keys; ``rotate`` hands over to the personal-data key rotation.

``create`` prints the new key alone on stdout (so ``KEY=$(fraudguard keys create --role scorer)`` works) and a
warning on stderr: the secret is not stored and cannot be shown again. Every change is audited as ``--actor``.

Exit codes (``fraudguard.exit_codes``): 0 done; 2 bad command line; 10 bad setting; 60-62 the database cannot be
used; 70 no key with that id.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from datetime import UTC, datetime, timedelta

from fraudguard._cli_db import actor_of, actor_option, database_options, error, run_command
from fraudguard.apikeys import ROLES, ApiKey, UnknownApiKeyError, create_key, list_keys, revoke_key
from fraudguard.db import Database
from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.timeparse import parse_duration, parse_instant

_ERRORS = ((UnknownApiKeyError, ExitCode.UNKNOWN_API_KEY),)


def main(argv: list[str]) -> int:
    """Entry point of ``fraudguard keys``; returns the exit code."""
    if argv[:1] == ["rotate"]:
        return _rotate(argv[1:])
    return run_command("keys", _parser(), argv, _ERRORS)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudguard keys", description="Create, list and revoke API keys (shown once, stored as hashes).",
        epilog="exit codes: 0 done, 2 bad usage, 10 bad setting, 60-62 database unusable, 70 unknown key id",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="make a key and print it once",
                                 description="Make a key with the given roles and print it once on stdout.")
    create.add_argument("--role", action="append", required=True, choices=[str(r) for r in ROLES],
                        help="a role of the key; repeat for several (admin may do everything)")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", metavar="DURATION", help="valid this long, e.g. 90d, 12h (default: no expiry)")
    expiry.add_argument("--expires-at", metavar="TIME", help="valid until TIME (2025-01-31, ISO-8601 or epoch)")
    create.add_argument("--note", default="", help="what the key is for (shown by 'list')")
    actor_option(create)
    database_options(create)
    create.set_defaults(check=_check_create, run=_create)

    listing = commands.add_parser("list", help="list the keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    database_options(listing)
    listing.set_defaults(check=lambda args: args.json, run=_list)

    revoke = commands.add_parser("revoke", help="revoke a key by id",
                                 description="Revoke a key. Running servers stop accepting it within seconds "
                                 "(their key cache lives 5 s).")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (16 hex digits, see 'list')")
    actor_option(revoke)
    database_options(revoke)
    revoke.set_defaults(check=lambda args: (args.key_id, actor_of(args)), run=_revoke)

    commands.add_parser("rotate", add_help=False, help="rotate the keys that encrypt personal fields (see "
                        "'fraudguard keys rotate --help')")
    return parser


def _check_create(args: argparse.Namespace) -> tuple[list[str], datetime | None, str, str]:
    expires_at = None
    if args.expires_in is not None:
        seconds = parse_duration(args.expires_in, "--expires-in")
        if seconds <= 0:
            raise ValidationError("--expires-in", "must be positive")
        try:
            expires_at = datetime.now(UTC) + timedelta(seconds=seconds)
        except OverflowError:
            raise ValidationError("--expires-in", f"too long: {args.expires_in!r}") from None
    elif args.expires_at is not None:
        try:
            expires_at = datetime.fromtimestamp(parse_instant(args.expires_at, "--expires-at"), UTC)
        except (OverflowError, OSError, ValueError):
            raise ValidationError("--expires-at", f"out of range: {args.expires_at!r}") from None
    return args.role, expires_at, args.note, actor_of(args)


async def _create(db: Database, checked: tuple[list[str], datetime | None, str, str]) -> int:
    roles, expires_at, note, actor = checked
    created = await create_key(db, roles, expires_at, note, actor)
    key = created.key
    until = "never expires" if key.expires_at is None else f"expires {_time(key.expires_at)}"
    print(f"created API key {key.id} (roles {', '.join(sorted(key.roles))}; {until}).\n"
          "Store it now: it is shown only this once and cannot be recovered.", file=sys.stderr)
    print(created.secret)
    return int(ExitCode.SUCCESS)


async def _list(db: Database, as_json: bool) -> int:
    keys = await list_keys(db)
    now = datetime.now(UTC)
    if as_json:
        for key in keys:
            print(json.dumps(_json(key, now), ensure_ascii=False))
        return int(ExitCode.SUCCESS)
    if not keys:
        print("no API keys; 'fraudguard keys create --role admin' makes the first")
        return int(ExitCode.SUCCESS)
    print(f"{'ID':<16}  {'ROLES':<22}  {'STATUS':<7}  {'CREATED (UTC)':<16}  {'EXPIRES (UTC)':<16}  NOTE")
    for key in keys:
        expires = _time(key.expires_at) if key.expires_at is not None else "never"
        print(f"{key.id:<16}  {','.join(sorted(key.roles)):<22}  {key.status(now):<7}  {_time(key.created_at):<16}  "
              f"{expires:<16}  {key.note}")
    return int(ExitCode.SUCCESS)


async def _revoke(db: Database, checked: tuple[str, str]) -> int:
    key_id, actor = checked
    key = await revoke_key(db, key_id, actor)
    assert key.revoked_at is not None
    print(f"API key {key.id} revoked at {_time(key.revoked_at)}")
    return int(ExitCode.SUCCESS)


def _rotate(argv: list[str]) -> int:
    """Lazily, so ``keys`` works even where the privacy module is not installed."""
    try:
        module = importlib.import_module("fraudguard.privacy_cli")
    except ModuleNotFoundError as exc:
        if exc.name != "fraudguard.privacy_cli":
            raise
        error("keys rotate", "personal-data key rotation is not available in this build")
        return int(ExitCode.FAILURE)
    result: int = module.rotate_main(argv)
    return result


def _json(key: ApiKey, now: datetime) -> dict[str, object]:
    return {"id": key.id, "roles": sorted(key.roles), "status": key.status(now),
            "created_at": key.created_at.isoformat(),
            "expires_at": None if key.expires_at is None else key.expires_at.isoformat(),
            "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(), "note": key.note}


def _time(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"

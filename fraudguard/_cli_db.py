"""What the commands that work on the database share (``keys``, ``audit``, ``erase``, ``models``): its options,
opening it, exit codes, and who acts (``--actor``).

One place turns every expected failure into a one-line message and its documented exit code, so no command ends
in a traceback for a wrong DSN, an unreachable server or bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable

from fraudguard.db import Database, DatabaseError
from fraudguard.db.configured import exit_code_of, open_database
from fraudguard.errors import FraudguardError, ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.settings import Settings, SettingsError

DATABASE_SETTINGS = ("data_dir", "database_url", "db_connect_timeout_s")

Work = Callable[[Database], Awaitable[int]]
# error class -> exit code, checked in order after ValidationError and DatabaseError
ErrorCodes = tuple[tuple[type[FraudguardError], ExitCode], ...]


def database_options(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--database-url``, ``--db-connect-timeout-s`` (each also from ``FRAUDGUARD_*``)."""
    Settings.add_arguments(parser, only=DATABASE_SETTINGS)


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code when argparse already answered (--help: 0, bad usage: 2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(ExitCode.USAGE)


def run_command(command: str, parser: argparse.ArgumentParser, argv: list[str], errors: ErrorCodes = ()) -> int:
    """Parse ``argv``, check the arguments with ``args.check(args)`` (before the database is opened: a
    ``ValidationError`` is exit 2), then :func:`run_with_database` runs ``args.run(db, <what check returned>)``.

    Each (sub)parser sets both: ``parser.set_defaults(check=..., run=...)``."""
    args = parse_args(parser, argv)
    if isinstance(args, int):
        return args
    try:
        checked = args.check(args)
    except ValidationError as exc:
        error(command, str(exc))
        return int(ExitCode.USAGE)
    return run_with_database(command, args, lambda db: args.run(db, checked), errors)


def run_with_database(command: str, args: argparse.Namespace, work: Work, errors: ErrorCodes = ()) -> int:
    """Open the database the settings name, run ``work`` on it, close it; failures become exit codes."""
    try:
        settings = Settings.from_sources(args)
    except SettingsError as exc:
        error(command, str(exc))
        return int(ExitCode.INVALID_SETTING)
    try:
        return asyncio.run(_with_database(settings, work))
    except ValidationError as exc:
        error(command, str(exc))
        return int(ExitCode.USAGE)
    except DatabaseError as exc:
        error(command, str(exc))
        return int(exit_code_of(exc))
    except FraudguardError as exc:
        for cls, code in errors:
            if isinstance(exc, cls):
                error(command, str(exc))
                return int(code)
        raise


async def _with_database(settings: Settings, work: Work) -> int:
    db = await open_database(settings, max_size=2)
    try:
        return await work(db)
    finally:
        await db.close()


def error(command: str, message: str) -> None:
    print(f"fraudguard {command}: error: {message}", file=sys.stderr)


def default_actor() -> str:
    """``cli:<os user>``: who ran the command, as far as this machine knows."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers) and no LOGNAME/USER
        return "cli:unknown"


def actor_option(parser: argparse.ArgumentParser, what: str = "who to record in the audit log") -> None:
    """``--actor``, unset by default: :func:`actor_of` then names the OS user."""
    parser.add_argument("--actor", default=None, help=f"{what} (default cli:<os user>)")


def actor_of(args: argparse.Namespace) -> str:
    """The ``--actor`` given (even an empty one, which the audit log then refuses), else :func:`default_actor`."""
    actor: str | None = args.actor
    return actor if actor is not None else default_actor()

"""What the database layer raises: every error is a :class:`DatabaseError`, itself a :class:`FraudguardError`.

asyncpg and OS errors are translated here, at the boundary, keeping the cause (``raise ... from exc``), so a
user sees "cannot reach PostgreSQL at db.example:5432/fraud: connection refused", never an asyncpg traceback.
Messages name the server by :func:`fraudguard.db.dsn.describe_dsn`, which never includes a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import asyncpg

from fraudguard.errors import FraudguardError, UnavailableError


class DatabaseError(FraudguardError):
    """Base of the database errors. ``sqlstate`` is PostgreSQL's error code when the server raised it."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseConfigError(DatabaseError):
    """The DSN or pool settings cannot work: not a ``postgresql://`` URL, an unknown database, a server too old.

    Retrying does not help; the configuration has to change."""


class DatabaseAuthError(DatabaseError):
    """The server refused the login: unknown role, wrong password, or no ``pg_hba.conf`` entry."""


class DatabaseUnreachableError(DatabaseError, UnavailableError):
    """No server answered (refused, unknown host, timed out, connection lost); retrying later may work."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL in ``DATA_DIR/postgres`` could not be started or stopped; the message quotes its log."""


class MigrationError(DatabaseError):
    """The schema cannot be brought up to date: a migration failed, an applied one was changed, or the database
    is newer than this fraudguard."""


class PartitionMissingError(DatabaseError):
    """A row's ``event_day`` has no partition: older than the retention, or further ahead than partitions made."""

    def __init__(self, table: str, detail: str) -> None:
        super().__init__(
            f"no partition of {table} holds this row ({detail}): its event day is older than the retention or "
            "later than the partitions made ahead; run ensure_partitions for that day or fix the event time",
            "23514",
        )
        self.table = table


class DuplicateRowError(DatabaseError):
    """A unique key refused a second row (for decisions: the same transaction on the same event day)."""


_NO_PARTITION = re.compile(r'no partition of relation "([^"]+)" found for row')


def translate_connect_error(exc: BaseException, target: str) -> DatabaseError:
    """The most specific :class:`DatabaseError` for a failure to connect to ``target`` (a password-free name)."""
    if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return DatabaseAuthError(f"PostgreSQL at {target} refused the login: {exc}", exc.sqlstate)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return DatabaseConfigError(f"PostgreSQL at {target}: {exc}; create it or fix the DSN", exc.sqlstate)
    if isinstance(exc, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        return DatabaseUnreachableError(f"PostgreSQL at {target} cannot take a connection now: {exc}", exc.sqlstate)
    if isinstance(exc, asyncpg.PostgresError):
        return DatabaseConfigError(f"PostgreSQL at {target} refused the connection: {exc}", exc.sqlstate)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return DatabaseUnreachableError(f"cannot reach PostgreSQL at {target}: no answer before the timeout")
    if isinstance(exc, ConnectionRefusedError):
        return DatabaseUnreachableError(
            f"cannot reach PostgreSQL at {target}: connection refused (is the server running, and listening there?)"
        )
    if isinstance(exc, OSError | asyncpg.ConnectionDoesNotExistError):
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        return DatabaseUnreachableError(f"cannot reach PostgreSQL at {target}: {reason}")
    if isinstance(exc, ValueError | OverflowError | asyncpg.InterfaceError):  # ClientConfigurationError is both
        return DatabaseConfigError(f"bad database DSN ({target}): {exc}")
    return DatabaseError(f"cannot connect to PostgreSQL at {target}: {type(exc).__name__}: {exc}")


def translate_query_error(exc: BaseException) -> BaseException:
    """A :class:`DatabaseError` for an asyncpg or connection error raised by a statement; others unchanged."""
    if isinstance(exc, asyncpg.CheckViolationError):
        found = _NO_PARTITION.search(exc.message or "")
        if found:
            detail = getattr(exc, "detail", None) or "no detail"
            return PartitionMissingError(found.group(1), detail.rstrip("."))
    if isinstance(exc, asyncpg.UniqueViolationError):
        return DuplicateRowError(_text(exc), exc.sqlstate)
    if isinstance(exc, asyncpg.PostgresError):
        return DatabaseError(f"PostgreSQL refused the statement: {_text(exc)} (sqlstate {exc.sqlstate})", exc.sqlstate)
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError | asyncpg.InternalClientError | ConnectionError):
        # InternalClientError: what asyncpg says when the server ended the session between two statements
        return DatabaseUnreachableError(f"the connection to PostgreSQL was lost: {exc}")
    return exc


# what a statement on a bare connection may raise that translated_errors turns into DatabaseErrors
QUERY_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, ConnectionError)


@contextlib.asynccontextmanager
async def translated_errors(what: str, why: str = "") -> AsyncIterator[None]:
    """Driver errors raised in the block out as a :class:`DatabaseError` (by :func:`translate_query_error`, the
    cause kept), for code holding a bare connection rather than going through ``Database.connection``.

    A ``TimeoutError`` becomes :class:`DatabaseUnreachableError`: "``what`` did not answer in time (``why``)"."""
    try:
        yield
    except TimeoutError as exc:
        raise DatabaseUnreachableError(f"{what} did not answer in time" + (f" ({why})" if why else "")) from exc
    except QUERY_ERRORS as exc:
        translated = translate_query_error(exc)
        if translated is exc:
            raise
        raise translated from exc


def _text(exc: asyncpg.PostgresError) -> str:
    """The server's message with its detail and hint, on one line."""
    parts = [exc.message or type(exc).__name__]
    parts += [text.rstrip(".") for text in (getattr(exc, "detail", None), getattr(exc, "hint", None)) if text]
    return ": ".join(parts)

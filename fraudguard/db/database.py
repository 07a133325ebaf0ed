"""The database every process opens: a pool on PostgreSQL (14 or newer), with the schema brought up to date.

``await Database.open(dsn, data_dir)`` uses the server at ``dsn``, or, when ``dsn`` is None, the embedded server
of ``data_dir`` (started, or joined if another process runs it). Either way the same code follows: migrations,
then today's partitions, then a pool ready for use. Every failure on the way is a
:class:`~fraudguard.db.errors.DatabaseError` whose message names the server (never its password) and says what to
do; the asyncpg or OS error stays chained as the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import asyncpg

from fraudguard.db.dsn import check_dsn, describe_dsn
from fraudguard.db.embedded import EmbeddedPostgres
from fraudguard.db.errors import (
    DatabaseConfigError,
    DatabaseError,
    DatabaseUnreachableError,
    translate_connect_error,
    translate_query_error,
)
from fraudguard.db.migrate import Migration, MigrationReport, migrate
from fraudguard.db.partitions import PartitionChanges, ensure_partitions

MIN_SERVER_VERSION = 14
APPLICATION_NAME = "fraudguard"
# what a query may raise that translate_query_error turns into fraudguard errors
_QUERY_ERRORS = (asyncpg.PostgresError, asyncpg.ConnectionDoesNotExistError, asyncpg.InternalClientError)

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionPolicy:
    """How many daily partitions to keep ready ahead of and behind today, and how many days to keep (None: all)."""

    ahead_days: int = 7
    behind_days: int = 1
    retention_days: int | None = None

    def __post_init__(self) -> None:
        if self.ahead_days < 0 or self.behind_days < 0:
            raise DatabaseConfigError(f"partitions: ahead and behind days must not be negative, got "
                                      f"{self.ahead_days}, {self.behind_days}")
        if self.retention_days is not None and self.retention_days <= self.behind_days:
            raise DatabaseConfigError(f"partitions: retention ({self.retention_days} days) must exceed the days "
                                      f"made behind today ({self.behind_days})")


@dataclass(frozen=True, slots=True)
class Health:
    """The answer of :meth:`Database.health`: ``ok``, the round trip, the schema version, and a sentence."""

    ok: bool
    latency_s: float
    schema_version: int
    detail: str


class Database:
    """A pool on an up-to-date fraudguard database. Make one with :meth:`open`; ``close`` it (or ``async with``)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        target: str,
        embedded: EmbeddedPostgres | None,
        migrations: MigrationReport,
        partitions: PartitionPolicy,
        acquire_timeout_s: float,
    ) -> None:
        self.pool = pool
        self.target = target  # user@host:port/database, for messages
        self.embedded = embedded
        self.migrations = migrations
        self.partitions = partitions
        self._acquire_timeout_s = acquire_timeout_s
        self._closed = False

    @classmethod
    async def open(
        cls,
        dsn: str | None,
        data_dir: Path,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 60.0,
        partitions: PartitionPolicy | None = None,
        migrations: Sequence[Migration] | None = None,
        today: date | None = None,
    ) -> Database:
        """Connect (to the embedded server when ``dsn`` is None), migrate, make partitions, return the database.

        ``min_size``/``max_size`` bound the pool; ``connect_timeout_s`` bounds each connection attempt and each
        wait for a free connection; ``command_timeout_s`` is the default for every statement."""
        if not 0 <= min_size <= max_size or max_size < 1:
            raise DatabaseConfigError(f"pool sizes: need 0 <= min_size <= max_size, max_size >= 1; got {min_size}, "
                                      f"{max_size}")
        policy = partitions or PartitionPolicy()
        if dsn is not None:
            check_dsn(dsn)
        embedded = None
        if dsn is None:
            embedded = await asyncio.to_thread(EmbeddedPostgres.start, data_dir)
            dsn = embedded.dsn
        target = describe_dsn(dsn)
        try:
            pool = await _create_pool(dsn, target, min_size, max_size, connect_timeout_s, command_timeout_s)
            try:
                report = await _prepare(pool, target, connect_timeout_s, policy, migrations, today)
            except BaseException:
                pool.terminate()
                raise
        except BaseException:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
            raise
        _log.info("database ready", extra={"database": target, "schema_version": report.version,
                                           "migrations_applied": list(report.applied)})
        return cls(pool, target, embedded, report, policy, connect_timeout_s)

    @contextlib.asynccontextmanager
    async def connection(self, timeout_s: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for the block. asyncpg errors raised in the block come out as DatabaseErrors."""
        if self._closed:
            raise DatabaseUnreachableError(f"the database {self.target} was closed")
        wait = self._acquire_timeout_s if timeout_s is None else timeout_s
        try:
            conn = await self.pool.acquire(timeout=wait)
        except TimeoutError as exc:
            raise DatabaseUnreachableError(
                f"no connection to {self.target} within {wait:g} s (all {self.pool.get_max_size()} busy, or the "
                "server does not answer)"
            ) from exc
        except Exception as exc:
            raise translate_connect_error(exc, self.target) from exc
        try:
            yield conn
        except _QUERY_ERRORS as exc:
            _raise_translated(exc)
        finally:
            with contextlib.suppress(Exception):  # a broken connection is discarded by the pool either way
                await self.pool.release(conn, timeout=wait)

    async def ensure_partitions(self, today: date | None = None) -> PartitionChanges:
        """Apply the partition policy for ``today`` (default: today in UTC); run it daily in a long-lived process."""
        async with self.connection() as conn:
            return await _ensure(conn, self.partitions, today)

    async def health(self, timeout_s: float = 2.0) -> Health:
        """Whether the database answers a query within ``timeout_s``; never raises."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s), self.connection(timeout_s) as conn:
                version = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
                server = conn.get_settings().server_version
        except TimeoutError:
            return Health(False, time.perf_counter() - started, 0, f"{self.target}: no answer within {timeout_s:g} s")
        except DatabaseError as exc:
            return Health(False, time.perf_counter() - started, 0, str(exc))
        except Exception as exc:  # a health check reports; it never takes its caller down
            return Health(False, time.perf_counter() - started, 0, f"{self.target}: {type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
        return Health(True, elapsed, version,
                      f"{self.target}: PostgreSQL {server}, schema version {version}")

    async def close(self, timeout_s: float = 10.0) -> None:
        """Close the pool (waiting at most ``timeout_s`` for connections in use), then release the embedded server."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.pool.close(), timeout_s)
        except TimeoutError:
            _log.warning("database connections still busy after %g s: closing them", timeout_s)
            self.pool.terminate()
        finally:
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def _create_pool(
    dsn: str, target: str, min_size: int, max_size: int, connect_timeout_s: float, command_timeout_s: float
) -> Any:
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout_s,
            command_timeout=command_timeout_s,
            server_settings={"application_name": APPLICATION_NAME, "TimeZone": "UTC"},
        )
    except Exception as exc:
        raise translate_connect_error(exc, target) from exc


async def _prepare(
    pool: asyncpg.Pool,
    target: str,
    timeout_s: float,
    policy: PartitionPolicy,
    migrations: Sequence[Migration] | None,
    today: date | None,
) -> MigrationReport:
    try:
        conn = await pool.acquire(timeout=timeout_s)
    except Exception as exc:
        raise translate_connect_error(exc, target) from exc
    try:
        server = conn.get_server_version()
        if server.major < MIN_SERVER_VERSION:
            raise DatabaseConfigError(
                f"PostgreSQL {server.major}.{server.minor} at {target} is too old: fraudguard needs "
                f"{MIN_SERVER_VERSION} or newer"
            )
        report = await migrate(conn, migrations)
        await _ensure(conn, policy, today)
        return report
    except _QUERY_ERRORS as exc:
        _raise_translated(exc)
    finally:
        with contextlib.suppress(Exception):
            await pool.release(conn, timeout=timeout_s)


async def _ensure(conn: asyncpg.Connection, policy: PartitionPolicy, today: date | None) -> PartitionChanges:
    day = today if today is not None else datetime.now(UTC).date()
    return await ensure_partitions(conn, day, policy.ahead_days, policy.retention_days,
                                   behind_days=policy.behind_days)



def _raise_translated(exc: BaseException) -> NoReturn:
    """Re-raise a driver error as the fraudguard error it means (itself when it has no translation)."""
    translated = translate_query_error(exc)
    if translated is exc:
        raise exc
    raise translated from exc

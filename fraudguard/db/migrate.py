"""Versioned schema migrations, applied at start: the ``migrations/NNNN_name.sql`` files of this package.

- In order, once each: applied versions are recorded in ``schema_migrations`` (version, name, sha256 of the
  file, applied_at) and skipped afterwards, so a second run does nothing.
- Each file runs in its own transaction together with its ``schema_migrations`` row: a failed migration leaves
  nothing behind, the ones before it stay applied, and the next start tries it again.
- History is fixed: an applied file whose bytes changed is refused (the change belongs in a new migration); so is
  a new file numbered below the newest applied one (it would run in a different order on different databases),
  and a database holding a version this code does not know (the database is newer than the code).
- Starters on any number of hosts serialise on a session-level ``pg_advisory_lock``: the first applies, the
  others wait, then find nothing to do.
- A file is sent as one simple-protocol query, so it may hold many statements; but nothing that cannot run in a
  transaction block (``CREATE INDEX CONCURRENTLY``, ``VACUUM``).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg

from fraudguard.db._locks import advisory_lock, lock_key
from fraudguard.db.errors import DatabaseError, MigrationError

PACKAGE = "fraudguard.db"
DIRECTORY = "migrations"
LOCK_KEY = lock_key("fraudguard.db.migrate")
_QUERY_TIMEOUT_S = 30.0  # reading schema_migrations

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9][a-z0-9_]*)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY CHECK (version > 0),
    name       text        NOT NULL,
    sha256     text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: ``NNNN_name.sql`` read as ``version``, ``name``, its SQL and the SHA-256 of its bytes."""

    version: int
    name: str
    sql: str
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @classmethod
    def from_file(cls, file_name: str, data: bytes) -> Migration:
        """Parse a file's name and bytes; :class:`MigrationError` if either is unusable."""
        found = _FILE_NAME.match(file_name)
        if found is None or int(found.group(1)) == 0:
            raise MigrationError(f"{file_name}: a migration is named NNNN_name.sql (0001 up, lower-case name)")
        try:
            sql = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"{file_name}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
        return cls(int(found.group(1)), found.group(2), sql, hashlib.sha256(data).hexdigest())


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    sha256: str


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What one :func:`migrate` call did: the versions it applied (empty when up to date) and the version after."""

    applied: tuple[int, ...]
    version: int


def load_migrations(source: Traversable | Path | None = None) -> tuple[Migration, ...]:
    """The migrations in ``source`` (default: this package's ``migrations`` directory), by version.

    Files not ending in ``.sql`` are ignored; a badly named ``.sql`` file, two files with one version, or no file
    at all (the package data is missing from the install) is a :class:`MigrationError`."""
    root = source if source is not None else resources.files(PACKAGE).joinpath(DIRECTORY)
    try:
        found = [Migration.from_file(entry.name, entry.read_bytes())
                 for entry in root.iterdir() if entry.name.endswith(".sql")]
    except OSError as exc:
        raise MigrationError(f"cannot read the migrations in {root}: {exc.strerror or exc}") from exc
    if not found:
        raise MigrationError(f"no migration files in {root}: the package was installed without its .sql files")
    found.sort(key=lambda m: m.version)
    for before, after in itertools.pairwise(found):
        if before.version == after.version:
            raise MigrationError(f"two migrations have version {after.version:04d}: {before.label}, {after.label}")
    return tuple(found)


async def applied_migrations(conn: asyncpg.Connection) -> tuple[AppliedMigration, ...]:
    """The rows of ``schema_migrations``, by version (empty if the table does not exist yet)."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations')", timeout=_QUERY_TIMEOUT_S) is None:
        return ()
    rows = await conn.fetch("SELECT version, name, sha256 FROM schema_migrations ORDER BY version",
                            timeout=_QUERY_TIMEOUT_S)
    return tuple(AppliedMigration(int(r["version"]), str(r["name"]), str(r["sha256"])) for r in rows)


async def migrate(
    conn: asyncpg.Connection,
    migrations: Sequence[Migration] | None = None,
    *,
    lock_timeout_s: float = 60.0,
    timeout_s: float = 600.0,
) -> MigrationReport:
    """Apply the pending ``migrations`` (default: :func:`load_migrations`) on ``conn``, outside any transaction.

    Waits at most ``lock_timeout_s`` for another starter's migrations, and ``timeout_s`` for each file."""
    todo = tuple(migrations) if migrations is not None else load_migrations()
    if conn.is_in_transaction():
        raise MigrationError("migrate() needs a connection outside a transaction: each migration has its own")
    try:
        async with advisory_lock(conn, LOCK_KEY, lock_timeout_s, "schema migration"):
            await conn.execute(_CREATE_TABLE, timeout=timeout_s)
            pending = _pending(todo, await applied_migrations(conn))
            for migration in pending:
                await _apply(conn, migration, timeout_s)
            return MigrationReport(tuple(m.version for m in pending), await _version(conn))
    except MigrationError:
        raise
    except DatabaseError as exc:  # the lock timed out
        raise MigrationError(str(exc), exc.sqlstate) from exc
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"cannot read or create schema_migrations: {exc}", exc.sqlstate) from exc


def _pending(known: Sequence[Migration], applied: Sequence[AppliedMigration]) -> list[Migration]:
    by_version = {m.version: m for m in known}
    for row in applied:
        migration = by_version.get(row.version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {row.version:04d}_{row.name}, which this fraudguard does not know: "
                "the database is newer than the code; run a newer fraudguard"
            )
        if (migration.name, migration.sha256) != (row.name, row.sha256):
            raise MigrationError(
                f"migration {migration.label} was changed after it was applied (applied as {row.version:04d}_"
                f"{row.name}, sha256 {row.sha256[:12]}…; the file now has {migration.sha256[:12]}…): restore the "
                "file and put the change in a new migration"
            )
    done = {row.version for row in applied}
    newest = max(done, default=0)
    pending = [m for m in known if m.version not in done]
    late = [m for m in pending if m.version < newest]
    if late:
        raise MigrationError(
            f"migration {late[0].label} is new but {by_version[newest].label} is already applied: "
            f"renumber it after {newest:04d}"
        )
    return pending


async def _apply(conn: asyncpg.Connection, migration: Migration, timeout_s: float) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql, timeout=timeout_s)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
                migration.version, migration.name, migration.sha256, timeout=timeout_s,
            )
    except asyncpg.PostgresError as exc:
        where = f" (at character {exc.position})" if getattr(exc, "position", None) else ""
        raise MigrationError(
            f"migration {migration.label} failed and was rolled back{where}: {exc}", exc.sqlstate
        ) from exc
    except TimeoutError as exc:
        raise MigrationError(f"migration {migration.label} took more than {timeout_s:g} s and was rolled back") from exc


async def _version(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations",
                                   timeout=_QUERY_TIMEOUT_S))

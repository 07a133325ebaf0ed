"""PostgreSQL for the tests: the embedded server, the machine's server (when FRAUDGUARD_TEST_DSN is set), and a
fresh schema per test. Registered as fixtures by tests/conftest.py, so every module shares one database per server
per session."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fraudguard.db import Database, EmbeddedPostgres
from fraudguard.db.dsn import with_database

TEST_DSN_ENV = "FRAUDGUARD_TEST_DSN"
PREFIX = f"fg_test_{os.getpid()}_{secrets.token_hex(3)}"
_numbers = itertools.count()


@dataclass(frozen=True, slots=True)
class Server:
    kind: str
    admin_dsn: str  # a database on it from which we may CREATE DATABASE
    dsn: str  # the session's own database, made for it and dropped after it


@contextlib.contextmanager
def _embedded_data_dir() -> Iterator[Path]:
    """A data directory for an embedded server, outside pytest's temporary root: run as root, the server runs as
    user 'pgserver', and every pytest session start (anyone's) makes /tmp/pytest-of-root private again."""
    path = Path(tempfile.mkdtemp(prefix="fraudguard-test-db-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pg_data_dir() -> Iterator[Path]:
    with _embedded_data_dir() as path:
        yield path


def _without_fsync(handle: EmbeddedPostgres) -> EmbeddedPostgres:
    """Tests' own throw-away servers skip fsync (persisted, so also after a restart): DDL-heavy tests run several
    times faster on a busy disk, and nothing they check depends on surviving a power cut."""

    async def alter() -> None:
        for statement in ("ALTER SYSTEM SET fsync = off", "ALTER SYSTEM SET synchronous_commit = off",
                          "SELECT pg_reload_conf()"):
            await execute(handle.admin_dsn, statement)

    asyncio.run(alter())
    return handle



@pytest.fixture(scope="session")
def embedded_server() -> Iterator[EmbeddedPostgres]:
    with _embedded_data_dir() as path, _without_fsync(EmbeddedPostgres.start(path)) as handle:
        yield handle


@pytest.fixture(scope="session", params=["embedded", "external"])
def pg_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """Each server the suite runs against, with a fresh database for this session, dropped at its end."""
    if request.param == "embedded":
        admin = request.getfixturevalue("embedded_server").admin_dsn
    else:
        admin = os.environ.get(TEST_DSN_ENV, "")
        if not admin:
            pytest.skip(f"set {TEST_DSN_ENV} to run the contract suite against a real PostgreSQL too")
    name = f"{PREFIX}_{secrets.token_hex(2)}_{request.param}"
    asyncio.run(execute(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield Server(request.param, admin, with_database(admin, name))
    finally:
        asyncio.run(execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def dsn(pg_server: Server) -> AsyncIterator[str]:
    """A fresh, empty schema in the session's database, alone on the search path; dropped after the test.

    (A schema costs milliseconds where a database costs a few hundred: the code under test resolves every name
    through the search path, so this also shows it working outside ``public``.)"""
    async with _fresh_schema(pg_server.dsn, "t") as schema_dsn:
        yield schema_dsn


@pytest.fixture
async def embedded_dsn(embedded_server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh schema on the embedded server only, for tests that need a database but are not about one."""
    async with _fresh_schema(embedded_server.admin_dsn, "e") as schema_dsn:
        yield schema_dsn


@contextlib.asynccontextmanager
async def _fresh_schema(database_dsn: str, prefix: str) -> AsyncIterator[str]:
    """``database_dsn`` with a new empty schema alone on its search path; the schema is dropped after."""
    schema = f"{prefix}{next(_numbers)}"
    await execute(database_dsn, f'CREATE SCHEMA "{schema}"')
    try:
        separator = "&" if "?" in database_dsn else "?"
        yield f"{database_dsn}{separator}search_path={schema}"
    finally:
        await execute(database_dsn, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def db(dsn: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A :class:`Database` opened (and migrated) on the test's fresh schema, closed after the test; up to six
    connections, for tests that hold several at once. Modules needing other settings define their own ``db``."""
    database = await Database.open(dsn, tmp_path, max_size=6)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


async def execute(dsn: str, statement: str) -> None:
    """One statement on a connection of its own (CREATE/DROP DATABASE cannot run inside a transaction)."""
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def crash_data_dir() -> Iterator[Path]:
    """An embedded server's data directory (stopped) for crash tests, with fsync off but synchronous commit on:
    a killed server keeps every transaction it reported committed, as a real one does."""
    with _embedded_data_dir() as path:
        handle = EmbeddedPostgres.start(path)
        try:
            asyncio.run(execute(handle.admin_dsn, "ALTER SYSTEM SET fsync = off"))
            asyncio.run(execute(handle.admin_dsn, "SELECT pg_reload_conf()"))
        finally:
            handle.stop()
        yield path


def crash_postgres(data_dir: Path) -> None:
    """SIGKILL the postmaster and every process of it: a crash, not a shutdown."""
    pid = int((data_dir / "postgres" / "postmaster.pid").read_text().split("\n", 1)[0])
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
    for victim in [pid, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in [pid, *children]):  # until reaped: a zombie looks alive
        assert time.monotonic() < deadline, "postgres did not die (or its zombies are not reaped)"
        time.sleep(0.01)

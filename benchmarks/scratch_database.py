"""A throw-away database for a benchmark: ``fg_bench_<random>`` made on a PostgreSQL server and dropped after."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator

from fraudguard.db.dsn import with_database
from tests.pg import execute


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str) -> AsyncIterator[str]:
    """The DSN of a fresh database on ``admin_dsn``'s server (a role that may create databases)."""
    name = f"fg_bench_{secrets.token_hex(4)}"
    await execute(admin_dsn, f"CREATE DATABASE {name}")
    try:
        yield with_database(admin_dsn, name)
    finally:
        await execute(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def scratch_database_sync(admin_dsn: str) -> Iterator[str]:
    """:func:`scratch_database` for code outside an event loop."""
    name = f"fg_bench_{secrets.token_hex(4)}"
    asyncio.run(execute(admin_dsn, f"CREATE DATABASE {name}"))
    try:
        yield with_database(admin_dsn, name)
    finally:
        asyncio.run(execute(admin_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

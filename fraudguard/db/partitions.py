"""Daily partitions of ``transactions`` and ``decisions``: made ahead of time, dropped after the retention.

Both tables are partitioned by RANGE on ``event_day`` (the UTC day of ``event_time``), one partition per day,
named ``<table>_pYYYYMMDD``. There is no DEFAULT partition, on purpose: a row whose day has no partition is
refused (:class:`~fraudguard.db.errors.PartitionMissingError`) instead of landing where retention never drops it
and where it blocks creating that day's partition later (PostgreSQL refuses a new partition whose range already
has rows in the default one). The writer journals such a row and calls :func:`ensure_partitions` for its day.

Every partition is created or dropped in its own short transaction with a ``lock_timeout``: both take an
ACCESS EXCLUSIVE lock on the parent, and a DDL statement queued behind a long query would stall every insert.
Callers on many hosts serialise on an advisory lock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import asyncpg

from fraudguard.db._locks import advisory_lock, lock_key
from fraudguard.db.errors import DatabaseError

PARTITIONED_TABLES = ("transactions", "decisions")
LOCK_KEY = lock_key("fraudguard.db.partitions")
_QUERY_TIMEOUT_S = 30.0  # catalogue look-ups

_BOUND = re.compile(r"^FOR VALUES FROM \('(\d{4}-\d{2}-\d{2})'\) TO \('(\d{4}-\d{2}-\d{2})'\)$")
_PARENT = """
SELECT c.oid, quote_ident(n.nspname) AS schema
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1) AND c.relkind = 'p'
"""
_CHILDREN = """
SELECT c.relname AS name, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       pg_get_expr(c.relpartbound, c.oid) AS bound
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = $1
ORDER BY c.relname
"""


@dataclass(frozen=True, slots=True)
class Partition:
    """A partition holding the days ``first_day`` up to, not including, ``end_day``."""

    table: str
    name: str
    qualified: str  # schema.name, quoted for SQL
    first_day: date
    end_day: date


@dataclass(frozen=True, slots=True)
class PartitionChanges:
    """The partitions one :func:`ensure_partitions` call created and dropped, by name."""

    created: tuple[str, ...]
    dropped: tuple[str, ...]


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


async def list_partitions(conn: asyncpg.Connection, table: str) -> tuple[Partition, ...]:
    """The day-range partitions of ``table``, by name (others, such as a DEFAULT partition, are left out)."""
    _, partitions = await _parent_and_partitions(conn, table)
    return partitions


async def ensure_partitions(
    conn: asyncpg.Connection,
    today: date,
    ahead_days: int,
    retention_days: int | None,
    *,
    behind_days: int = 1,
    tables: Sequence[str] = PARTITIONED_TABLES,
    lock_timeout_s: float = 5.0,
) -> PartitionChanges:
    """Make a partition for every day from ``today - behind_days`` to ``today + ahead_days`` that none covers;
    drop the partitions whose days all lie before the retention window.

    ``retention_days`` counts the days kept, today included (1 keeps only today; ``None`` drops nothing).
    ``behind_days`` (default 1: yesterday) covers events that arrive late or just after midnight UTC."""
    if ahead_days < 0 or behind_days < 0:
        raise ValueError(f"ahead_days and behind_days must not be negative, got {ahead_days}, {behind_days}")
    if retention_days is not None and retention_days <= behind_days:
        raise ValueError(f"retention_days ({retention_days}) must exceed behind_days ({behind_days})")
    keep_from = today - timedelta(days=retention_days - 1) if retention_days is not None else None
    wanted = [today + timedelta(days=d) for d in range(-behind_days, ahead_days + 1)]
    created: list[str] = []
    dropped: list[str] = []
    async with advisory_lock(conn, LOCK_KEY, 60.0, "partition maintenance"):
        for table in tables:
            schema, existing = await _parent_and_partitions(conn, table)
            for part in existing:
                if keep_from is not None and part.end_day <= keep_from:
                    await _ddl(conn, f"DROP TABLE {part.qualified}", lock_timeout_s)
                    dropped.append(part.name)
            for day in wanted:
                if not any(p.first_day <= day < p.end_day for p in existing):
                    name = partition_name(table, day)
                    await _ddl(
                        conn,
                        f"CREATE TABLE {schema}.{_ident(name)} PARTITION OF {schema}.{_ident(table)} "
                        f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + timedelta(days=1)).isoformat()}')",
                        lock_timeout_s,
                    )
                    created.append(name)
    return PartitionChanges(tuple(created), tuple(dropped))


async def _parent_and_partitions(conn: asyncpg.Connection, table: str) -> tuple[str, tuple[Partition, ...]]:
    parent = await conn.fetchrow(_PARENT, table, timeout=_QUERY_TIMEOUT_S)
    if parent is None:
        raise DatabaseError(f"{table} is not a partitioned table here: have the migrations run on this database?")
    partitions = []
    for row in await conn.fetch(_CHILDREN, parent["oid"], timeout=_QUERY_TIMEOUT_S):
        bound = _BOUND.match(row["bound"] or "")
        if bound is not None:
            first, end = (date.fromisoformat(b) for b in bound.groups())
            partitions.append(Partition(table, str(row["name"]), str(row["qualified"]), first, end))
    return str(parent["schema"]), tuple(partitions)


async def _ddl(conn: asyncpg.Connection, statement: str, lock_timeout_s: float) -> None:
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{max(1, round(lock_timeout_s * 1000))}ms'",
                               timeout=_QUERY_TIMEOUT_S)
            await conn.execute(statement, timeout=lock_timeout_s + 30.0)
    except asyncpg.LockNotAvailableError as exc:
        raise DatabaseError(
            f"{statement}: the table stayed locked by other sessions for {lock_timeout_s:g} s; try again later",
            exc.sqlstate,
        ) from exc
    except asyncpg.PostgresError as exc:
        raise DatabaseError(f"{statement}: {exc}", exc.sqlstate) from exc


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

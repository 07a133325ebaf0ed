"""Session-level PostgreSQL advisory locks with a timeout, so that starters on many hosts take turns.

A lock key is a signed 64-bit integer derived from a name, the same in every fraudguard process; the lock is
held by the connection's session and released on exit (or when the session ends, if the connection dies).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from fraudguard.db.errors import DatabaseError

_HOLDERS = """
SELECT l.pid, coalesce(a.application_name, '') AS app, coalesce(a.client_addr::text, 'local') AS addr
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1
"""


def lock_key(name: str) -> int:
    """A stable advisory-lock key for ``name``: the first 8 bytes of its SHA-256, as a signed bigint."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.asynccontextmanager
async def advisory_lock(conn: Any, key: int, timeout_s: float, purpose: str) -> AsyncIterator[None]:
    """Hold ``pg_advisory_lock(key)`` on ``conn`` for the block; wait at most ``timeout_s`` for it.

    On timeout, :class:`DatabaseError` names the sessions that hold it (pid, application, address)."""
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", key, timeout=timeout_s)
    except TimeoutError as exc:
        holders = await _holders(conn, key)
        raise DatabaseError(
            f"waited {timeout_s:g} s for the {purpose} lock, held by {holders or 'a session that just ended'}"
        ) from exc
    try:
        yield
    finally:
        # a dead connection has lost the lock with its session: nothing to release then
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            await conn.execute("SELECT pg_advisory_unlock($1)", key, timeout=timeout_s)


async def _holders(conn: Any, key: int) -> str:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    try:
        rows = await conn.fetch(_HOLDERS, unsigned >> 32, unsigned & 0xFFFF_FFFF, timeout=5.0)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        return ""
    return ", ".join(f"pid {r['pid']} ({r['app'] or 'no application name'}, {r['addr']})" for r in rows)

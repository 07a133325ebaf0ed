"""API keys: random secrets shown once, stored only as SHA-256, each with roles and an optional expiry.

A key reads ``fgk_<id>_<secret>``: ``id`` (16 hex digits) is public and names the key in logs, lists and the audit
log; ``secret`` is 32 random bytes in URL-safe base64. The database keeps the SHA-256 of the whole key, which is
enough because the secret is random (no dictionary to try): a leaked table does not give working keys.

Roles: ``scorer`` (score, report outcomes, read the model info), ``analyst`` (report outcomes, read decisions and
the model info), ``admin`` (all).
Creating and revoking are audited in the same transaction as the change.

:class:`ApiKeyVerifier` answers "which key is this?" for every call. It caches each key's row for ``ttl_s``
(default 5 s) so a scoring call costs a dict look-up and one SHA-256, not a database round trip; the price is that
a revocation made by another process takes effect within ``ttl_s`` (in this process, :meth:`ApiKeyVerifier.forget`
makes it immediate). Expiry is checked against the clock on every call, never cached.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import asyncpg

from fraudguard.audit import append_audit
from fraudguard.db import Database, DatabaseUnreachableError
from fraudguard.errors import FraudguardError, NotFoundError, ValidationError
from fraudguard.text_checks import checked_text

PREFIX = "fgk"
SECRET_BYTES = 32
MAX_NOTE_CHARS = 500
_KEY = re.compile(r"fgk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_MAX_PRESENTED_CHARS = 200  # longer is malformed without looking further
_COLUMNS = "id, hash, roles, created_at, expires_at, revoked_at, note"


class Role(StrEnum):
    SCORER = "scorer"
    ANALYST = "analyst"
    ADMIN = "admin"


ROLES: tuple[Role, ...] = tuple(Role)


class ApiKeyError(FraudguardError):
    """The presented key does not authenticate. Messages name at most the key's public id, never its secret."""


class MalformedApiKeyError(ApiKeyError):
    """Not of the form ``fgk_<16 hex>_<43 base64url>``."""


class UnknownApiKeyError(ApiKeyError, NotFoundError):
    """No key with that id, or the secret does not match (told apart by nobody: both look the same)."""


class RevokedApiKeyError(ApiKeyError):
    """The key was revoked."""


class ExpiredApiKeyError(ApiKeyError):
    """The key's expiry has passed."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored, without anything secret."""

    id: str
    roles: frozenset[Role]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    note: str

    def allows(self, needed: Iterable[Role]) -> bool:
        """Whether the key has one of the ``needed`` roles; ``admin`` is allowed everything."""
        return Role.ADMIN in self.roles or not self.roles.isdisjoint(needed)

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and its secret: show ``secret`` to the user once; it is nowhere else."""

    key: ApiKey
    secret: str = field(repr=False)


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Roles from their names; ``ValidationError`` for none or an unknown one."""
    roles = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            raise ValidationError("roles", f"unknown role {name!r} (known: {', '.join(ROLES)})") from None
    if not roles:
        raise ValidationError("roles", f"give at least one role ({', '.join(ROLES)})")
    return frozenset(roles)


def key_hash(presented: str) -> bytes:
    return hashlib.sha256(presented.encode("utf-8")).digest()


def key_id_of(presented: str) -> str:
    """The public id of a well-formed key; ``MalformedApiKeyError`` otherwise (without quoting the input)."""
    if not isinstance(presented, str) or len(presented) > _MAX_PRESENTED_CHARS:
        raise MalformedApiKeyError("malformed API key (expected fgk_<id>_<secret>)")
    match = _KEY.fullmatch(presented)
    if match is None:
        raise MalformedApiKeyError("malformed API key (expected fgk_<id>_<secret>)")
    return match.group(1)


async def create_key(db: Database, roles: Iterable[str], expires_at: datetime | None, note: str,
                     actor: str) -> CreatedKey:
    """Make a key with ``roles`` (and ``expires_at``, aware and in the future, or None: never), audited."""
    wanted = parse_roles(roles)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationError("expires_at", "needs a time zone")
        if expires_at <= datetime.now(UTC):
            raise ValidationError("expires_at", f"{expires_at.isoformat()} is not in the future")
    note = checked_text(note, "note", max_chars=MAX_NOTE_CHARS, allow_empty=True, single_line=False)
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    presented = f"{PREFIX}_{key_id}_{secret}"
    ordered = sorted(wanted)
    async with db.connection() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO api_keys (id, hash, roles, expires_at, note) VALUES ($1, $2, $3, $4, $5) "
            f"RETURNING {_COLUMNS}",
            key_id, key_hash(presented), ordered, expires_at, note, timeout=10.0,
        )
        await append_audit(conn, actor=actor, action="api_key.create", subject=key_id,
                           details={"roles": ordered, "note": note,
                                    "expires_at": None if expires_at is None else expires_at.isoformat()})
    return CreatedKey(_key(row), presented)


async def list_keys(db: Database) -> list[ApiKey]:
    """Every key, oldest first (revoked and expired ones too; their status says so)."""
    async with db.connection() as conn:
        rows = await conn.fetch(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id", timeout=10.0)
    return [_key(row) for row in rows]


async def revoke_key(db: Database, key_id: str, actor: str) -> ApiKey:
    """Revoke a key (audited); revoking a revoked key changes nothing. ``UnknownApiKeyError`` when there is none."""
    if not isinstance(key_id, str) or _KEY_ID.fullmatch(key_id) is None:
        raise UnknownApiKeyError("no API key with that id (ids are 16 hex digits; 'fraudguard keys list' shows them)")
    async with db.connection() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING {_COLUMNS}",
            key_id, timeout=10.0,
        )
        if row is not None:
            await append_audit(conn, actor=actor, action="api_key.revoke", subject=key_id)
            return _key(row)
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id, timeout=10.0)
    if row is None:
        raise UnknownApiKeyError(f"no API key {key_id}; 'fraudguard keys list' shows them")
    return _key(row)


@dataclass(frozen=True, slots=True)
class _Cached:
    fetched_at: float  # monotonic seconds
    key: ApiKey | None  # None: no such id
    hash: bytes


_NO_HASH = bytes(32)


class ApiKeyVerifier:
    """Which key a presented string is, with a short cache (see the module's docstring for what that costs).

    ``verify`` raises :class:`MalformedApiKeyError`, :class:`UnknownApiKeyError`, :class:`RevokedApiKeyError` or
    :class:`ExpiredApiKeyError`; and ``DatabaseUnreachableError`` (an ``UnavailableError``) when a key that is not
    cached cannot be looked up within ``lookup_timeout_s``."""

    def __init__(self, db: Database, *, ttl_s: float = 5.0, max_entries: int = 10_000, lookup_timeout_s: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._lookup_timeout_s = lookup_timeout_s
        self._monotonic = monotonic
        self._now = now
        self._cache: collections.OrderedDict[str, _Cached] = collections.OrderedDict()
        self._lookups: dict[str, asyncio.Future[_Cached]] = {}

    async def verify(self, presented: str) -> ApiKey:
        key_id = key_id_of(presented)
        entry = self._cache.get(key_id)
        if entry is None or self._monotonic() - entry.fetched_at >= self._ttl_s:
            entry = await self._lookup(key_id)
        # compare even when the id is unknown, so both take the same time
        matches = hmac.compare_digest(key_hash(presented), entry.hash)
        if entry.key is None or not matches:
            raise UnknownApiKeyError(f"unknown API key {key_id}")
        key = entry.key
        if key.revoked_at is not None:
            raise RevokedApiKeyError(f"API key {key_id} was revoked")
        if key.expires_at is not None and key.expires_at <= self._now():
            raise ExpiredApiKeyError(f"API key {key_id} expired at {key.expires_at.isoformat()}")
        return key

    def forget(self, key_id: str | None = None) -> None:
        """Drop one key (or all) from the cache, e.g. right after revoking it in this process."""
        if key_id is None:
            self._cache.clear()
        else:
            self._cache.pop(key_id, None)

    async def _lookup(self, key_id: str) -> _Cached:
        """One database query per id at a time, however many calls present it at once."""
        pending = self._lookups.get(key_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(key_id))
            self._lookups[key_id] = pending
            pending.add_done_callback(lambda done: self._finished(key_id, done))
        return await asyncio.shield(pending)

    def _finished(self, key_id: str, done: asyncio.Future[_Cached]) -> None:
        self._lookups.pop(key_id, None)
        if not done.cancelled():
            done.exception()  # retrieved here too: every caller may have been cancelled meanwhile

    async def _fetch(self, key_id: str) -> _Cached:
        try:
            async with asyncio.timeout(self._lookup_timeout_s), self._db.connection(self._lookup_timeout_s) as conn:
                row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_id)
        except TimeoutError as exc:
            raise DatabaseUnreachableError(f"cannot check API keys: the database {self._db.target} did not answer "
                                           f"within {self._lookup_timeout_s:g} s") from exc
        entry = _Cached(self._monotonic(), None if row is None else _key(row),
                        _NO_HASH if row is None else bytes(row["hash"]))
        self._cache[key_id] = entry
        self._cache.move_to_end(key_id)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return entry


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(row["id"], frozenset(Role(r) for r in row["roles"]), row["created_at"], row["expires_at"],
                  row["revoked_at"], row["note"])

"""The hash-chained audit log: every privileged action, with who did it and when, in a chain that shows tampering.

Why a chain: the rows live in the same database as everything else, so anyone who can write there could quietly
edit history. Each row's ``hash`` is SHA-256 over a canonical encoding of its own content *and* ``prev_hash`` (the
hash of the row before it), and rows are numbered 1, 2, 3, ... without gaps. :func:`verify_audit` therefore finds

- an edited row (its content no longer matches its hash),
- a deleted row anywhere but the end (a gap in the numbers, and a broken link),
- an inserted or forged row (a wrong hash or a wrong link), and rows swapped or reordered (the id is hashed).

What it cannot find on its own: the newest rows deleted, or the chain rewritten from some row onward with fresh
hashes, by someone with full rights on the database (the hash is not keyed: anyone can recompute it). Against
that, keep an anchor outside the database: record the head hash that ``fraudguard audit verify`` prints (e.g. in a
ticket, daily) and pass it back as ``--expect-head``; a chain that no longer contains it is reported broken.

:func:`append_audit` runs inside the caller's transaction, so an audited change and its audit row commit or roll
back together. Appends serialise on a transaction-level advisory lock held until that transaction ends, so two
writers never both extend the same row (the primary key on ``id`` refuses a fork even at REPEATABLE READ).
``details`` must not hold personal data: audit rows are never changed, so they could not be erased.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from fraudguard.db._locks import lock_key
from fraudguard.db.errors import translated_errors
from fraudguard.errors import ValidationError
from fraudguard.text_checks import checked_text

LOCK_KEY = lock_key("fraudguard.audit")
MAX_NAME_CHARS = 200  # actor and action
MAX_SUBJECT_CHARS = 1000
MAX_DETAILS_BYTES = 64 * 1024
MAX_DETAILS_DEPTH = 32
LOCK_TIMEOUT_S = 10.0
_STATEMENT_TIMEOUT_S = 30.0
_DOMAIN = b"fraudguard.audit.v1\x00"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WHAT = "the audit log"
_WHY = "a long transaction may hold its lock"

_HEAD = "SELECT id, hash, clock_timestamp() AS now FROM audit_log ORDER BY id DESC LIMIT 1"
_INSERT = """
INSERT INTO audit_log (id, at, actor, action, subject, details, prev_hash, hash)
VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8)
"""
_ROWS = "SELECT id, at, actor, action, subject, details::text AS details, prev_hash, hash FROM audit_log"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log. ``details`` is the JSON object as stored."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any] = field(repr=False)
    prev_hash: bytes | None = field(repr=False)
    hash: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        """The entry as plain JSON values (times ISO-8601, hashes hex)."""
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor, "action": self.action,
                "subject": self.subject, "details": dict(self.details),
                "prev_hash": self.prev_hash.hex() if self.prev_hash is not None else None, "hash": self.hash.hex()}


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The verdict of :func:`verify_audit`.

    ``rows_checked`` counts rows found intact before the first bad one; ``head_id``/``head_hash`` are the last
    intact row (record ``head_hash`` outside the database as an anchor)."""

    ok: bool
    rows_checked: int
    first_bad_id: int | None
    reason: str
    head_id: int | None
    head_hash: bytes | None

    @property
    def head_hex(self) -> str | None:
        return self.head_hash.hex() if self.head_hash is not None else None


def check_actor(actor: object) -> str:
    """``actor`` if :func:`append_audit` will accept it (1-200 characters, not blank, no NUL), else
    ``ValidationError``: for commands that check before they change anything."""
    return checked_text(actor, "actor", max_chars=MAX_NAME_CHARS, single_line=False)


async def append_audit(
    conn: asyncpg.Connection,
    *,
    actor: str,
    action: str,
    subject: str = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one row to the chain on ``conn`` and return it.

    Called inside a transaction, the row commits with it (the advisory lock is held until then, so keep that
    transaction short); called outside one, it runs in its own. Bad input raises ``ValidationError``; database
    failures raise ``fraudguard.db.errors.DatabaseError``."""
    actor = check_actor(actor)
    action = checked_text(action, "action", max_chars=MAX_NAME_CHARS, single_line=False)
    subject = checked_text(subject, "subject", max_chars=MAX_SUBJECT_CHARS, allow_empty=True, single_line=False)
    canonical = _canonical_details({} if details is None else details)
    async with translated_errors(_WHAT, _WHY), _transaction(conn, readonly=False):
        stored = await conn.fetchval("SELECT $1::text::jsonb::text", canonical, timeout=_STATEMENT_TIMEOUT_S)
        canonical = canonical_json(json.loads(stored))  # hash what PostgreSQL will give back, e.g. 1e2 -> 100
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY, timeout=LOCK_TIMEOUT_S)
        head = await conn.fetchrow(_HEAD, timeout=_STATEMENT_TIMEOUT_S)
        if head is None:
            entry_id, prev_hash = 1, None
            at = await conn.fetchval("SELECT clock_timestamp()", timeout=_STATEMENT_TIMEOUT_S)
        else:
            entry_id, prev_hash, at = int(head["id"]) + 1, bytes(head["hash"]), head["now"]
        digest = row_hash(entry_id, at, actor, action, subject, canonical, prev_hash)
        await conn.execute(_INSERT, entry_id, at, actor, action, subject, canonical, prev_hash, digest,
                           timeout=_STATEMENT_TIMEOUT_S)
    return AuditEntry(entry_id, at, actor, action, subject, json.loads(canonical), prev_hash, digest)


async def verify_audit(conn: asyncpg.Connection, *, expect_head: bytes | None = None) -> AuditReport:
    """Walk the whole chain in one snapshot and report the first row that is not what it should be.

    ``expect_head``: a hash recorded earlier; the chain must still contain it (it may have grown since)."""
    checked, last_id, last_hash, anchor_seen = 0, 0, None, expect_head is None
    async with translated_errors(_WHAT, _WHY), _transaction(conn, readonly=True):
        async for row in conn.cursor(_ROWS + " ORDER BY id", prefetch=500, timeout=_STATEMENT_TIMEOUT_S):
            problem = _check_row(row, last_id + 1, last_hash)
            if problem is not None:
                bad_id, reason = problem
                return AuditReport(False, checked, bad_id, reason, last_id or None, last_hash)
            checked, last_id, last_hash = checked + 1, int(row["id"]), bytes(row["hash"])
            anchor_seen = anchor_seen or last_hash == expect_head
    if not anchor_seen:
        assert expect_head is not None
        return AuditReport(False, checked, last_id + 1,
                           f"the expected head {expect_head.hex()} is not in the log: rows after id {last_id} were "
                           "deleted, or the chain was rewritten", last_id or None, last_hash)
    reason = f"{checked} rows intact" + (f", head {last_hash.hex()} at id {last_id}" if last_hash else "")
    return AuditReport(True, checked, None, reason, last_id or None, last_hash)


async def list_audit(conn: asyncpg.Connection, *, since: datetime | None = None, limit: int = 100) -> list[AuditEntry]:
    """The newest ``limit`` rows at or after ``since``, oldest first (no verification: use :func:`verify_audit`)."""
    if not 1 <= limit <= 1_000_000:
        raise ValidationError("limit", f"must be between 1 and 1000000, got {limit}")
    if since is not None and since.tzinfo is None:
        raise ValidationError("since", "needs a time zone")
    query = f"SELECT * FROM ({_ROWS} WHERE $1::timestamptz IS NULL OR at >= $1 ORDER BY id DESC LIMIT $2) r ORDER BY id"
    async with translated_errors(_WHAT, _WHY):
        rows = await conn.fetch(query, since, limit, timeout=_STATEMENT_TIMEOUT_S)
    return [AuditEntry(int(r["id"]), r["at"], r["actor"], r["action"], r["subject"], json.loads(r["details"]),
                       None if r["prev_hash"] is None else bytes(r["prev_hash"]), bytes(r["hash"])) for r in rows]


def row_hash(entry_id: int, at: datetime, actor: str, action: str, subject: str, details_json: str,
             prev_hash: bytes | None) -> bytes:
    """SHA-256 over an unambiguous encoding: a version tag, then each field fixed-width or length-prefixed.

    ``at`` is hashed as whole microseconds since the epoch (PostgreSQL's resolution), so no time-zone or
    formatting choice can change it."""
    h = hashlib.sha256(_DOMAIN)
    h.update(entry_id.to_bytes(8, "big", signed=True))
    h.update(((at - _EPOCH) // timedelta(microseconds=1)).to_bytes(8, "big", signed=True))
    for text in (actor, action, subject, details_json):
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    h.update(b"\x00" if prev_hash is None else b"\x01" + prev_hash)
    return h.digest()


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 as is: one text per JSON value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_row(row: asyncpg.Record, expected_id: int, prev_hash: bytes | None) -> tuple[int, str] | None:
    """``(id to name, reason)`` when ``row`` is not the intact successor of ``prev_hash``; None when it is."""
    row_id = int(row["id"])
    if row_id != expected_id:
        if row_id > expected_id:
            missing = f"row {expected_id} is" if row_id == expected_id + 1 else f"rows {expected_id}-{row_id - 1} are"
            return expected_id, f"{missing} missing (deleted)"
        return row_id, f"row {row_id} is out of sequence (expected id {expected_id})"
    stored_prev = None if row["prev_hash"] is None else bytes(row["prev_hash"])
    if stored_prev != prev_hash:
        return row_id, f"row {row_id} does not link to row {row_id - 1} (a row was replaced, inserted or edited)"
    try:
        details = canonical_json(json.loads(row["details"]))
    except ValueError:
        return row_id, f"row {row_id} has details that are not canonical JSON"
    digest = row_hash(row_id, row["at"], row["actor"], row["action"], row["subject"], details, prev_hash)
    if digest != bytes(row["hash"]):
        return row_id, f"row {row_id} does not match its hash (its content was edited)"
    return None


def _check_string(name: str, value: str) -> None:
    """A text inside ``details`` (a key or a value): anything storable as jsonb."""
    checked_text(value, name, max_chars=MAX_DETAILS_BYTES, allow_empty=True, single_line=False)


def _canonical_details(details: object) -> str:
    if not isinstance(details, Mapping):
        raise ValidationError("details", f"must be a JSON object (a mapping), got {type(details).__name__}")
    _check_json("details", details, 0)
    text = canonical_json(details)
    if len(text.encode("utf-8")) > MAX_DETAILS_BYTES:
        raise ValidationError("details", f"at most {MAX_DETAILS_BYTES} bytes as JSON")
    return text


def _check_json(path: str, value: object, depth: int) -> None:
    """Only what JSON (and jsonb) can hold: str keys, finite numbers, no NUL, bounded depth."""
    if depth > MAX_DETAILS_DEPTH:
        raise ValidationError(path, f"nested deeper than {MAX_DETAILS_DEPTH}")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(path, "must be a finite number")
    elif isinstance(value, str):
        _check_string(path, value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(path, f"keys must be text, got {type(key).__name__}")
            _check_string(f"{path}.{key}", key)
            _check_json(f"{path}.{key}", item, depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(f"{path}[{i}]", item, depth + 1)
    else:
        raise ValidationError(path, f"not a JSON value: {type(value).__name__}")


@contextlib.asynccontextmanager
async def _transaction(conn: asyncpg.Connection, *, readonly: bool) -> AsyncIterator[None]:
    """The caller's transaction when there is one, else our own (REPEATABLE READ when reading: one snapshot)."""
    if conn.is_in_transaction():
        yield
        return
    isolation = "repeatable_read" if readonly else "read_committed"
    async with conn.transaction(isolation=isolation, readonly=readonly):
        yield

"""Personal data at rest: re-encrypting it under the current key, retiring old keys, erasing a customer's.

The rows are ``decisions`` and ``transactions``; both hold the same personal columns: ``device_id_enc``,
``ip_address_enc``, ``email_enc`` (sealed by :class:`~fraudguard.security.personal.Keyring` with
:func:`~fraudguard.security.personal.personal_aad` of the row's transaction id) and ``personal_key_id``.

Rotation (:func:`rotate_personal_data`) walks each table in key order, a batch per transaction, re-sealing the rows
whose key is not the current one. It only ever moves rows *to* the current key, so an interrupted run is resumed
by running it again, and a second run finds nothing to do. A row whose values cannot be opened (unknown key,
altered bytes) is left exactly as it is and reported: rotation never destroys what it cannot read. Retiring a key
(:func:`retire_unused_keys`) removes it from the key file only when no row uses it; servers still running with the
old keyring keep sealing with the old key, so restart them between rotating and retiring.

Erasure (:func:`erase_customer`) is GDPR's right to erasure. The rows stay (they are the accounting of what was
scored and decided, and the model statistics), but everything in them that points at the person goes:
``customer_id`` becomes NULL (not a marker: a hash of a guessable id is still personal data), the personal
ciphertexts (device id, IP address, e-mail), their key id and the location become NULL. Card token, BIN and last
four stay: chargebacks and payment records must be kept by law, and they identify a card, which the processor holds
anyway. So do the countries (the card's, billing, shipping): a country is where millions live, not a person.
Labels are left alone. The audit entry names the customer only by a keyed digest (:func:`erasure_subject`), so the
request can be proved later from the id without the audit log (which cannot be erased) holding it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg

from fraudguard.audit import append_audit, check_actor
from fraudguard.db import Database
from fraudguard.errors import ValidationError
from fraudguard.security.personal import Keyring, SealedDataError, personal_aad
from fraudguard.text_checks import checked_text

TABLES = ("decisions", "transactions")
# (field name in the AAD, column)
SEALED_COLUMNS = (("device_id", "device_id_enc"), ("ip_address", "ip_address_enc"), ("email", "email_enc"))
ERASED_COLUMNS = ("customer_id", "device_id_enc", "ip_address_enc", "email_enc", "personal_key_id", "latitude",
                  "longitude")
MAX_CUSTOMER_ID_CHARS = 1000
MAX_REPORTED_FAILURES = 100
MAX_BATCH_ROWS = 100_000
_STATEMENT_TIMEOUT_S = 600.0  # one batch, or one customer's rows

Progress = Callable[[int, int], None]  # (rows done, rows to do)


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A row rotation left as it was, and why (transaction ids are not personal data)."""

    table: str
    transaction_id: str
    event_day: date
    key_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What :func:`rotate_personal_data` did: rows re-sealed per table, under which key, from which keys."""

    key_id: str
    decisions: int
    transactions: int
    from_keys: tuple[str, ...]
    unreadable_count: int = 0
    unreadable: tuple[UnreadableRow, ...] = field(default=(), repr=False)  # the first MAX_REPORTED_FAILURES
    audit_id: int | None = None

    @property
    def rows(self) -> int:
        return self.decisions + self.transactions


@dataclass(frozen=True, slots=True)
class RetirementReport:
    """Keys removed from the key file, and the keys still in use with their row counts."""

    retired: tuple[str, ...]
    in_use: tuple[tuple[str, int], ...]
    audit_id: int | None = None


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """Rows whose personal data :func:`erase_customer` removed, per table; zero for an unknown or erased customer."""

    subject: str
    decisions: int
    transactions: int
    audit_id: int

    @property
    def rows(self) -> int:
        return self.decisions + self.transactions


# --- rotation -----------------------------------------------------------------------------------------------------


async def rotate_personal_data(
    db: Database,
    keyring: Keyring,
    *,
    actor: str,
    batch_rows: int = 5000,
    progress: Progress | None = None,
) -> RotationReport:
    """Re-seal every row not under ``keyring.current_id``, ``batch_rows`` per transaction; one audit entry."""
    check_rotation_args(actor, batch_rows)  # first: a rotation the audit log then refused would go unrecorded
    total = sum((await _count_stale(db, keyring.current_id)).values())
    state = _Rotation(keyring, total, progress)
    if progress is not None:
        progress(0, total)
    for table in TABLES:
        await state.run(db, table, batch_rows)
    async with db.connection() as conn:
        entry = await append_audit(conn, actor=actor, action="personal_data.rotate",
                                   subject=f"personal-key:{keyring.current_id}", details=state.details())
    return RotationReport(keyring.current_id, state.done["decisions"], state.done["transactions"],
                          tuple(sorted(state.from_keys)), state.unreadable_count, tuple(state.unreadable), entry.id)


class _Rotation:
    """The running totals of one rotation."""

    def __init__(self, keyring: Keyring, total: int, progress: Progress | None) -> None:
        self.keyring = keyring
        self.total = total
        self.progress = progress
        self.done = dict.fromkeys(TABLES, 0)
        self.from_keys: set[str] = set()
        self.unreadable: list[UnreadableRow] = []
        self.unreadable_count = 0

    async def run(self, db: Database, table: str, batch_rows: int) -> None:
        after: tuple[str, date] | None = None
        while True:
            async with db.connection() as conn, conn.transaction():
                rows = await _stale_batch(conn, table, self.keyring.current_id, after, batch_rows)
                if not rows:
                    return
                resealed, failed = await asyncio.to_thread(_reseal, self.keyring, table, rows)
                await _store(conn, table, self.keyring.current_id, resealed)
            after = (rows[-1]["transaction_id"], rows[-1]["event_day"])
            self._count(table, rows, resealed, failed)

    def _count(self, table: str, rows: Sequence[Any], resealed: Sequence[tuple[Any, ...]],
               failed: Sequence[UnreadableRow]) -> None:
        self.done[table] += len(resealed)
        self.from_keys.update(str(r["personal_key_id"]) for r in rows)
        self.unreadable_count += len(failed)
        self.unreadable.extend(failed[: MAX_REPORTED_FAILURES - len(self.unreadable)])
        if self.progress is not None:
            self.progress(sum(self.done.values()) + self.unreadable_count, self.total)

    def details(self) -> dict[str, Any]:
        return {"key_id": self.keyring.current_id, "from_keys": sorted(self.from_keys), "rows": dict(self.done),
                "unreadable_rows": self.unreadable_count}


async def _count_stale(db: Database, current: str) -> dict[str, int]:
    async with db.connection() as conn:
        return {table: int(await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE personal_key_id <> $1", current, timeout=_STATEMENT_TIMEOUT_S))
            for table in TABLES}


async def _stale_batch(conn: asyncpg.Connection, table: str, current: str, after: tuple[str, date] | None,
                       limit: int) -> list[Any]:
    """The next ``limit`` rows (in key order, after ``after``) not under ``current``, locked until commit."""
    columns = ", ".join(column for _, column in SEALED_COLUMNS)
    where = "personal_key_id <> $1" + ("" if after is None else " AND (transaction_id, event_day) > ($3, $4)")
    query = (f"SELECT transaction_id, event_day, personal_key_id, {columns} FROM {table} WHERE {where} "
             "ORDER BY transaction_id, event_day LIMIT $2 FOR UPDATE")
    args = (current, limit) if after is None else (current, limit, *after)
    return list(await conn.fetch(query, *args, timeout=_STATEMENT_TIMEOUT_S))


def _reseal(keyring: Keyring, table: str, rows: Sequence[Any]) -> tuple[list[tuple[Any, ...]], list[UnreadableRow]]:
    """Rows re-sealed under the current key as ``(transaction_id, event_day, old key, *values)``, and the rows
    that could not be opened (left alone: all of a row's values move together or none do)."""
    resealed: list[tuple[Any, ...]] = []
    failed: list[UnreadableRow] = []
    for row in rows:
        tx, key_id = row["transaction_id"], row["personal_key_id"]
        try:
            values = [_reseal_value(keyring, key_id, row[column], personal_aad(name, tx))
                      for name, column in SEALED_COLUMNS]
        except SealedDataError as exc:
            failed.append(UnreadableRow(table, tx, row["event_day"], key_id, str(exc)))
            continue
        resealed.append((tx, row["event_day"], key_id, *values))
    return resealed, failed


def _reseal_value(keyring: Keyring, key_id: str, sealed: bytes | None, aad: bytes) -> bytes | None:
    if not sealed:  # NULL, or an empty value, which holds nothing: kept as it is
        return sealed
    return keyring.seal(keyring.open(key_id, sealed, aad), aad)


async def _store(conn: asyncpg.Connection, table: str, current: str, resealed: Sequence[tuple[Any, ...]]) -> None:
    if not resealed:
        return
    sets = ", ".join(f"{column} = u.{column}" for _, column in SEALED_COLUMNS)
    names = ", ".join(column for _, column in SEALED_COLUMNS)
    arrays = ", ".join(f"${i}::bytea[]" for i in range(5, 5 + len(SEALED_COLUMNS)))
    query = (f"UPDATE {table} AS t SET {sets}, personal_key_id = $1 "
             f"FROM unnest($2::text[], $3::date[], $4::text[], {arrays}) "
             f"AS u(transaction_id, event_day, old_key_id, {names}) "
             "WHERE t.transaction_id = u.transaction_id AND t.event_day = u.event_day "
             "AND t.personal_key_id = u.old_key_id")
    columns = [list(values) for values in zip(*resealed, strict=True)]
    await conn.execute(query, current, *columns, timeout=_STATEMENT_TIMEOUT_S)


# --- key retirement -----------------------------------------------------------------------------------------------


async def keys_in_use(db: Database) -> dict[str, int]:
    """Key id → rows (in both tables, and the gateway's unprocessed Stripe events) whose personal values it
    sealed."""
    used: dict[str, int] = {}
    async with db.connection() as conn:
        for table in (*TABLES, "stripe_events"):
            rows = await conn.fetch(f"SELECT personal_key_id AS k, count(*) AS n FROM {table} "
                                    "WHERE personal_key_id IS NOT NULL GROUP BY 1", timeout=_STATEMENT_TIMEOUT_S)
            for row in rows:
                used[row["k"]] = used.get(row["k"], 0) + int(row["n"])
    return used


async def retire_unused_keys(db: Database, keyring: Keyring, path: Path, *, actor: str) -> RetirementReport:
    """Remove from the key file every key but the current one that no row uses; one audit entry if any went.

    The audit row and the file change go together: the file is written inside the audit row's transaction, so a
    failed write leaves no entry, and a failed commit is reported as an error."""
    check_actor(actor)
    used = await keys_in_use(db)
    unused = sorted(set(keyring.key_ids) - set(used) - {keyring.current_id})
    in_use = tuple(sorted(used.items()))
    if not unused:
        return RetirementReport((), in_use)
    async with db.connection() as conn, conn.transaction():
        entry = await append_audit(conn, actor=actor, action="personal_keys.retire",
                                   subject=f"personal-key:{keyring.current_id}", details={"retired": unused})
        retired = await asyncio.to_thread(keyring.remove_keys, path, unused)
    return RetirementReport(retired, in_use, entry.id)


# --- erasure ------------------------------------------------------------------------------------------------------


def check_rotation_args(actor: str, batch_rows: int) -> None:
    """ValidationError for arguments :func:`rotate_personal_data` would refuse (commands check before acting)."""
    if not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise ValidationError("batch_rows", f"must be between 1 and {MAX_BATCH_ROWS}, got {batch_rows}")
    check_actor(actor)


def erasure_subject(customer_id: str, subject_key: bytes) -> str:
    """The audit subject of an erasure: a keyed digest of the id. Whoever holds the key (``DATA_DIR/keys/
    erasure.key``) and the id can find the entry; the log alone does not reveal (or let anyone guess) the id."""
    digest = hmac.new(subject_key, b"fraudguard.erasure.v1\x00" + customer_id.encode(), hashlib.sha256)
    return f"customer:hmac-sha256:{digest.hexdigest()}"


def check_customer_id(customer_id: object) -> str:
    """``customer_id`` if it could be stored; ValidationError (never quoting it: it is personal data) if not."""
    return checked_text(customer_id, "customer_id", max_chars=MAX_CUSTOMER_ID_CHARS, allow_blank=True,
                        single_line=False)


async def count_customer_rows(db: Database, customer_id: str) -> dict[str, int]:
    """Rows per table that :func:`erase_customer` would change (to show before asking for confirmation)."""
    check_customer_id(customer_id)
    async with db.connection() as conn:
        return {table: int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE customer_id = $1", customer_id,
                                               timeout=_STATEMENT_TIMEOUT_S)) for table in TABLES}


async def erase_customer(db: Database, customer_id: str, *, actor: str, subject_key: bytes) -> ErasureReport:
    """Remove the personal data of every row of ``customer_id`` in both tables, and audit it, in one transaction.

    Idempotent: erased rows no longer carry the id, so a second call (or one for an unknown id) changes zero rows;
    it is audited all the same, as evidence that the request was handled."""
    check_customer_id(customer_id)
    check_actor(actor)
    subject = erasure_subject(customer_id, subject_key)
    cleared = ", ".join(f"{column} = NULL" for column in ERASED_COLUMNS)
    counts: dict[str, int] = {}
    async with db.connection() as conn, conn.transaction():
        for table in TABLES:
            status = await conn.execute(f"UPDATE {table} SET {cleared} WHERE customer_id = $1", customer_id,
                                        timeout=_STATEMENT_TIMEOUT_S)
            counts[table] = int(status.split()[-1])
        entry = await append_audit(conn, actor=actor, action="customer.erase", subject=subject,
                                   details={"rows": counts, "cleared": list(ERASED_COLUMNS)})
    return ErasureReport(subject, counts["decisions"], counts["transactions"], entry.id)

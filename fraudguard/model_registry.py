"""The model registry in PostgreSQL: the bundles known (``model_bundles``) and which one was served when
(``model_promotions``), every promotion audited in the same transaction as its row.

Plain values in and out: this module knows nothing of bundle directories or of the scoring server, so the trainer,
the federation coordinator and the gateway can all use it; each reads its bundles and passes what it found.

The order a promotion follows (``fraudguard models promote`` does it so):

1. take :func:`promotion_lock` (promotions on one database take turns, so rows and pointer flips keep one order);
2. in one transaction: :func:`register_bundle` for the new bundle (and the one it replaces), then
   :func:`record_promotion`, which appends the ``model.promote`` (or ``model.rollback``) audit entry;
3. only after the commit, flip the pointer file the servers watch.

So nothing is ever served without its audit row. The converse is not guaranteed: if the flip fails after the
commit (or the process dies in between), the rows record an *intent* that did not take effect; the caller must
say so, and promoting again records a second promotion.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import asyncpg

from fraudguard.audit import AuditEntry, append_audit
from fraudguard.db._locks import advisory_lock, lock_key
from fraudguard.db.errors import translated_errors
from fraudguard.errors import BundleError, FraudguardError, NotFoundError, ValidationError
from fraudguard.text_checks import checked_text, checked_version, shown

ORIGIN_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")  # the table's CHECK, bounded: trained, federated, demo, ...
MAX_ACTOR_CHARS = 200
MAX_NOTE_CHARS = 500
MAX_LOCATION_CHARS = 4096
MAX_HISTORY = 10_000
PROMOTE = "model.promote"
ROLLBACK = "model.rollback"
ACTIONS = (PROMOTE, ROLLBACK)
PROMOTION_LOCK = lock_key("fraudguard.model_promotion")
_TIMEOUT_S = 10.0
_WHAT = "the model registry"

_UPSERT = """
INSERT INTO model_bundles (version, created_at, model_sha256, feature_schema, thresholds, metrics,
                           training_data_fingerprint, origin, location)
VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6::text::jsonb, $7, $8, $9)
ON CONFLICT (version) DO UPDATE SET location = EXCLUDED.location
WHERE model_bundles.model_sha256 = EXCLUDED.model_sha256 AND model_bundles.thresholds = EXCLUDED.thresholds
  AND model_bundles.feature_schema = EXCLUDED.feature_schema
RETURNING (xmax = 0) AS inserted
"""
_BUNDLE = """
SELECT version, created_at, model_sha256, feature_schema::text AS feature_schema, thresholds::text AS thresholds,
       metrics::text AS metrics, training_data_fingerprint, origin, location
FROM model_bundles WHERE version = $1
"""
_INSERT_PROMOTION = """
INSERT INTO model_promotions (version, previous_version, actor, note) VALUES ($1, $2, $3, $4)
RETURNING id, version, previous_version, promoted_at, actor, note
"""
_HISTORY = """
SELECT id, version, previous_version, promoted_at, actor, note FROM model_promotions ORDER BY id DESC LIMIT $1
"""


class RegistryError(FraudguardError):
    """Base of the registry's own refusals."""


class BundleConflictError(RegistryError, BundleError):
    """A version is registered already with other content (model hash, thresholds or feature schema)."""


class UnregisteredBundleError(RegistryError, NotFoundError):
    """A promotion names a version that is not in ``model_bundles``."""


@dataclass(frozen=True, slots=True)
class BundleRecord:
    """A row of ``model_bundles``: what a bundle is, as plain values. Checked on creation (``ValidationError``)."""

    version: str
    created_at: datetime
    model_sha256: bytes = field(repr=False)
    feature_schema: Mapping[str, Any]
    thresholds: Mapping[str, float]
    metrics: Mapping[str, float]
    training_data_fingerprint: str | None
    origin: str
    location: str = ""

    def __post_init__(self) -> None:
        check_version(self.version)
        if not isinstance(self.created_at, datetime) or self.created_at.utcoffset() is None:
            raise ValidationError("created_at", "must be a datetime with a time zone")
        if not isinstance(self.model_sha256, bytes) or len(self.model_sha256) != 32:
            raise ValidationError("model_sha256", "must be 32 bytes (a SHA-256 digest)")
        if not isinstance(self.origin, str) or not ORIGIN_PATTERN.fullmatch(self.origin):
            raise ValidationError("origin", f"expected 1-40 of [a-z0-9_], starting with a letter; got "
                                  f"{shown(self.origin)}")
        _text("location", self.location, MAX_LOCATION_CHARS)
        if self.training_data_fingerprint is not None:
            _text("training_data_fingerprint", self.training_data_fingerprint, MAX_LOCATION_CHARS)
        object.__setattr__(self, "feature_schema", MappingProxyType(dict(_json_object("feature_schema",
                                                                                      self.feature_schema))))
        for name in ("thresholds", "metrics"):
            numbers = _json_object(name, getattr(self, name))
            for key, value in numbers.items():
                if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                    raise ValidationError(f"{name}.{key}", f"must be a finite number, got {value!r}")
            object.__setattr__(self, name, MappingProxyType({k: float(v) for k, v in numbers.items()}))


@dataclass(frozen=True, slots=True)
class Promotion:
    """A row of ``model_promotions``: ``version`` became the served bundle, replacing ``previous_version``."""

    id: int
    version: str
    previous_version: str | None
    promoted_at: datetime
    actor: str
    note: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "previous_version": self.previous_version,
                "promoted_at": self.promoted_at.isoformat(), "actor": self.actor, "note": self.note}


@dataclass(frozen=True, slots=True)
class RecordedPromotion:
    """What :func:`record_promotion` wrote: the promotion row and its audit entry."""

    promotion: Promotion
    audit: AuditEntry


def check_version(value: object, name: str = "version") -> str:
    """``value`` if it is a bundle version id (1-64 of ``[A-Za-z0-9._-]``, not ``.`` or ``..``: the rule of
    :func:`fraudguard.text_checks.checked_version`), else ``ValidationError`` quoting it safely (escaped,
    shortened)."""
    return checked_version(value, lambda message: ValidationError(name, message))


def check_actor(value: object) -> str:
    """Who acts, e.g. ``cli:alice`` or ``system:demo``: 1-200 printable characters on one line, not blank."""
    return checked_text(value, "actor", max_chars=MAX_ACTOR_CHARS, quote=True)


def check_note(value: object) -> str:
    """A free-text note: at most 500 characters on one line, without control characters."""
    return _text("note", value, MAX_NOTE_CHARS)


@contextlib.asynccontextmanager
async def promotion_lock(conn: asyncpg.Connection, timeout_s: float = 30.0) -> AsyncIterator[None]:
    """Hold the database-wide promotion lock (a session advisory lock) for the block: take it before reading what
    is served, release it after flipping the pointer, so concurrent promotions keep one order everywhere."""
    async with advisory_lock(conn, PROMOTION_LOCK, timeout_s, "model promotion"):
        yield


async def register_bundle(conn: asyncpg.Connection, record: BundleRecord) -> bool:
    """Add ``record`` to ``model_bundles``; True if it was new, False if it was there already (its location is
    updated). The same version with another model hash, thresholds or feature schema raises
    :class:`BundleConflictError`: a version names one bundle, for ever."""
    args = (record.version, record.created_at, record.model_sha256, _dumps(record.feature_schema),
            _dumps(record.thresholds), _dumps(record.metrics), record.training_data_fingerprint, record.origin,
            record.location)
    async with translated_errors(_WHAT):
        inserted = await conn.fetchval(_UPSERT, *args, timeout=_TIMEOUT_S)
        if inserted is not None:
            return bool(inserted)
        existing = await registered_bundle(conn, record.version)
    if existing is None:  # deleted between the two statements: nothing to compare with
        raise RegistryError(f"bundle {record.version} changed in the registry while being registered; try again")
    raise BundleConflictError(f"bundle version {record.version} is registered already with other content "
                              f"({_difference(existing, record)}); a version names one bundle: give the new one "
                              "another version")


async def registered_bundle(conn: asyncpg.Connection, version: str) -> BundleRecord | None:
    """The registered bundle ``version``, or None."""
    check_version(version)
    async with translated_errors(_WHAT):
        row = await conn.fetchrow(_BUNDLE, version, timeout=_TIMEOUT_S)
    if row is None:
        return None
    return BundleRecord(row["version"], row["created_at"], bytes(row["model_sha256"]),
                        json.loads(row["feature_schema"]), json.loads(row["thresholds"]), json.loads(row["metrics"]),
                        row["training_data_fingerprint"], row["origin"], row["location"])


async def record_promotion(conn: asyncpg.Connection, version: str, previous_version: str | None, actor: str,
                           note: str = "", *, action: str = PROMOTE) -> RecordedPromotion:
    """Record that ``version`` replaces ``previous_version`` (None: nothing registered was served) as the served
    bundle, with the audit entry ``action`` (``model.promote`` or ``model.rollback``) by ``actor``, in one
    transaction (the caller's when there is one). Both versions must be registered
    (:class:`UnregisteredBundleError`). This does not switch what servers load: flip the pointer after the
    commit."""
    check_version(version)
    if previous_version is not None:
        check_version(previous_version, "previous_version")
        if previous_version == version:
            raise ValidationError("previous_version", f"{version} would replace itself")
    actor, note = check_actor(actor), check_note(note)
    if action not in ACTIONS:
        raise ValidationError("action", f"expected one of {', '.join(ACTIONS)}, got {shown(action)}")
    async with translated_errors(_WHAT), _transaction(conn):
        bundle = await registered_bundle(conn, version)
        if bundle is None:
            raise UnregisteredBundleError(f"bundle {version} is not registered; register it first")
        if previous_version is not None and await registered_bundle(conn, previous_version) is None:
            raise UnregisteredBundleError(f"the previous bundle {previous_version} is not registered; register it "
                                          "first (or pass None)")
        row = await conn.fetchrow(_INSERT_PROMOTION, version, previous_version, actor, note, timeout=_TIMEOUT_S)
        promotion = _promotion(row)
        entry = await append_audit(conn, actor=actor, action=action, subject=version, details={
            "previous": previous_version, "note": note, "promotion_id": promotion.id,
            "model_sha256": bundle.model_sha256.hex(),
        })
    return RecordedPromotion(promotion, entry)


async def promotion_history(conn: asyncpg.Connection, limit: int = 50) -> list[Promotion]:
    """The newest ``limit`` promotions, newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY:
        raise ValidationError("limit", f"must be between 1 and {MAX_HISTORY}, got {limit!r}")
    async with translated_errors(_WHAT):
        rows = await conn.fetch(_HISTORY, limit, timeout=_TIMEOUT_S)
    return [_promotion(row) for row in rows]


def _promotion(row: asyncpg.Record) -> Promotion:
    return Promotion(int(row["id"]), row["version"], row["previous_version"], row["promoted_at"], row["actor"],
                     row["note"])


def _difference(existing: BundleRecord, new: BundleRecord) -> str:
    if existing.model_sha256 != new.model_sha256:
        return f"model sha256 {existing.model_sha256.hex()[:16]}... there, {new.model_sha256.hex()[:16]}... here"
    if dict(existing.thresholds) != dict(new.thresholds):
        return f"thresholds {dict(existing.thresholds)} there, {dict(new.thresholds)} here"
    return "another feature schema"


def _text(name: str, value: object, max_chars: int) -> str:
    """Optional one-line text (a note, a location): may be empty, and messages may name the bad character."""
    return checked_text(value, name, max_chars=max_chars, allow_empty=True, quote=True)


def _json_object(name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValidationError(name, "must be a JSON object (a mapping with text keys)")
    try:
        _dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, f"not JSON: {exc}") from None
    return value


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


@contextlib.asynccontextmanager
async def _transaction(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """The caller's transaction when there is one, else our own."""
    if conn.is_in_transaction():
        yield
        return
    async with conn.transaction():
        yield

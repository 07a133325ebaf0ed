"""The model registry against each PostgreSQL server: bundles registered once, promotions recorded with their audit
entry in one transaction, the history, and what hostile values get."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from fraudguard.audit import list_audit, verify_audit
from fraudguard.db import Database, DatabaseError
from fraudguard.errors import BundleError, ValidationError
from fraudguard.model_registry import (
    PROMOTE,
    ROLLBACK,
    BundleConflictError,
    BundleRecord,
    UnregisteredBundleError,
    check_actor,
    check_note,
    check_version,
    promotion_history,
    promotion_lock,
    record_promotion,
    register_bundle,
    registered_bundle,
)
from fraudguard.text_checks import checked_text
from scoring.model import bundle as scoring_bundle


def record(version: str, model: bytes = b"onnx bytes", **changes: Any) -> BundleRecord:
    values: dict[str, Any] = {
        "version": version, "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "model_sha256": hashlib.sha256(model).digest(),
        "feature_schema": {"schema_version": "s1", "feature_names": ["a", "b"]},
        "thresholds": {"challenge": 0.3, "review": 0.6, "block": 0.9}, "metrics": {"auc": 0.91},
        "training_data_fingerprint": "f" * 64, "origin": "trained", "location": f"/data/models/{version}",
    }
    values.update(changes)
    return BundleRecord(**values)


def test_version_rule_is_the_bundle_directory_rule() -> None:
    for good in ("v1", "demo-20260101-000000-abcdef12", "a.b_c-D", "x" * 64):
        assert check_version(good) == good == scoring_bundle.check_version(good)


async def test_register_is_idempotent_and_keeps_what_it_was_given(db: Database) -> None:
    async with db.connection() as conn:
        assert await register_bundle(conn, record("v1")) is True
        assert await register_bundle(conn, record("v1", location="/moved/v1", metrics={"auc": 0.5})) is False
        stored = await registered_bundle(conn, "v1")
        assert await registered_bundle(conn, "v2") is None
    assert stored is not None
    assert stored.model_sha256 == hashlib.sha256(b"onnx bytes").digest() and stored.origin == "trained"
    assert dict(stored.thresholds) == {"challenge": 0.3, "review": 0.6, "block": 0.9}
    assert dict(stored.metrics) == {"auc": 0.91}  # the first registration's metrics stay
    assert stored.location == "/moved/v1"  # the bundle moved: where it is now
    assert dict(stored.feature_schema) == {"schema_version": "s1", "feature_names": ["a", "b"]}


@pytest.mark.parametrize("changes", [
    {"model": b"another model"},
    {"thresholds": {"challenge": 0.3, "review": 0.6, "block": 0.95}},
    {"feature_schema": {"schema_version": "s2", "feature_names": ["a", "b"]}},
])
async def test_the_same_version_with_other_content_is_refused(db: Database, changes: dict[str, Any]) -> None:
    async with db.connection() as conn:
        await register_bundle(conn, record("v1"))
        with pytest.raises(BundleConflictError, match="v1 is registered already with other content"):
            await register_bundle(conn, record("v1", **changes))
        stored = await registered_bundle(conn, "v1")
    assert stored == record("v1")


async def test_concurrent_registrations_of_one_version_agree(db: Database) -> None:
    async def register() -> bool:
        async with db.connection() as conn:
            return await register_bundle(conn, record("v1"))

    assert sorted(await asyncio.gather(*(register() for _ in range(3)))) == [False, False, True]


async def test_a_promotion_is_recorded_with_its_audit_entry(db: Database) -> None:
    async with db.connection() as conn:
        for version in ("v1", "v2"):
            await register_bundle(conn, record(version, model=version.encode()))
        first = await record_promotion(conn, "v1", None, "cli:alice", "")
        second = await record_promotion(conn, "v2", "v1", "ops:bob", "better AP, ticket 42")
        back = await record_promotion(conn, "v1", "v2", "ops:bob", "alerts", action=ROLLBACK)
        history = await promotion_history(conn, 10)
        entries = await list_audit(conn)
        report = await verify_audit(conn)
    assert [p.id for p in history] == [back.promotion.id, second.promotion.id, first.promotion.id]  # newest first
    assert history[1].version == "v2" and history[1].previous_version == "v1" and history[1].actor == "ops:bob"
    assert history[1].note == "better AP, ticket 42" and history[2].previous_version is None
    assert [(e.action, e.subject, e.actor) for e in entries] == [
        (PROMOTE, "v1", "cli:alice"), (PROMOTE, "v2", "ops:bob"), (ROLLBACK, "v1", "ops:bob")]
    assert dict(entries[1].details) == {"previous": "v1", "note": "better AP, ticket 42",
                                        "promotion_id": second.promotion.id,
                                        "model_sha256": hashlib.sha256(b"v2").hexdigest()}
    assert entries[1] == second.audit
    assert report.ok and report.rows_checked == 3
    async with db.connection() as conn:
        assert [p.id for p in await promotion_history(conn, 1)] == [back.promotion.id]


async def test_promoting_an_unregistered_version_is_refused(db: Database) -> None:
    async with db.connection() as conn:
        with pytest.raises(UnregisteredBundleError, match="v1 is not registered"):
            await record_promotion(conn, "v1", None, "cli:alice")
        await register_bundle(conn, record("v1"))
        with pytest.raises(UnregisteredBundleError, match="previous bundle v0"):
            await record_promotion(conn, "v1", "v0", "cli:alice")
        assert await promotion_history(conn) == [] and await list_audit(conn) == []


async def test_no_promotion_row_without_its_audit_row(db: Database) -> None:
    """The audit append fails after the promotion row was written: both roll back together."""
    async with db.connection() as conn:
        await register_bundle(conn, record("v1"))
        await conn.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                           "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$")
        await conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse()")
        with pytest.raises(DatabaseError, match="audit refused"):
            await record_promotion(conn, "v1", None, "cli:alice")
        assert await promotion_history(conn) == []
        await conn.execute("DROP TRIGGER refuse ON audit_log")
        with pytest.raises(_Abort):  # in the caller's transaction, rolled back by the caller: nothing either
            async with conn.transaction():
                await record_promotion(conn, "v1", None, "cli:alice")
                raise _Abort
        assert await promotion_history(conn) == [] and await list_audit(conn) == []
        await record_promotion(conn, "v1", None, "cli:alice")
        assert len(await promotion_history(conn)) == 1 and len(await list_audit(conn)) == 1


class _Abort(Exception):
    pass


async def test_promotions_take_turns(db: Database) -> None:
    async with db.connection() as first, db.connection() as second, promotion_lock(first):
        with pytest.raises(DatabaseError, match="model promotion lock"):
            async with promotion_lock(second, timeout_s=0.2):
                pass
    async with db.connection() as again, promotion_lock(again, timeout_s=1):
        pass


HOSTILE_VERSIONS = ["", ".", "..", "a/b", "../etc", "a\\b", "x" * 65, "v\x00", "v\x1b[31m", "v\n", "v 1", "v\u202e",
                    "é"]


@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
def test_hostile_versions_are_refused_and_quoted_safely(version: str) -> None:
    with pytest.raises(ValidationError) as refused:
        check_version(version)
    assert "bad bundle version" in str(refused.value) and len(str(refused.value)) < 300
    assert "\x00" not in str(refused.value) and "\x1b" not in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ValidationError):
        record(version)
    with pytest.raises(BundleError, match="bad bundle version"):  # the bundle directory's rule is the same
        scoring_bundle.check_version(version)


@pytest.mark.parametrize("note", ["line\nbreak", "bell\x07", "esc\x1b[2J", "nul\x00", "rtl\u202eevil", "sep\u2028",
                                  "x" * 501, "\ud800"])
def test_hostile_notes_are_refused(note: str) -> None:
    with pytest.raises(ValidationError, match="note"):
        check_note(note)


@pytest.mark.parametrize("actor", ["", "   ", "a\tb", "x" * 201, "a\x00"])
def test_hostile_actors_are_refused(actor: str) -> None:
    with pytest.raises(ValidationError, match="actor"):
        check_actor(actor)


def test_one_text_rule_for_every_field() -> None:
    assert checked_text(" ", "customer_id", max_chars=5, allow_blank=True, single_line=False) == " "
    assert checked_text("", "note", max_chars=5, allow_empty=True) == ""
    for value in ("", " "):
        with pytest.raises(ValidationError, match=r"^actor: must not be empty$"):
            checked_text(value, "actor", max_chars=5)
    assert checked_text("a\nb", "note", max_chars=5, single_line=False) == "a\nb"
    with pytest.raises(ValidationError, match=r"^note: must be printable text on one line: character 1 is a control "
                       r"character \(U\+000A\)$"):
        checked_text("a\nb", "note", max_chars=5, quote=True)
    with pytest.raises(ValidationError) as unquoted:
        checked_text("secret\u202e", "customer_id", max_chars=50)
    assert "secret" not in str(unquoted.value) and "U+" not in str(unquoted.value)
    with pytest.raises(ValidationError, match=r"^note: is not valid Unicode"):
        checked_text("\udc80", "note", max_chars=5, single_line=False)


def test_notes_and_actors_may_be_any_printable_text() -> None:
    assert check_note("rollback: AP -3 % — voir ticket #42 ✓ 日本") == "rollback: AP -3 % — voir ticket #42 ✓ 日本"
    assert check_actor("oidc:ana@example.com") == "oidc:ana@example.com"


@pytest.mark.parametrize("changes", [
    {"origin": "Trained"}, {"origin": "a-b"}, {"origin": ""}, {"model_sha256": b"short"},
    {"created_at": datetime(2026, 1, 1)}, {"thresholds": {"block": float("nan")}}, {"metrics": {"auc": True}},
    {"metrics": []}, {"feature_schema": {"x": object()}}, {"location": "x\x00"},
])
def test_bad_records_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        record("v1", **changes)


async def test_record_promotion_refuses_bad_values_before_writing(db: Database) -> None:
    async with db.connection() as conn:
        await register_bundle(conn, record("v1"))
        for call in (
            record_promotion(conn, "v1", "v1", "cli:a"),
            record_promotion(conn, "v1", None, "cli:a", "x\n"),
            record_promotion(conn, "v1", None, "", ""),
            record_promotion(conn, "v1", None, "cli:a", action="model.delete"),
            record_promotion(conn, "../v1", None, "cli:a"),
        ):
            with pytest.raises(ValidationError):
                await call
        with pytest.raises(ValidationError):
            await promotion_history(conn, 0)
        assert await promotion_history(conn) == [] and await list_audit(conn) == []


def test_records_are_values() -> None:
    assert record("v1") == record("v1") and replace(record("v1"), origin="demo").origin == "demo"

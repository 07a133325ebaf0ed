"""The audit chain against each PostgreSQL server: appends, verification, and every kind of tampering it must find."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudguard import audit_cli
from fraudguard.audit import AuditReport, append_audit, list_audit, row_hash, verify_audit
from fraudguard.db import Database, DuplicateRowError
from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode


async def _fill(db: Database, n: int) -> None:
    async with db.connection() as conn:
        for i in range(n):
            await append_audit(conn, actor=f"cli:tester{i % 2}", action="test.action", subject=f"thing-{i}",
                               details={"i": i, "ratio": i / 7, "tags": ["a", "ü"], "nested": {"z": None, "a": True}})


async def _tamper(db: Database, *statements: str) -> None:
    """What someone with the owner's rights can do: switch the append-only trigger off, then change rows."""
    async with db.connection() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        for statement in statements:
            await conn.execute(statement)
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


async def _verify(db: Database, expect_head: bytes | None = None) -> AuditReport:
    async with db.connection() as conn:
        return await verify_audit(conn, expect_head=expect_head)


async def test_empty_log_verifies(db: Database) -> None:
    report = await _verify(db)
    assert report.ok and report.rows_checked == 0 and report.head_hash is None and report.first_bad_id is None


async def test_appends_form_a_contiguous_chain(db: Database) -> None:
    await _fill(db, 5)
    async with db.connection() as conn:
        entries = await list_audit(conn, limit=10)
    assert [e.id for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash is None
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    assert entries[4].details == {"i": 4, "ratio": 4 / 7, "tags": ["a", "ü"], "nested": {"z": None, "a": True}}
    report = await _verify(db)
    assert report.ok and report.rows_checked == 5 and report.head_id == 5 and report.head_hash == entries[4].hash


async def test_append_commits_and_rolls_back_with_the_callers_transaction(db: Database) -> None:
    async with db.connection() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await append_audit(conn, actor="a", action="rolled.back")
                raise RuntimeError("the audited change failed")
        entry = await append_audit(conn, actor="a", action="kept")
    assert entry.id == 1  # the rolled-back row left no gap
    assert (await _verify(db)).ok


async def test_numbers_are_normalised_as_stored(db: Database) -> None:
    async with db.connection() as conn:
        entry = await append_audit(conn, actor="a", action="x", details={"big": 1e20, "small": 1e-7, "neg": -0.0})
    assert (await _verify(db)).ok
    assert entry.details["big"] == 10**20


async def test_the_log_refuses_updates_deletes_and_truncation(db: Database) -> None:
    await _fill(db, 2)
    async with db.connection() as conn:
        for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log",
                          "INSERT INTO audit_log (actor, action, hash) VALUES ('x', 'y', decode(repeat('00', 32), "
                          "'hex'))"):
            with pytest.raises(asyncpg.PostgresError):  # translated to DatabaseError when the block ends
                await conn.execute(statement)
    assert (await _verify(db)).rows_checked == 2


@pytest.mark.parametrize(
    ("statement", "bad_id", "words"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE id = 3", 3, "hash"),
        ("UPDATE audit_log SET details = '{\"i\": 99}' WHERE id = 2", 2, "hash"),
        ("UPDATE audit_log SET at = at - interval '1 second' WHERE id = 4", 4, "hash"),
        ("UPDATE audit_log SET subject = subject || ' ' WHERE id = 1", 1, "hash"),
        ("DELETE FROM audit_log WHERE id = 3", 3, "missing"),
        ("DELETE FROM audit_log WHERE id IN (2, 3)", 2, "missing"),
        ("DELETE FROM audit_log WHERE id = 1", 1, "missing"),
        # swap the contents of two rows (a reorder), keeping each row's own hash and link
        ("UPDATE audit_log a SET actor = b.actor, subject = b.subject, details = b.details FROM audit_log b "
         "WHERE (a.id, b.id) IN ((2, 3), (3, 2))", 2, "hash"),
        # a forged row replacing row 3: copied link, made-up hash
        ("DELETE FROM audit_log WHERE id = 3; INSERT INTO audit_log SELECT 3, now(), 'mallory', 'x', '', '{}', "
         "(SELECT hash FROM audit_log WHERE id = 2), sha256('forged')", 3, "hash"),
        # a forged row appended at the end
        ("INSERT INTO audit_log SELECT 6, now(), 'mallory', 'x', '', '{}', sha256('x'), sha256('y')", 6, "link"),
        # every id shifted: renumbering after a delete
        ("DELETE FROM audit_log WHERE id = 2; UPDATE audit_log SET id = 2 WHERE id = 3", 2, "link"),
    ],
)
async def test_tampering_is_found(db: Database, statement: str, bad_id: int, words: str) -> None:
    await _fill(db, 5)
    await _tamper(db, *statement.split("; "))
    report = await _verify(db)
    assert not report.ok
    assert report.first_bad_id == bad_id
    assert words in report.reason
    assert report.rows_checked == bad_id - 1


async def test_deleting_the_newest_rows_is_found_against_an_anchor(db: Database) -> None:
    await _fill(db, 4)
    anchor = (await _verify(db)).head_hash
    assert anchor is not None
    await _fill(db, 1)
    assert (await _verify(db, expect_head=anchor)).ok  # the chain grew past the anchor: fine
    await _tamper(db, "DELETE FROM audit_log WHERE id >= 4")
    assert (await _verify(db)).ok  # without the anchor the shorter chain is consistent: documented limit
    report = await _verify(db, expect_head=anchor)
    assert not report.ok and report.first_bad_id == 4 and anchor.hex() in report.reason


async def test_concurrent_appends_keep_one_chain(db: Database) -> None:
    async def writer(w: int) -> None:
        for i in range(10):
            async with db.connection() as conn, conn.transaction():
                await append_audit(conn, actor=f"w{w}", action="concurrent", subject=str(i))
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(w) for w in range(5)))
    report = await _verify(db)
    assert report.ok and report.rows_checked == 50 and report.head_id == 50


async def test_a_stale_snapshot_cannot_fork_the_chain(db: Database) -> None:
    """At REPEATABLE READ the caller's snapshot may predate the newest row: the primary key refuses the fork."""
    await _fill(db, 1)
    async with db.connection() as stale, db.connection() as other, stale.transaction(isolation="repeatable_read"):
        await stale.fetchval("SELECT count(*) FROM audit_log")  # the snapshot is taken here
        await append_audit(other, actor="b", action="meanwhile")
        with pytest.raises(DuplicateRowError):  # append_audit translates driver errors itself
            await append_audit(stale, actor="a", action="stale")
    report = await _verify(db)
    assert report.ok and report.rows_checked == 2


async def test_the_hash_encoding_is_unambiguous() -> None:
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert row_hash(1, at, "ab", "c", "", "{}", None) != row_hash(1, at, "a", "bc", "", "{}", None)
    assert row_hash(1, at, "a", "b", "", "{}", None) != row_hash(2, at, "a", "b", "", "{}", None)
    assert row_hash(1, at, "a", "b", "", "{}", None) != row_hash(1, at + timedelta(microseconds=1), "a", "b", "",
                                                                  "{}", None)
    assert row_hash(2, at, "a", "b", "", "{}", None) != row_hash(2, at, "a", "b", "", "{}", b"\x00" * 32)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"actor": "", "action": "x"},
        {"actor": "a", "action": "  "},
        {"actor": "a\x00", "action": "x"},
        {"actor": "a", "action": "x" * 201},
        {"actor": "a", "action": "x", "subject": "\ud800"},
        {"actor": "a", "action": "x", "details": {"n": float("nan")}},
        {"actor": "a", "action": "x", "details": {"n": float("inf")}},
        {"actor": "a", "action": "x", "details": {1: "int key"}},
        {"actor": "a", "action": "x", "details": {"s": "nul\x00"}},
        {"actor": "a", "action": "x", "details": {"o": object()}},
        {"actor": "a", "action": "x", "details": {"b": b"bytes"}},
        {"actor": "a", "action": "x", "details": ["not", "an", "object"]},
        {"actor": "a", "action": "x", "details": {"big": "x" * 70_000}},
        {"actor": 5, "action": "x"},
    ],
)
async def test_bad_input_is_a_validation_error(db: Database, kwargs: dict[str, Any]) -> None:
    async with db.connection() as conn:
        with pytest.raises(ValidationError):
            await append_audit(conn, **kwargs)
    assert (await _verify(db)).rows_checked == 0


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"d": value}
    return value


async def test_too_deep_details_are_refused(db: Database) -> None:
    async with db.connection() as conn:
        with pytest.raises(ValidationError, match="deeper"):
            await append_audit(conn, actor="a", action="x", details=_deep(100))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(actor=st.text(max_size=30), subject=st.text(max_size=30), details=st.dictionaries(st.text(max_size=8), _json,
                                                                                      max_size=4))
async def test_hostile_input_is_stored_verifiably_or_refused_clearly(
    db: Database, actor: str, subject: str, details: dict[str, Any]
) -> None:
    async with db.connection() as conn:
        try:
            entry = await append_audit(conn, actor=actor, action="fuzz", subject=subject, details=details)
        except ValidationError:
            pass
        else:
            assert entry.actor == actor and entry.subject == subject
        report = await verify_audit(conn)
    assert report.ok, report.reason


async def test_verify_reads_one_snapshot_inside_a_callers_transaction(db: Database) -> None:
    await _fill(db, 3)
    async with db.connection() as conn, conn.transaction(isolation="repeatable_read"):
        assert (await verify_audit(conn)).ok


# --- the command line ------------------------------------------------------------------------------------------------


def _run(monkeypatch: pytest.MonkeyPatch, dsn: str, tmp_path: Path, *argv: str) -> int:
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", dsn)
    monkeypatch.setenv("FRAUDGUARD_DATA_DIR", str(tmp_path))
    return audit_cli.main(list(argv))


async def test_cli_verify_and_list(db: Database, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    await _fill(db, 3)
    head = (await _verify(db)).head_hex
    assert head is not None
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "verify")
    out = capsys.readouterr().out
    assert code == ExitCode.SUCCESS and "3 rows" in out and head in out
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "verify", "--expect-head", head.upper())
    assert code == ExitCode.SUCCESS
    capsys.readouterr()
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "list", "--json", "--limit", "2")
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [2, 3]
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "list", "--since", "2000-01-01")
    assert code == ExitCode.SUCCESS and "thing-2" in capsys.readouterr().out


async def test_cli_verify_names_the_first_bad_row(db: Database, dsn: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    await _fill(db, 4)
    await _tamper(db, "UPDATE audit_log SET actor = 'mallory' WHERE id = 2")
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "verify")
    assert code == ExitCode.AUDIT_CHAIN_BROKEN
    assert "row 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["verify", "--expect-head", "xyz"],
        ["verify", "--expect-head", "ab"],
        ["list", "--limit", "0"],
        ["list", "--limit", "many"],
        ["list", "--since", "yesterday-ish"],
    ],
)
async def test_cli_bad_usage(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, *argv)
    assert code == ExitCode.USAGE
    assert "Traceback" not in capsys.readouterr().err


async def test_cli_unreachable_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAUDGUARD_DB_CONNECT_TIMEOUT_S", "2")
    code = await asyncio.to_thread(_run, monkeypatch, "postgresql://nobody@127.0.0.1:9/none", tmp_path, "verify")
    assert code == ExitCode.DATABASE_UNREACHABLE
    assert "127.0.0.1" in capsys.readouterr().err

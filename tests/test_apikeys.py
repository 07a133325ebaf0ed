"""API keys against each PostgreSQL server: create, list, revoke, expiry, the verifier's cache, hostile keys, CLI."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudguard import keys_cli
from fraudguard._cli_db import default_actor
from fraudguard.apikeys import (
    ApiKeyError,
    ApiKeyVerifier,
    ExpiredApiKeyError,
    MalformedApiKeyError,
    RevokedApiKeyError,
    Role,
    UnknownApiKeyError,
    create_key,
    key_id_of,
    list_keys,
    revoke_key,
)
from fraudguard.audit import list_audit, verify_audit
from fraudguard.db import Database, DatabaseUnreachableError
from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode


class Clock:
    """A monotonic clock the test moves by hand, to step past the cache's TTL without sleeping."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_create_list_revoke_are_stored_and_audited(db: Database) -> None:
    created = await create_key(db, ["scorer", "analyst"], None, "pos terminals", "cli:alice")
    assert created.secret.startswith(f"fgk_{created.key.id}_")
    assert created.secret not in repr(created)
    assert created.key.roles == {Role.SCORER, Role.ANALYST} and created.key.expires_at is None
    [listed] = await list_keys(db)
    assert listed == created.key and listed.status(datetime.now(UTC)) == "active"
    revoked = await revoke_key(db, created.key.id, "cli:bob")
    assert revoked.revoked_at is not None and revoked.status(datetime.now(UTC)) == "revoked"
    again = await revoke_key(db, created.key.id, "cli:bob")  # idempotent, not audited twice
    assert again.revoked_at == revoked.revoked_at
    async with db.connection() as conn:
        entries = await list_audit(conn)
        assert (await verify_audit(conn)).ok
    assert [(e.actor, e.action, e.subject) for e in entries] == [
        ("cli:alice", "api_key.create", created.key.id), ("cli:bob", "api_key.revoke", created.key.id)]
    assert entries[0].details["roles"] == ["analyst", "scorer"]
    assert created.secret not in json.dumps([e.to_json() for e in entries])


async def test_only_the_hash_is_stored(db: Database) -> None:
    created = await create_key(db, ["admin"], None, "", "t")
    _, _, secret = created.secret.split("_", 2)
    assert len(secret) == 43  # 32 random bytes
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM api_keys")
        dump = await conn.fetchval("SELECT string_agg(t::text, '|') FROM api_keys t")
        audit_dump = await conn.fetchval("SELECT string_agg(t::text, '|') FROM audit_log t")
    assert bytes(row["hash"]) == hashlib.sha256(created.secret.encode()).digest()
    assert secret not in dump and secret not in audit_dump


async def test_verifier_accepts_and_refuses(db: Database) -> None:
    now = datetime.now(UTC)
    good = await create_key(db, ["scorer"], now + timedelta(days=1), "", "t")
    revoked = await create_key(db, ["scorer"], None, "", "t")
    await revoke_key(db, revoked.key.id, "t")
    verifier = ApiKeyVerifier(db)
    assert (await verifier.verify(good.secret)).id == good.key.id
    with pytest.raises(RevokedApiKeyError, match=revoked.key.id):
        await verifier.verify(revoked.secret)
    wrong_secret = good.secret[:-1] + ("A" if good.secret[-1] != "A" else "B")
    with pytest.raises(UnknownApiKeyError) as unknown:
        await verifier.verify(wrong_secret)
    assert wrong_secret not in str(unknown.value)
    with pytest.raises(UnknownApiKeyError):
        await verifier.verify("fgk_0123456789abcdef_" + "A" * 43)
    with pytest.raises(MalformedApiKeyError):
        await verifier.verify("Bearer " + good.secret)
    later = ApiKeyVerifier(db, now=lambda: now + timedelta(days=2))
    with pytest.raises(ExpiredApiKeyError, match="expired"):
        await later.verify(good.secret)


async def test_revocation_takes_effect_within_the_ttl(db: Database) -> None:
    clock = Clock()
    created = await create_key(db, ["scorer"], None, "", "t")
    verifier = ApiKeyVerifier(db, ttl_s=5.0, monotonic=clock)
    await verifier.verify(created.secret)
    await revoke_key(db, created.key.id, "t")
    await verifier.verify(created.secret)  # cached: still accepted inside the TTL (documented)
    clock.t += 5.0
    with pytest.raises(RevokedApiKeyError):
        await verifier.verify(created.secret)


async def test_forget_makes_revocation_immediate(db: Database) -> None:
    created = await create_key(db, ["scorer"], None, "", "t")
    verifier = ApiKeyVerifier(db, ttl_s=3600)
    await verifier.verify(created.secret)
    await revoke_key(db, created.key.id, "t")
    verifier.forget(created.key.id)
    with pytest.raises(RevokedApiKeyError):
        await verifier.verify(created.secret)


async def test_cached_keys_need_no_database(db: Database) -> None:
    created = await create_key(db, ["scorer"], None, "", "t")
    verifier = ApiKeyVerifier(db, ttl_s=3600)
    await verifier.verify(created.secret)
    await db.close()
    assert (await verifier.verify(created.secret)).id == created.key.id
    with pytest.raises(DatabaseUnreachableError):  # an uncached key cannot be checked: retry later
        await verifier.verify("fgk_0123456789abcdef_" + "A" * 43)


async def test_concurrent_checks_of_one_key_share_one_lookup(db: Database) -> None:
    created = await create_key(db, ["scorer"], None, "", "t")
    verifier = ApiKeyVerifier(db)
    keys = await asyncio.gather(*(verifier.verify(created.secret) for _ in range(50)))
    assert {k.id for k in keys} == {created.key.id}


async def test_the_cache_is_bounded(db: Database) -> None:
    verifier = ApiKeyVerifier(db, max_entries=3)
    for i in range(10):
        with pytest.raises(UnknownApiKeyError):
            await verifier.verify(f"fgk_{i:016x}_" + "A" * 43)
    assert len(verifier._cache) == 3


def test_roles() -> None:
    from fraudguard.apikeys import ApiKey

    now = datetime.now(UTC)
    admin = ApiKey("a" * 16, frozenset({Role.ADMIN}), now, None, None, "")
    analyst = ApiKey("b" * 16, frozenset({Role.ANALYST}), now, None, None, "")
    assert admin.allows({Role.SCORER}) and admin.allows({Role.ANALYST})
    assert analyst.allows({Role.SCORER, Role.ANALYST}) and not analyst.allows({Role.SCORER})


@pytest.mark.parametrize(
    ("roles", "expires_at", "note", "actor"),
    [
        ([], None, "", "t"),
        (["root"], None, "", "t"),
        (["scorer"], datetime.now(UTC) - timedelta(seconds=1), "", "t"),
        (["scorer"], datetime(2999, 1, 1), "", "t"),  # naive
        (["scorer"], None, "x" * 501, "t"),
        (["scorer"], None, "nul\x00", "t"),
        (["scorer"], None, "\udc80", "t"),
        (["scorer"], None, "", ""),
        (["scorer"], None, "", "a\x00"),
    ],
)
async def test_create_refuses_bad_input_and_stores_nothing(
    db: Database, roles: list[str], expires_at: datetime | None, note: str, actor: str
) -> None:
    with pytest.raises(ValidationError):
        await create_key(db, roles, expires_at, note, actor)
    assert await list_keys(db) == []


@pytest.mark.parametrize("key_id", ["", "nope", "0123456789ABCDEF", "fgk_0123456789abcdef_x", "'; DROP TABLE x; --",
                                    "0123456789abcdef"])
async def test_revoke_of_unknown_ids(db: Database, key_id: str) -> None:
    with pytest.raises(UnknownApiKeyError):
        await revoke_key(db, key_id, "t")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(presented=st.one_of(
    st.text(max_size=300),
    st.from_regex(r"fgk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}", fullmatch=True),
    st.builds(lambda a, b: f"fgk_{a}_{b}", st.text(max_size=20), st.text(max_size=50)),
))
async def test_hostile_presented_keys_get_a_clear_refusal(db: Database, presented: str) -> None:
    verifier = ApiKeyVerifier(db)
    with pytest.raises(ApiKeyError) as refused:
        await verifier.verify(presented)
    assert presented not in str(refused.value) or len(presented) < 4


def test_key_id_of_non_strings() -> None:
    for value in (None, b"fgk_", 42, ["fgk"]):
        with pytest.raises(MalformedApiKeyError):
            key_id_of(value)  # type: ignore[arg-type]


# --- the command line ------------------------------------------------------------------------------------------------


def _run(monkeypatch: pytest.MonkeyPatch, dsn: str, tmp_path: Path, *argv: str) -> int:
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", dsn)
    monkeypatch.setenv("FRAUDGUARD_DATA_DIR", str(tmp_path))
    return keys_cli.main(list(argv))


async def test_cli_create_list_revoke(db: Database, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "create", "--role", "scorer", "--role",
                                   "analyst", "--expires-in", "90d", "--note", "checkout", "--actor", "ops:carol")
    captured = capsys.readouterr()
    assert code == ExitCode.SUCCESS
    secret = captured.out.strip()
    assert captured.out.count("\n") == 1 and secret.startswith("fgk_")
    assert "shown only this once" in captured.err and secret not in captured.err
    key = await ApiKeyVerifier(db).verify(secret)
    assert key.expires_at is not None and timedelta(days=89) < key.expires_at - datetime.now(UTC) < timedelta(days=91)

    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "list")
    out = capsys.readouterr().out
    assert code == ExitCode.SUCCESS and key.id in out and "analyst,scorer" in out and "active" in out
    assert secret.split("_", 2)[2] not in out
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "revoke", key.id)
    assert code == ExitCode.SUCCESS and "revoked" in capsys.readouterr().out
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "list", "--json")
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["id"] == key.id and listed["status"] == "revoked" and listed["note"] == "checkout"
    async with db.connection() as conn:
        assert [e.actor for e in await list_audit(conn)] == ["ops:carol", default_actor()]


async def test_cli_expires_at(db: Database, dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, "create", "--role", "admin",
                                   "--expires-at", "2999-01-31T12:00:00Z")
    assert code == ExitCode.SUCCESS
    [key] = await list_keys(db)
    assert key.expires_at == datetime(2999, 1, 31, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ExitCode.USAGE),
        (["create"], ExitCode.USAGE),
        (["create", "--role", "root"], ExitCode.USAGE),
        (["create", "--role", "scorer", "--expires-in", "soon"], ExitCode.USAGE),
        (["create", "--role", "scorer", "--expires-in", "0s"], ExitCode.USAGE),
        (["create", "--role", "scorer", "--expires-in", "9" * 30 + "w"], ExitCode.USAGE),
        (["create", "--role", "scorer", "--expires-at", "2001-01-01"], ExitCode.USAGE),
        (["create", "--role", "scorer", "--expires-at", "tomorrow"], ExitCode.USAGE),
        (["create", "--role", "scorer", "--expires-in", "1d", "--expires-at", "2999-01-01"], ExitCode.USAGE),
        (["create", "--role", "scorer", "--note", "x" * 600], ExitCode.USAGE),
        (["revoke"], ExitCode.USAGE),
        (["revoke", "0123456789abcdef"], ExitCode.UNKNOWN_API_KEY),
        (["revoke", "not-an-id"], ExitCode.UNKNOWN_API_KEY),
        (["list", "--db-connect-timeout-s", "nan-ish"], ExitCode.INVALID_SETTING),
    ],
)
async def test_cli_errors(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str], argv: list[str], expected: ExitCode) -> None:
    code = await asyncio.to_thread(_run, monkeypatch, dsn, tmp_path, *argv)
    assert code == expected
    assert "Traceback" not in capsys.readouterr().err


async def test_cli_unreachable_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = await asyncio.to_thread(_run, monkeypatch, "postgresql://nobody@127.0.0.1:9/none", tmp_path, "list")
    assert code == ExitCode.DATABASE_UNREACHABLE and "127.0.0.1" in capsys.readouterr().err


async def test_console_script_dispatches_keys_and_audit(dsn: str, tmp_path: Path) -> None:
    env = {"FRAUDGUARD_DATABASE_URL": dsn, "FRAUDGUARD_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    script = Path(sys.executable).with_name("fraudguard")
    created = await asyncio.to_thread(subprocess.run, [str(script), "keys", "create", "--role", "admin"], env=env,
                                      capture_output=True, text=True, timeout=120, check=False)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("fgk_")
    verified = await asyncio.to_thread(subprocess.run, [str(script), "audit", "verify"], env=env,
                                       capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0 and "1 rows" in verified.stdout

"""Key rotation and GDPR erasure against real PostgreSQL (embedded, and FRAUDGUARD_TEST_DSN's when set)."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudguard import cli
from fraudguard.audit import list_audit, verify_audit
from fraudguard.db import Database, PartitionPolicy
from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.privacy import (
    ERASED_COLUMNS,
    check_customer_id,
    erase_customer,
    erasure_subject,
    keys_in_use,
    retire_unused_keys,
    rotate_personal_data,
)
from fraudguard.privacy_cli import main as erase_main
from fraudguard.privacy_cli import rotate_main
from fraudguard.security.keyfile import load_or_create_key
from fraudguard.security.personal import Keyring, personal_aad

NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
POLICY = PartitionPolicy(ahead_days=0, behind_days=0)
FIELDS = {"device_id": "device_id_enc", "ip_address": "ip_address_enc", "email": "email_enc"}
SUBJECT_KEY = b"s" * 32


@pytest.fixture
async def db(dsn: str, tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(dsn, tmp_path, partitions=POLICY, max_size=2)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "keys" / "personal.json"


def _personal(i: int) -> dict[str, str | None]:
    return {"device_id": f"device-{i}", "ip_address": f"10.0.0.{i}", "email": None if i % 3 == 0 else f"p{i}@ex.com"}


def _sealed(keyring: Keyring | None, tx: str, values: dict[str, str | None]) -> dict[str, Any]:
    if keyring is None:
        return {column: None for column in FIELDS.values()} | {"personal_key_id": None}
    row: dict[str, Any] = {"personal_key_id": keyring.current_id}
    for name, column in FIELDS.items():
        value = values[name]
        row[column] = None if value is None else keyring.seal(value.encode(), personal_aad(name, tx))
    return row


def _base(tx: str, customer: str | None, i: int) -> dict[str, Any]:
    when = NOW + timedelta(seconds=i)
    return {"transaction_id": tx, "event_time": when, "event_day": when.date(), "card_token": "pan_" + "ab" * 20,
            "customer_id": customer, "merchant_id": "merchant-1", "amount_minor": 1000 + i, "currency": "EUR",
            "latitude": 52.5, "longitude": 13.4, "card_country": "US", "billing_country": "FR",
            "shipping_country": "BE"}


async def _insert(db: Database, table: str, row: dict[str, Any]) -> None:
    if table == "decisions":
        row = row | {"features": [0.5, 1.0], "model_version": "m-1", "score": 0.25, "action": "allow",
                     "server_time_us": 40.0, "decided_at": row["event_time"]}
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    async with db.connection() as conn:
        await conn.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({params})", *row.values())


async def _seed(db: Database, keyring: Keyring | None, tx: str, customer: str | None, i: int) -> None:
    for table in ("decisions", "transactions"):
        await _insert(db, table, _base(tx, customer, i) | _sealed(keyring, tx, _personal(i)))


async def _rows(db: Database, table: str) -> dict[str, Any]:
    async with db.connection() as conn:
        return {r["transaction_id"]: dict(r) for r in await conn.fetch(f"SELECT * FROM {table}")}


def _opened(keyring: Keyring, row: dict[str, Any]) -> dict[str, str | None]:
    tx = row["transaction_id"]
    return {name: None if row[column] is None else
            keyring.open(row["personal_key_id"], row[column], personal_aad(name, tx)).decode()
            for name, column in FIELDS.items()}


async def _audit(db: Database) -> list[Any]:
    async with db.connection() as conn:
        assert (await verify_audit(conn)).ok
        return await list_audit(conn)


# --- rotation -----------------------------------------------------------------------------------------------------


async def test_rotation_reseals_every_row_under_the_new_key(db: Database, key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    old = keyring.current_id
    for i in range(7):
        await _seed(db, keyring, f"tx-{i}", f"cust-{i}", i)
    await _seed(db, None, "tx-plain", "cust-x", 50)  # no personal data: nothing to rotate
    before = await _rows(db, "decisions")
    new = keyring.add_key(key_path)
    seen: list[tuple[int, int]] = []
    report = await rotate_personal_data(db, keyring, actor="ops", batch_rows=3,
                                        progress=lambda done, total: seen.append((done, total)))
    assert (report.key_id, report.decisions, report.transactions, report.from_keys) == (new, 7, 7, (old,))
    assert report.unreadable_count == 0 and seen[0] == (0, 14) and seen[-1] == (14, 14)
    fresh = Keyring.load(key_path, {})  # what a restarted process sees
    for table in ("decisions", "transactions"):
        rows = await _rows(db, table)
        assert rows["tx-plain"]["personal_key_id"] is None
        for i in range(7):
            row = rows[f"tx-{i}"]
            assert row["personal_key_id"] == new
            assert _opened(fresh, row) == _personal(i)
            assert row["amount_minor"] == 1000 + i and row["customer_id"] == f"cust-{i}"
    assert (await _rows(db, "decisions"))["tx-1"]["device_id_enc"] != before["tx-1"]["device_id_enc"]
    [entry] = await _audit(db)
    assert (entry.actor, entry.action, entry.subject) == ("ops", "personal_data.rotate", f"personal-key:{new}")
    assert entry.details["rows"] == {"decisions": 7, "transactions": 7} and entry.details["from_keys"] == [old]


async def test_an_interrupted_rotation_resumes_and_a_second_is_a_no_op(db: Database, key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    for i in range(10):
        await _seed(db, keyring, f"tx-{i}", "cust-1", i)
    keyring.add_key(key_path)

    def stop_after_first_batch(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rotate_personal_data(db, keyring, actor="ops", batch_rows=4, progress=stop_after_first_batch)
    rows = await _rows(db, "decisions")
    moved = [tx for tx, row in rows.items() if row["personal_key_id"] == keyring.current_id]
    assert len(moved) == 4  # the first batch committed, the rest untouched, every row readable
    assert all(_opened(keyring, row) == _personal(int(tx[3:])) for tx, row in rows.items())
    resumed = await rotate_personal_data(db, keyring, actor="ops", batch_rows=4)
    assert (resumed.decisions, resumed.transactions) == (6, 10)
    again = await rotate_personal_data(db, keyring, actor="ops")
    assert (again.rows, again.from_keys) == (0, ())
    assert await keys_in_use(db) == {keyring.current_id: 20}
    assert [e.details["rows"] for e in await _audit(db)] == [{"decisions": 6, "transactions": 10},
                                                              {"decisions": 0, "transactions": 0}]


async def test_unreadable_rows_are_left_as_they_were_and_reported(db: Database, key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    old = keyring.current_id
    for i in range(3):
        await _seed(db, keyring, f"tx-{i}", "cust-1", i)
    good = keyring.seal(b"device-9", personal_aad("device_id", "tx-9"))
    await _insert(db, "decisions", _base("tx-9", "cust-1", 9) | _sealed(None, "", {})
                  | {"device_id_enc": good, "personal_key_id": "k-gone"})  # a key no longer held
    async with db.connection() as conn:  # one altered byte in tx-1's e-mail
        await conn.execute("UPDATE decisions SET email_enc = set_byte(email_enc, 19, get_byte(email_enc, 19) # 255) "
                           "WHERE transaction_id = 'tx-1'")  # every bit of byte 19 flipped: always a change
        await conn.execute("UPDATE decisions SET email_enc = '' WHERE transaction_id = 'tx-2'")  # holds nothing
    before = await _rows(db, "decisions")
    keyring.add_key(key_path)
    report = await rotate_personal_data(db, keyring, actor="ops")
    assert (report.decisions, report.transactions, report.unreadable_count) == (2, 3, 2)
    assert {(r.table, r.transaction_id, r.key_id) for r in report.unreadable} == {
        ("decisions", "tx-1", old), ("decisions", "tx-9", "k-gone")}
    assert "does not authenticate" in next(r.reason for r in report.unreadable if r.transaction_id == "tx-1")
    after = await _rows(db, "decisions")
    assert after["tx-1"] == before["tx-1"] and after["tx-9"] == before["tx-9"]
    assert after["tx-2"]["email_enc"] == b"" and after["tx-2"]["personal_key_id"] == keyring.current_id
    retired = await retire_unused_keys(db, keyring, key_path, actor="ops")
    assert retired.retired == () and dict(retired.in_use)[old] == 1  # tx-1 still needs the old key


async def test_retire_drops_only_keys_no_row_uses(db: Database, key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    first = keyring.current_id
    await _seed(db, keyring, "tx-1", "cust-1", 1)
    second = keyring.add_key(key_path)  # seals nothing before the third comes
    third = keyring.add_key(key_path)
    nothing = await retire_unused_keys(db, keyring, key_path, actor="ops")
    assert nothing.retired == (second,) and set(Keyring.load(key_path, {}).key_ids) == {first, third}
    await rotate_personal_data(db, keyring, actor="ops")
    report = await retire_unused_keys(db, keyring, key_path, actor="ops")
    assert report.retired == (first,) and report.in_use == ((third, 2),)
    assert Keyring.load(key_path, {}).key_ids == (third,)
    assert _opened(Keyring.load(key_path, {}), (await _rows(db, "transactions"))["tx-1"]) == _personal(1)
    actions = [(e.action, e.details.get("retired")) for e in await _audit(db)]
    assert actions == [("personal_keys.retire", [second]), ("personal_data.rotate", None),
                       ("personal_keys.retire", [first])]


# --- erasure ------------------------------------------------------------------------------------------------------


async def test_erase_removes_exactly_that_customers_personal_data(db: Database, key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    for i in range(6):
        await _seed(db, keyring, f"tx-{i}", "cust-1" if i < 2 else "cust-2", i)
    async with db.connection() as conn:
        await conn.execute("INSERT INTO labels (transaction_id, label, source, reported_at) "
                           "VALUES ('tx-0', 'fraud', 'processor', now())")
    before = {table: await _rows(db, table) for table in ("decisions", "transactions")}
    report = await erase_customer(db, "cust-1", actor="dpo", subject_key=SUBJECT_KEY)
    assert (report.decisions, report.transactions, report.rows) == (2, 2, 4)
    for table in ("decisions", "transactions"):
        after = await _rows(db, table)
        assert set(after) == set(before[table])  # the rows stay, for accounting and statistics
        for tx, row in after.items():
            if tx in {"tx-0", "tx-1"}:
                assert all(row[column] is None for column in ERASED_COLUMNS)
                kept = {k: v for k, v in row.items() if k not in ERASED_COLUMNS and k != "recorded_at"}
                assert kept == {k: v for k, v in before[table][tx].items() if k in kept}
            else:
                assert row == before[table][tx]
                assert _opened(keyring, row) == _personal(int(tx[3:]))
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM labels WHERE transaction_id = 'tx-0'") == 1
    [entry] = await _audit(db)
    assert (entry.actor, entry.action) == ("dpo", "customer.erase")
    assert entry.subject == erasure_subject("cust-1", SUBJECT_KEY) == report.subject
    assert "cust-1" not in entry.subject and "cust-1" not in json.dumps(dict(entry.details))
    assert entry.details["rows"] == {"decisions": 2, "transactions": 2}
    assert erasure_subject("cust-1", b"t" * 32) != entry.subject  # keyed: the id cannot be guessed from the log


async def test_a_row_whose_only_personal_value_is_the_email_is_rotated_and_erased(db: Database,
                                                                                   key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    only_email: dict[str, str | None] = {"device_id": None, "ip_address": None, "email": "only@example.com"}
    for table in ("decisions", "transactions"):
        await _insert(db, table, _base("tx-mail", "cust-m", 1) | _sealed(keyring, "tx-mail", only_email))
    new = keyring.add_key(key_path)
    report = await rotate_personal_data(db, keyring, actor="ops")
    assert (report.decisions, report.transactions) == (1, 1)
    for table in ("decisions", "transactions"):
        row = (await _rows(db, table))["tx-mail"]
        assert row["personal_key_id"] == new and _opened(Keyring.load(key_path, {}), row) == only_email
    assert (await erase_customer(db, "cust-m", actor="dpo", subject_key=SUBJECT_KEY)).rows == 2
    for table in ("decisions", "transactions"):
        row = (await _rows(db, table))["tx-mail"]
        assert row["email_enc"] is None and row["personal_key_id"] is None
        # the countries stay, as the card's BIN does: a country does not point at a person
        assert (row["card_country"], row["billing_country"], row["shipping_country"]) == ("US", "FR", "BE")


async def test_erase_is_idempotent_and_an_unknown_customer_is_zero_rows(db: Database, key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    await _seed(db, keyring, "tx-1", "cust-1", 1)
    first = await erase_customer(db, "cust-1", actor="dpo", subject_key=SUBJECT_KEY)
    again = await erase_customer(db, "cust-1", actor="dpo", subject_key=SUBJECT_KEY)
    unknown = await erase_customer(db, "nobody", actor="dpo", subject_key=SUBJECT_KEY)
    assert (first.rows, again.rows, unknown.rows) == (2, 0, 0)
    assert [e.details["rows"]["decisions"] for e in await _audit(db)] == [1, 0, 0]


@pytest.mark.parametrize("customer", ["", "\x00", "a\x00b", "x" * 1001, "\udc80abc"])
async def test_erase_refuses_unusable_ids_and_changes_nothing(db: Database, key_path: Path, customer: str) -> None:
    await _seed(db, Keyring.load(key_path, {}), "tx-1", "cust-1", 1)
    before = await _rows(db, "decisions")
    with pytest.raises(ValidationError, match="customer_id") as caught:
        await erase_customer(db, customer, actor="dpo", subject_key=SUBJECT_KEY)
    assert len(customer) < 3 or customer not in str(caught.value)
    assert await _rows(db, "decisions") == before and await _audit(db) == []


@pytest.mark.parametrize("customer", ["%", "_", "' OR 1=1 --", "cust-%", "CUST-1", " cust-1"])
async def test_erase_matches_the_id_exactly(db: Database, key_path: Path, customer: str) -> None:
    await _seed(db, Keyring.load(key_path, {}), "tx-1", "cust-1", 1)
    before = await _rows(db, "decisions")
    assert (await erase_customer(db, customer, actor="dpo", subject_key=SUBJECT_KEY)).rows == 0
    assert await _rows(db, "decisions") == before


async def test_rotation_refuses_bad_arguments_before_any_work(db: Database, key_path: Path) -> None:
    keyring = Keyring.load(key_path, {})
    await _seed(db, keyring, "tx-1", "cust-1", 1)
    keyring.add_key(key_path)
    for actor, batch_rows in (("", 10), ("x" * 201, 10), ("ops\x00", 10), ("ops", 0), ("ops", 100_001)):
        with pytest.raises(ValidationError):
            await rotate_personal_data(db, keyring, actor=actor, batch_rows=batch_rows)
    assert set(await keys_in_use(db)) != {keyring.current_id} and await _audit(db) == []


async def test_erase_refuses_a_bad_actor_and_rolls_back(db: Database, key_path: Path) -> None:
    await _seed(db, Keyring.load(key_path, {}), "tx-1", "cust-1", 1)
    before = await _rows(db, "decisions")
    with pytest.raises(ValidationError, match="actor"):
        await erase_customer(db, "cust-1", actor="", subject_key=SUBJECT_KEY)
    assert await _rows(db, "decisions") == before  # no erasure without its audit entry


@given(st.text(max_size=30).map(lambda s: "ZQXJ" + s))
def test_check_customer_id_never_crashes_nor_echoes(customer: str) -> None:
    try:
        assert check_customer_id(customer) == customer
    except ValidationError as exc:
        assert customer not in str(exc)


# --- the commands -------------------------------------------------------------------------------------------------


def _db_args(dsn: str, tmp_path: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data"), "--database-url", dsn]


@pytest.fixture
def quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRAUDGUARD_PERSONAL_KEYS", raising=False)
    monkeypatch.setenv("FRAUDGUARD_PARTITION_AHEAD_DAYS", "0")


async def _run(entry: Any, argv: list[str]) -> int:
    return int(await asyncio.to_thread(entry, argv))


@pytest.mark.usefixtures("quiet_env")
async def test_erase_command(db: Database, dsn: str, tmp_path: Path, key_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    await _seed(db, Keyring.load(key_path, {}), "tx-1", "cust-1", 1)
    args = _db_args(dsn, tmp_path)
    assert await _run(erase_main, ["--customer", "cust-1", *args]) == ExitCode.USAGE  # no terminal, no --yes
    assert "not confirmed" in capsys.readouterr().err
    assert (await _rows(db, "decisions"))["tx-1"]["customer_id"] == "cust-1"
    assert await _run(cli.main, ["erase", "--customer", "cust-1", "--yes", "--actor", "dpo", *args]) == 0
    out = capsys.readouterr().out
    assert "1 decisions and 1 transactions" in out and "cust-1" not in out
    assert (await _rows(db, "decisions"))["tx-1"]["customer_id"] is None
    assert await _run(erase_main, ["--customer", "cust-1", "--yes", *args]) == 0
    assert "no rows carry that customer id" in capsys.readouterr().out
    key = load_or_create_key(tmp_path / "data" / "keys" / "erasure.key")
    assert [e.subject for e in await _audit(db)] == [erasure_subject("cust-1", key)] * 2


@pytest.mark.usefixtures("quiet_env")
async def test_erase_command_exit_codes(db: Database, dsn: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    args = _db_args(dsn, tmp_path)
    assert await _run(erase_main, ["--help"]) == 0
    assert await _run(erase_main, [*args]) == ExitCode.USAGE  # --customer is required
    assert await _run(erase_main, ["--customer", "", "--yes", *args]) == ExitCode.USAGE
    assert await _run(erase_main, ["--customer", "c\udcff", "--yes", *args]) == ExitCode.USAGE
    assert await _run(erase_main, ["--customer", "c", "--yes", "--actor", "", *args]) == ExitCode.USAGE
    assert await _run(erase_main, ["--customer", "c", "--yes", "--db-connect-timeout-s", "x", *args]) == \
        ExitCode.INVALID_SETTING
    assert await _run(erase_main, ["--customer", "c", "--yes", "--data-dir", str(tmp_path),
                                   "--database-url", "postgresql://u@127.0.0.1:1/x", "--db-connect-timeout-s",
                                   "2"]) == ExitCode.DATABASE_UNREACHABLE
    erasure_key = tmp_path / "data" / "keys" / "erasure.key"
    erasure_key.unlink(missing_ok=True)
    erasure_key.parent.mkdir(parents=True, exist_ok=True)
    erasure_key.write_bytes(b"k" * 32)
    erasure_key.chmod(0o644)
    assert await _run(erase_main, ["--customer", "c", "--yes", *args]) == ExitCode.KEY_FILE_UNUSABLE
    err = capsys.readouterr().err
    assert "chmod 600" in err and "Traceback" not in err
    assert await _audit(db) == []


@pytest.mark.usefixtures("quiet_env")
async def test_rotate_command(db: Database, dsn: str, tmp_path: Path, key_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    keyring = Keyring.load(key_path, {})
    old = keyring.current_id
    for i in range(3):
        await _seed(db, keyring, f"tx-{i}", "cust-1", i)
    args = _db_args(dsn, tmp_path)
    assert await _run(rotate_main, ["--retire-old", "--batch-rows", "2", *args]) == 0
    fresh = Keyring.load(key_path, {})
    assert old not in fresh.key_ids and len(fresh.key_ids) == 1
    assert all(_opened(fresh, row) == _personal(int(tx[3:])) for tx, row in (await _rows(db, "decisions")).items())
    assert f"retired keys: {old}" in capsys.readouterr().out
    assert await _run(rotate_main, ["--no-new-key", *args]) == 0
    assert Keyring.load(key_path, {}).key_ids == fresh.key_ids
    assert "re-encrypted 0 decisions and 0 transactions" in capsys.readouterr().out
    assert [e.action for e in await _audit(db)] == ["personal_data.rotate", "personal_keys.retire",
                                                    "personal_data.rotate"]


@pytest.mark.usefixtures("quiet_env")
async def test_rotate_command_exit_codes(db: Database, dsn: str, tmp_path: Path, key_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    keyring = Keyring.load(key_path, {})
    await _seed(db, keyring, "tx-1", "cust-1", 1)
    async with db.connection() as conn:
        await conn.execute("UPDATE transactions SET personal_key_id = 'k-gone'")
    args = _db_args(dsn, tmp_path)
    assert await _run(rotate_main, ["--batch-rows", "0", *args]) == ExitCode.USAGE
    assert await _run(rotate_main, ["--actor", " ", *args]) == ExitCode.USAGE
    assert Keyring.load(key_path, {}).key_ids == keyring.key_ids  # refused before any key was made
    assert await _run(rotate_main, ["--bogus", *args]) == ExitCode.USAGE
    assert await _run(rotate_main, ["--no-new-key", "--retire-old", *args]) == ExitCode.FAILURE
    err = capsys.readouterr().err
    assert "1 rows could not be opened" in err and "transactions tx-1" in err and "k-gone" in err
    key_path.chmod(0o640)
    assert await _run(rotate_main, args) == ExitCode.KEY_FILE_UNUSABLE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o640  # left for the operator to fix
    assert "Traceback" not in capsys.readouterr().err


async def test_rotate_command_with_keys_from_the_environment(db: Database, dsn: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAUDGUARD_PARTITION_AHEAD_DAYS", "0")
    old = Keyring("env-1", {"env-1": b"1" * 32})
    await _seed(db, old, "tx-1", "cust-1", 1)
    both = {"env-1": b"1" * 32, "env-2": b"2" * 32}
    env = json.dumps({"current": "env-2", "keys": {k: base64.b64encode(v).decode() for k, v in both.items()}})
    monkeypatch.setenv("FRAUDGUARD_PERSONAL_KEYS", env)
    assert await _run(rotate_main, ["--retire-old", *_db_args(dsn, tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "re-encrypting to its current key env-2" in captured.err
    assert "no row uses env-1; remove them from the variable" in captured.out
    assert not (tmp_path / "data" / "keys" / "personal.json").exists()  # the file is neither made nor used
    assert _opened(Keyring("env-2", both), (await _rows(db, "decisions"))["tx-1"]) == _personal(1)

"""Contract suite of fraudguard.db, run against the embedded server and, when FRAUDGUARD_TEST_DSN is set, a real one.

Each session makes its own database on each server (``fg_test_<pid>_<random>_<kind>``) and drops it at the end;
each test gets a fresh schema in it, alone on the search path. The machine's server ends every run as it started.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from fraudguard.db import (
    Database,
    DatabaseAuthError,
    DatabaseConfigError,
    DatabaseError,
    DatabaseUnreachableError,
    DuplicateRowError,
    EmbeddedPostgres,
    EmbeddedServerError,
    Migration,
    MigrationError,
    PartitionMissingError,
    PartitionPolicy,
    ensure_partitions,
    load_migrations,
)
from fraudguard.db.dsn import describe_dsn, with_database
from fraudguard.db.embedded import is_running
from fraudguard.db.errors import translated_errors
from fraudguard.db.migrate import LOCK_KEY, applied_migrations, migrate
from fraudguard.db.partitions import list_partitions
from tests.pg import PREFIX, Server, _embedded_data_dir, _without_fsync, execute

TODAY = date(2025, 3, 10)
SMALL = PartitionPolicy(ahead_days=1, behind_days=0)  # fewer partitions, faster, where they do not matter

TABLES = {"transactions", "decisions", "labels", "model_bundles", "model_promotions", "api_keys", "audit_log",
          "federation_clients", "federation_rounds", "schema_migrations"}


@pytest.fixture(scope="module")
def ready_dir() -> Iterator[Path]:
    """A data directory whose embedded server was initialised once (initdb is the slow part) and is stopped."""
    with _embedded_data_dir() as path:
        _without_fsync(EmbeddedPostgres.start(path)).stop()
        yield path


def _migration(file_name: str, sql: str) -> Migration:
    return Migration.from_file(file_name, sql.encode())


def _decision(transaction_id: str, when: datetime, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "transaction_id": transaction_id, "event_time": when, "event_day": when.astimezone(UTC).date(),
        "card_token": "pan_" + "ab" * 20, "card_bin": "411111", "card_last4": "1111", "customer_id": "cust-1",
        "merchant_id": "merchant-1", "mcc": 5411, "merchant_country": "DE", "channel": "ecommerce",
        "entry_mode": "card_on_file", "amount_minor": 2599, "currency": "EUR",
        "device_id_enc": b"\x01" * 40, "ip_address_enc": b"\x02" * 36, "personal_key_id": "key-1",
        "features": [0.5, 1.0, 3.25], "model_version": "m-1", "rule_versions": json.dumps({"default": "r-3"}),
        "rule_hits": json.dumps([{"rule_id": "velocity", "action": "review"}]), "score": 0.42, "action": "review",
        "reasons": json.dumps([{"feature": "amount_z", "contribution": 0.3}]), "server_time_us": 41.5,
        "decided_at": when,
    }
    row.update(changes)
    return row


async def _insert(conn: Any, table: str, row: dict[str, object], suffix: str = "") -> str:
    columns = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    return str(await conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({params}) {suffix}", *row.values()))


def _at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


# --- migrations ---------------------------------------------------------------------------------------------------


async def test_migrations_apply_and_are_recorded(conn: Any) -> None:
    files = load_migrations()
    report = await migrate(conn)
    assert report.applied == tuple(m.version for m in files) and report.version == files[-1].version
    recorded = await applied_migrations(conn)
    assert [(r.version, r.name, r.sha256) for r in recorded] == [(m.version, m.name, m.sha256) for m in files]
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    tables = {r["tablename"] for r in rows}
    assert tables >= TABLES


async def test_second_migrate_is_a_no_op(conn: Any) -> None:
    await migrate(conn)
    before = await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version")
    again = await migrate(conn)
    assert again.applied == () and again.version == before[-1]["version"]
    assert await conn.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY version") == before


async def test_a_changed_applied_migration_is_refused(conn: Any) -> None:
    files = load_migrations()
    await migrate(conn)
    first = files[0]
    edited = Migration.from_file(f"{first.label}.sql", first.sql.encode() + b"\n-- an edit after the fact\n")
    with pytest.raises(MigrationError, match=f"{first.label} was changed after it was applied"):
        await migrate(conn, [edited, *files[1:]])
    renamed = Migration(first.version, "another_name", first.sql, first.sha256)
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(conn, [renamed, *files[1:]])


async def test_history_must_not_move(conn: Any) -> None:
    one, two, three = (_migration(f"000{v}_m{v}.sql", f"CREATE TABLE t{v} (x int)") for v in (1, 2, 3))
    await migrate(conn, [one, three])
    with pytest.raises(MigrationError, match="0002_m2 is new but 0003_m3 is already applied"):
        await migrate(conn, [one, two, three])
    with pytest.raises(MigrationError, match="0003_m3, which this fraudguard does not know"):
        await migrate(conn, [one])


async def test_a_failed_migration_is_rolled_back_alone(conn: Any) -> None:
    good = _migration("0001_good.sql", "CREATE TABLE good (x int)")
    bad = _migration("0002_bad.sql", "CREATE TABLE half (x int);\nSELECT 1 / 0;")
    with pytest.raises(MigrationError, match=r"0002_bad failed and was rolled back.*division by zero"):
        await migrate(conn, [good, bad])
    assert [m.version for m in await applied_migrations(conn)] == [1]
    assert await conn.fetchval("SELECT to_regclass('good')") is not None
    assert await conn.fetchval("SELECT to_regclass('half')") is None
    fixed = _migration("0002_bad.sql", "CREATE TABLE half (x int)")
    assert (await migrate(conn, [good, fixed])).applied == (2,)


async def test_concurrent_migrate_calls_take_turns(dsn: str) -> None:
    slow = [_migration("0001_slow.sql", "CREATE TABLE slow (x int); SELECT pg_sleep(0.4);"),
            _migration("0002_next.sql", "CREATE TABLE next_one (x int)")]
    first, second = [await asyncpg.connect(dsn, timeout=10) for _ in range(2)]
    try:
        started = time.perf_counter()
        reports = await asyncio.gather(migrate(first, slow), migrate(second, slow))
        elapsed = time.perf_counter() - started
        assert sorted(r.applied for r in reports) == [(), (1, 2)]
        assert [m.version for m in await applied_migrations(first)] == [1, 2]
        assert elapsed >= 0.4
    finally:
        await first.close()
        await second.close()


async def test_a_starter_waits_only_so_long_for_the_migration_lock(dsn: str, conn: Any) -> None:
    holder = await asyncpg.connect(dsn, timeout=10, server_settings={"application_name": "the-holder"})
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        holder_pid = holder.get_server_pid()
        with pytest.raises(MigrationError, match=rf"waited 0\.3 s for the schema migration lock, held by pid "
                                                 rf"{holder_pid} \(the-holder"):
            await migrate(conn, lock_timeout_s=0.3)
        await holder.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        assert (await migrate(conn, lock_timeout_s=5)).applied  # the timed-out connection is still usable
    finally:
        await holder.close()


async def test_databases_opened_at_once_migrate_once(dsn: str, tmp_path: Path) -> None:
    opened = await asyncio.gather(*(Database.open(dsn, tmp_path, partitions=SMALL, today=TODAY) for _ in range(3)))
    try:
        assert sorted(len(db.migrations.applied) for db in opened) == [0, 0, len(load_migrations())]
        async with opened[0].connection() as conn:
            assert len(await list_partitions(conn, "decisions")) == 2
    finally:
        for db in opened:
            await db.close()


def test_migration_files_are_named_and_numbered_once(tmp_path: Path) -> None:
    packaged = load_migrations()
    assert packaged[0].label == "0001_initial"
    source = Path(__file__).parents[1] / "fraudguard" / "db" / "migrations" / "0001_initial.sql"
    assert packaged[0].sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    with pytest.raises(MigrationError, match="no migration files"):
        load_migrations(tmp_path)
    (tmp_path / "README.txt").write_text("ignored")
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 2")
    with pytest.raises(MigrationError, match="two migrations have version 0001"):
        load_migrations(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    assert [m.label for m in load_migrations(tmp_path)] == ["0001_a"]
    (tmp_path / "2_Bad.sql").write_text("SELECT 3")
    with pytest.raises(MigrationError, match=r"2_Bad\.sql: a migration is named NNNN_name\.sql"):
        load_migrations(tmp_path)


# --- partitions ---------------------------------------------------------------------------------------------------


async def test_partitions_are_made_ahead_and_dropped_after_retention(conn: Any) -> None:
    await migrate(conn)
    days = [TODAY + timedelta(days=d) for d in range(-1, 4)]
    made = await ensure_partitions(conn, TODAY, ahead_days=3, retention_days=5, behind_days=1)
    assert set(made.created) == {f"{t}_p{d:%Y%m%d}" for t in ("transactions", "decisions") for d in days}
    assert made.dropped == ()
    assert (await ensure_partitions(conn, TODAY, 3, 5)).created == ()
    await _insert(conn, "decisions", _decision("tx-old", _at(TODAY - timedelta(days=1))))
    await _insert(conn, "decisions", _decision("tx-kept", _at(TODAY + timedelta(days=3))))

    later = TODAY + timedelta(days=6)  # keeps later-4 .. later: drops TODAY-1 .. TODAY+1
    changes = await ensure_partitions(conn, later, ahead_days=2, retention_days=5, behind_days=1)
    gone = [TODAY + timedelta(days=d) for d in (-1, 0, 1)]
    assert set(changes.dropped) == {f"{t}_p{d:%Y%m%d}" for t in ("transactions", "decisions") for d in gone}
    remaining = [p.first_day for p in await list_partitions(conn, "decisions")]
    assert remaining == [TODAY + timedelta(days=d) for d in (2, 3, 5, 6, 7, 8)]  # kept, then later-1 .. later+2
    assert [r["transaction_id"] for r in await conn.fetch("SELECT transaction_id FROM decisions")] == ["tx-kept"]


async def test_partition_arguments_are_checked(conn: Any) -> None:
    await migrate(conn)
    with pytest.raises(ValueError, match="must exceed behind_days"):
        await ensure_partitions(conn, TODAY, 1, retention_days=1, behind_days=1)
    with pytest.raises(DatabaseConfigError, match="retention"):
        PartitionPolicy(retention_days=1)
    with pytest.raises(DatabaseError, match="have the migrations run"):
        await ensure_partitions(conn, TODAY, 1, None, tables=["labels"])


async def test_a_row_outside_every_partition_is_refused(dsn: str, tmp_path: Path) -> None:
    async with await Database.open(dsn, tmp_path, partitions=SMALL, today=TODAY) as db:
        far = TODAY + timedelta(days=400)
        with pytest.raises(PartitionMissingError, match=f"no partition of decisions.*{far.isoformat()}") as caught:
            async with db.connection() as conn:
                await _insert(conn, "decisions", _decision("tx-far", _at(far)))
        assert isinstance(caught.value.__cause__, asyncpg.CheckViolationError)
        assert (await db.ensure_partitions(far)).created  # the remedy the message names
        async with db.connection() as conn:
            await _insert(conn, "decisions", _decision("tx-far", _at(far)))


# --- decisions ----------------------------------------------------------------------------------------------------


async def test_decisions_insert_and_the_unique_key_stops_duplicates(dsn: str, tmp_path: Path) -> None:
    async with await Database.open(dsn, tmp_path, partitions=SMALL, today=TODAY) as db:
        when = _at(TODAY, 23)
        async with db.connection() as conn:
            assert await _insert(conn, "decisions", _decision("tx-1", when)) == "INSERT 0 1"
        with pytest.raises(DuplicateRowError, match=r"Key \(transaction_id, event_day\)=\(tx-1, 2025-03-10\)"):
            async with db.connection() as conn:
                await _insert(conn, "decisions", _decision("tx-1", when + timedelta(minutes=30), score=0.9))
        async with db.connection() as conn:
            replay = _decision("tx-1", when, score=0.1)
            assert await _insert(conn, "decisions", replay, "ON CONFLICT DO NOTHING") == "INSERT 0 0"
            stored = await conn.fetchrow("SELECT * FROM decisions WHERE transaction_id = 'tx-1'")
            assert stored["score"] == 0.42 and list(stored["features"]) == [0.5, 1.0, 3.25]
            assert json.loads(stored["rule_hits"])[0]["rule_id"] == "velocity"
            assert stored["device_id_enc"] == b"\x01" * 40 and stored["personal_key_id"] == "key-1"
            # the same id on the next day is another key: the documented limit of a per-day key
            assert await _insert(conn, "decisions", _decision("tx-1", _at(TODAY + timedelta(days=1)))) == "INSERT 0 1"


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"card_token": "4111111111111111"}, "card_token"),
        ({"event_day": TODAY + timedelta(days=1)}, "event_day_is_utc_day"),
        ({"action": "maybe"}, "action"),
        ({"personal_key_id": None}, "personal_key"),
        ({"score": 1.5}, "score"),
        ({"currency": "eur"}, "currency"),
    ],
)
async def test_decisions_refuse_bad_rows(dsn: str, tmp_path: Path, changes: dict[str, object], constraint: str) -> None:
    async with await Database.open(dsn, tmp_path, partitions=SMALL, today=TODAY) as db:
        with pytest.raises(DatabaseError, match=f"violates check constraint.*{constraint}") as caught:
            async with db.connection() as conn:
                await _insert(conn, "decisions", _decision("tx-bad", _at(TODAY), **changes))
        assert caught.value.sqlstate == "23514" and not isinstance(caught.value, PartitionMissingError)


async def test_the_indexes_exist(conn: Any) -> None:
    await migrate(conn)
    await ensure_partitions(conn, TODAY, 0, None, behind_days=0)
    rows = await conn.fetch("SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    defs = {r["indexname"]: r["indexdef"] for r in rows}
    for table in ("decisions", "transactions"):
        assert "(card_token, event_time)" in defs[f"{table}_card_time_idx"]
        assert "(customer_id, event_time)" in defs[f"{table}_customer_time_idx"]
        assert "(merchant_id, event_time)" in defs[f"{table}_merchant_time_idx"]
        assert "(event_time)" in defs[f"{table}_time_idx"]
        assert "(transaction_id, event_day)" in defs[f"{table}_pkey"]
        partition = f"{table}_p{TODAY:%Y%m%d}"
        assert sum(r["tablename"] == partition for r in rows) == sum(r["tablename"] == table for r in rows)
    assert "(action, event_time) WHERE (action <> 'allow'::text)" in defs["decisions_action_time_idx"]
    assert "(known_at)" in defs["labels_known_at_idx"]
    assert "UNIQUE" in defs["api_keys_hash_key"]


# --- connecting ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("mysql://root:s3cret@127.0.0.1/db", "bad database DSN: expected postgresql://"),
        ("", "bad database DSN"),
        ("postgresql://u:s3cret@127.0.0.1:notaport/db", "bad database DSN"),
        ("postgresql://u:s3cret@127.0.0.1:5432/db?sslmode=sometimes", "bad database DSN.*sslmode"),
    ],
)
async def test_a_bad_dsn_is_a_clear_config_error(tmp_path: Path, bad: str, message: str) -> None:
    with pytest.raises(DatabaseConfigError, match=message) as caught:
        await Database.open(bad, tmp_path)
    assert "s3cret" not in str(caught.value)
    assert not is_running(tmp_path)  # no embedded server was started for a bad DSN


async def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    port = _free_port()
    refused = f"cannot reach PostgreSQL at u@127.0.0.1:{port}/db: connection refused"
    with pytest.raises(DatabaseUnreachableError, match=refused) as caught:
        await Database.open(f"postgresql://u:s3cret@127.0.0.1:{port}/db", tmp_path, connect_timeout_s=5)
    assert "s3cret" not in str(caught.value)


async def test_a_silent_server_times_out(tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []
    silent = await asyncio.start_server(lambda _, writer: accepted.append(writer), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        started = time.perf_counter()
        with pytest.raises(DatabaseUnreachableError, match="no answer before the timeout"):
            await Database.open(f"postgresql://u@127.0.0.1:{port}/db", tmp_path, connect_timeout_s=0.5)
        assert time.perf_counter() - started < 5
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()


async def test_an_unknown_role_is_an_auth_error(dsn: str, tmp_path: Path) -> None:
    stranger = dsn.replace("postgresql://postgres", "postgresql://no_such_role_fg", 1)
    assert stranger != dsn
    with pytest.raises(DatabaseAuthError, match='refused the login: role "no_such_role_fg" does not exist'):
        await Database.open(stranger, tmp_path, connect_timeout_s=5)


async def test_an_unknown_database_is_a_config_error(pg_server: Server, tmp_path: Path) -> None:
    missing = with_database(pg_server.admin_dsn, f"{PREFIX}_missing")
    with pytest.raises(DatabaseConfigError, match=f'database "{PREFIX}_missing" does not exist'):
        await Database.open(missing, tmp_path, connect_timeout_s=5)


async def test_pool_sizes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DatabaseConfigError, match="pool sizes"):
        await Database.open("postgresql://u@127.0.0.1/db", tmp_path, min_size=3, max_size=2)


async def test_health_and_close(dsn: str, tmp_path: Path) -> None:
    db = await Database.open(dsn, tmp_path, partitions=SMALL, today=TODAY, min_size=0, max_size=2)
    health = await db.health()
    assert health.ok and health.schema_version == load_migrations()[-1].version
    assert "schema version" in health.detail and health.latency_s < 2
    await db.close()
    after = await db.health()
    assert not after.ok and "closed" in after.detail
    await db.close()  # twice is harmless


async def test_health_recovers_from_a_dropped_connection(dsn: str, tmp_path: Path) -> None:
    db = await Database.open(dsn, tmp_path, partitions=SMALL, today=TODAY, min_size=1, max_size=1)
    try:
        async with db.connection() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
        await execute(dsn, f"SELECT pg_terminate_backend({int(pid)})")
        await db.health()  # may see the dead connection, but never raises
        assert (await db.health()).ok  # the pool replaced it
    finally:
        await db.close()


def test_messages_never_show_a_password() -> None:
    assert describe_dsn("postgresql://app:s3cret@db.example:6432/fraud?password=s3cret&sslmode=require") == (
        "app@db.example:6432/fraud"
    )
    assert describe_dsn("postgresql://postgres@/fraudguard?host=%2Fdata%2Fpostgres&port=5433") == (
        "postgres@/data/postgres (port 5433)/fraudguard"
    )
    assert with_database("postgresql://app:s3cret@h/a?dbname=a&sslmode=require", "b") == (
        "postgresql://app:s3cret@h/b?sslmode=require"
    )


# --- the embedded server ------------------------------------------------------------------------------------------


async def test_the_embedded_server_restarts_with_its_data(ready_dir: Path) -> None:
    db = await Database.open(None, ready_dir, partitions=SMALL)
    assert db.embedded is not None and db.migrations.applied
    async with db.connection() as conn:
        await conn.execute("INSERT INTO labels (transaction_id, label, source, reported_at) "
                           "VALUES ('tx-9', 'fraud', 'processor', now())")
    await db.close()
    assert not is_running(ready_dir)

    async with await Database.open(None, ready_dir, partitions=SMALL) as again:
        assert again.migrations.applied == ()
        async with again.connection() as conn:
            assert await conn.fetchval("SELECT label FROM labels WHERE transaction_id = 'tx-9'") == "fraud"
            assert await conn.fetchval("SHOW listen_addresses") == ""  # a Unix socket only: no TCP port at all
    assert not is_running(ready_dir)


_CHILD = """
import sys
from pathlib import Path
from fraudguard.db.embedded import EmbeddedPostgres
handle = EmbeddedPostgres.start(Path(sys.argv[1]))
print(handle.pid, flush=True)
sys.stdin.read()
handle.stop()
"""


def test_the_embedded_server_is_shared_between_processes(ready_dir: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", _CHILD, str(ready_dir)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        child_pid = int(child.stdout.readline())
        mine = EmbeddedPostgres.start(ready_dir)
        try:
            assert mine.pid == child_pid  # joined, not started twice
            child.send_signal(signal.SIGKILL)  # dies holding the server
            child.wait(30)
            assert is_running(ready_dir)
        finally:
            mine.stop()  # the last live holder: the dead one's claim is pruned, so the server stops
        assert not is_running(ready_dir)
        mine.stop()  # a released handle stays released


def test_a_broken_embedded_directory_is_a_clear_error(pg_data_dir: Path) -> None:
    pgdata = pg_data_dir / "postgres"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("9\n")  # looks initialised, by a server far too old to start here
    with pytest.raises(EmbeddedServerError, match=f"embedded PostgreSQL in {pgdata} did not start"):
        EmbeddedPostgres.start(pg_data_dir)


async def test_translated_errors_name_what_did_not_answer_and_keep_the_cause() -> None:
    with pytest.raises(DatabaseUnreachableError, match=r"^the thing did not answer in time \(it was busy\)$") as late:
        async with translated_errors("the thing", "it was busy"):
            raise TimeoutError
    assert isinstance(late.value.__cause__, TimeoutError)
    with pytest.raises(DatabaseUnreachableError, match=r"^the thing did not answer in time$"):
        async with translated_errors("the thing"):
            raise TimeoutError
    refused = asyncpg.UniqueViolationError("duplicate key value")
    with pytest.raises(DuplicateRowError) as duplicate:
        async with translated_errors("the thing"):
            raise refused
    assert duplicate.value.__cause__ is refused
    with pytest.raises(DatabaseUnreachableError, match="connection to PostgreSQL was lost"):
        async with translated_errors("the thing"):
            raise ConnectionResetError("reset by peer")
    with pytest.raises(ValueError, match=r"^mine$"):  # not a driver error: out as it came
        async with translated_errors("the thing"):
            raise ValueError("mine")

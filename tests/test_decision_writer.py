"""The decision writer against a real PostgreSQL: the embedded one and, when FRAUDGUARD_TEST_DSN is set, the
machine's (the contract tests, through tests/pg.py's fixtures: a fresh schema per test).

The crash tests run their own embedded server (fsync off, synchronous commit on: a killed server keeps what it
committed) and kill it, or kill a writer process, in the middle of a stream of records."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import math
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from fraudguard.db import Database, EmbeddedPostgres
from fraudguard.errors import UnavailableError
from scoring.record import DecisionRecord, DecisionWriter, Journal, RecorderFull, WriterStats
from scoring.record.items import decode_item
from scoring.record.rows import decode, encode
from scoring.record.writer import Mode
from tests import pg as _db

ROOT = Path(__file__).resolve().parent.parent
N_FEATURES = 46


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def make_record(transaction_id: str, event_time_us: int | None = None, seed: int = 0, **changes: Any) -> DecisionRecord:
    """A full record: every optional field set, 46 features."""
    when = _now_us() if event_time_us is None else event_time_us
    values: dict[str, Any] = {
        "transaction_id": transaction_id, "event_time_us": when, "card_token": "tok_" + "ab" * 16,
        "merchant_id": "merchant-7", "amount_minor": 12_345, "currency": "EUR",
        "features": np.random.default_rng(seed).normal(size=N_FEATURES).astype(np.float32),
        "model_version": "m-1", "score": 0.625, "action": "review", "server_time_us": 38.5,
        "decided_at_us": when + 41, "card_bin": "411111", "card_last4": "1111", "customer_id": "cust-1",
        "mcc": 5411, "merchant_country": "DE", "channel": "ecommerce", "entry_mode": "card_on_file",
        "latitude": 52.52, "longitude": 13.405, "device_id_enc": b"\x01\x00" * 20, "ip_address_enc": b"\xff" * 28,
        "email_enc": b"", "personal_key_id": "key-2025-01", "anomaly_score": -0.25,
        "rule_versions": '{"default": "r-3"}', "rule_hits": '[{"rule_id": "velocity", "action": "review"}]',
        "reasons": '[{"feature": "amount_z", "contribution": 0.31}]', "card_country": "US",
        "billing_country": "FR", "shipping_country": "BE",
    }
    values.update(changes)
    return DecisionRecord(**values)


def _fields(record: DecisionRecord) -> dict[str, Any]:
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    values["features"] = (record.features.dtype.str, record.features.tobytes())
    return values


def _open_journal(path: Path) -> Journal:
    return Journal(path, segment_bytes=1 << 20, max_bytes=256 << 20)


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _settled(writer: DecisionWriter) -> Callable[[], bool]:
    def check() -> bool:
        s: WriterStats = writer.stats
        return s.mode is Mode.DIRECT and s.queue_depth == 0 and s.journal_backlog == 0
    return check


async def _stored(db: Database, prefix: str) -> list[str]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT transaction_id FROM decisions WHERE transaction_id LIKE $1", prefix + "%")
    return [str(r["transaction_id"]) for r in rows]


# --- the journal encoding ---------------------------------------------------------------------------------------


def test_the_journal_encoding_round_trips_exactly() -> None:
    odd = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, 3.4028235e38, 0.1], np.float32)
    odd[2] = np.frombuffer(b"\x01\x00\xc0\x7f", np.float32)[0]  # a NaN with a payload
    full = make_record("tx-é-1", seed=3)
    sparse = DecisionRecord(transaction_id="tx-2", event_time_us=-86_400_000_001, card_token="t", merchant_id="m",
                            amount_minor=0, currency="USD", features=odd, model_version="v", score=math.nan,
                            action="review", server_time_us=0.0, decided_at_us=0)
    for record in (full, sparse):
        again = decode(encode(record))
        assert _fields(again) == {**_fields(record), "score": again.score} and again.features.dtype == np.float32
    assert math.isnan(decode(encode(sparse)).score)
    assert sparse.event_day.isoformat() == "1969-12-30"  # floor, not truncation, before the epoch
    assert decode(encode(full)).mcc == 5411 and decode(encode(sparse)).mcc is None
    payload = encode(full)
    content = sum(len(v) if isinstance(v, bytes) else len(v.encode()) for v in _fields(full).values()
                  if isinstance(v, str | bytes))
    assert len(payload) == 74 + 4 * N_FEATURES + 22 * 4 + content  # compact: fixed part, features, lengths
    for bad in (b"", b"\x02" + payload[1:], payload[:-1], payload + b"\x00", payload[:-11]):
        with pytest.raises(ValueError, match="decision payload"):
            decode(bad)


def test_a_journal_payload_of_version_1_is_still_read() -> None:
    """Written before the countries existed (a journal left by the previous release): the same, without them."""
    record = make_record("tx-v1", seed=4, card_country=None, billing_country=None, shipping_country=None)
    payload = encode(record)
    assert payload.endswith(b"\xff\xff\xff\xff" * 3)  # the three countries, None
    legacy = b"\x01" + payload[1:-12]
    item = decode_item(legacy)
    assert isinstance(item, DecisionRecord) and _fields(item) == _fields(decode(legacy)) == _fields(record)
    with pytest.raises(ValueError, match="decision payload"):
        decode(legacy + b"\x00")


# --- against every server -------------------------------------------------------------------------------------


@pytest.fixture
async def db(dsn: str, tmp_path: Path) -> AsyncIterator[Database]:
    async with await Database.open(dsn, tmp_path, connect_timeout_s=5) as database:
        yield database


async def test_every_record_arrives_once_and_duplicates_are_written_once(db: Database, tmp_path: Path) -> None:
    now = _now_us()
    records = [make_record(f"tx-{i}", now + i, seed=i) for i in range(3000)]
    resent = [make_record(f"tx-{i}", now + i + 5_000_000, seed=i, score=0.99) for i in range(0, 3000, 30)]
    with _open_journal(tmp_path / "journal") as journal:
        writer = DecisionWriter(db, journal, batch_rows=256, batch_interval_s=0.002)
        async with writer:
            for i, record in enumerate(records):
                writer.submit(record)
                if i % 500 == 0:
                    await asyncio.sleep(0)
            writer.submit_many(resent)
        assert writer.stats == WriterStats(Mode.DIRECT, 3100, 3100, 100, 0, 0, 0, 0, 0, 0)
        assert journal.last_seq == 0
    ids = await _stored(db, "tx-")
    assert len(ids) == 3000 and set(ids) == {r.transaction_id for r in records}
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM decisions WHERE transaction_id = 'tx-30'")
    first = records[30]
    assert np.array(row["features"], np.float32).tobytes() == first.features.tobytes()  # bit-exact float32
    assert row["score"] == 0.625  # the first write won; the resend was a duplicate
    assert row["event_time"] == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first.event_time_us)
    assert row["event_day"] == first.event_day and row["decided_at"] > row["event_time"]
    assert json.loads(row["rule_hits"]) == json.loads(first.rule_hits) and row["email_enc"] == b""
    assert (row["device_id_enc"], row["personal_key_id"], row["anomaly_score"]) == (first.device_id_enc,
                                                                                     "key-2025-01", -0.25)


async def test_a_day_without_partition_is_made_and_a_bad_row_set_aside(db: Database, tmp_path: Path) -> None:
    far = _now_us() + 40 * 86_400_000_000
    good = [make_record("tx-far", far), make_record("tx-ok-1"), make_record("tx-ok-2")]
    bad = make_record("tx-bad", action="maybe")
    refused = tmp_path / "refused.log"
    with _open_journal(tmp_path / "journal") as journal:
        async with DecisionWriter(db, journal, refused_path=refused) as writer:
            writer.submit_many([good[0], good[1], bad, good[2]])
    assert sorted(await _stored(db, "tx-")) == ["tx-far", "tx-ok-1", "tx-ok-2"]
    assert writer.stats.refused == 1 and writer.stats.written == 3
    line = refused.read_text().splitlines()
    assert len(line) == 1 and "action" in line[0].split("\t")[1]
    assert decode(base64.b64decode(line[0].split("\t")[0])).transaction_id == "tx-bad"


async def test_reject_policy_raises_recorder_full_and_counts_it(db: Database, tmp_path: Path) -> None:
    with _open_journal(tmp_path / "journal") as journal:
        writer = DecisionWriter(db, journal, batch_rows=5, queue_rows=10, full_policy="reject")
        for i in range(10):  # not started: nothing drains
            writer.submit(make_record(f"tx-{i}"))
        with pytest.raises(RecorderFull, match="queue full") as caught:
            writer.submit(make_record("tx-10"))
        assert isinstance(caught.value, UnavailableError)  # gRPC UNAVAILABLE
        with pytest.raises(RecorderFull):
            await writer.submit_wait(make_record("tx-10"))
        with pytest.raises(RecorderFull):
            writer.submit_many([make_record("tx-11"), make_record("tx-12")])
        assert writer.stats.rejected == 4 and writer.stats.queue_depth == 10
        async with writer:
            pass
        assert writer.stats.written == 10
    assert len(await _stored(db, "tx-")) == 10


async def test_a_slow_database_spills_to_the_journal_instead_of_holding_up_submissions(db: Database,
                                                                                      tmp_path: Path) -> None:
    """Every COPY takes 50 ms more (a statement trigger sleeps): the queue grows past spill_rows, the writer
    journals what waits and replays it, submissions never wait, and each record is stored once."""
    async with db.connection() as conn:
        await conn.execute("CREATE FUNCTION fg_slow() RETURNS trigger LANGUAGE plpgsql AS "
                           "$$ BEGIN PERFORM pg_sleep(0.05); RETURN NULL; END $$; "
                           "CREATE TRIGGER fg_slow AFTER INSERT ON decisions FOR EACH STATEMENT "
                           "EXECUTE FUNCTION fg_slow()")
    with _open_journal(tmp_path / "journal") as journal:
        writer = DecisionWriter(db, journal, batch_rows=50, queue_rows=4000, spill_rows=400,
                                batch_interval_s=0.001, replay_rows=1000)
        writer.start()
        for i in range(3000):
            writer.submit(make_record(f"slow-{i}", seed=i % 5))  # raises RecorderFull if it had to wait
            if i % 100 == 99:
                await asyncio.sleep(0.01)  # 10 k records/s offered: far more than 50 rows per 50 ms
        assert writer.mode is Mode.JOURNAL
        async with db.connection() as conn:
            await conn.execute("DROP TRIGGER fg_slow ON decisions")
        await _until(_settled(writer), 60, "the journal's replay")
        await writer.close()
        stats = writer.stats
    ids = await _stored(db, "slow-")
    assert len(ids) == len(set(ids)) == 3000
    assert stats.journaled > 0 and stats.replayed >= stats.journaled and stats.rejected == 0


async def test_backpressure_waits_for_room(db: Database, tmp_path: Path) -> None:
    with _open_journal(tmp_path / "journal") as journal:
        writer = DecisionWriter(db, journal, batch_rows=5, queue_rows=10)
        for i in range(10):
            writer.submit(make_record(f"tx-{i}"))
        waiting = [asyncio.create_task(writer.submit_wait(make_record(f"tx-{10 + i}"))) for i in range(3)]
        batch = asyncio.create_task(writer.submit_wait_many([make_record(f"tx-{13 + i}") for i in range(4)]))
        await asyncio.sleep(0.1)
        assert not any(t.done() for t in [*waiting, batch]) and writer.stats.rejected == 0
        async with writer:
            await asyncio.wait_for(asyncio.gather(*waiting, batch), 10)
        assert writer.stats.written == 17 and writer.stats.rejected == 0
    assert len(await _stored(db, "tx-")) == 17


# --- crashes ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crash_dir() -> Iterator[Path]:
    with _db.crash_data_dir() as path:
        yield path


_crash_postgres = _db.crash_postgres


async def _close_after_crash(db: Database, restarted: EmbeddedPostgres | None, data_dir: Path) -> None:
    """Close the database, the server running again (pgserver stops a server it started, not a dead one)."""
    if restarted is None:
        restarted = await asyncio.to_thread(EmbeddedPostgres.start, data_dir)
    try:
        await db.close()
    finally:
        restarted.stop()


async def test_postgres_killed_mid_stream_loses_and_doubles_nothing(crash_dir: Path, tmp_path: Path) -> None:
    prefix = f"kill-{time.monotonic_ns()}-"
    db = await Database.open(None, crash_dir, connect_timeout_s=2)
    restarted: EmbeddedPostgres | None = None
    try:
        with _open_journal(tmp_path / "journal") as journal:
            writer = DecisionWriter(db, journal, batch_rows=200, batch_interval_s=0.002, write_timeout_s=3,
                                    probe_timeout_s=0.5, retry_initial_s=0.02, retry_max_s=0.2)
            writer.start()
            for i in range(6000):
                await writer.submit_wait(make_record(f"{prefix}{i}", seed=i % 7))
                if i % 100 == 99:
                    await asyncio.sleep(0.003)
                if i == 2000:
                    await _until(lambda: writer.stats.written > 0, 10, "the first rows written")
                    await asyncio.to_thread(_crash_postgres, crash_dir)
                if i == 4000:
                    await _until(lambda: writer.stats.journaled > 0, 10, "the journal to take rows")
                    assert writer.mode is Mode.JOURNAL
                    restarted = await asyncio.to_thread(EmbeddedPostgres.start, crash_dir)
            await _until(_settled(writer), 30, "the journal's replay")
            await writer.close()
            stats = writer.stats
        ids = await _stored(db, prefix)
        assert len(ids) == 6000 and len(set(ids)) == 6000
        assert stats.journaled > 0 and stats.replayed == stats.journaled
        assert stats.written + stats.replayed - stats.duplicates == 6000
    finally:
        await _close_after_crash(db, restarted, crash_dir)


_CHILD = """
import asyncio, sys
from pathlib import Path
from fraudguard.db import Database
from scoring.record import DecisionWriter, Journal
from tests.test_decision_writer import make_record

async def main() -> None:
    db = await Database.open(None, Path(sys.argv[1]), connect_timeout_s=2)
    journal = Journal(sys.argv[2], segment_bytes=1 << 20, max_bytes=256 << 20)
    def durable(records):
        sys.stdout.write("".join(r.transaction_id + "\\n" for r in records))
        sys.stdout.flush()
    writer = DecisionWriter(db, journal, batch_rows=100, batch_interval_s=0.002, write_timeout_s=2,
                            probe_timeout_s=0.5, retry_initial_s=0.02, retry_max_s=0.2, on_durable=durable)
    writer.start()
    i = 0
    while True:
        await writer.submit_wait(make_record(f"{sys.argv[3]}{i}", seed=i % 5))
        i += 1
        if i % 50 == 0:
            await asyncio.sleep(0.002)

asyncio.run(main())
"""


class _Lines:
    """Whole lines read from a pipe by a thread (a partial last line is not counted)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: list[str] = []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            if line.endswith(b"\n"):
                self.lines.append(line.decode().strip())

    def finish(self) -> list[str]:
        self._thread.join(10)
        return list(self.lines)


async def test_a_killed_writer_loses_nothing_it_reported_durable(crash_dir: Path, tmp_path: Path) -> None:
    prefix = f"proc-{time.monotonic_ns()}-"
    journal_dir = tmp_path / "journal"
    db = await Database.open(None, crash_dir, connect_timeout_s=2)
    restarted: EmbeddedPostgres | None = None
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(crash_dir), str(journal_dir), prefix],
                                 cwd=ROOT, stdout=subprocess.PIPE)
        try:
            assert child.stdout is not None
            output = _Lines(child.stdout)
            await _until(lambda: len(output.lines) >= 1500, 30, "the child's first durable rows")
            await asyncio.to_thread(_crash_postgres, crash_dir)  # the child journals from here on
            in_db = len(output.lines)
            await _until(lambda: len(output.lines) >= in_db + 1500, 30, "the child's journaled rows")
        finally:
            child.kill()
            child.wait(10)
        durable = output.finish()
        child.stdout.close()
        restarted = await asyncio.to_thread(EmbeddedPostgres.start, crash_dir)
        with _open_journal(journal_dir) as journal:
            assert journal.last_seq > journal.acknowledged_seq  # the dead writer's journal holds records
            async with DecisionWriter(db, journal, retry_initial_s=0.02, retry_max_s=0.2) as writer:
                assert writer.mode is Mode.JOURNAL
                await _until(_settled(writer), 30, "the journal's replay")
            assert writer.stats.replayed >= 1500
        ids = await _stored(db, prefix)
        assert len(ids) == len(set(ids))
        missing = set(durable) - set(ids)
        assert not missing, f"{len(missing)} of {len(durable)} durable ids lost, e.g. {sorted(missing)[:3]}"
    finally:
        await _close_after_crash(db, restarted, crash_dir)

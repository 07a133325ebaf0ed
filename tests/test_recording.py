"""Recording at server level: every answered decision reaches PostgreSQL exactly once — with the database killed
mid-stream, with the scorer SIGKILLed mid-stream — and no PAN reaches the database, the journals or the logs."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np
import pytest

from fraudguard.db import EmbeddedPostgres
from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc, transaction_pb2
from fraudguard.redaction import luhn_valid
from fraudguard.security.personal import Keyring, personal_aad
from scoring.features.schema import FEATURES
from scoring.record.writer import Mode
from scoring.server import ScoringServer, start_server
from tests import pg
from tests._server_process import ServerProcess
from tests.conftest import make_transaction, server_settings
from tests.pan_scan import PANS, pans_in


async def _rows(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _stored_ids(dsn: str, prefix: str) -> Any:
    async def ids() -> list[str]:
        rows = await _rows(dsn, "SELECT transaction_id FROM decisions WHERE transaction_id LIKE $1", prefix + "%")
        return [r["transaction_id"] for r in rows]
    return ids


def _tx(prefix: str, i: int, pan: str | None = None, **fields: Any) -> transaction_pb2.Transaction:
    """A valid transaction (see make_transaction) with id ``prefix + i``; ``pan``: card by PAN instead of token."""
    tx = make_transaction(i, transaction_id=f"{prefix}{i}", **fields)
    if pan is not None:
        tx.card.CopyFrom(transaction_pb2.Card(pan=pan))
    return tx


@pytest.fixture
async def recording_server(data_dir: Path, dsn: str) -> AsyncIterator[ScoringServer]:
    running = await start_server(server_settings(data_dir, record=True, database_url=dsn, record_interval_s=0.002))
    try:
        yield running
    finally:
        await running.stop(grace=1.0)


async def test_every_rpc_records_what_it_answered(recording_server: ScoringServer, dsn: str, data_dir: Path) -> None:
    prefix = f"rec-{time.monotonic_ns()}-"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{recording_server.port}") as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
        single = await stub.Score(scoring_pb2.ScoreRequest(transaction=_tx(prefix, 0)))
        batch = [_tx(prefix, 1), _tx(prefix, 2, amount_minor=-5), _tx(prefix, 3, pan=PANS[0]),
                 _tx(prefix, 4, device_id="", ip_address="", customer_id="")]
        answered = await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=batch))
        call = stub.ScoreStream()
        for i in range(5, 9):
            await call.write(scoring_pb2.ScoreStreamRequest(transactions=[_tx(prefix, i)]))
            await call.read()
        await call.done_writing()
    assert [r.WhichOneof("result") for r in answered.results] == ["decision", "error", "decision", "decision"]
    await recording_server.stop(grace=1.0)  # drains the writer

    rows = {r["transaction_id"]: r for r in await _rows(dsn, "SELECT * FROM decisions")}
    assert sorted(rows) == sorted(f"{prefix}{i}" for i in (0, 1, 3, 4, 5, 6, 7, 8))  # not the refused one
    first = rows[f"{prefix}0"]
    assert first["score"] == pytest.approx(single.decision.score)
    assert first["model_version"] == single.decision.model_version
    assert first["action"] == scoring_pb2.Action.Name(single.decision.action).removeprefix("ACTION_").lower()
    assert len(first["features"]) == len(FEATURES) and first["amount_minor"] == 2599
    assert (first["channel"], first["entry_mode"], first["mcc"], first["merchant_country"]) == (
        "ecommerce", "card_on_file", 5411, "DE")
    reasons = json.loads(first["reasons"])
    assert [r["feature"] for r in reasons] == [r.feature for r in single.decision.reasons]
    # personal fields sealed with the data directory's key, bound to their transaction and column
    keyring = Keyring.load(data_dir / "keys" / "personal.json")
    assert first["personal_key_id"] == keyring.current_id
    device = keyring.open(first["personal_key_id"], first["device_id_enc"], personal_aad("device_id", f"{prefix}0"))
    assert device == b"device-0"
    assert keyring.open(first["personal_key_id"], first["ip_address_enc"],
                        personal_aad("ip_address", f"{prefix}0")) == b"10.1.0.0"
    bare = rows[f"{prefix}4"]
    assert bare["device_id_enc"] is None and bare["personal_key_id"] is None and bare["customer_id"] is None
    tokenized = rows[f"{prefix}3"]
    assert tokenized["card_token"].startswith("pan_") and (tokenized["card_bin"], tokenized["card_last4"]) == (
        PANS[0][:6], PANS[0][-4:])


async def test_countries_and_email_are_recorded_the_email_sealed(recording_server: ScoringServer, dsn: str,
                                                                 data_dir: Path) -> None:
    """The card's, billing and shipping countries land in their columns; the e-mail only sealed, with the row's
    key, bound to its transaction. Through Score (a block of one row) and ScoreBatch (laid out with NumPy)."""
    prefix = f"geo-{time.monotonic_ns()}-"
    emails = {i: f"payer.{i}+x@exämple.de" if i % 2 else f"p{i}@example.com" for i in range(12)}

    def tx(i: int) -> transaction_pb2.Transaction:
        if i == 11:  # none of the four, and no other personal field: no key id either
            return _tx(prefix, i, device_id="", ip_address="")
        t = _tx(prefix, i, billing_country="FR", shipping_country="BE" if i % 3 else "", email=emails[i])
        t.card.country = "US"
        if i == 10:
            t.device_id, t.ip_address = "", ""  # the e-mail alone: the row still names its key
        return t

    async with grpc.aio.insecure_channel(f"127.0.0.1:{recording_server.port}") as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
        await stub.Score(scoring_pb2.ScoreRequest(transaction=tx(0)))
        answered = await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=[tx(i) for i in range(1, 12)]))
    assert all(r.HasField("decision") for r in answered.results)
    await recording_server.stop(grace=1.0)  # drains the writer

    rows = {r["transaction_id"]: r for r in await _rows(dsn, "SELECT * FROM decisions WHERE transaction_id LIKE $1",
                                                         prefix + "%")}
    assert len(rows) == 12
    keyring = Keyring.load(data_dir / "keys" / "personal.json")
    for i in range(11):
        row = rows[f"{prefix}{i}"]
        assert (row["card_country"], row["billing_country"], row["shipping_country"]) == (
            "US", "FR", "BE" if i % 3 else None)
        assert row["personal_key_id"] == keyring.current_id
        opened = keyring.open(row["personal_key_id"], row["email_enc"], personal_aad("email", f"{prefix}{i}"))
        assert opened.decode() == emails[i]
        assert emails[i].encode() not in row["email_enc"]
    assert rows[f"{prefix}10"]["device_id_enc"] is None and rows[f"{prefix}10"]["ip_address_enc"] is None
    bare = rows[f"{prefix}11"]
    assert [bare[c] for c in ("card_country", "billing_country", "shipping_country", "email_enc",
                              "personal_key_id")] == [None] * 5


@pytest.fixture(scope="module")
def crash_dir() -> Iterator[Path]:
    with pg.crash_data_dir() as path:
        yield path


async def test_a_stream_through_a_postgres_crash_stores_each_decision_once(data_dir: Path, crash_dir: Path) -> None:
    prefix = f"crash-{time.monotonic_ns()}-"
    pg_dir = crash_dir
    if True:
        postgres = await asyncio.to_thread(EmbeddedPostgres.start, pg_dir)
        settings = server_settings(data_dir, record=True, database_url=postgres.dsn, record_interval_s=0.002)
        running = await start_server(settings)
        writer = running.recorder.writer if running.recorder else None
        assert writer is not None
        answered: list[str] = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
                call = stub.ScoreStream()
                for i in range(3000):
                    size = 1 + i % 5
                    await call.write(scoring_pb2.ScoreStreamRequest(
                        transactions=[_tx(prefix, i * 5 + j) for j in range(size)]))
                    reply = await call.read()
                    answered += [r.transaction_id for r in reply.results if r.HasField("decision")]
                    if i == 800:
                        await asyncio.to_thread(pg.crash_postgres, pg_dir)
                    if i == 1800:
                        assert writer.stats.journaled > 0, "the writer should have gone to the outage journal"
                        postgres = await asyncio.to_thread(EmbeddedPostgres.start, pg_dir)
                await call.done_writing()

            async def settled() -> bool:
                stats = writer.stats
                return stats.mode is Mode.DIRECT and stats.journal_backlog == 0 and stats.queue_depth == 0

            await _until(settled, 60, "the outage journal's replay")
            await running.stop(grace=2.0)
            stats = writer.stats
            ids = await _stored_ids(postgres.dsn, prefix)()
        finally:
            await asyncio.to_thread(postgres.stop)
    assert len(answered) == len(set(answered)) > 8000
    assert sorted(ids) == sorted(answered)  # every answered decision, once; nothing else
    assert stats.journaled > 0 and stats.replayed >= stats.journaled


@pytest.fixture
def served_data(tmp_path: Path, bundle_store: Path) -> Iterator[Path]:
    data = tmp_path / "served"
    shutil.copytree(bundle_store, data / "models")
    yield data


async def test_decisions_answered_before_a_sigkill_are_stored_after_restart(served_data: Path, dsn: str) -> None:
    prefix = f"kill-{time.monotonic_ns()}-"
    env = {"FRAUDGUARD_RECORD": "true", "FRAUDGUARD_DATABASE_URL": dsn,
           "FRAUDGUARD_RECORD_INTERVAL_S": "0.5"}  # a slow writer: many answered decisions are still in memory
    small = ("--max-cards", "4096", "--max-entities", "4096")
    server = ServerProcess(served_data, small, env=env).start()
    answered: list[str] = []
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            call = stub.ScoreStream()
            for i in range(600):
                await call.write(scoring_pb2.ScoreStreamRequest(transactions=[_tx(prefix, i)]))
                reply = await call.read()
                answered.append(reply.results[0].decision.transaction_id)
            server.kill()  # SIGKILL, mid-stream: the call is not finished
    finally:
        server.kill()
    stored_before = set(await _stored_ids(dsn, prefix)())
    assert len(stored_before) < len(answered), "the test should kill the server with decisions not yet stored"
    ahead = served_data / "journal" / "ahead"
    assert sum(p.stat().st_size for p in ahead.iterdir()) > 0

    restarted = ServerProcess(served_data, small, env=env).start()
    try:
        await _until(lambda: _count_at_least(dsn, prefix, len(answered)), 60, "the write-ahead journal's replay")
    finally:
        assert restarted.terminate() == 0
    ids = await _stored_ids(dsn, prefix)()
    assert sorted(ids) == sorted(answered)


async def _count_at_least(dsn: str, prefix: str, n: int) -> bool:
    return len(await _stored_ids(dsn, prefix)()) >= n


async def test_no_pan_reaches_the_database_the_journals_or_the_logs(served_data: Path, dsn: str) -> None:
    """Score transactions carrying PANs (valid ones, invalid ones, one in a refused transaction), let the server
    record and shut down, then search every table, every journal file and every log line for a Luhn-valid
    13–19 digit number."""
    prefix = f"pan-{secrets.token_hex(3)}-"  # no long digit run of its own for the scan to find
    env = {"FRAUDGUARD_RECORD": "true", "FRAUDGUARD_DATABASE_URL": dsn, "FRAUDGUARD_LOG_LEVEL": "DEBUG"}
    server = ServerProcess(served_data, ("--max-cards", "4096", "--max-entities", "4096"), env=env).start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            for i, pan in enumerate(PANS):
                spaced = f"{pan[:4]} {pan[4:8]} {pan[8:12]} {pan[12:]}"
                await stub.Score(scoring_pb2.ScoreRequest(transaction=_tx(prefix, i, pan=pan if i % 2 else spaced)))
            batch = [_tx(prefix, 10 + i, pan=pan) for i, pan in enumerate(PANS)]
            batch.append(_tx(prefix, 20, pan=PANS[1], amount_minor=-1))  # refused
            batch.append(_tx(prefix, 21, pan=PANS[2][:-1] + str((int(PANS[2][-1]) + 1) % 10)))  # fails Luhn
            await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=batch))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Score(scoring_pb2.ScoreRequest(transaction=_tx(prefix, 30, pan=PANS[3], currency="XXXX")))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert PANS[3] not in (refused.value.details() or "")
            # a card number as an e-mail's local part (the card itself by token): accepted, stored sealed, but never
            # in clear in the journals; and one in a refused transaction's e-mail is not echoed either
            await stub.Score(scoring_pb2.ScoreRequest(transaction=_tx(prefix, 40, email=f"{PANS[4]}@example.com")))
            await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=[
                _tx(prefix, 41, email=f"{PANS[0][:4]}-{PANS[0][4:8]}-{PANS[0][8:12]}-{PANS[0][12:]}@example.com"),
                _tx(prefix, 42)]))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Score(scoring_pb2.ScoreRequest(transaction=_tx(prefix, 43, email=f"{PANS[1]}@@example")))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert PANS[1] not in (refused.value.details() or "")
    finally:
        assert server.terminate() == 0

    stored = await _rows(dsn, "SELECT count(*) AS n FROM decisions WHERE transaction_id LIKE $1", prefix + "%")
    assert stored[0]["n"] == 13  # the five single ones, the five good ones of the batch, the three e-mail ones
    tables = [r["tablename"] for r in await _rows(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = "
                                                       "current_schema()")]
    assert "decisions" in tables or any(t.startswith("decisions_") for t in tables)
    hits: dict[str, list[str]] = {}
    for table in tables:
        for row in await _rows(dsn, f'SELECT t::text AS line FROM "{table}" t'):
            found = pans_in(row["line"].encode())
            if found:
                hits.setdefault(f"table {table}", []).extend(found)
    for path in (served_data / "journal").rglob("*"):
        if path.is_file() and pans_in(path.read_bytes()):
            hits[str(path)] = pans_in(path.read_bytes())
    log = "\n".join(server.log_lines).encode()
    if pans_in(log):
        hits["log"] = pans_in(log)
    assert hits == {}
    # the scan itself finds what it looks for
    sample = f"card {PANS[0]}, pan={PANS[2]}; not 0.{PANS[1]} nor \\xff{PANS[3]}ab"
    assert pans_in(sample.encode()) == [PANS[0], PANS[2]]
    assert np.all([luhn_valid(p) for p in PANS])


async def test_a_card_number_in_an_email_is_not_in_the_write_ahead_journal(served_data: Path, dsn: str) -> None:
    """The write-ahead journal holds each request as it came, so a card number sent as an e-mail's local part would
    sit there in clear until stored: it is replaced before the journal sees it. The server is SIGKILLed with a slow
    writer, so what it answered is still in the journal for the scan to read."""
    prefix = f"mail-{secrets.token_hex(3)}-"
    env = {"FRAUDGUARD_RECORD": "true", "FRAUDGUARD_DATABASE_URL": dsn, "FRAUDGUARD_RECORD_INTERVAL_S": "30"}
    server = ServerProcess(served_data, ("--max-cards", "4096", "--max-entities", "4096"), env=env).start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            await stub.Score(scoring_pb2.ScoreRequest(transaction=_tx(prefix, 0, email=f"{PANS[0]}@example.com")))
            spaced = f"{PANS[1][:4]} {PANS[1][4:8]} {PANS[1][8:12]} {PANS[1][12:]}"
            await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=[
                _tx(prefix, 1, email=f"{spaced}@example.com"), _tx(prefix, 2, email="ann@example.com")]))
    finally:
        server.kill()
    journal = b"".join(p.read_bytes() for p in (served_data / "journal" / "ahead").rglob("*") if p.is_file())
    assert journal.count(b"[PAN]@example.com") == 2  # the scan reads what was journaled
    assert pans_in(journal) == []


@pytest.mark.parametrize("policy", ["reject", "backpressure"])
async def test_with_the_database_down_and_the_journal_full_the_policy_decides(data_dir: Path, crash_dir: Path,
                                                                              policy: str) -> None:
    """PostgreSQL dead, the outage journal full: 'reject' answers UNAVAILABLE before scoring, 'backpressure' holds
    the call; either way nothing answered is lost, and once the database is back every answered decision is
    stored exactly once."""
    prefix = f"full-{policy}-{time.monotonic_ns()}-"
    postgres = await asyncio.to_thread(EmbeddedPostgres.start, crash_dir)
    settings = server_settings(data_dir, record=True, database_url=postgres.dsn, record_interval_s=0.002,
                               record_batch_rows=64, record_queue_rows=256, journal_max_bytes=2 << 20,
                               record_full_policy=policy)
    running = await start_server(settings)
    assert running.recorder is not None
    writer = running.recorder.writer
    answered: list[str] = []
    refused = held = 0
    try:
        await asyncio.to_thread(pg.crash_postgres, crash_dir)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            batch = 32
            for i in range(400):
                request = scoring_pb2.ScoreBatchRequest(transactions=[_tx(prefix, i * batch + j)
                                                                      for j in range(batch)])
                try:
                    reply = await stub.ScoreBatch(request, timeout=0.5)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        refused += 1
                    elif exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        held += 1  # waited for room that never came (the client gave up)
                    else:
                        raise
                    if refused + held >= 3:
                        break
                    continue
                answered += [r.transaction_id for r in reply.results if r.HasField("decision")]
            assert (refused if policy == "reject" else held) >= 3, (refused, held, writer.stats)
            postgres = await asyncio.to_thread(EmbeddedPostgres.start, crash_dir)

            async def settled() -> bool:
                stats = writer.stats
                return stats.mode is Mode.DIRECT and stats.journal_backlog == 0 and stats.queue_depth == 0

            await _until(settled, 120, "the journal's replay")
            after = await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=[_tx(prefix, 10**6)]))
            answered += [r.transaction_id for r in after.results]
        await running.stop(grace=2.0)
        ids = await _stored_ids(postgres.dsn, prefix)()
    finally:
        await asyncio.to_thread(postgres.stop)
    assert writer.stats.rejected > 0 if policy == "reject" else True
    assert sorted(ids) == sorted(answered)  # a refused or timed-out call was turned away before scoring

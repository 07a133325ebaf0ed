"""Rules decide in the running scorer: a rule's hit changes the action and is answered (unary, batch, stream) and
recorded; the rules file is swapped while serving without a failed call; a broken edit keeps the old rules; a
broken file at start refuses to start."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from fraudguard.exit_codes import ExitCode
from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc, transaction_pb2
from fraudguard.service import StartupError
from scoring.rules import RuleSet
from scoring.server import ScoringServer, start_server
from tests.conftest import make_transaction, server_settings

Stub = scoring_pb2_grpc.ScoringServiceStub
ALLOW, BLOCK = scoring_pb2.ACTION_ALLOW, scoring_pb2.ACTION_BLOCK
MODEL_ALLOWS = "challenge=1,review=1,block=1"  # the model alone allows every score below 1
MODEL_BLOCKS = "challenge=1e-9,review=1e-9,block=1e-9"  # ... and blocks every score above 0
BIG_RULES = 'rule big "more than 1000": block if amount > 1000\n'


def _write(path: Path, text: str) -> None:
    """As an operator should: write beside, then rename into place (the watcher never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    spare = path.with_suffix(".tmp")
    spare.write_text(text)
    os.replace(spare, path)


def _big(i: int, **fields: Any) -> transaction_pb2.Transaction:
    return make_transaction(i, amount_minor=500_000, **fields)  # 5000 EUR


async def _serve(data_dir: Path, rules: str | None, bands: str = MODEL_ALLOWS, **changes: Any) -> ScoringServer:
    if rules is not None:
        _write(data_dir / "rules" / "active.rules", rules)
    return await start_server(server_settings(data_dir, bands=bands, **changes))


@pytest.fixture
async def served(data_dir: Path) -> AsyncIterator[ScoringServer]:
    running = await _serve(data_dir, BIG_RULES)
    try:
        yield running
    finally:
        await running.stop(grace=1.0)


@pytest.fixture
async def stub(served: ScoringServer) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        yield scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]


def _hits(decision: scoring_pb2.Decision) -> list[tuple[str, int, str]]:
    return [(h.rule_id, h.action, h.description) for h in decision.rule_hits]


async def _decisions(stub: Stub, txs: list[transaction_pb2.Transaction]) -> dict[str, list[scoring_pb2.Decision]]:
    """Each transaction's decision by every scoring RPC."""
    unary = [(await stub.Score(scoring_pb2.ScoreRequest(transaction=tx))).decision for tx in txs]
    batch = [r.decision for r in (await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=txs))).results]
    call = stub.ScoreStream()
    await call.write(scoring_pb2.ScoreStreamRequest(transactions=txs))
    stream = [r.decision for r in (await call.read()).results]
    await call.done_writing()
    return {"unary": unary, "batch": batch, "stream": stream}


async def test_a_rule_blocks_what_the_model_allows_by_every_rpc(served: ScoringServer, stub: Stub) -> None:
    version = RuleSet(BIG_RULES).version
    assert served.scorer.rules is not None and served.scorer.rules.version == version
    for rpc, (big, small) in (await _decisions(stub, [_big(1), make_transaction(2)])).items():
        assert big.score < 1 and big.action == BLOCK, rpc  # the model allows it: the rule blocked it
        assert _hits(big) == [("big", BLOCK, "more than 1000")], rpc
        assert (small.action, _hits(small)) == (ALLOW, []), rpc
        assert big.rule_set_version == small.rule_set_version == version, rpc


async def test_an_allow_list_overrides_the_model_and_the_other_rules(data_dir: Path) -> None:
    lists = data_dir / "rules" / "lists"
    lists.mkdir(parents=True)
    (lists / "trusted.txt").write_text("# cards an analyst cleared\ncard-vip  # the VIP\n\n")
    (lists / "mccs.txt").write_text("7995\n5967\n")
    rules = BIG_RULES + "rule trusted: allow if card.token in @trusted\nreview if mcc in @mccs\n"
    running = await _serve(data_dir, rules, bands=MODEL_BLOCKS)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            txs = [_big(1, card="card-vip"), make_transaction(2)]
            for rpc, (vip, other) in (await _decisions(stub, txs)).items():
                assert vip.action == ALLOW, rpc  # the model and the block rule say block: the allow-list wins
                assert [h[0] for h in _hits(vip)] == ["big", "trusted"], rpc
                assert (other.action, _hits(other)) == (BLOCK, []), rpc  # the model alone
    finally:
        await running.stop(grace=1.0)


async def test_no_rules_file_the_model_alone_decides(data_dir: Path) -> None:
    running = await _serve(data_dir, None)
    try:
        assert running.scorer.rules is None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            for rpc, (big,) in (await _decisions(stub, [_big(1)])).items():
                assert (big.action, _hits(big), big.rule_set_version) == (ALLOW, [], ""), rpc
    finally:
        await running.stop(grace=1.0)


async def _until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_an_edit_is_swapped_in_while_calls_run_and_a_broken_edit_keeps_the_old_rules(
        served: ScoringServer, stub: Stub, data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fraudguard.scoring")
    path = data_dir / "rules" / "active.rules"
    old, new = RuleSet(BIG_RULES).version, RuleSet("rule mid: block if amount > 20\n").version
    seen: set[str] = set()
    stop = asyncio.Event()

    async def hammer(i: int) -> int:
        calls = 0
        while not stop.is_set():
            txs = [make_transaction(i * 1000 + calls + k) for k in range(3)]  # 25.99 EUR: only the new rule hits
            for decisions in (await _decisions(stub, txs)).values():
                for d in decisions:
                    assert (d.action == BLOCK) == (d.rule_set_version == new), d
                    seen.add(d.rule_set_version)
            calls += 1
        return calls

    workers = [asyncio.create_task(hammer(i)) for i in range(4)]
    await asyncio.sleep(0.2)
    _write(path, "rule mid: block if amount > 20\n")
    await _until(lambda: served.scorer.rules is not None and served.scorer.rules.version == new)
    await asyncio.sleep(0.2)
    _write(path, "rule mid: block if amount >\nreview if amount > 1\n")  # broken: line 1, column 28
    await _until(lambda: any("rules not loaded" in r.getMessage() for r in caplog.records))
    await asyncio.sleep(0.3)  # more polls: not retried, not swapped
    stop.set()
    calls = await asyncio.gather(*workers)  # a failed call would raise here
    assert all(c > 0 for c in calls) and seen == {old, new}
    assert served.scorer.rules is not None and served.scorer.rules.version == new
    errors = [r for r in caplog.records if "rules not loaded" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR
    assert (getattr(errors[0], "line", None), getattr(errors[0], "column", None)) == (1, 28)
    assert "line 1, column 28" in getattr(errors[0], "error", "")
    (d,) = (await _decisions(stub, [make_transaction(5)]))["unary"]
    assert d.action == BLOCK and d.rule_set_version == new and _hits(d)[0][0] == "mid"
    path.unlink()  # no rules: the model alone decides
    await _until(lambda: served.scorer.rules is None)


async def test_an_edited_list_is_swapped_in(served: ScoringServer, stub: Stub, data_dir: Path) -> None:
    lists = data_dir / "rules" / "lists"
    _write(lists / "blocked.txt", "card-1\n")
    _write(data_dir / "rules" / "active.rules", "block if card.token in @blocked\n")
    await _until(lambda: served.scorer.rules is not None and served.scorer.rules.rule_ids == ("line1",))
    first = served.scorer.rules
    assert first is not None
    assert (await stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(1)))).decision.action == BLOCK
    _write(lists / "blocked.txt", "card-2\n")
    await _until(lambda: served.scorer.rules is not first)
    assert (await stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(1)))).decision.action == ALLOW


@pytest.mark.parametrize(("text", "where"), [("block if amount >\n", "line 1, column 18"),
                                              ("\nblock if amont > 5\n", "line 2, column 10"),
                                              ("block if card.token in @nowhere\n", "line 1, column 24")])
async def test_a_broken_rules_file_at_start_refuses_to_start(data_dir: Path, text: str, where: str) -> None:
    with pytest.raises(StartupError) as info:
        await _serve(data_dir, text)
    assert info.value.code is ExitCode.RULES_INVALID and int(info.value.code) == 24
    assert where in str(info.value) and "active.rules" in str(info.value)


async def test_a_named_rules_file_that_does_not_exist_refuses_to_start(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(StartupError) as info:
        await start_server(server_settings(data_dir, rules_file=tmp_path / "missing.rules"))
    assert info.value.code is ExitCode.RULES_INVALID and "not found" in str(info.value)


async def test_recorded_rows_carry_the_hits_and_the_rule_set_version(data_dir: Path, dsn: str) -> None:
    rules = BIG_RULES + "rule euro: review if merchant_country == \"DE\" and amount > 2000\n"
    running = await _serve(data_dir, rules, record=True, database_url=dsn, record_interval_s=0.002)
    prefix = f"rules-{time.monotonic_ns()}-"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            await stub.Score(scoring_pb2.ScoreRequest(transaction=_big(0, transaction_id=f"{prefix}0")))
            batch = [_big(i, transaction_id=f"{prefix}{i}") for i in range(1, 10)]
            batch += [make_transaction(i, transaction_id=f"{prefix}{i}") for i in range(10, 20)]
            await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=batch))
    finally:
        await running.stop(grace=1.0)  # drains the writer
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT transaction_id, action, rule_hits::text AS hits, rule_versions::text AS v "
                                "FROM decisions WHERE transaction_id LIKE $1", prefix + "%")
    finally:
        await conn.close()
    assert len(rows) == 20
    version = RuleSet(rules).version
    for row in rows:
        i = int(row["transaction_id"].removeprefix(prefix))
        assert json.loads(row["v"]) == {"rule_set": version}
        if i < 10:
            assert json.loads(row["hits"]) == [{"rule_id": "big", "action": "block"},
                                               {"rule_id": "euro", "action": "review"}]
            assert row["action"] == "block"
        else:
            assert json.loads(row["hits"]) == [] and row["action"] == "allow"

"""The server under stress and abuse: hot swaps under load, many streams, deadlines, cancellation,
hypothesis-generated malformed requests, snapshots across restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc, transaction_pb2
from scoring.features import FeatureEngine
from scoring.features.batch import TransactionBatch
from scoring.model import promote
from scoring.server import ScoringServer, start_server
from tests._model_helpers import make_bundle, train_booster
from tests.conftest import MODEL_VERSION, make_transaction, server_settings

Stub = scoring_pb2_grpc.ScoringServiceStub


async def _healthy(stub: Stub) -> None:
    response = await stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(999)), timeout=10)
    assert response.decision.transaction_id == "tx-999"


async def test_hot_swap_under_load_fails_no_call(scoring_server: ScoringServer, stub: Stub, data_dir: Path) -> None:
    models = data_dir / "models"
    make_bundle(models, "test-model-2", train_booster(seed=11, n_trees=60, num_leaves=31))
    failures: list[BaseException] = []
    versions: list[str] = []
    stop = asyncio.Event()

    async def unary_client(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                r = await stub.Score(
                    scoring_pb2.ScoreRequest(transaction=make_transaction(k * 100_000 + i)), timeout=10
                )
                versions.append(r.decision.model_version)
            except grpc.aio.AioRpcError as exc:
                failures.append(exc)
            i += 1

    async def stream_client() -> None:
        async def requests() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
            i = 0
            while not stop.is_set():
                yield scoring_pb2.ScoreStreamRequest(transactions=[make_transaction(900_000 + i + k) for k in range(8)])
                i += 8
                await asyncio.sleep(0)

        try:
            async for response in stub.ScoreStream(requests(), timeout=60):
                for result in response.results:
                    if result.WhichOneof("result") != "decision":
                        failures.append(AssertionError(result.error.message))
                    else:
                        versions.append(result.decision.model_version)
        except grpc.aio.AioRpcError as exc:
            failures.append(exc)

    clients = [asyncio.create_task(unary_client(k)) for k in range(4)] + [asyncio.create_task(stream_client())]
    await asyncio.sleep(0.5)
    promote(models, "test-model-2")
    for _ in range(200):
        await asyncio.sleep(0.05)
        if versions and versions[-1] == "test-model-2":
            break
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*clients)
    assert not failures
    assert versions[0] == MODEL_VERSION and versions[-1] == "test-model-2"
    assert scoring_server.scorer.model.bundle.manifest.version == "test-model-2"


async def test_bundle_with_wrong_schema_is_refused_and_old_one_serves(
    scoring_server: ScoringServer, stub: Stub, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = data_dir / "models"
    bad = make_bundle(models, "wrong-schema", train_booster(seed=12))
    manifest = json.loads((bad.path / "manifest.json").read_text())
    manifest["feature_names"] = list(reversed(manifest["feature_names"]))
    (bad.path / "manifest.json").write_text(json.dumps(manifest))
    (models / "PROMOTED").write_text("wrong-schema")  # as a careless operator would, bypassing `promote`
    await asyncio.sleep(0.5)
    await _healthy(stub)
    assert scoring_server.scorer.model.bundle.manifest.version == MODEL_VERSION
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "not loaded" in r.getMessage()]
    assert errors and "feature" in str(errors[0].__dict__.get("error", ""))


async def test_hundreds_of_concurrent_streams(stub: Stub) -> None:
    async def one_stream(s: int) -> int:
        async def requests() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
            for m in range(5):
                yield scoring_pb2.ScoreStreamRequest(
                    transactions=[make_transaction(s * 1000 + m * 10 + k) for k in range(3)]
                )

        answered = 0
        async for response in stub.ScoreStream(requests(), timeout=120):
            assert [r.WhichOneof("result") for r in response.results] == ["decision"] * 3
            answered += len(response.results)
        return answered

    counts = await asyncio.gather(*(one_stream(s) for s in range(300)))
    assert counts == [15] * 300
    await _healthy(stub)


def test_expired_deadlines_leave_server_healthy(scoring_target: str) -> None:
    with grpc.insecure_channel(scoring_target) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
        request = scoring_pb2.ScoreBatchRequest(transactions=[make_transaction(i) for i in range(500)])
        with pytest.raises(grpc.RpcError) as info:
            stub.ScoreBatch(request, timeout=0.0)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # deadlines that expire in flight: grpc enforces them with timers, which on a loaded machine may run after
        # the answer has arrived; so each call either fails with DEADLINE_EXCEEDED or is answered in full
        for timeout in (1e-6, 1e-4):
            try:
                answered = len(stub.ScoreBatch(request, timeout=timeout).results)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            else:
                assert answered == 500
        assert len(stub.ScoreBatch(request, timeout=30).results) == 500


async def test_cancelled_and_expired_streams_leave_server_healthy(stub: Stub) -> None:
    gate = asyncio.Event()

    async def requests() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
        for m in range(1000):
            yield scoring_pb2.ScoreStreamRequest(transactions=[make_transaction(m)])
            if m == 3:
                gate.set()
            await asyncio.sleep(0.01)

    call = stub.ScoreStream(requests(), timeout=60)
    received = 0
    async for _ in call:
        received += 1
        if gate.is_set() and received >= 2:
            call.cancel()
            break
    assert call.cancelled()

    async def few_then_idle() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
        # no write may be in flight when the deadline fires: grpc.aio's client then reports its own failed
        # send as INTERNAL instead of the deadline (a client-side race, whatever the server does)
        for m in range(3):
            yield scoring_pb2.ScoreStreamRequest(transactions=[make_transaction(m)])
        await asyncio.sleep(5)

    # a deadline that expires mid-stream, with the stream open and answered so far
    slow = stub.ScoreStream(few_then_idle(), timeout=0.2)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in slow:
            pass
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await _healthy(stub)


# --- hypothesis: malformed transactions ------------------------------------------------------

_BAD_FIELDS = {
    "transaction_id": st.sampled_from(["", "x" * 129, "bad\nid", "\x00"]),
    "amount_minor": st.one_of(
        st.integers(min_value=-(2**63), max_value=-1), st.integers(min_value=10**15 + 1, max_value=2**63 - 1)
    ),
    "currency": st.text(max_size=6).filter(lambda c: c not in {"EUR", "USD", "GBP", "JPY"} and len(c) != 3),
    "mcc": st.integers(min_value=10_000, max_value=2**32 - 1),
    "merchant_country": st.text(min_size=1, max_size=5).filter(
        lambda c: not (len(c) == 2 and c.isupper() and c.isascii() and c.isalpha())
    ),
    "ip_address": st.text(min_size=1, max_size=60).filter(
        lambda s: any(ch not in "0123456789abcdefABCDEF:." for ch in s)
    ),
    "customer_id": st.sampled_from(["y" * 200, "tab\tinside"]),
    "channel": st.integers(min_value=7, max_value=2**31 - 1),
    "entry_mode": st.integers(min_value=7, max_value=2**31 - 1),
    "latitude": st.one_of(
        st.floats(min_value=90.0001, max_value=1e300),
        st.floats(max_value=-90.0001, min_value=-1e300),
        st.just(float("nan")),
        st.just(float("inf")),
    ),
    "longitude": st.one_of(st.floats(min_value=180.0001, max_value=1e300), st.just(float("nan"))),
    "event_seconds": st.one_of(
        st.integers(min_value=-(2**40), max_value=946_684_799), st.integers(min_value=2**34, max_value=253_402_300_799)
    ),
    "card": st.sampled_from(["missing", "empty-token", "bad-bin", "bad-last4", "bad-pan"]),
}


def _break(tx: transaction_pb2.Transaction, field: str, value: object) -> str:
    """Apply one malformation; returns the field path the server must name."""
    if field in ("latitude", "longitude"):
        setattr(tx.location, field, value)
        return f"location.{field}"
    if field == "event_seconds":
        tx.event_time.CopyFrom(Timestamp(seconds=int(value)))  # type: ignore[call-overload]
        return "event_time"
    if field == "card":
        if value == "missing":
            tx.ClearField("card")
            return "card"
        tx.card.token, path = {
            "empty-token": ("", "card.token"),
            "bad-bin": ("t", "card.bin"),
            "bad-last4": ("t", "card.last4"),
            "bad-pan": ("t", "card.pan"),
        }[str(value)]
        if value == "bad-bin":
            tx.card.bin = "12ab"
        elif value == "bad-last4":
            tx.card.last4 = "123"
        elif value == "bad-pan":
            tx.card.pan = "1234567890123"
        return path
    setattr(tx, field, value)
    return field


@st.composite
def malformed(draw: st.DrawFn) -> tuple[transaction_pb2.Transaction, str]:
    tx = make_transaction(draw(st.integers(0, 10_000)))
    field = draw(st.sampled_from(sorted(_BAD_FIELDS)))
    return tx, _break(tx, field, draw(_BAD_FIELDS[field]))


async def test_malformed_transactions_always_get_invalid_argument(scoring_server: ScoringServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scoring_server.port}") as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
        cases: list[tuple[transaction_pb2.Transaction, str]] = []

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(malformed())
        def collect(case: tuple[transaction_pb2.Transaction, str]) -> None:
            cases.append(case)

        collect()
        for tx, path in cases:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Score(scoring_pb2.ScoreRequest(transaction=tx), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, info.value.details())
            assert (info.value.details() or "").startswith("transaction." + path), (path, info.value.details())
        # the same cases inside one batch: each answered with its own error, a good one still scored
        batch = [tx for tx, _ in cases[:200]] + [make_transaction(77_777)]
        response = await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=batch), timeout=30)
        kinds = [r.WhichOneof("result") for r in response.results]
        assert kinds == ["error"] * (len(batch) - 1) + ["decision"]
        await _healthy(stub)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_server(scoring_target: str, payload: bytes) -> None:
    with grpc.insecure_channel(scoring_target) as channel:
        raw = channel.unary_unary("/fraud.v1.ScoringService/ScoreBatch")
        try:
            raw(payload, timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc.details()
        health = channel.unary_unary("/fraud.v1.ScoringService/GetModelInfo")
        assert health(b"", timeout=10)


# --- snapshots across a restart ---------------------------------------------------------------


def _stream(start: int, n: int, base: float) -> list[transaction_pb2.Transaction]:
    rng = np.random.default_rng(start)
    return [
        make_transaction(
            start + i,
            card=f"card-{rng.integers(40)}",
            amount_minor=int(rng.integers(100, 90_000)),
            when=base + (start + i) * 7.0,
        )
        for i in range(n)
    ]


async def _score_all(port: int, txs: list[transaction_pb2.Transaction]) -> list[scoring_pb2.Decision]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
        out = []
        for i in range(0, len(txs), 50):
            response = await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=txs[i : i + 50]), timeout=30)
            out += [r.decision for r in response.results]
        return out


async def test_restart_restores_state_and_gives_identical_features(tmp_path: Path, bundle_store: Path) -> None:
    import shutil

    base = 1_763_800_000.0
    first, second = _stream(0, 300, base), _stream(300, 300, base)
    dirs = {}
    for name in ("restarted", "continuous"):
        dirs[name] = tmp_path / name
        shutil.copytree(bundle_store, dirs[name] / "models")

    server = await start_server(server_settings(dirs["restarted"]))
    await _score_all(server.port, first)
    await server.stop(grace=1.0)
    assert (dirs["restarted"] / "state" / "entities.npz").exists()
    restarted = await start_server(server_settings(dirs["restarted"]))
    continuous = await start_server(server_settings(dirs["continuous"]))
    try:
        await _score_all(continuous.port, first)
        after_restart = await _score_all(restarted.port, second)
        without_restart = await _score_all(continuous.port, second)
        assert [d.score for d in after_restart] == [d.score for d in without_restart]
        assert [[(r.feature, r.value) for r in d.reasons] for d in after_restart] == [
            [(r.feature, r.value) for r in d.reasons] for d in without_restart
        ]
        probe = TransactionBatch(
            ["p"],
            [base + 10_000],
            [42.0],
            [1],
            [0],
            [0],
            [0],
            [0],
            [0],
            [0],
            [0],
            [0],
            [float("nan")],
            [float("nan")],
            [7],
        )
        np.testing.assert_array_equal(
            restarted.scorer.engine.copy().process(probe), continuous.scorer.engine.copy().process(probe)
        )
        assert restarted.scorer.engine.stats().cards_tracked == continuous.scorer.engine.stats().cards_tracked
    finally:
        await restarted.stop(grace=1.0)
        await continuous.stop(grace=1.0)


async def test_periodic_snapshots_while_serving(data_dir: Path) -> None:
    server = await start_server(server_settings(data_dir, snapshot_interval_s=0.1))
    try:
        await _score_all(server.port, _stream(0, 20, 1_763_800_000.0))
        path = data_dir / "state" / "entities.npz"
        for _ in range(100):
            await asyncio.sleep(0.05)
            if path.exists():
                break
        assert path.exists()
        await asyncio.sleep(0.3)  # a snapshot taken after the 20 transactions
        assert FeatureEngine.load(path).stats().cards_tracked == server.scorer.engine.stats().cards_tracked > 0
    finally:
        await server.stop(grace=1.0)

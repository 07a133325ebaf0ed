"""Every RPC of fraud.v1.ScoringService, health and reflection, against a real server on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc, transaction_pb2
from scoring.features import FEATURE_NAMES, N_FEATURES
from scoring.server import ScoringServer
from tests.conftest import MODEL_VERSION, make_transaction

T = TypeVar("T")
Stub = scoring_pb2_grpc.ScoringServiceStub
ACTIONS = {scoring_pb2.ACTION_ALLOW, scoring_pb2.ACTION_CHALLENGE, scoring_pb2.ACTION_REVIEW, scoring_pb2.ACTION_BLOCK}


def check_decision(decision: scoring_pb2.Decision, transaction_id: str) -> None:
    assert decision.transaction_id == transaction_id
    assert 0.0 <= decision.score <= 1.0
    assert decision.action in ACTIONS
    assert decision.model_version == MODEL_VERSION
    assert decision.server_time_us > 0
    assert len(decision.reasons) == 3
    contributions = [r.contribution for r in decision.reasons]
    assert contributions == sorted(contributions, reverse=True)
    for reason in decision.reasons:
        assert reason.feature in FEATURE_NAMES and reason.text


async def test_score(stub: Stub) -> None:
    response = await stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(1)), timeout=10)
    check_decision(response.decision, "tx-1")


async def test_score_with_pan_tokenizes_it(stub: Stub) -> None:
    tx = make_transaction(2, card=None)
    tx.card.Clear()
    tx.card.pan = "4111 1111 1111 1111"
    response = await stub.Score(scoring_pb2.ScoreRequest(transaction=tx), timeout=10)
    check_decision(response.decision, "tx-2")
    tx.card.pan = "4111111111111112"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Score(scoring_pb2.ScoreRequest(transaction=tx), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transaction.card.pan" in (info.value.details() or "")
    assert "4111111111111112" not in (info.value.details() or "")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"currency": "XXY"}, "transaction.currency"),
        ({"amount_minor": -5}, "transaction.amount_minor"),
        ({"transaction_id": ""}, "transaction.transaction_id"),
        ({"merchant_country": "germany"}, "transaction.merchant_country"),
        ({"mcc": 12345}, "transaction.mcc"),
        ({"ip_address": "not an ip"}, "transaction.ip_address"),
        ({"location": transaction_pb2.GeoPoint(latitude=91, longitude=0)}, "transaction.location.latitude"),
        ({"channel": 99}, "transaction.channel"),
        ({"when": 10.0}, "transaction.event_time"),
        ({"billing_country": "fr"}, "transaction.billing_country"),
        ({"shipping_country": "FRA"}, "transaction.shipping_country"),
        ({"email": "ann.example.com"}, "transaction.email"),
    ],
)
async def test_score_rejects_bad_fields_by_name(stub: Stub, change: dict[str, object], field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(3, **change)), timeout=10)  # type: ignore[arg-type]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith(field + ":")


async def test_score_takes_the_card_country_the_billing_and_shipping_countries_and_the_email(stub: Stub) -> None:
    tx = make_transaction(4, billing_country="FR", shipping_country="BE", email="ann@example.com")
    tx.card.country = "US"
    response = await stub.Score(scoring_pb2.ScoreRequest(transaction=tx), timeout=10)
    check_decision(response.decision, "tx-4")
    tx.card.country = "usa"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Score(scoring_pb2.ScoreRequest(transaction=tx), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("transaction.card.country:")


async def test_score_without_transaction(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Score(scoring_pb2.ScoreRequest(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transaction" in (info.value.details() or "")


async def test_score_batch_answers_bad_items_individually(stub: Stub) -> None:
    txs = [make_transaction(i) for i in range(10)]
    txs[4].currency = "???"
    txs[7].ClearField("card")
    response = await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=txs), timeout=10)
    assert [r.transaction_id for r in response.results] == [f"tx-{i}" for i in range(10)]
    for i, result in enumerate(response.results):
        if i in (4, 7):
            assert result.WhichOneof("result") == "error"
            assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert result.error.field == {4: "transactions[4].currency", 7: "transactions[7].card"}[i]
        else:
            check_decision(result.decision, f"tx-{i}")


async def test_score_batch_limit(stub: Stub, scoring_server: ScoringServer) -> None:
    too_many = scoring_server.settings.max_batch + 1
    request = scoring_pb2.ScoreBatchRequest(transactions=[make_transaction(i) for i in range(too_many)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ScoreBatch(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transactions" in (info.value.details() or "")


async def test_score_stream_pipelines_and_keeps_ids(stub: Stub) -> None:
    async def requests() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
        for m in range(20):
            txs = [make_transaction(m * 10 + k) for k in range(m % 4 + 1)]
            if m == 5:
                txs[0].amount_minor = -1
            yield scoring_pb2.ScoreStreamRequest(transactions=txs)

    call = stub.ScoreStream(requests(), timeout=30)
    seen = 0
    async for m, response in _enumerate(call):
        assert [r.transaction_id for r in response.results] == [f"tx-{m * 10 + k}" for k in range(m % 4 + 1)]
        for r in response.results:
            if m == 5 and r.transaction_id == "tx-50":
                assert r.error.field == "transactions[0].amount_minor"
            else:
                check_decision(r.decision, r.transaction_id)
        seen += 1
    assert seen == 20


async def _enumerate(call: AsyncIterator[T]) -> AsyncIterator[tuple[int, T]]:
    i = 0
    async for item in call:
        yield i, item
        i += 1


async def test_get_model_info(stub: Stub) -> None:
    info = await stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=10)
    assert info.model_version == MODEL_VERSION
    assert [f.name for f in info.features] == list(FEATURE_NAMES) and len(info.features) == N_FEATURES
    assert [t.action for t in info.thresholds] == [
        scoring_pb2.ACTION_CHALLENGE,
        scoring_pb2.ACTION_REVIEW,
        scoring_pb2.ACTION_BLOCK,
    ]
    assert [t.min_score for t in info.thresholds] == pytest.approx([0.3, 0.6, 0.9])
    assert info.loaded_at.seconds > 0 and info.metrics["auc"] == pytest.approx(0.91)


async def test_report_outcome(stub: Stub) -> None:
    await stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(42)), timeout=10)
    fraud = scoring_pb2.ReportOutcomeRequest(transaction_id="tx-42", outcome=scoring_pb2.OUTCOME_FRAUD)
    assert (await stub.ReportOutcome(fraud, timeout=10)).applied
    unknown = scoring_pb2.ReportOutcomeRequest(transaction_id="never-scored", outcome=scoring_pb2.OUTCOME_FRAUD)
    assert not (await stub.ReportOutcome(unknown, timeout=10)).applied
    for bad, field in [
        (scoring_pb2.ReportOutcomeRequest(transaction_id="tx-42"), "outcome"),
        (scoring_pb2.ReportOutcomeRequest(outcome=scoring_pb2.OUTCOME_FRAUD), "transaction_id"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ReportOutcome(bad, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith(field)


async def test_undecodable_bytes_are_invalid_argument(scoring_server: ScoringServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scoring_server.port}") as channel:
        raw = channel.unary_unary("/fraud.v1.ScoringService/Score", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await raw(b"\xff\xff\xff\xff garbage", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid fraud.v1.ScoreRequest" in (info.value.details() or "")


async def test_health(scoring_server: ScoringServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scoring_server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "fraud.v1.ScoringService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_methods(scoring_target: str) -> None:
    with grpc.insecure_channel(scoring_target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = database.get_services()
        assert "fraud.v1.ScoringService" in services and "grpc.health.v1.Health" in services
        pool = DescriptorPool(database)
        service = pool.FindServiceByName("fraud.v1.ScoringService")
        methods = {m.name for m in service.methods}
    assert {"Score", "ScoreStream", "ScoreBatch", "GetModelInfo"} <= methods
    assert service.methods_by_name["ScoreStream"].client_streaming

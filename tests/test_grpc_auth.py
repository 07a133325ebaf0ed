"""API-key checking in a real grpc.aio server on port 0: the real scoring service (raw-bytes handlers), a raw test
service of every streaming kind, health and reflection; keys in the real PostgreSQL of each server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudguard.apikeys import ApiKeyVerifier, CreatedKey, create_key, revoke_key
from fraudguard.db import Database
from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc
from fraudguard.security.pan import PanTokenizer
from scoring.auth import bearer_token, make_auth_interceptor
from scoring.features import EngineCapacity, FeatureEngine
from scoring.model import load_promoted
from scoring.scorer import Scorer
from scoring.server import warm_up
from scoring.servicer import ScoringServicer, add_scoring_service
from tests._server_process import ServerProcess
from tests.conftest import make_transaction

ECHO = "test.Echo"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True)
class Keys:
    admin: CreatedKey
    scorer: CreatedKey
    analyst: CreatedKey
    revoked: CreatedKey
    expired: CreatedKey  # expires in an hour; the server's clock runs a day ahead


@dataclass(frozen=True)
class Served:
    channel: grpc.aio.Channel
    keys: Keys
    db: Database

    @property
    def stub(self) -> scoring_pb2_grpc.ScoringServiceStub:
        return scoring_pb2_grpc.ScoringServiceStub(self.channel)  # type: ignore[no-untyped-call]


def _echo_service() -> grpc.GenericRpcHandler:
    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    async def server_stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield request
        yield request

    async def client_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        return b"".join([r async for r in requests])

    return grpc.method_handlers_generic_handler(ECHO, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    })


@pytest.fixture
async def served(dsn: str, tmp_path: Path, data_dir: Path) -> AsyncIterator[Served]:
    db = await Database.open(dsn, tmp_path / "db", max_size=4)
    now = datetime.now(UTC)
    keys = Keys(*[await create_key(db, roles, expires, "", "test") for roles, expires in [
        (["admin"], None), (["scorer"], None), (["analyst"], None), (["scorer"], None),
        (["scorer"], now + timedelta(hours=1)),
    ]])
    await revoke_key(db, keys.revoked.key.id, "test")
    verifier = ApiKeyVerifier(db, now=lambda: datetime.now(UTC) + timedelta(days=1))
    server = grpc.aio.server(interceptors=[make_auth_interceptor(verifier)])
    scorer = Scorer(FeatureEngine(EngineCapacity(4096, 4096, 8192)), load_promoted(data_dir / "models"))
    # as the server does before it binds: on a fresh checkout the first call would compile the kernels (tens of s)
    await asyncio.to_thread(warm_up, scorer, PanTokenizer(b"w" * 32))
    add_scoring_service(ScoringServicer(scorer, PanTokenizer(bytes(32)), 1024), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((ECHO, reflection.SERVICE_NAME), server)
    server.add_generic_rpc_handlers((_echo_service(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(channel, keys, db)
    finally:
        await server.stop(grace=None)
        scorer.close()
        await db.close()


def _auth(key: CreatedKey | str | None) -> tuple[tuple[str, str], ...]:
    if key is None:
        return ()
    return (("authorization", f"Bearer {key if isinstance(key, str) else key.secret}"),)


async def _score(s: Served, key: CreatedKey | str | None) -> scoring_pb2.ScoreResponse:
    request = scoring_pb2.ScoreRequest(transaction=make_transaction(1))
    response: scoring_pb2.ScoreResponse = await s.stub.Score(request, metadata=_auth(key), timeout=10)
    return response


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_health_and_reflection_need_no_key(served: Served) -> None:
    stub = health_pb2_grpc.HealthStub(served.channel)
    answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    async for response in reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                       timeout=10):
        assert ECHO in {s.name for s in response.list_services_response.service}


async def test_the_right_role_passes(served: Served) -> None:
    k = served.keys
    for key in (k.scorer, k.admin):
        response = await _score(served, key)
        assert response.decision.transaction_id == "tx-1"
    for key in (k.scorer, k.analyst, k.admin):
        info = await served.stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), metadata=_auth(key), timeout=10)
        assert info.model_version
    for key in (k.scorer, k.analyst, k.admin):
        outcome = scoring_pb2.ReportOutcomeRequest(transaction_id="tx-1", outcome=scoring_pb2.OUTCOME_FRAUD)
        assert (await served.stub.ReportOutcome(outcome, metadata=_auth(key), timeout=10)).applied

    async def requests() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
        for i in range(3):
            yield scoring_pb2.ScoreStreamRequest(transactions=[make_transaction(10 + i)])

    answers = [r async for r in served.stub.ScoreStream(requests(), metadata=_auth(k.scorer), timeout=10)]
    assert len(answers) == 3


@pytest.mark.parametrize(
    ("which", "words"),
    [
        (None, "authorization: Bearer"),
        ("malformed", "malformed"),
        ("unknown", "unknown API key 0123456789abcdef"),
        ("wrong-secret", "unknown API key"),
        ("revoked", "revoked"),
        ("expired", "expired"),
    ],
)
async def test_bad_keys_are_unauthenticated_without_echoing_them(served: Served, which: str | None,
                                                                 words: str) -> None:
    k = served.keys
    presented = {
        None: None,
        "malformed": "fgk_not_a_key_but_a_secret_password",
        "unknown": "fgk_0123456789abcdef_" + "S" * 43,
        "wrong-secret": k.scorer.secret[:-3] + "zzz",
        "revoked": k.revoked.secret,
        "expired": k.expired.secret,
    }[which]
    error = await _refused(_score(served, presented))
    assert error.code() == UNAUTHENTICATED
    details = error.details() or ""
    assert words in details
    if presented is not None:
        secret = presented.split("_", 2)[-1]  # after "fgk_<id>_" (the secret itself may hold "_")
        assert presented not in details and secret not in details


async def test_streams_are_refused_before_reading(served: Served) -> None:
    async def requests() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
        # the refusal must come without any message sent (and a message sent while the server closes the call
        # races with the status: grpc's client may then report INTERNAL "Failed execute_batch" instead)
        await asyncio.sleep(30)
        yield scoring_pb2.ScoreStreamRequest(transactions=[make_transaction(1)])

    call = served.stub.ScoreStream(requests(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == UNAUTHENTICATED
    call = served.stub.ScoreStream(requests(), metadata=_auth(served.keys.analyst), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == DENIED


async def test_wrong_role_is_permission_denied(served: Served) -> None:
    error = await _refused(_score(served, served.keys.analyst))
    assert error.code() == DENIED
    assert served.keys.analyst.key.id in (error.details() or "") and "scorer" in (error.details() or "")


def _echo_calls(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> list[Any]:
    async def two() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    unary = channel.unary_unary(f"/{ECHO}/Unary")
    stream = channel.stream_stream(f"/{ECHO}/Stream")
    server_stream = channel.unary_stream(f"/{ECHO}/ServerStream")
    client_stream = channel.stream_unary(f"/{ECHO}/ClientStream")
    return [unary(b"x", metadata=metadata, timeout=10), stream(two(), metadata=metadata, timeout=10),
            server_stream(b"x", metadata=metadata, timeout=10), client_stream(two(), metadata=metadata, timeout=10)]


async def _outcome(call: Any) -> Any:
    if hasattr(call, "__aiter__"):
        return [item async for item in call]
    return await call


async def test_unlisted_methods_need_admin_for_every_kind_of_handler(served: Served) -> None:
    answers = [await _outcome(c) for c in _echo_calls(served.channel, _auth(served.keys.admin))]
    assert answers == [b"x", [b"a", b"b"], [b"x", b"x"], b"ab"]
    for metadata, code in [(_auth(served.keys.scorer), DENIED), ((), UNAUTHENTICATED)]:
        for call in _echo_calls(served.channel, metadata):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await _outcome(call)
            assert info.value.code() == code


async def test_unknown_methods_stay_unimplemented(served: Served) -> None:
    call = served.channel.unary_unary("/no.Such/Method")(b"", metadata=_auth(served.keys.admin), timeout=10)
    assert (await _refused(call)).code() == grpc.StatusCode.UNIMPLEMENTED


async def test_database_down_is_unavailable_for_uncached_keys_only(served: Served) -> None:
    await _score(served, served.keys.scorer)  # now cached
    await served.db.close()
    assert (await _score(served, served.keys.scorer)).decision.transaction_id == "tx-1"
    error = await _refused(_score(served, served.keys.analyst))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "retry" in (error.details() or "")


async def test_repeated_or_non_bearer_authorization_is_refused(served: Served) -> None:
    secret = served.keys.scorer.secret
    for metadata in [(("authorization", f"Bearer {secret}"), ("authorization", f"Bearer {secret}")),
                     (("authorization", f"Basic {secret}"),), (("authorization", secret),),
                     (("authorization", "Bearer "),)]:
        request = scoring_pb2.ScoreRequest(transaction=make_transaction(1))
        error = await _refused(served.stub.Score(request, metadata=metadata, timeout=10))
        assert error.code() == UNAUTHENTICATED
    request = scoring_pb2.ScoreRequest(transaction=make_transaction(1))
    answer = await served.stub.Score(request, metadata=(("authorization", f"bearer  {secret} "),), timeout=10)
    assert answer.decision.transaction_id == "tx-1"


# printable ASCII: what gRPC lets a client put in a text metadata value
_header = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(_header, _header.map(lambda v: "Bearer " + v),
                       _header.map(lambda v: "Bearer fgk_0123456789abcdef_" + v)))
async def test_hostile_authorization_values_get_unauthenticated(served: Served, value: str) -> None:
    request = scoring_pb2.ScoreRequest(transaction=make_transaction(1))
    error = await _refused(served.stub.Score(request, metadata=(("authorization", value),), timeout=10))
    assert error.code() == UNAUTHENTICATED


def test_bearer_token_parsing() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("Authorization", "BEARER abc ")]) == "abc"
    assert bearer_token([("authorization", b"Bearer abc")]) is None
    assert bearer_token([("x-other", "Bearer abc")]) is None
    assert bearer_token([]) is None


async def test_fraudguard_serve_with_auth_takes_a_key_made_by_the_cli(tmp_path: Path, bundle_store: Path,
                                                                      dsn: str) -> None:
    """End to end: `fraudguard keys create` makes a key, `fraudguard serve` with FRAUDGUARD_AUTH=true accepts it
    and refuses a call without it."""
    data = tmp_path / "data"
    shutil.copytree(bundle_store, data / "models")
    env = {**os.environ, "FRAUDGUARD_DATABASE_URL": dsn, "FRAUDGUARD_DATA_DIR": str(data)}
    made = subprocess.run([sys.executable, "-m", "fraudguard.cli", "keys", "create", "--role", "scorer",
                           "--note", "e2e"], env=env, capture_output=True, text=True, timeout=120, check=True)
    secret = made.stdout.strip().splitlines()[-1].strip()
    assert secret.startswith("fgk_") and "shown only this once" in made.stderr
    server = ServerProcess(data, ("--max-cards", "4096", "--max-entities", "4096"),
                           env={"FRAUDGUARD_AUTH": "true", "FRAUDGUARD_DATABASE_URL": dsn}).start()
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            request = scoring_pb2.ScoreRequest(transaction=make_transaction(1))
            answer = await stub.Score(request, metadata=_auth(secret), timeout=10)
            assert answer.decision.transaction_id == "tx-1"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Score(request, timeout=10)
            assert refused.value.code() == UNAUTHENTICATED
    finally:
        assert server.terminate() == 0
    assert secret not in "\n".join(server.log_lines)

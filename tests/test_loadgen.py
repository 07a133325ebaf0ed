"""``fraudguard bench``: the open-loop bookkeeping with a fake clock, and short real runs against a server (gRPC)
and against a gateway in front of one (REST)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.loadgen import main
from benchmarks.loadgen_client import ClientPlan
from benchmarks.loadgen_report import RunParameters, RunSummary, markdown_table
from benchmarks.loadgen_rest_client import RestClient
from benchmarks.loadgen_rest_http import Answer, ConnectionPool, ExchangeError, Origin, build_request
from benchmarks.loadgen_rest_json import batch_outcome, request_bodies, score_outcome
from benchmarks.loadgen_schedule import OpenLoopSchedule, RawResult, Recorder, Window, run_schedule
from benchmarks.loadgen_server import serving_port, spawned_gateway, spawned_server
from benchmarks.loadgen_transactions import TransactionFactory, serialized_requests, synthetic_transactions
from benchmarks.loadgen_workers import TRAFFIC_SOURCES, Traffic, prepare_requests, split_plan
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.pan import PanTokenizer
from gateway import schemas
from gateway.convert import transaction_message
from scoring.serde import batch_from_proto
from tests._server_process import ServerProcess
from tests.conftest import make_transaction


class FakeClock:
    """Time that moves only when told to; ``sleep`` advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


# --- the open-loop schedule and recorder (no server) -------------------------------------


def test_schedule_hands_out_each_request_once_at_its_intended_time() -> None:
    schedule = OpenLoopSchedule(rate=4.0, start=10.0, end=11.0)
    assert schedule.due(9.99) == []
    assert schedule.due(10.3) == [(0, 10.0), (1, 10.25)]
    assert schedule.due(10.3) == []
    assert schedule.due(20.0) == [(2, 10.5), (3, 10.75)]
    assert schedule.finished


def test_schedule_refuses_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        OpenLoopSchedule(rate=0.0, start=0.0, end=1.0)


def test_stalled_client_latency_is_counted_from_the_intended_send_time() -> None:
    """The client freezes for 1 s after sending request 1; the server always answers in 10 ms.

    Requests 2-5 were due during the freeze and go out together at t=1.25. Measured from
    the intended time they waited 0.76, 0.51, 0.26 and 0.01 s; measured from the actual send
    (what a closed-loop generator reports) every request would look like 10 ms.
    """
    clock = FakeClock()
    recorder = Recorder(Window(0.0, 3.0))
    emitted: list[list[int]] = []

    def emit(due: list[tuple[int, float]]) -> None:
        emitted.append([i for i, _ in due])
        for i, intended in due:
            sent = clock()
            assert sent >= intended, "sent before its time"
            recorder.sent(intended, sent)
            recorder.succeeded(intended, sent, sent + 0.01, transactions=1, server_time_us=50.0)
            if i == 1:
                clock.sleep(1.0)

    run_schedule(OpenLoopSchedule(rate=4.0, start=0.0, end=3.0), clock, clock.sleep, emit)

    assert emitted[:3] == [[0], [1], [2, 3, 4, 5]]
    result = recorder.result()
    assert result.requests_ok == 12
    np.testing.assert_allclose(result.latency_s[2:6], [0.76, 0.51, 0.26, 0.01])
    np.testing.assert_allclose(result.service_s, np.full(12, 0.01))
    assert result.late_sends == 3  # requests 2, 3 and 4; request 5 was due at 1.25 and left at 1.25
    assert result.max_send_lag_s == pytest.approx(0.75)


def test_recorder_counts_only_requests_intended_inside_the_window() -> None:
    recorder = Recorder(Window(1.0, 2.0))
    for intended in (0.5, 1.0, 1.5, 2.0):
        recorder.sent(intended, intended)
        recorder.succeeded(intended, intended, intended + 0.002, transactions=4, server_time_us=20.0,
                           item_errors=Counter({"INVALID_ARGUMENT": 1}))
    recorder.failed(0.9, "UNAVAILABLE")
    recorder.failed(1.9, "DEADLINE_EXCEEDED")
    result = recorder.result()
    assert (result.requests_ok, result.transactions_ok, result.sends) == (2, 8, 2)
    assert result.rpc_errors == {"DEADLINE_EXCEEDED": 1}
    assert result.item_errors == {"INVALID_ARGUMENT": 2}


def test_merged_results_give_exact_percentiles_and_summed_counts() -> None:
    def raw(latencies: list[float], errors: dict[str, int]) -> RawResult:
        n = len(latencies)
        return RawResult(np.array(latencies), np.array(latencies), np.full(n, 10.0), np.full(n, 2, np.int64),
                         n, 2 * n, errors, {}, n, 0, 0.0)

    merged = RawResult.merge([raw([0.001] * 99, {"UNAVAILABLE": 1}), raw([0.101], {"UNAVAILABLE": 2})])
    params = RunParameters("r", "batch", "closed", 2, 4, 1, None, 2.0, 0.0, 2)
    summary = RunSummary.of(params, merged)
    assert summary.requests_per_s == 50.0
    assert summary.transactions_per_s == 100.0
    assert summary.latency_us.max == pytest.approx(101_000.0)
    assert summary.latency_us.p50 == pytest.approx(1_000.0)
    assert summary.server_time_us.count == 200  # weighted per transaction
    assert summary.rpc_errors == {"UNAVAILABLE": 3}


def test_split_plan_shares_rate_and_concurrency() -> None:
    plan = ClientPlan("h:1", "score", "closed", 900.0, 7, 1, 1, 1.0, 0.0, 1.0)
    shares = split_plan(plan, 3)
    assert [s.concurrency for s in shares] == [3, 2, 2]
    assert [s.rate for s in shares] == [300.0] * 3


def test_serving_port_is_read_from_the_servers_json_log_line() -> None:
    assert serving_port('{"msg": "serving", "host": "127.0.0.1", "port": 40123}') == 40123
    assert serving_port('{"msg": "model swapped in", "port": 1}') is None
    assert serving_port("fraudguard scoring server on 127.0.0.1:40123") is None
    assert serving_port('{"msg": "serving", "port": "x"}') is None


def test_generated_transactions_are_varied_and_unique() -> None:
    transactions = TransactionFactory(seed=1).build(2_000, stream_seed=2, id_prefix="t", now=1_800_000_000.0)
    ids = {tx.transaction_id for tx in transactions}
    assert len(ids) == 2_000
    assert len({tx.card.token for tx in transactions}) > 1_000
    assert len({tx.merchant_id for tx in transactions}) > 500
    assert len({tx.currency for tx in transactions}) > 5
    assert any(tx.HasField("location") for tx in transactions)
    assert any(not tx.device_id for tx in transactions) and any(tx.device_id for tx in transactions)
    times = [tx.event_time.seconds for tx in transactions]
    assert min(times) >= 1_800_000_000 - 3_600 and max(times) < 1_800_000_000


def test_synthetic_transactions_end_just_before_now_with_our_ids() -> None:
    now = 1_800_000_000.0
    transactions = synthetic_transactions(1_000, seed=1, id_prefix="s", now=now)
    times = [tx.event_time.seconds for tx in transactions]
    assert now - 8 * 86_400 < min(times) and max(times) == now - 60
    assert len({tx.transaction_id for tx in transactions}) == 1_000
    assert all(tx.transaction_id.startswith("s-") for tx in transactions)


@pytest.mark.parametrize("source", TRAFFIC_SOURCES)
def test_every_traffic_source_passes_the_servers_validation(source: str) -> None:
    plan = ClientPlan("h:1", "batch", "closed", 0.0, 1, 1, 500, 1.0, 0.0, 1.0)
    requests = prepare_requests(plan, Traffic(seed=3, pool_size=2_000, run_tag="v", source=source), worker=0)
    transactions = [tx for r in requests for tx in scoring_pb2.ScoreBatchRequest.FromString(r).transactions]
    batch, failures = batch_from_proto(transactions, "transactions", time.time(), PanTokenizer(bytes(32)))
    assert failures == [] and len(batch) == 2_000
    assert len({tx.transaction_id for tx in transactions}) == 2_000
    assert len({tx.card.token for tx in transactions}) > 200


def test_requests_carry_batch_size_transactions() -> None:
    transactions = TransactionFactory(seed=1).build(130, stream_seed=2, id_prefix="t")
    requests = serialized_requests(transactions, "batch", 64)
    assert len(requests) == 2
    assert len(scoring_pb2.ScoreBatchRequest.FromString(requests[1]).transactions) == 64
    score = serialized_requests(transactions[:3], "score", 1)
    assert scoring_pb2.ScoreRequest.FromString(score[2]).transaction == transactions[2]


# --- the command line against a real server ------------------------------------------------


def _run_json(tmp_path: Path, argv: list[str]) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "report.json"
    assert main([*argv, "--output", str(out)]) == 0
    document: dict = json.loads(out.read_text())  # type: ignore[type-arg]
    return document


def test_open_loop_run_reports_throughput_latency_and_machine(scoring_target: str, tmp_path: Path) -> None:
    document = _run_json(tmp_path, ["--target", scoring_target, "--rpc", "score", "--mode", "open", "--rate", "50",
                                    "--duration", "1.5", "--warmup", "0.3", "--pool-size", "500"])
    assert {"tool", "format", "timestamp", "machine", "parameters", "target", "model_version", "runs"} <= set(document)
    assert {"cpu_count", "python", "grpcio"} <= set(document["machine"])
    assert document["parameters"]["rate"] == 50.0
    (run,) = document["runs"]
    assert run["transactions_per_s"] > 0 and run["requests_per_s"] > 0
    assert set(run["latency_us"]) >= {"p50", "p90", "p99", "p99_9", "max"}
    assert 0 < run["latency_us"]["p50"] <= run["latency_us"]["p99"] <= run["latency_us"]["max"]
    assert run["server_time_us"]["p50"] > 0
    assert run["rpc_errors"] == {} and run["item_errors"] == {}
    assert run["sends"] == 75


def test_closed_loop_runs_every_rpc(scoring_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = _run_json(tmp_path, ["--target", scoring_target, "--rpc", "all", "--mode", "closed",
                                    "--concurrency", "2", "--batch-size", "16", "--duration", "1", "--warmup", "0.2",
                                    "--pool-size", "500"])
    runs = {run["parameters"]["rpc"]: run for run in document["runs"]}
    assert set(runs) == {"score", "stream", "batch"}
    for run in runs.values():
        assert run["transactions_ok"] > 0
        assert run["rpc_errors"] == {} and run["item_errors"] == {}
    assert runs["batch"]["transactions_per_s"] == pytest.approx(16 * runs["batch"]["requests_per_s"])
    assert "| run | tx/s |" in capsys.readouterr().out


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fraudguard test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_target_is_reached_with_its_ca(data_dir: Path, tmp_path: Path) -> None:
    cert, key = _self_signed_certificate(tmp_path)
    server = ServerProcess(data_dir, extra_args=("--tls-cert", str(cert), "--tls-key", str(key))).start()
    try:
        document = _run_json(tmp_path, ["--target", server.target, "--tls-ca", str(cert), "--rpc", "stream",
                                        "--batch-size", "8", "--duration", "1", "--warmup", "0.2",
                                        "--pool-size", "200"])
    finally:
        server.terminate()
    assert document["runs"][0]["transactions_ok"] > 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_target_exits_non_zero_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{_closed_port()}"
    assert main(["--target", target, "--timeout", "0.5", "--duration", "1"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("fraudguard bench: ") and target in err


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--rpc", "score", "--batch-size", "4"])
    assert exc.value.code == 2


# --- REST: JSON bodies, answers, the client against a fake transport ------------------------


def _to_the_microsecond(tx: transaction_pb2.Transaction) -> transaction_pb2.Transaction:
    out = transaction_pb2.Transaction()
    out.CopyFrom(tx)
    out.event_time.nanos -= out.event_time.nanos % 1_000
    return out


@pytest.mark.parametrize("source", TRAFFIC_SOURCES)
def test_rest_bodies_are_what_the_gateway_takes_and_mean_the_same_transactions(source: str) -> None:
    now = 1_800_000_000.0
    if source == "synthetic":
        transactions = synthetic_transactions(1_000, seed=3, id_prefix="j", now=now)
    else:
        transactions = TransactionFactory(seed=3).build(1_000, stream_seed=4, id_prefix="j", now=now)
    bodies = request_bodies(transactions, "score", 1)
    assert len(bodies) == 1_000
    for body, tx in zip(bodies, transactions, strict=True):
        request = schemas.ScoreRequest.model_validate_json(body)  # the gateway's own schema, extra fields refused
        assert request.transaction.event_time.tzinfo is not None
        assert transaction_message(request.transaction) == _to_the_microsecond(tx)


def test_rest_body_carries_every_field_that_is_set() -> None:
    tx = make_transaction(7, channel=transaction_pb2.CHANNEL_IN_APP, entry_mode=transaction_pb2.ENTRY_MODE_WALLET,
                          billing_country="FR", shipping_country="BE", email="payer@example.com")
    tx.card.country = "DE"
    tx.card.pan = "4111111111111111"
    body = orjson.loads(request_bodies([tx], "score", 1)[0])["transaction"]
    assert body["channel"] == "in_app" and body["entry_mode"] == "wallet"
    assert body["card"]["country"] == "DE" and body["email"] == "payer@example.com"
    assert body["event_time"].endswith("+00:00")
    request = schemas.ScoreRequest.model_validate(orjson.loads(request_bodies([tx], "score", 1)[0]))
    assert transaction_message(request.transaction) == _to_the_microsecond(tx)


def test_rest_plans_get_json_bodies_of_the_same_traffic() -> None:
    traffic = Traffic(seed=3, pool_size=200, run_tag="j", source="builtin")
    rest = ClientPlan("http://h:1", "batch", "closed", 0.0, 1, 1, 50, 1.0, 0.0, 1.0, protocol="rest")
    grpc = ClientPlan("h:1", "batch", "closed", 0.0, 1, 1, 50, 1.0, 0.0, 1.0)
    bodies = prepare_requests(rest, traffic, worker=0)
    messages = prepare_requests(grpc, traffic, worker=0)
    assert len(bodies) == len(messages) == 4
    ids = [t.transaction_id for b in bodies for t in schemas.ScoreBatchRequest.model_validate_json(b).transactions]
    assert ids == [t.transaction_id for m in messages for t in scoring_pb2.ScoreBatchRequest.FromString(m).transactions]


def test_rest_batch_bodies_carry_batch_size_transactions() -> None:
    transactions = TransactionFactory(seed=1).build(130, stream_seed=2, id_prefix="t")
    bodies = request_bodies(transactions, "batch", 64)
    assert len(bodies) == 2
    batch = schemas.ScoreBatchRequest.model_validate_json(bodies[1])
    assert [t.transaction_id for t in batch.transactions] == [tx.transaction_id for tx in transactions[64:128]]
    with pytest.raises(ValueError, match="stream"):
        request_bodies(transactions, "stream", 1)


def _decision(transaction_id: str, server_time_us: float = 42.0) -> dict[str, object]:
    return {"transaction_id": transaction_id, "score": 0.1, "action": "allow", "reasons": [], "rule_hits": [],
            "model_version": "m", "rule_set_version": "r", "server_time_us": server_time_us}


def test_rest_answers_give_scored_count_server_time_and_item_errors() -> None:
    assert score_outcome(orjson.dumps({"decision": _decision("a", 17.5)})) == (1, 17.5, None)
    results = [{"transaction_id": "a", "decision": _decision("a", 9.0)},
               {"transaction_id": "b", "error": {"code": 3, "field": "transactions[1].currency", "message": "x"}},
               {"transaction_id": "c", "decision": _decision("c", 9.0)}]
    assert batch_outcome(orjson.dumps({"results": results})) == (2, 9.0, Counter({"INVALID_ARGUMENT": 1}))


class FakeGateway:
    """Stands in for the connection pool: answers /healthz, scores every request but every fourth (503)."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.closed = False

    async def exchange(self, request: bytes) -> Answer:
        head, _, body = request.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        if path == "/healthz":
            return Answer(200, b'{"status": "ok", "checks": {}}')
        self.paths.append(f"{method} {path}")
        assert "content-type: application/json" in lines and f"content-length: {len(body)}" in lines
        if len(self.paths) % 4 == 0:
            return Answer(503, b'{"title": "unavailable"}')
        tx = orjson.loads(body)["transaction"]
        return Answer(200, orjson.dumps({"decision": _decision(tx["transaction_id"])}))

    async def close(self) -> None:
        self.closed = True


def _bodies(n: int) -> list[bytes]:
    return request_bodies(TransactionFactory(seed=1).build(n, stream_seed=2, id_prefix="m"), "score", 1)


def test_rest_client_closed_loop_counts_answers_and_http_errors() -> None:
    gateway = FakeGateway()
    plan = ClientPlan("http://gateway.test", "score", "closed", 0.0, 3, 1, 1, 0.3, 0.05, 1.0, protocol="rest")
    result = asyncio.run(RestClient(plan, _bodies(10), pool=gateway).run())
    assert result.requests_ok > 0 and result.transactions_ok == result.requests_ok
    assert result.rpc_errors["HTTP_503"] > 0
    assert result.sends == result.requests_ok + result.rpc_errors["HTTP_503"]
    np.testing.assert_allclose(result.server_time_us, 42.0)
    assert set(gateway.paths) == {"POST /v1/score"} and gateway.closed


def test_rest_client_open_loop_sends_on_schedule() -> None:
    gateway = FakeGateway()
    plan = ClientPlan("http://gateway.test/", "score", "open", 200.0, 1, 1, 1, 0.25, 0.05, 1.0, protocol="rest")
    result = asyncio.run(RestClient(plan, _bodies(10), pool=gateway).run())
    assert result.sends == 50
    assert result.requests_ok + sum(result.rpc_errors.values()) == 50
    assert len(gateway.paths) == 60  # the warm-up's 10 as well


# --- REST: the HTTP/1.1 client against scripted servers -------------------------------------


ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"ok\": true}"


class ScriptedServer:
    """A loopback HTTP server that reads one request head at a time and writes the next scripted answer, closing
    the connection after an answer that says ``connection: close``; ``None`` says nothing and holds the connection
    until the client gives up. ``requests`` counts the requests of each connection."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self._answers = answers
        self.requests: list[int] = []
        self._handlers: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Origin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return Origin.parse(f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}")

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(asyncio.gather(*self._handlers), 5)  # each ends when its client hangs up
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append(task)
        self.requests.append(0)
        try:
            while self._answers:
                await reader.readuntil(b"\r\n\r\n")
                self.requests[-1] += 1
                answer = self._answers.pop(0)
                if answer is None:
                    await reader.read()  # until the client closes
                    return
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer:
                    return
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


CLOSING = ANSWER.replace(b"content-length", b"connection: close\r\ncontent-length")


async def test_http_client_keeps_connections_alive_and_honours_connection_close() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
               b"5\r\n{\"ok\"\r\n7\r\n: true}\r\n0\r\n\r\n")
    server = ScriptedServer([ANSWER, CLOSING, chunked, ANSWER])
    async with server as origin:
        pool = ConnectionPool(origin, limit=1, timeout_s=2.0)
        request = build_request(origin, "POST", "/v1/score", b"{}")
        answers = [await pool.exchange(request) for _ in range(4)]
        await pool.close()
    assert [a.status for a in answers] == [200] * 4
    assert {a.body for a in answers} == {b'{"ok": true}'}
    assert server.requests == [2, 2]  # a new connection after the server's "connection: close"


async def test_http_client_names_what_went_wrong() -> None:
    async with ScriptedServer([CLOSING[:-4], None]) as origin:  # half an answer, then hang up; then silence
        pool = ConnectionPool(origin, limit=1, timeout_s=0.3)
        request = build_request(origin, "GET", "/healthz")
        with pytest.raises(ExchangeError) as cut:
            await pool.exchange(request)
        with pytest.raises(ExchangeError) as silent:
            await pool.exchange(request)
        await pool.close()
    assert cut.value.kind == "ConnectionResetError"
    assert silent.value.kind == "TimeoutError"
    refused = ConnectionPool(Origin.parse(f"http://127.0.0.1:{_closed_port()}"), limit=1, timeout_s=1.0)
    with pytest.raises(ExchangeError) as nobody:
        await refused.exchange(request)
    assert nobody.value.kind == "ConnectionRefusedError"


def test_request_is_one_buffer_with_host_length_and_path_prefix() -> None:
    origin = Origin.parse("http://gw.example:8080/fraud/")
    request = build_request(origin, "POST", "/v1/score:batch", b'{"transactions": []}')
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /fraud/v1/score:batch HTTP/1.1"
    assert b"host: gw.example:8080" in head and b"content-length: 20" in head and body == b'{"transactions": []}'
    assert Origin.parse("https://[::1]/").authority == "[::1]:443"
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        Origin.parse("127.0.0.1:8080")


def test_rest_client_refuses_a_call_the_gateway_does_not_have() -> None:
    plan = ClientPlan("http://gateway.test", "stream", "closed", 0.0, 1, 1, 1, 0.1, 0.0, 1.0, protocol="rest")
    with pytest.raises(ValueError, match="no 'stream' call"):
        RestClient(plan, [b"{}"])


def test_markdown_table_names_each_rows_protocol() -> None:
    raw = RawResult(np.array([0.001]), np.array([0.001]), np.array([10.0]), np.array([1], np.int64), 1, 1, {}, {},
                    1, 0, 0.0)
    runs = [RunSummary.of(RunParameters(name, "score", "closed", 1, 4, 1, None, 1.0, 0.0, 1, protocol), raw)
            for name, protocol in (("unary", "grpc"), ("/v1/score", "rest"))]
    rows = markdown_table(runs).splitlines()
    assert rows[2].startswith("| gRPC unary |") and rows[3].startswith("| REST /v1/score |")


# --- REST: the command line against a real scoring server and gateway -----------------------


@pytest.fixture
def stack_env(embedded_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the spawned scoring server and gateway inherit: a fresh schema of the session's embedded PostgreSQL
    (both use it; the server records into it) and small entity state (the default takes ~20 s to set up)."""
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", embedded_dsn)
    monkeypatch.setenv("FRAUDGUARD_MAX_CARDS", "4096")
    monkeypatch.setenv("FRAUDGUARD_MAX_ENTITIES", "4096")


def _every_request_answered(run: dict) -> None:  # type: ignore[type-arg]
    assert run["requests_ok"] > 0 and run["transactions_ok"] > 0, run["parameters"]["name"]
    assert run["rpc_errors"] == {} and run["item_errors"] == {}, run["parameters"]["name"]
    assert run["server_time_us"]["p50"] > 0


@pytest.mark.usefixtures("stack_env")
def test_rest_scenario_spawns_a_server_and_a_gateway_and_reports_rest_beside_grpc(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = _run_json(tmp_path, ["--spawn-server", "--data-dir", str(data_dir), "--scenario", "rest",
                                    "--concurrency", "2", "--rate", "40", "--duration", "1", "--warmup", "0.3",
                                    "--pool-size", "300", "--timeout", "10"])
    assert document["target"] and document["gateway_url"].startswith("http://127.0.0.1:")
    runs = [(run["parameters"]["protocol"], run["parameters"]["mode"], run["parameters"]["concurrency"])
            for run in document["runs"]]
    assert runs == [("grpc", "closed", 2), ("rest", "closed", 2), ("grpc", "closed", 16), ("rest", "closed", 16),
                    ("grpc", "open", 2), ("rest", "open", 2)]
    for run in document["runs"]:
        _every_request_answered(run)
        if run["parameters"]["mode"] == "open":
            assert run["sends"] == run["requests_ok"] == 40
    table = capsys.readouterr().out
    assert "| REST POST /v1/score, closed, 2 in flight |" in table
    assert "| gRPC unary Score, open 40 rps |" in table


@pytest.mark.usefixtures("stack_env")
def test_rest_runs_post_score_and_batch_to_a_running_gateway(data_dir: Path, tmp_path: Path) -> None:
    with spawned_server(data_dir) as target, spawned_gateway(data_dir, target) as url:
        closed = _run_json(tmp_path, ["--protocol", "rest", "--gateway-url", url, "--rpc", "all", "--batch-size", "8",
                                      "--concurrency", "2", "--duration", "1", "--warmup", "0.2", "--pool-size", "300"])
        opened = _run_json(tmp_path, ["--protocol", "rest", "--gateway-url", url, "--mode", "open", "--rate", "30",
                                      "--duration", "1", "--warmup", "0.2", "--pool-size", "300"])
    assert closed["target"] is None and closed["gateway_url"] == url
    runs = {run["parameters"]["rpc"]: run for run in closed["runs"]}
    assert set(runs) == {"score", "batch"}
    for run in runs.values():
        assert run["parameters"]["protocol"] == "rest"
        _every_request_answered(run)
    assert runs["batch"]["transactions_ok"] == 8 * runs["batch"]["requests_ok"]
    (run,) = opened["runs"]
    _every_request_answered(run)
    assert run["sends"] == run["requests_ok"] == 30


def test_unreachable_gateway_exits_40_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["--protocol", "rest", "--gateway-url", url, "--timeout", "0.5", "--duration", "1"]) == 40
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("fraudguard bench: ") and url in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--protocol", "rest", "--gateway-url", "http://127.0.0.1:1", "--rpc", "stream"], "no stream call"),
    (["--protocol", "rest"], "needs --gateway-url"),
    (["--scenario", "rest"], "needs --gateway-url"),
    (["--protocol", "rest", "--gateway-url", "127.0.0.1:8080"], "must look like http://HOST:PORT"),
    (["--gateway-url", "http://127.0.0.1:1"], "--gateway-url is for --protocol rest"),
    (["--scenario", "all", "--protocol", "rest", "--gateway-url", "http://127.0.0.1:1"], "use --scenario rest"),
    (["--spawn-server", "--protocol", "rest", "--gateway-url", "http://127.0.0.1:1"], "drop --target, --gateway-url"),
])
def test_bad_rest_options_exit_2_with_a_message(argv: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err

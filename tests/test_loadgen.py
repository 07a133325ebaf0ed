"""``fraudguard bench``: the open-loop bookkeeping with a fake clock, and short real runs against a server."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from benchmarks.loadgen import main
from benchmarks.loadgen_client import ClientPlan
from benchmarks.loadgen_report import RunParameters, RunSummary
from benchmarks.loadgen_schedule import OpenLoopSchedule, RawResult, Recorder, Window, run_schedule
from benchmarks.loadgen_server import serving_port
from benchmarks.loadgen_transactions import TransactionFactory, serialized_requests, synthetic_transactions
from benchmarks.loadgen_workers import TRAFFIC_SOURCES, Traffic, prepare_requests, split_plan
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.serde import batch_from_proto
from tests._server_process import ServerProcess


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

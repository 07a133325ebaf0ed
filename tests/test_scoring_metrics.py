"""Prometheus metrics of the scoring server: ``ScoringMetrics`` on hand-made arrays, then a real server on port 0
whose ``/metrics`` (scraped over HTTP) must count exactly the calls, decisions and errors the test made."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from fraudguard.errors import ValidationError
from fraudguard.exit_codes import ExitCode
from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc
from fraudguard.service import StartupError
from scoring.grpc_errors import grpc_errors
from scoring.metrics import SCORE_BUCKETS, RecordingState, ScoringCollector, ScoringMetrics
from scoring.model import promote
from scoring.record import RecorderFull
from scoring.server import ScoringServer, start_server
from tests._model_helpers import make_bundle, train_booster
from tests._server_process import ServerProcess
from tests.conftest import MODEL_VERSION, make_transaction, server_settings

Stub = scoring_pb2_grpc.ScoringServiceStub
Families = dict[str, Metric]
P = "fraudguard_scoring_"
ACTION_NAME = {scoring_pb2.ACTION_ALLOW: "allow", scoring_pb2.ACTION_CHALLENGE: "challenge",
               scoring_pb2.ACTION_REVIEW: "review", scoring_pb2.ACTION_BLOCK: "block"}


# --- helpers ---------------------------------------------------------------------------------------------------


def parse(text: str) -> Families:
    return {family.name: family for family in text_string_to_metric_families(text)}


def scrape(port: int) -> Families:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return parse(response.read().decode())


async def ascrape(port: int | None) -> Families:
    assert port is not None
    return await asyncio.to_thread(scrape, port)


def render(collector: ScoringCollector) -> Families:
    registry = CollectorRegistry()
    registry.register(collector)
    return parse(generate_latest(registry).decode())


def samples(families: Families, family: str, sample: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    """``{sorted labels: value}`` of one sample name (default: the family's own) of ``family``."""
    name = sample or family
    return {tuple(sorted(s.labels.items())): s.value for s in families[family].samples if s.name == name}


def value(families: Families, family: str, sample: str | None = None, **labels: str) -> float:
    return samples(families, family, sample).get(tuple(sorted(labels.items())), 0.0)


def by_label(families: Families, family: str, label: str, sample: str | None = None) -> dict[str, float]:
    """One label's value -> sample value, leaving out zeros."""
    return {dict(key)[label]: v for key, v in samples(families, family, sample).items() if v}


def expected_buckets(scores: Iterable[float]) -> list[float]:
    """Cumulative counts per ``le`` (``+Inf`` last), counted the slow, obvious way."""
    finite = [s for s in scores if not math.isnan(s)]
    return [float(sum(1 for s in finite if s <= bound)) for bound in SCORE_BUCKETS] + [float(len(finite))]


def buckets(families: Families, family: str, **labels: str) -> list[float]:
    pairs = [(float(dict(k)["le"]), v) for k, v in samples(families, family, family + "_bucket").items()
             if all(dict(k).get(n) == v for n, v in labels.items())]
    return [v for _, v in sorted(pairs)]


# --- ScoringMetrics on its own ---------------------------------------------------------------------------------


def test_counts_hand_made_arrays() -> None:
    metrics = ScoringMetrics()
    scores = np.array([0.0, 0.01, 0.0100001, 0.5, 0.97, 1.0, np.nan], np.float64)
    actions = np.array([1, 1, 1, 2, 4, 4, 3], np.int64)
    metrics.decided(scores, actions)
    metrics.decided(np.array([0.3]), np.array([2], np.int64))
    metrics.decided(np.array([np.nan]), np.array([3], np.int64))
    metrics.item_errors("ScoreBatch", 2)
    metrics.item_errors("ScoreBatch", 1)
    metrics.call_finished("Score", grpc.StatusCode.OK, 40_000)
    metrics.call_finished("Score", grpc.StatusCode.OK, 3_000_000)
    metrics.call_finished("Score", grpc.StatusCode.INVALID_ARGUMENT, 20_000)
    metrics.stream_finished("ScoreStream", grpc.StatusCode.CANCELLED)
    metrics.message_answered("ScoreStream", 70_000)

    snap = metrics.snapshot()
    assert snap.decisions == {"allow": 3, "challenge": 2, "review": 2, "block": 2}
    assert snap.nan_scores == 2
    assert snap.scores.count == 7
    assert snap.scores.total == pytest.approx(0.0 + 0.01 + 0.0100001 + 0.5 + 0.97 + 1.0 + 0.3)
    finite = [0.0, 0.01, 0.0100001, 0.5, 0.97, 1.0, 0.3]
    assert [v for _, v in snap.scores.cumulative()] == expected_buckets(finite)
    assert snap.item_errors == {"ScoreBatch": 3}
    assert snap.requests == {("Score", "OK"): 2, ("Score", "INVALID_ARGUMENT"): 1, ("ScoreStream", "CANCELLED"): 1}
    assert snap.latency["Score"].count == 3 and snap.latency["Score"].total == pytest.approx(3.06e-3)
    assert snap.latency["ScoreStream"].count == 1 and snap.latency["ScoreBatch"].count == 0

    families = render(ScoringCollector(metrics, lambda: "v-hand"))
    assert by_label(families, P + "decisions", "action", P + "decisions_total") == snap.decisions
    assert value(families, P + "nan_scores", P + "nan_scores_total") == 2
    assert buckets(families, P + "score") == expected_buckets(finite)
    assert value(families, P + "score", P + "score_count") == 7
    latency = buckets(families, P + "request_duration_seconds", method="Score")
    assert latency[-1] == 3  # 20 µs and 40 µs fall in the 25 µs and 50 µs buckets, 3 ms in the 5 ms one
    assert value(families, P + "request_duration_seconds", P + "request_duration_seconds_bucket",
                 method="Score", le="2.5e-05") == 1
    assert value(families, P + "request_duration_seconds", P + "request_duration_seconds_bucket",
                 method="Score", le="0.0025") == 2
    assert by_label(families, P + "model_info", "model_version") == {"v-hand": 1}
    assert P + "record_queue_rows" not in families  # recording off: no writer metrics


@given(st.lists(st.tuples(st.one_of(st.floats(0.0, 1.0), st.just(math.nan), st.sampled_from(SCORE_BUCKETS)),
                          st.integers(1, 4)), min_size=2, max_size=300))
def test_one_at_a_time_and_batched_count_the_same(rows: list[tuple[float, int]]) -> None:
    scores = np.array([s for s, _ in rows], np.float64)
    actions = np.array([a for _, a in rows], np.int64)
    batched, single = ScoringMetrics(), ScoringMetrics()
    batched.decided(scores, actions)
    for s, a in rows:
        single.decided(np.array([s]), np.array([a], np.int64))
    for snap in (batched.snapshot(), single.snapshot()):
        assert [v for _, v in snap.scores.cumulative()] == expected_buckets(scores.tolist())
        assert snap.nan_scores == int(np.isnan(scores).sum())
        assert snap.scores.total == pytest.approx(float(np.nansum(scores)))
        assert snap.decisions == {name: int((actions == a).sum()) for a, name in ACTION_NAME.items()}


def test_recording_state_is_rendered() -> None:
    state = RecordingState(queue_rows=17, journal_mode=True, outage_backlog_records=5, outage_journal_bytes=4096,
                           ahead_backlog_records=3, rejected_rows=2, refused_rows=1, ahead_refused=4)
    families = render(ScoringCollector(ScoringMetrics(), lambda: "v", lambda: state))
    assert value(families, P + "record_queue_rows") == 17
    assert value(families, P + "record_journal_mode") == 1
    assert value(families, P + "record_outage_backlog_records") == 5
    assert value(families, P + "record_outage_journal_bytes") == 4096
    assert value(families, P + "record_ahead_backlog_records") == 3
    assert value(families, P + "record_rejected_rows", P + "record_rejected_rows_total") == 2
    assert value(families, P + "record_refused_rows", P + "record_refused_rows_total") == 1
    assert value(families, P + "record_ahead_refused", P + "record_ahead_refused_total") == 4


class FakeContext:
    """The part of ``grpc.aio.ServicerContext`` the decorator uses: ``abort`` raises like grpc's."""

    def __init__(self) -> None:
        self.aborted: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = code
        raise grpc.aio.AbortError(details)

    def code(self) -> grpc.StatusCode | None:
        return self.aborted

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-request-id", "req-1"),)


class Failing:
    """Handlers that fail in the ways a real one may, counted in ``metrics`` by ``grpc_errors``."""

    def __init__(self, metrics: ScoringMetrics) -> None:
        self.metrics = metrics

    @grpc_errors
    async def Score(self, request: BaseException | None, context: FakeContext) -> bytes:
        if request is not None:
            raise request
        return b""

    @grpc_errors
    async def ScoreStream(self, requests: list[BaseException | None],
                          context: FakeContext) -> AsyncIterator[bytes]:
        for request in requests:
            if request is not None:
                raise request
            yield b""


async def test_decorator_counts_the_status_each_call_ends_with(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ScoringMetrics()
    handlers = Failing(metrics)
    outcomes: list[BaseException | None] = [None, ValidationError("amount", "negative"), RecorderFull("full"),
                                            RuntimeError("bug"), asyncio.CancelledError()]
    for outcome in outcomes:
        with contextlib.suppress(grpc.aio.AbortError, asyncio.CancelledError):
            await handlers.Score(outcome, FakeContext())
    streams: list[list[BaseException | None]] = [[None, None], [None, RuntimeError("bug")],
                                                 [asyncio.CancelledError()]]
    for stream in streams:
        with contextlib.suppress(grpc.aio.AbortError, asyncio.CancelledError):
            async for _ in handlers.ScoreStream(stream, FakeContext()):
                pass
    snap = metrics.snapshot()
    assert snap.requests == {
        ("Score", "OK"): 1, ("Score", "INVALID_ARGUMENT"): 1, ("Score", "UNAVAILABLE"): 1,
        ("Score", "INTERNAL"): 1, ("Score", "CANCELLED"): 1,
        ("ScoreStream", "OK"): 1, ("ScoreStream", "INTERNAL"): 1, ("ScoreStream", "CANCELLED"): 1,
    }
    assert snap.latency["Score"].count == len(outcomes)
    assert snap.latency["ScoreStream"].count == 0  # the handler times its messages, not the decorator
    assert [r.getMessage() for r in caplog.records].count("unexpected error in handler") == 2


# --- a real server ---------------------------------------------------------------------------------------------


@pytest.fixture
async def metrics_server(data_dir: Path) -> AsyncIterator[ScoringServer]:
    running = await start_server(server_settings(data_dir, metrics_listen="127.0.0.1:0"))
    try:
        yield running
    finally:
        await running.stop(grace=1.0)


@pytest.fixture
async def metrics_stub(metrics_server: ScoringServer) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{metrics_server.port}") as channel:
        yield scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]


async def eventually(port: int | None, check: Callable[[Families], bool], timeout_s: float = 10.0) -> Families:
    """Scrape until ``check`` holds (for what the server counts after the client has its answer)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        families = await ascrape(port)
        if check(families) or asyncio.get_running_loop().time() > deadline:
            return families
        await asyncio.sleep(0.05)


async def test_metrics_count_what_was_sent(metrics_server: ScoringServer, metrics_stub: Stub) -> None:
    decisions: list[scoring_pb2.Decision] = []
    for i in range(3):
        decisions.append((await metrics_stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(i)),
                                                   timeout=10)).decision)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await metrics_stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(3, currency="XXY")), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    batch = [make_transaction(10 + i) for i in range(9)]
    batch[2].currency, batch[6].amount_minor = "???", -1
    answered = await metrics_stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=batch), timeout=10)
    decisions += [r.decision for r in answered.results if r.WhichOneof("result") == "decision"]

    async def stream_requests() -> AsyncIterator[scoring_pb2.ScoreStreamRequest]:
        for m in range(4):
            txs = [make_transaction(100 + m * 10 + k) for k in range(m + 1)]
            if m == 2:
                txs[1].ClearField("card")
            yield scoring_pb2.ScoreStreamRequest(transactions=txs)

    messages = 0
    async for response in metrics_stub.ScoreStream(stream_requests(), timeout=30):
        messages += 1
        decisions += [r.decision for r in response.results if r.WhichOneof("result") == "decision"]
    info_reply = await metrics_stub.GetModelInfo(scoring_pb2.GetModelInfoRequest(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await metrics_stub.ReportOutcome(scoring_pb2.ReportOutcomeRequest(transaction_id="tx-1"), timeout=10)

    sent_requests = {("Score", "OK"): 3, ("Score", "INVALID_ARGUMENT"): 1, ("ScoreBatch", "OK"): 1,
                     ("ScoreStream", "OK"): 1, ("GetModelInfo", "OK"): 1, ("ReportOutcome", "INVALID_ARGUMENT"): 1}

    def requests_of(families: Families) -> dict[tuple[str, str], float]:
        return {(dict(k)["method"], dict(k)["code"]): v
                for k, v in samples(families, P + "requests", P + "requests_total").items() if v}

    # a call is counted when its handler returns, before its answer (or a stream's status) is sent
    families = await ascrape(metrics_server.metrics_port)
    assert requests_of(families) == sent_requests

    scores = [d.score for d in decisions]
    assert messages == 4 and len(decisions) == 3 + 7 + 9
    assert by_label(families, P + "decisions", "action", P + "decisions_total") == dict(
        Counter(ACTION_NAME[d.action] for d in decisions))
    assert value(families, P + "score", P + "score_count") == len(decisions)
    assert value(families, P + "score", P + "score_sum") == pytest.approx(sum(scores))
    assert buckets(families, P + "score") == expected_buckets(scores)
    assert value(families, P + "nan_scores", P + "nan_scores_total") == 0
    assert by_label(families, P + "item_errors", "method", P + "item_errors_total") == {"ScoreBatch": 2,
                                                                                        "ScoreStream": 1}
    durations = by_label(families, P + "request_duration_seconds", "method", P + "request_duration_seconds_count")
    assert durations == {"Score": 4, "ScoreBatch": 1, "ScoreStream": messages, "GetModelInfo": 1,
                         "ReportOutcome": 1}
    for method in durations:
        assert 0 < value(families, P + "request_duration_seconds", P + "request_duration_seconds_sum",
                         method=method) < 30
    assert by_label(families, P + "model_info", "model_version") == {info_reply.model_version: 1}
    assert info_reply.model_version == MODEL_VERSION
    assert P + "record_queue_rows" not in families  # recording is off


async def test_stream_past_its_deadline_is_counted_as_such(metrics_server: ScoringServer,
                                                          metrics_stub: Stub) -> None:
    call = metrics_stub.ScoreStream(timeout=0.5)
    await call.write(scoring_pb2.ScoreStreamRequest(transactions=[make_transaction(1)]))
    assert len((await call.read()).results) == 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()  # the client never finishes: its deadline passes
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

    def exceeded(families: Families) -> float:
        return value(families, P + "requests", P + "requests_total", method="ScoreStream", code="DEADLINE_EXCEEDED")

    families = await eventually(metrics_server.metrics_port, lambda f: exceeded(f) == 1)
    assert exceeded(families) == 1
    assert by_label(families, P + "requests", "code", P + "requests_total") == {"DEADLINE_EXCEEDED": 1}


async def test_model_version_follows_a_hot_swap(metrics_server: ScoringServer, data_dir: Path) -> None:
    port = metrics_server.metrics_port
    assert by_label(await ascrape(port), P + "model_info", "model_version") == {MODEL_VERSION: 1}
    models = data_dir / "models"
    await asyncio.to_thread(make_bundle, models, "test-model-2", train_booster(seed=7))
    promote(models, "test-model-2")
    families = await eventually(port, lambda f: "test-model-2" in by_label(f, P + "model_info", "model_version"))
    assert by_label(families, P + "model_info", "model_version") == {"test-model-2": 1}


async def test_metrics_off_by_default(scoring_server: ScoringServer) -> None:
    assert scoring_server.metrics_port is None and scoring_server.metrics is None


async def test_metrics_port_taken_is_cannot_bind(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as info:
            await start_server(server_settings(data_dir, metrics_listen=f"127.0.0.1:{port}"))
    assert info.value.code == ExitCode.CANNOT_BIND
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_recording_server_reports_the_writer(data_dir: Path, embedded_dsn: str) -> None:
    running = await start_server(server_settings(data_dir, metrics_listen="127.0.0.1:0", record=True,
                                                 database_url=embedded_dsn, record_interval_s=0.002))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            batch = [make_transaction(i, transaction_id=f"metrics-{i}") for i in range(20)]
            await stub.ScoreBatch(scoring_pb2.ScoreBatchRequest(transactions=batch), timeout=10)
        assert running.recorder is not None
        families = await eventually(running.metrics_port, lambda f: value(f, P + "record_queue_rows") == 0
                                    and value(f, P + "record_ahead_backlog_records") == 0)
        assert running.recorder.writer.stats.written == 20  # stored: so the queue is empty for the right reason
        assert value(families, P + "record_queue_rows") == 0
        assert value(families, P + "record_ahead_backlog_records") == 0
        assert value(families, P + "record_journal_mode") == 0
        assert value(families, P + "record_rejected_rows", P + "record_rejected_rows_total") == 0
        assert sum(by_label(families, P + "decisions", "action", P + "decisions_total").values()) == 20
    finally:
        await running.stop(grace=1.0)


def test_serve_logs_the_metrics_port(data_dir: Path) -> None:
    server = ServerProcess(data_dir, ("--max-cards", "4096", "--max-entities", "4096",
                                      "--metrics-listen", "127.0.0.1:0")).start()
    try:
        serving = next(entry for entry in server.logs() if entry.get("msg") == "serving")
        port = int(str(serving["metrics_port"]))
        families = scrape(port)
        assert by_label(families, P + "model_info", "model_version") == {MODEL_VERSION: 1}
        with grpc.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            stub.Score(scoring_pb2.ScoreRequest(transaction=make_transaction(1)), timeout=10)
        assert value(scrape(port), P + "requests", P + "requests_total", method="Score", code="OK") == 1
    finally:
        assert server.terminate() == 0

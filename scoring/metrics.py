"""Prometheus metrics of the scoring server: counted on the hot path with plain ints and NumPy arrays, rendered
only when scraped.

A batch of 256 transactions costs ~9 µs per transaction and a unary call ~90 µs, so the hot path does no Python
work per transaction for metrics, and never calls ``prometheus_client`` (one ``Histogram.observe`` per
transaction would cost about a microsecond each). :class:`ScoringMetrics` is updated once per call, stream
message or batch — ``np.bincount`` over a batch's actions, ``np.searchsorted`` + ``np.bincount`` over its
scores — and :class:`ScoringCollector` turns a snapshot of it, with the state of the model and of the decision
writer, into metric families when ``/metrics`` is scraped (on :class:`MetricsEndpoint`'s thread, from its own
``CollectorRegistry``, not the process-global one).

The metrics (all prefixed ``fraudguard_scoring_``):

- ``requests_total{method,code}``: finished RPCs by gRPC status code, counted by the ``grpc_errors`` decorator.
  A ``ScoreStream`` counts once, when the stream ends, with its final status; its messages are counted by the
  latency histogram. A stream whose client cancels it while the server waits for its next message counts as
  ``OK`` (grpc.aio ends its requests as if the client had finished, and tells nothing more); one cancelled while
  a message is being scored counts as ``CANCELLED``, one whose deadline passed as ``DEADLINE_EXCEEDED``. Calls
  refused before a handler runs (the API-key interceptor's ``UNAUTHENTICATED``, grpc's own limits) are not
  counted.
- ``request_duration_seconds{method}``: server-side time of each unary call (from the handler's start to its
  answer or error, waiting for room in the decision queue included) and of each ``ScoreStream`` message (from
  its arrival to its answer; the time the stream sits idle is not counted). ``_count{method="ScoreStream"}`` is
  thus the number of stream messages answered.
- ``decisions_total{action}``: transactions answered with a decision (allow, challenge, review, block).
- ``score``: histogram of those decisions' scores. A NaN score (only a broken model gives one; it is decided
  REVIEW) is left out of it and counted in ``nan_scores_total``, so ``score_count + nan_scores_total ==
  sum(decisions_total)``.
- ``item_errors_total{method}``: transactions of a ``ScoreBatch`` or ``ScoreStream`` message answered with their
  own error result (the rest of the message is scored). A bad transaction in ``Score`` fails the call instead:
  it is a ``requests_total{code="INVALID_ARGUMENT"}``.
- ``model_info{model_version}``: 1 for the model deciding now (it changes on a hot swap).
- with recording on, the decision writer's state: ``record_queue_rows``, ``record_journal_mode``,
  ``record_outage_backlog_records``, ``record_outage_journal_bytes``, ``record_ahead_backlog_records``,
  ``record_rejected_rows_total``, ``record_refused_rows_total``, ``record_ahead_refused_total``.

Scrapes read the counters from another thread without a lock: each copy is made under the GIL, so a value is
never torn, but two metrics of one scrape may be a call apart. Rendering a scrape takes ~0.7 ms, mostly holding
the GIL: once per scrape interval, a call may wait that long.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from scoring.decision import ACTION_NAMES
from scoring.record.writer import Mode

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from scoring.record.recorder import Recorder
    from scoring.scorer import Scorer

PREFIX = "fraudguard_scoring_"
METHODS: tuple[str, ...] = ("Score", "ScoreBatch", "ScoreStream", "GetModelInfo", "ReportOutcome")
LATENCY_BUCKETS_S: tuple[float, ...] = (
    25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0, 2.5,
)  # fmt: skip
SCORE_BUCKETS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

_LATENCY_EDGES_NS = tuple(round(b * 1e9) for b in LATENCY_BUCKETS_S)
# searchsorted(side="left") puts v in the first bucket with v <= edge (Prometheus's ``le``); a score above 1 lands
# on +inf (the +Inf bucket), a NaN past it, in a slot of its own
_SCORE_EDGES = np.array([*SCORE_BUCKETS, np.inf], np.float64)
_SCORE_SLOTS = len(SCORE_BUCKETS) + 2
_NAN_SLOT = _SCORE_SLOTS - 1
_ACTION_SLOTS = max(ACTION_NAMES) + 1  # indexed by the fraud.v1.Action value

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


# --- values ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations per bucket (not cumulative: ``counts[i]`` is ``upper_bounds[i-1] < v <= upper_bounds[i]``,
    the last one is the +Inf bucket) and their sum."""

    upper_bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus exposes them, ``+Inf`` last."""
        running, pairs = 0, []
        for bound, n in zip((*map(floatToGoString, self.upper_bounds), "+Inf"), self.counts, strict=True):
            running += n
            pairs.append((bound, float(running)))
        return pairs


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What :class:`ScoringMetrics` counted since the start, copied at one moment."""

    requests: Mapping[tuple[str, str], int]  # (method, gRPC status code name) -> finished calls
    latency: Mapping[str, Histogram]  # method -> seconds
    decisions: Mapping[str, int]  # action name -> transactions
    scores: Histogram
    nan_scores: int
    item_errors: Mapping[str, int]  # method -> transactions answered with an error result


@dataclass(frozen=True, slots=True)
class RecordingState:
    """The decision writer's and the journals' state, read at scrape time."""

    queue_rows: int  # accepted, not yet durable
    journal_mode: bool  # batches go to the outage journal (database down or too slow)
    outage_backlog_records: int  # outage-journal records not yet replayed into the database
    outage_journal_bytes: int
    ahead_backlog_records: int  # write-ahead journal records not yet confirmed stored
    rejected_rows: int  # refused because the queue was full
    refused_rows: int  # refused by the database for their content, set aside
    ahead_refused: int  # messages answered UNAVAILABLE because the write-ahead journal refused them

    @classmethod
    def of(cls, recorder: Recorder) -> RecordingState:
        writer = recorder.writer
        stats = writer.stats
        return cls(stats.queue_depth, stats.mode is Mode.JOURNAL, stats.journal_backlog, writer.journal.used_bytes,
                   recorder.journal_backlog(), stats.rejected, stats.refused, recorder.ahead_refused)


# --- counting, on the hot path -----------------------------------------------------------------------------


class _Latency:
    __slots__ = ("counts", "sum_ns")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_EDGES_NS) + 1)
        self.sum_ns = 0

    def snapshot(self) -> Histogram:
        return Histogram(LATENCY_BUCKETS_S, tuple(self.counts), self.sum_ns / 1e9)


class ScoringMetrics:
    """The counters the servicer and the ``grpc_errors`` decorator update: a few list or array operations per
    call, stream message or batch, whatever the number of transactions. One event loop updates it; a scrape
    takes a :meth:`snapshot` from any thread."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, grpc.StatusCode], int] = {}
        self._latency = {method: _Latency() for method in METHODS}
        self._item_errors: dict[str, int] = {}
        # single transactions are counted in lists (a Python index is cheaper than a NumPy one), batches in arrays
        self._actions_one = [0] * _ACTION_SLOTS
        self._actions_many = np.zeros(_ACTION_SLOTS, np.int64)
        self._scores_one = [0] * _SCORE_SLOTS
        self._scores_many = np.zeros(_SCORE_SLOTS, np.int64)
        self._score_sum = 0.0

    def call_finished(self, method: str, code: grpc.StatusCode, elapsed_ns: int) -> None:
        """A unary call ended with ``code`` after ``elapsed_ns``."""
        key = (method, code)
        requests = self._requests
        requests[key] = requests.get(key, 0) + 1
        self.message_answered(method, elapsed_ns)

    def stream_finished(self, method: str, code: grpc.StatusCode) -> None:
        """A stream ended with ``code`` (its messages' times are counted by :meth:`message_answered`)."""
        key = (method, code)
        self._requests[key] = self._requests.get(key, 0) + 1

    def message_answered(self, method: str, elapsed_ns: int) -> None:
        """One call or stream message took ``elapsed_ns`` on the server."""
        latency = self._latency.get(method)
        if latency is None:
            latency = self._latency[method] = _Latency()
        latency.counts[bisect_left(_LATENCY_EDGES_NS, elapsed_ns)] += 1
        latency.sum_ns += elapsed_ns

    def decided(self, scores: F64, actions: I64) -> None:
        """Transactions answered with these scores and actions (fraud.v1.Action values, as ``decide`` gives)."""
        if scores.shape[0] == 1:
            self._actions_one[int(actions[0])] += 1
            score = float(scores[0])
            if score == score:
                self._scores_one[bisect_left(SCORE_BUCKETS, score)] += 1
                self._score_sum += score
            else:
                self._scores_one[_NAN_SLOT] += 1
            return
        self._actions_many += np.bincount(actions, minlength=_ACTION_SLOTS)
        slots = np.bincount(np.searchsorted(_SCORE_EDGES, scores), minlength=_SCORE_SLOTS)
        self._scores_many += slots
        total = float(scores.sum())
        self._score_sum += total if total == total else float(np.nansum(scores))

    def item_errors(self, method: str, n: int) -> None:
        """``n`` transactions of one ``method`` message were answered with their own error result."""
        self._item_errors[method] = self._item_errors.get(method, 0) + n

    def snapshot(self) -> MetricsSnapshot:
        """A consistent-enough copy (see the module's documentation) for rendering or tests."""
        requests = {(method, code.name): n for (method, code), n in dict(self._requests).items()}
        latency = {method: h.snapshot() for method, h in dict(self._latency).items()}
        actions = np.add(self._actions_one, self._actions_many).tolist()
        slots = np.add(self._scores_one, self._scores_many).tolist()
        return MetricsSnapshot(
            requests=requests,
            latency=latency,
            decisions={name: actions[value] for value, name in ACTION_NAMES.items()},
            scores=Histogram(SCORE_BUCKETS, tuple(slots[:_NAN_SLOT]), self._score_sum),
            nan_scores=slots[_NAN_SLOT],
            item_errors=dict(self._item_errors),
        )


# --- rendering, at scrape time -----------------------------------------------------------------------------


class ScoringCollector:
    """A ``prometheus_client`` collector rendering :class:`ScoringMetrics`, the model version deciding now and,
    when given, the recording state, each time it is scraped."""

    def __init__(self, metrics: ScoringMetrics, model_version: Callable[[], str],
                 recording: Callable[[], RecordingState] | None = None) -> None:
        self._metrics = metrics
        self._model_version = model_version
        self._recording = recording

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot()
        requests = CounterMetricFamily(PREFIX + "requests", "Finished RPCs by method and gRPC status code "
                                       "(a ScoreStream counts once, at its end)", labels=("method", "code"))
        for (method, code), n in sorted(snap.requests.items()):
            requests.add_metric((method, code), n)
        yield requests
        latency = HistogramMetricFamily(PREFIX + "request_duration_seconds", "Server-side time per unary call "
                                        "and per ScoreStream message", labels=("method",))
        for method, h in sorted(snap.latency.items()):
            latency.add_metric((method,), h.cumulative(), h.total)
        yield latency
        decisions = CounterMetricFamily(PREFIX + "decisions", "Transactions answered with a decision, by action",
                                        labels=("action",))
        for action, n in snap.decisions.items():
            decisions.add_metric((action,), n)
        yield decisions
        yield HistogramMetricFamily(PREFIX + "score", "Scores of the decisions (NaN scores left out)",
                                    buckets=snap.scores.cumulative(), sum_value=snap.scores.total)
        yield CounterMetricFamily(PREFIX + "nan_scores", "Decisions whose score was NaN (decided REVIEW)",
                                  value=snap.nan_scores)
        errors = CounterMetricFamily(PREFIX + "item_errors", "Transactions of a batch or stream message answered "
                                     "with their own error result", labels=("method",))
        for method, n in sorted(snap.item_errors.items()):
            errors.add_metric((method,), n)
        yield errors
        model = GaugeMetricFamily(PREFIX + "model_info", "The model deciding now (value 1)",
                                  labels=("model_version",))
        model.add_metric((self._model_version(),), 1)
        yield model
        if self._recording is not None:
            yield from _recording_families(self._recording())


def _recording_families(state: RecordingState) -> Iterator[Metric]:
    gauges = (
        ("record_queue_rows", "Decisions accepted by the writer, not yet durable", state.queue_rows),
        ("record_journal_mode", "1 while decisions go to the outage journal (database down or too slow)",
         int(state.journal_mode)),
        ("record_outage_backlog_records", "Outage-journal records not yet replayed into the database",
         state.outage_backlog_records),
        ("record_outage_journal_bytes", "Bytes held by the outage journal", state.outage_journal_bytes),
        ("record_ahead_backlog_records", "Write-ahead journal records not yet confirmed stored",
         state.ahead_backlog_records),
    )
    for name, doc, value in gauges:
        yield GaugeMetricFamily(PREFIX + name, doc, value=value)
    counters = (
        ("record_rejected_rows", "Decision rows refused because the writer's queue was full", state.rejected_rows),
        ("record_refused_rows", "Decision rows the database refused for their content (set aside)",
         state.refused_rows),
        ("record_ahead_refused", "Messages answered UNAVAILABLE because the write-ahead journal refused them",
         state.ahead_refused),
    )
    for name, doc, value in counters:
        yield CounterMetricFamily(PREFIX + name, doc, value=value)


def scoring_registry(metrics: ScoringMetrics, scorer: Scorer, recorder: Recorder | None = None) -> CollectorRegistry:
    """A registry of its own (not ``prometheus_client``'s global one) holding the server's collector."""
    registry = CollectorRegistry()
    recording = None if recorder is None else (lambda: RecordingState.of(recorder))
    registry.register(ScoringCollector(metrics, lambda: scorer.model.bundle.manifest.version, recording))
    return registry


# --- serving ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """``/metrics`` over HTTP, served by ``prometheus_client`` on a daemon thread."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @classmethod
    def start(cls, listen: str, registry: CollectorRegistry) -> MetricsEndpoint:
        """Bind ``HOST:PORT`` (port 0: any free port) and serve; raises ``OSError`` when it cannot bind."""
        host, _, port = listen.rpartition(":")
        server, thread = start_http_server(int(port), host.strip("[]"), registry=registry)
        return cls(server, thread)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving and release the port (blocks for up to half a second: call it off the event loop)."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout_s)

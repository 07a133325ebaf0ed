"""Open-loop schedule and latency recorder: pure logic, no gRPC, clock passed in.

Coordinated omission: a load generator that waits for a slow answer before sending the
next request stops measuring exactly when the server is slow. In open loop the
schedule fixes every send time in advance (request ``i`` is due at ``start + i / rate``)
and latency is measured from that *intended* time, so a stall in the server, the network
or the client itself shows up in the figures instead of vanishing from them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

LATE_SEND_THRESHOLD_S = 0.001


@dataclass(frozen=True, slots=True)
class Window:
    """The measured part of a run: requests intended in ``[start, end)`` are counted."""

    start: float
    end: float

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end

    @property
    def duration(self) -> float:
        return self.end - self.start


class OpenLoopSchedule:
    """Request ``i`` is due at ``start + i / rate``; ``due(now)`` hands out what has come due."""

    def __init__(self, rate: float, start: float, end: float) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number, got {rate}")
        self.rate = rate
        self.start = start
        self.end = end
        self._next = 0

    def intended(self, i: int) -> float:
        return self.start + i / self.rate

    @property
    def next_time(self) -> float:
        """Intended time of the next request not yet handed out."""
        return self.intended(self._next)

    @property
    def finished(self) -> bool:
        return self.next_time >= self.end

    def due(self, now: float) -> list[tuple[int, float]]:
        """(index, intended time) of every request due at ``now`` and not yet handed out, oldest first."""
        out = []
        while not self.finished and self.next_time <= now:
            out.append((self._next, self.next_time))
            self._next += 1
        return out


def run_schedule(schedule: OpenLoopSchedule, clock: Callable[[], float], sleep: Callable[[float], None],
                 emit: Callable[[list[tuple[int, float]]], None], stopped: Callable[[], bool] = lambda: False) -> None:
    """Emit due requests at their times until the schedule ends (the body of the ticker thread).

    A client that falls behind (``emit`` or the sleep overrunning) emits the backlog at
    once; the intended times still come from the schedule, never from the clock.
    """
    while not schedule.finished and not stopped():
        due = schedule.due(clock())
        if due:
            emit(due)
            continue
        sleep(max(0.0, schedule.next_time - clock()))


@dataclass(frozen=True, slots=True)
class RawResult:
    """What one client (process) measured; merged across processes before summarising."""

    latency_s: npt.NDArray[np.float64]  # per request, from the intended send time
    service_s: npt.NDArray[np.float64]  # per request, from the actual send time
    server_time_us: npt.NDArray[np.float64]  # per scored request, mean over its decisions
    server_weight: npt.NDArray[np.int64]  # decisions behind each server_time_us value
    requests_ok: int
    transactions_ok: int
    rpc_errors: dict[str, int]  # status code name -> requests
    item_errors: dict[str, int]  # status code name -> transactions
    sends: int
    late_sends: int
    max_send_lag_s: float

    @staticmethod
    def merge(results: list[RawResult]) -> RawResult:
        rpc: Counter[str] = Counter()
        item: Counter[str] = Counter()
        for r in results:
            rpc.update(r.rpc_errors)
            item.update(r.item_errors)
        return RawResult(
            latency_s=np.concatenate([r.latency_s for r in results]),
            service_s=np.concatenate([r.service_s for r in results]),
            server_time_us=np.concatenate([r.server_time_us for r in results]),
            server_weight=np.concatenate([r.server_weight for r in results]),
            requests_ok=sum(r.requests_ok for r in results),
            transactions_ok=sum(r.transactions_ok for r in results),
            rpc_errors=dict(rpc),
            item_errors=dict(item),
            sends=sum(r.sends for r in results),
            late_sends=sum(r.late_sends for r in results),
            max_send_lag_s=max((r.max_send_lag_s for r in results), default=0.0),
        )


@dataclass
class Recorder:
    """Collects one run's measurements; only requests intended inside ``window`` count."""

    window: Window
    late_threshold_s: float = LATE_SEND_THRESHOLD_S
    _latency: list[float] = field(default_factory=list)
    _service: list[float] = field(default_factory=list)
    _server_us: list[float] = field(default_factory=list)
    _server_weight: list[int] = field(default_factory=list)
    _requests_ok: int = 0
    _transactions_ok: int = 0
    _rpc_errors: Counter[str] = field(default_factory=Counter)
    _item_errors: Counter[str] = field(default_factory=Counter)
    _sends: int = 0
    _late_sends: int = 0
    _max_lag: float = 0.0

    def sent(self, intended: float, actual: float) -> None:
        """A request left the client at ``actual``; it was due at ``intended``."""
        if intended not in self.window:
            return
        self._sends += 1
        lag = actual - intended
        if lag > self.late_threshold_s:
            self._late_sends += 1
        self._max_lag = max(self._max_lag, lag)

    def succeeded(self, intended: float, sent: float, done: float, transactions: int,
                  server_time_us: float | None, item_errors: Counter[str] | None = None) -> None:
        """A request answered at ``done``; ``transactions`` of its transactions were scored."""
        if intended not in self.window:
            return
        self._latency.append(done - intended)
        self._service.append(done - sent)
        self._requests_ok += 1
        self._transactions_ok += transactions
        if server_time_us is not None and transactions:
            self._server_us.append(server_time_us)
            self._server_weight.append(transactions)
        if item_errors:
            self._item_errors.update(item_errors)

    def failed(self, intended: float, code: str) -> None:
        """A request ended with gRPC status ``code`` (its name, e.g. ``UNAVAILABLE``)."""
        if intended in self.window:
            self._rpc_errors[code] += 1

    def result(self) -> RawResult:
        return RawResult(
            latency_s=np.array(self._latency, np.float64),
            service_s=np.array(self._service, np.float64),
            server_time_us=np.array(self._server_us, np.float64),
            server_weight=np.array(self._server_weight, np.int64),
            requests_ok=self._requests_ok,
            transactions_ok=self._transactions_ok,
            rpc_errors=dict(self._rpc_errors),
            item_errors=dict(self._item_errors),
            sends=self._sends,
            late_sends=self._late_sends,
            max_send_lag_s=self._max_lag,
        )

"""One process's REST client: posts ``/v1/score`` or ``/v1/score:batch`` to the gateway in open or closed loop.

The loops are the gRPC client's (:func:`~benchmarks.loadgen_client.drive_closed`,
:func:`~benchmarks.loadgen_client.drive_open`); only the call differs. HTTP/1.1 with keep-alive connections
(``loadgen_rest_http``): in closed loop one connection per request in flight (``concurrency``); in open loop up
to ``OPEN_LOOP_CONNECTIONS``, so a slow gateway gets more connections rather than a queue in the client (a request
that still has to wait for a connection waits inside its measured latency, which counts from the intended send
time). Requests, head and JSON body, are built before the timed phase; the hot path writes them and parses the
answer with orjson. A non-200 answer counts as an error named ``HTTP_<status>``, a failed exchange by its cause
(``ConnectionRefusedError``, ``TimeoutError``, ...), an unreadable 200 as ``BAD_ANSWER``. The event loop is
uvloop's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator

import orjson
import uvloop

from benchmarks.loadgen_client import ClientPlan, Outcome, drive_closed, drive_open
from benchmarks.loadgen_rest_http import ConnectionPool, ExchangeError, Exchanger, Origin, build_request
from benchmarks.loadgen_rest_json import OUTCOMES, PATHS
from benchmarks.loadgen_schedule import OpenLoopSchedule, RawResult, Recorder, Window
from fraudguard.errors import UnavailableError

OPEN_LOOP_CONNECTIONS = 256
_READY_POLL_S = 0.1


def connection_pool(plan: ClientPlan) -> ConnectionPool:
    """Keep-alive connections to the gateway, as many as ``plan`` may have requests in flight."""
    size = plan.concurrency if plan.mode == "closed" else max(plan.concurrency, OPEN_LOOP_CONNECTIONS)
    return ConnectionPool(Origin.parse(plan.target), size, plan.timeout_s, plan.tls_ca)


class RestClient:
    """Posts ``bodies`` (cycled) to the gateway at ``plan.target`` according to ``plan``; ``run`` measures.

    ``pool`` replaces the connections to the gateway (a fake in tests); by default :func:`connection_pool`.
    """

    def __init__(self, plan: ClientPlan, bodies: list[bytes], pool: Exchanger | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if not bodies:
            raise ValueError("no requests to send")
        if plan.rpc not in PATHS:
            raise ValueError(f"the REST gateway has no {plan.rpc!r} call (only {', '.join(PATHS)})")
        origin = Origin.parse(plan.target)
        self._plan = plan
        self._requests = [build_request(origin, "POST", PATHS[plan.rpc], body) for body in bodies]
        self._health = build_request(origin, "GET", "/healthz")
        self._pool = pool
        self._clock = clock
        self._counter: Iterator[int] = itertools.count()
        self._recorder = Recorder(Window(0.0, 0.0))
        self._outcome: Callable[[bytes], Outcome] = OUTCOMES[plan.rpc]

    async def run(self) -> RawResult:
        plan = self._plan
        pool = self._pool or connection_pool(plan)
        try:
            await self._connect(pool)
            start = self._clock() + plan.warmup_s
            window = Window(start, start + plan.duration_s)
            self._recorder = Recorder(window)

            async def call(intended: float, sent: float) -> None:
                await self._call(pool, intended, sent)

            if plan.mode == "open":
                schedule = OpenLoopSchedule(plan.rate, window.start - plan.warmup_s, window.end)
                await drive_open(self._clock, self._recorder, call, schedule)
            else:
                await drive_closed(self._clock, self._recorder, call, plan.concurrency, window.end)
        finally:
            await pool.close()
        return self._recorder.result()

    async def _connect(self, pool: Exchanger) -> None:
        """Open a first connection (``GET /healthz``) before the clock starts."""
        try:
            answer = await pool.exchange(self._health)
        except ExchangeError as exc:
            raise UnavailableError(f"gateway at {self._plan.target}: {exc}") from exc
        if answer.status != 200:
            raise UnavailableError(f"gateway at {self._plan.target} answered /healthz with {answer.status}")

    async def _call(self, pool: Exchanger, intended: float, sent: float) -> None:
        request = self._requests[next(self._counter) % len(self._requests)]
        try:
            answer = await pool.exchange(request)
        except ExchangeError as exc:
            self._recorder.failed(intended, exc.kind)
            return
        done = self._clock()
        if answer.status != 200:
            self._recorder.failed(intended, f"HTTP_{answer.status}")
            return
        try:
            ok, server_us, item_errors = self._outcome(answer.body)
        except (KeyError, TypeError, ValueError):  # orjson.JSONDecodeError is a ValueError
            self._recorder.failed(intended, "BAD_ANSWER")
            return
        self._recorder.succeeded(intended, sent, done, ok, server_us, item_errors)


def run_rest_client(plan: ClientPlan, bodies: list[bytes]) -> RawResult:
    """Run one REST client to completion on a fresh uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(RestClient(plan, bodies).run())


async def probe_gateway(url: str, tls_ca: bytes | None, timeout_s: float) -> str:
    """The model version the gateway serves once ``/readyz`` says ready; ``UnavailableError`` if not in time."""
    origin = Origin.parse(url)
    pool = ConnectionPool(origin, 1, timeout_s, tls_ca)
    deadline = time.monotonic() + timeout_s
    why = "no answer"
    try:
        while True:
            try:
                ready = await pool.exchange(build_request(origin, "GET", "/readyz"))
                if ready.status == 200:
                    return await _model_version(pool, origin, url)
                why = f"/readyz answered {ready.status}: {ready.body[:200].decode(errors='replace')}"
            except ExchangeError as exc:
                why = str(exc)
            if time.monotonic() >= deadline:
                raise UnavailableError(f"gateway at {url} not ready within {timeout_s:g} s ({why})")
            await asyncio.sleep(_READY_POLL_S)
    finally:
        await pool.close()


async def _model_version(pool: ConnectionPool, origin: Origin, url: str) -> str:
    try:
        model = await pool.exchange(build_request(origin, "GET", "/v1/model"))
    except ExchangeError as exc:
        raise UnavailableError(f"gateway at {url}: /v1/model: {exc}") from exc
    if model.status != 200:
        raise UnavailableError(f"gateway at {url} answered /v1/model with {model.status}: "
                               f"{model.body[:200].decode(errors='replace')}")
    return str(orjson.loads(model.body)["model_version"])


def check_gateway(url: str, tls_ca: bytes | None, timeout_s: float) -> str:
    """Synchronous :func:`probe_gateway`, for the command line before any client starts."""
    return asyncio.run(probe_gateway(url, tls_ca, timeout_s))

"""One process's gRPC client: drives Score, ScoreBatch or ScoreStream in open or closed loop.

Requests are pre-serialised bytes (the channel's request serializer is the identity), so
the client's hot loop only sends, waits and parses answers. Open loop runs the schedule
in a ticker thread: ``time.sleep`` wakes within tens of microseconds, where asyncio's
timers round up to a whole millisecond and would add that to every measured latency.
:func:`drive_closed` and :func:`drive_open` are the unary loops, shared with the REST
client (``loadgen_rest_client``): they know only a ``call(intended, sent)`` coroutine.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass

import grpc

from benchmarks.loadgen_schedule import OpenLoopSchedule, RawResult, Recorder, Window, run_schedule
from fraudguard.errors import UnavailableError
from fraudguard.proto.fraud.v1 import scoring_pb2

_SERVICE = "/" + scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
_STREAM_RETRY_S = 0.1
_TICKER_SWITCH_INTERVAL_S = 0.0005
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 64 * 1024 * 1024),)

# (transactions scored, server_time_us of the message, item errors by code name)
Outcome = tuple[int, float | None, Counter[str] | None]
# one unary request, sent at ``sent`` though due at ``intended``; it records its own outcome
UnaryCall = Callable[[float, float], Coroutine[None, None, None]]


@dataclass(frozen=True, slots=True)
class ClientPlan:
    """What one client process does. ``rate`` is request messages per second (open loop)."""

    target: str
    rpc: str  # "score", "stream" or "batch" (REST: "score" or "batch")
    mode: str  # "open" or "closed"
    rate: float
    concurrency: int  # closed loop: in-flight requests; stream: streams (either loop)
    pipeline: int  # stream, closed loop: messages in flight per stream
    batch_size: int
    duration_s: float
    warmup_s: float
    timeout_s: float
    tls_ca: bytes | None = None
    protocol: str = "grpc"  # "grpc" (target is HOST:PORT) or "rest" (target is the gateway's base URL)


def open_channel(target: str, tls_ca: bytes | None) -> grpc.aio.Channel:
    if tls_ca is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(tls_ca), options=CHANNEL_OPTIONS)


async def probe(target: str, tls_ca: bytes | None, timeout_s: float) -> scoring_pb2.GetModelInfoResponse:
    """The server's model info; ``UnavailableError`` with a readable reason when it cannot be reached."""
    async with open_channel(target, tls_ca) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout_s)
        except TimeoutError as exc:
            raise UnavailableError(f"cannot connect to scoring server at {target} within {timeout_s:g} s") from exc
        info = channel.unary_unary(_SERVICE + "/GetModelInfo",
                                   request_serializer=scoring_pb2.GetModelInfoRequest.SerializeToString,
                                   response_deserializer=scoring_pb2.GetModelInfoResponse.FromString)
        try:
            response: scoring_pb2.GetModelInfoResponse = await info(scoring_pb2.GetModelInfoRequest(),
                                                                    timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise UnavailableError(f"scoring server at {target} answered GetModelInfo with "
                                   f"{exc.code().name}: {exc.details()}") from exc
        return response


_STATUS_NAMES: dict[int, str] = {status.value[0]: status.name for status in grpc.StatusCode}


def code_name(code: int) -> str:
    """The name of a gRPC status code number (REST batch item errors carry the number)."""
    return _STATUS_NAMES.get(code, f"CODE_{code}")


def score_outcome(payload: bytes) -> Outcome:
    decision = scoring_pb2.ScoreResponse.FromString(payload).decision
    return 1, decision.server_time_us, None


def results_outcome(results: Sequence[scoring_pb2.ScoreResult]) -> Outcome:
    """Scored count, the (batch-amortised) server time, and item errors of a batch's results."""
    ok = 0
    server_us: float | None = None
    errors: Counter[str] | None = None
    for result in results:
        if result.HasField("decision"):
            ok += 1
            if server_us is None:
                server_us = result.decision.server_time_us
        else:
            errors = errors if errors is not None else Counter()
            errors[code_name(result.error.code)] += 1
    return ok, server_us, errors


def batch_outcome(payload: bytes) -> Outcome:
    return results_outcome(scoring_pb2.ScoreBatchResponse.FromString(payload).results)


def stream_outcome(payload: bytes) -> Outcome:
    return results_outcome(scoring_pb2.ScoreStreamResponse.FromString(payload).results)


class Ticker:
    """Runs an open-loop schedule in a thread and calls ``fire`` on the event loop for each due slice."""

    def __init__(self, schedule: OpenLoopSchedule, fire: Callable[[list[tuple[int, float]]], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._fire = fire
        self._stop = threading.Event()
        self._done = asyncio.Event()
        self._thread = threading.Thread(target=self._run, args=(schedule,), name="loadgen-ticker", daemon=True)

    def _run(self, schedule: OpenLoopSchedule) -> None:
        try:
            run_schedule(schedule, time.perf_counter, time.sleep, self._emit, self._stop.is_set)
        finally:
            self._loop.call_soon_threadsafe(self._done.set)

    def _emit(self, due: list[tuple[int, float]]) -> None:
        self._loop.call_soon_threadsafe(self._fire, due)

    async def run(self) -> None:
        # the ticker needs the GIL promptly when it wakes; the default 5 ms switch interval
        # would let a busy event loop hold it past several send times
        interval = sys.getswitchinterval()
        sys.setswitchinterval(_TICKER_SWITCH_INTERVAL_S)
        self._thread.start()
        try:
            await self._done.wait()
        finally:
            self._stop.set()
            sys.setswitchinterval(interval)


async def drive_closed(clock: Callable[[], float], recorder: Recorder, call: UnaryCall, concurrency: int,
                       end: float) -> None:
    """Closed loop: ``concurrency`` workers each send the next request as soon as the last is answered."""

    async def worker() -> None:
        while (now := clock()) < end:
            recorder.sent(now, now)
            await call(now, now)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def drive_open(clock: Callable[[], float], recorder: Recorder, call: UnaryCall,
                     schedule: OpenLoopSchedule) -> None:
    """Open loop: one task per request at its scheduled time, however many are still unanswered."""
    tasks: set[asyncio.Task[None]] = set()

    def fire(due: list[tuple[int, float]]) -> None:
        for _, intended in due:
            sent = clock()
            recorder.sent(intended, sent)
            task = asyncio.create_task(call(intended, sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    await Ticker(schedule, fire).run()
    await asyncio.gather(*tasks)


class Client:
    """Sends ``requests`` (cycled) to one target according to ``plan``; ``run`` returns the measurements."""

    def __init__(self, plan: ClientPlan, requests: list[bytes]) -> None:
        if not requests:
            raise ValueError("no requests to send")
        self._plan = plan
        self._requests = requests
        self._clock = time.perf_counter
        self._counter: Iterator[int] = itertools.count()
        self._recorder = Recorder(Window(0.0, 0.0))
        method = {"score": "Score", "batch": "ScoreBatch", "stream": "ScoreStream"}[plan.rpc]
        self._method = _SERVICE + "/" + method
        self._outcome: Callable[[bytes], Outcome] = {
            "score": score_outcome, "batch": batch_outcome, "stream": stream_outcome}[plan.rpc]

    def _next_request(self) -> bytes:
        return self._requests[next(self._counter) % len(self._requests)]

    async def run(self) -> RawResult:
        plan = self._plan
        async with open_channel(plan.target, plan.tls_ca) as channel:
            try:
                await asyncio.wait_for(channel.channel_ready(), plan.timeout_s)
            except TimeoutError as exc:
                raise UnavailableError(f"cannot connect to {plan.target} within {plan.timeout_s:g} s") from exc
            start = self._clock() + plan.warmup_s
            window = Window(start, start + plan.duration_s)
            self._recorder = Recorder(window)
            begin = window.start - plan.warmup_s
            if plan.rpc == "stream":
                await self._run_streams(channel, begin, window.end)
            elif plan.mode == "open":
                await self._run_unary_open(channel, begin, window.end)
            else:
                await self._run_unary_closed(channel, window.end)
        return self._recorder.result()

    # --- unary: Score and ScoreBatch -------------------------------------------------------

    def _unary(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable:
        return channel.unary_unary(self._method, request_serializer=None, response_deserializer=None)

    async def _call(self, method: grpc.aio.UnaryUnaryMultiCallable, intended: float, sent: float) -> None:
        try:
            payload = await method(self._next_request(), timeout=self._plan.timeout_s)
        except grpc.aio.AioRpcError as exc:
            self._recorder.failed(intended, exc.code().name)
            return
        done = self._clock()
        ok, server_us, item_errors = self._outcome(payload)
        self._recorder.succeeded(intended, sent, done, ok, server_us, item_errors)

    async def _run_unary_closed(self, channel: grpc.aio.Channel, end: float) -> None:
        method = self._unary(channel)
        await drive_closed(self._clock, self._recorder, lambda intended, sent: self._call(method, intended, sent),
                           self._plan.concurrency, end)

    async def _run_unary_open(self, channel: grpc.aio.Channel, begin: float, end: float) -> None:
        method = self._unary(channel)
        await drive_open(self._clock, self._recorder, lambda intended, sent: self._call(method, intended, sent),
                         OpenLoopSchedule(self._plan.rate, begin, end))

    # --- ScoreStream ----------------------------------------------------------------------

    async def _run_streams(self, channel: grpc.aio.Channel, begin: float, end: float) -> None:
        plan = self._plan
        method = channel.stream_stream(self._method, request_serializer=None, response_deserializer=None)
        if plan.mode == "closed":
            await asyncio.gather(*(self._closed_stream(method, end) for _ in range(plan.concurrency)))
            return
        queues: list[asyncio.Queue[float | None]] = [asyncio.Queue() for _ in range(plan.concurrency)]
        turn = itertools.cycle(queues)

        def fire(due: list[tuple[int, float]]) -> None:
            for _, intended in due:
                next(turn).put_nowait(intended)

        async def schedule() -> None:
            await Ticker(OpenLoopSchedule(plan.rate, begin, end), fire).run()
            for queue in queues:
                queue.put_nowait(None)

        await asyncio.gather(schedule(), *(self._open_stream(method, queue) for queue in queues))

    def _stream_deadline(self) -> float:
        return self._plan.warmup_s + self._plan.duration_s + self._plan.timeout_s

    async def _read_answers(self, call: grpc.aio.StreamStreamCall, pending: deque[tuple[float, float]],
                            on_answer: Callable[[], None]) -> None:
        while True:
            payload = await call.read()
            if payload is grpc.aio.EOF:
                return
            done = self._clock()
            intended, sent = pending.popleft()
            ok, server_us, item_errors = self._outcome(payload)
            self._recorder.succeeded(intended, sent, done, ok, server_us, item_errors)
            on_answer()

    def _fail_pending(self, pending: deque[tuple[float, float]], exc: grpc.aio.AioRpcError) -> None:
        code = exc.code().name
        while pending:
            self._recorder.failed(pending.popleft()[0], code)

    async def _pump(self, call: grpc.aio.StreamStreamCall, write: Coroutine[None, None, None],
                    pending: deque[tuple[float, float]], on_answer: Callable[[], None]) -> None:
        """Write and read one stream until both sides end; a failure fails what is in flight."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(write)
                group.create_task(self._read_answers(call, pending, on_answer))
        except* grpc.aio.AioRpcError as failures:
            call.cancel()
            first = failures.exceptions[0]
            assert isinstance(first, grpc.aio.AioRpcError)
            self._fail_pending(pending, first)
            await asyncio.sleep(_STREAM_RETRY_S)

    async def _closed_stream(self, method: grpc.aio.StreamStreamMultiCallable, end: float) -> None:
        """One stream, ``pipeline`` messages in flight, reopened after a failure until ``end``."""
        while self._clock() < end:
            call = method(timeout=self._stream_deadline())
            pending: deque[tuple[float, float]] = deque()
            slots = asyncio.Semaphore(self._plan.pipeline)

            async def write(call: grpc.aio.StreamStreamCall = call, pending: deque[tuple[float, float]] = pending,
                            slots: asyncio.Semaphore = slots) -> None:
                while True:
                    await slots.acquire()
                    if (now := self._clock()) >= end:
                        break
                    self._recorder.sent(now, now)
                    pending.append((now, now))
                    await call.write(self._next_request())
                await call.done_writing()

            await self._pump(call, write(), pending, slots.release)

    async def _open_stream(self, method: grpc.aio.StreamStreamMultiCallable,
                           queue: asyncio.Queue[float | None]) -> None:
        """One stream fed from ``queue`` (intended times; ``None`` ends it), reopened after a failure."""
        finished = False
        while not finished:
            call = method(timeout=self._stream_deadline())
            pending: deque[tuple[float, float]] = deque()

            async def write(call: grpc.aio.StreamStreamCall = call,
                            pending: deque[tuple[float, float]] = pending) -> None:
                nonlocal finished
                while (intended := await queue.get()) is not None:
                    sent = self._clock()
                    self._recorder.sent(intended, sent)
                    pending.append((intended, sent))
                    await call.write(self._next_request())
                finished = True
                await call.done_writing()

            await self._pump(call, write(), pending, lambda: None)


def run_client(plan: ClientPlan, requests: list[bytes]) -> RawResult:
    """Run one client to completion on a fresh event loop."""
    return asyncio.run(Client(plan, requests).run())


def check_reachable(target: str, tls_ca: bytes | None, timeout_s: float) -> scoring_pb2.GetModelInfoResponse:
    """Synchronous :func:`probe`, for the command line before any client starts."""
    try:
        return asyncio.run(probe(target, tls_ca, timeout_s))
    except UnavailableError:
        raise
    except grpc.RpcError as exc:  # e.g. a malformed target
        raise UnavailableError(f"scoring server at {target}: {exc}") from exc

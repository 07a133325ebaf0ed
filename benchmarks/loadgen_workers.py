"""Client processes: each builds its own traffic, all start together, their measurements are merged.

A plan's ``protocol`` picks the client: gRPC (protobuf bytes) or REST (JSON bodies, ``loadgen_rest_client``);
the traffic is the same either way.

One Python process tops out at a few thousand unary calls per second of client work, so
``--processes N`` splits the load (rate and concurrency) over N spawned processes. Raw
latencies come back and are concatenated, so merged percentiles are exact.
"""

from __future__ import annotations

import multiprocessing
import queue
from dataclasses import dataclass, replace
from multiprocessing.synchronize import Barrier

from benchmarks.loadgen_client import ClientPlan, run_client
from benchmarks.loadgen_rest_client import run_rest_client
from benchmarks.loadgen_rest_json import request_bodies
from benchmarks.loadgen_schedule import RawResult
from benchmarks.loadgen_transactions import TransactionFactory, serialized_requests, synthetic_transactions
from fraudguard.errors import FraudguardError

_READY_TIMEOUT_S = 120.0
_RESULT_GRACE_S = 60.0


class LoadgenError(FraudguardError):
    """A client process could not prepare or finish its part of a run."""


TRAFFIC_SOURCES = ("synthetic", "builtin")


@dataclass(frozen=True, slots=True)
class Traffic:
    """Which transactions a run sends: ``pool_size`` per process from ``source``, seeded by ``seed``."""

    seed: int
    pool_size: int
    run_tag: str  # makes transaction ids unique across runs and processes
    source: str = "synthetic"  # one of TRAFFIC_SOURCES


def prepare_requests(plan: ClientPlan, traffic: Traffic, worker: int) -> list[bytes]:
    """This process's request messages (protobuf or JSON, as ``plan.protocol`` says), serialised, cycled by the
    client."""
    pool = max(traffic.pool_size, plan.batch_size)
    prefix = f"fgb-{traffic.run_tag}-{worker}"
    stream_seed = traffic.seed * 1_000 + worker + 1
    if traffic.source == "synthetic":
        transactions = synthetic_transactions(pool, stream_seed, prefix)
    else:
        transactions = TransactionFactory(traffic.seed).build(pool, stream_seed=stream_seed, id_prefix=prefix)
    if plan.protocol == "rest":
        return request_bodies(transactions, plan.rpc, plan.batch_size)
    return serialized_requests(transactions, plan.rpc, plan.batch_size)


def run_plan(plan: ClientPlan, requests: list[bytes]) -> RawResult:
    """Run one client of ``plan.protocol`` in this process."""
    return run_rest_client(plan, requests) if plan.protocol == "rest" else run_client(plan, requests)


def split_plan(plan: ClientPlan, processes: int) -> list[ClientPlan]:
    """Each process's share: rate divided evenly, concurrency (at least 1 each) spread as evenly as it goes."""
    shares = [plan.concurrency // processes + (1 if i < plan.concurrency % processes else 0)
              for i in range(processes)]
    return [replace(plan, rate=plan.rate / processes, concurrency=max(1, share)) for share in shares]


def _worker_main(plan: ClientPlan, traffic: Traffic, worker: int, barrier: Barrier,
                 results: multiprocessing.Queue[tuple[int, RawResult | str]]) -> None:
    try:
        requests = prepare_requests(plan, traffic, worker)
        barrier.wait(_READY_TIMEOUT_S)
        results.put((worker, run_plan(plan, requests)))
    except BaseException as exc:  # reported to the parent, which raises LoadgenError
        barrier.abort()
        results.put((worker, f"{type(exc).__name__}: {exc}"))


def run_in_processes(plan: ClientPlan, traffic: Traffic, processes: int) -> RawResult:
    """Run ``plan`` split over ``processes`` spawned client processes; merge what they measured."""
    if processes == 1:
        return run_plan(plan, prepare_requests(plan, traffic, 0))
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold gRPC state
    barrier = context.Barrier(processes)
    results: multiprocessing.Queue[tuple[int, RawResult | str]] = context.Queue()
    workers = [context.Process(target=_worker_main, args=(share, traffic, i, barrier, results),
                               name=f"loadgen-client-{i}", daemon=True)
               for i, share in enumerate(split_plan(plan, processes))]
    for process in workers:
        process.start()
    try:
        return _collect(len(workers), results, plan)
    finally:
        for process in workers:
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()


def _collect(count: int, results: multiprocessing.Queue[tuple[int, RawResult | str]], plan: ClientPlan) -> RawResult:
    deadline = _READY_TIMEOUT_S + plan.warmup_s + plan.duration_s + plan.timeout_s + _RESULT_GRACE_S
    collected: list[RawResult] = []
    while len(collected) < count:
        try:
            worker, result = results.get(timeout=deadline)
        except queue.Empty as exc:
            raise LoadgenError(f"client processes sent no result within {deadline:g} s") from exc
        if isinstance(result, str):
            raise LoadgenError(f"client process {worker} failed: {result}")
        collected.append(result)
    return RawResult.merge(collected)

"""Shared fixtures: a real model bundle, real scoring servers on loopback port 0."""

from __future__ import annotations

import os

# gRPC's fork handlers run in every child a test forks (pg_ctl for the embedded PostgreSQL, servers) and can crash
# it when gRPC threads are busy ("skipping fork() handlers", then SIGSEGV); the tests fork only to exec.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from fraudguard.proto.fraud.v1 import scoring_pb2_grpc, transaction_pb2
from fraudguard.settings import Settings
from scoring.model import promote
from scoring.server import ScoringServer, start_server
from tests._model_helpers import make_bundle, train_booster
from tests._server_process import ServerProcess
from tests.pg import conn, db, dsn, embedded_dsn, embedded_server, pg_data_dir, pg_server  # noqa: F401  (fixtures for every module)

MODEL_VERSION = "test-model-1"


@pytest.fixture(scope="session")
def bundle_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding one promoted bundle of a real (small) LightGBM model."""
    models = tmp_path_factory.mktemp("bundles") / "models"
    models.mkdir()
    make_bundle(models, MODEL_VERSION, train_booster(seed=3, n_trees=40, num_leaves=15))
    promote(models, MODEL_VERSION)
    return models


@pytest.fixture
def data_dir(tmp_path: Path, bundle_store: Path) -> Path:
    """A fresh data directory with the shared bundle promoted in it."""
    data = tmp_path / "data"
    shutil.copytree(bundle_store, data / "models")
    return data


def server_settings(data_dir: Path, **changes: object) -> Settings:
    values: dict[str, object] = {"listen": "127.0.0.1:0", "data_dir": data_dir, "model_poll_interval_s": 0.05,
                                 "snapshot_interval_s": 0.0, "shutdown_grace_s": 2.0,
                                 "max_cards": 4096, "max_entities": 4096, "max_recent_transactions": 8192,
                                 "record": False}
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def scoring_server(data_dir: Path) -> AsyncIterator[ScoringServer]:
    running = await start_server(server_settings(data_dir))
    try:
        yield running
    finally:
        await running.stop(grace=1.0)


@pytest.fixture
async def stub(scoring_server: ScoringServer) -> AsyncIterator[scoring_pb2_grpc.ScoringServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scoring_server.port}") as channel:
        yield scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def scoring_target(tmp_path_factory: pytest.TempPathFactory, bundle_store: Path) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a real ``fraudguard serve`` child process (shared by the session)."""
    data = tmp_path_factory.mktemp("served")
    shutil.copytree(bundle_store, data / "models")
    server = ServerProcess(data, ("--max-cards", "4096", "--max-entities", "4096")).start()
    try:
        yield server.target
    finally:
        server.terminate()


def make_transaction(i: int = 0, *, card: str | None = None, amount_minor: int = 2599, when: float | None = None,
                     **fields: object) -> transaction_pb2.Transaction:
    """A valid, fully populated transaction; ``fields`` override any top-level field."""
    ts = Timestamp()
    ts.FromNanoseconds(int(((when if when is not None else time.time() - 60) + i * 1e-3) * 1e9))
    tx = transaction_pb2.Transaction(
        transaction_id=f"tx-{i}",
        event_time=ts,
        amount_minor=amount_minor,
        currency="EUR",
        card=transaction_pb2.Card(token=card or f"card-{i % 97}", bin="411111", last4="1111"),
        customer_id=f"cust-{i % 89}",
        merchant_id=f"merchant-{i % 13}",
        mcc=5411,
        merchant_country="DE",
        device_id=f"device-{i % 71}",
        ip_address=f"10.1.{i % 200}.{i % 250}",
        location=transaction_pb2.GeoPoint(latitude=52.52, longitude=13.40),
        channel=transaction_pb2.CHANNEL_ECOMMERCE,
        entry_mode=transaction_pb2.ENTRY_MODE_CARD_ON_FILE,
    )
    for name, value in fields.items():
        if isinstance(value, transaction_pb2.Card | transaction_pb2.GeoPoint | Timestamp):
            getattr(tx, name).CopyFrom(value)
        else:
            setattr(tx, name, value)
    return tx

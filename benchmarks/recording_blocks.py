"""Realistic decision blocks for the writer's benchmarks: the load generator's transactions in stream messages
of 256, with scorer-shaped arrays (46 float32 features, some NaN; top-3 reasons), and a keyring that seals the
device id and IP address the way the scoring server does."""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.loadgen_transactions import TransactionFactory
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.personal import Keyring, personal_aad
from scoring.features.schema import FEATURES
from scoring.record.block import DecisionBlock, MessageKind, Seal

BLOCK_ROWS = 256
KEY_ID = "k-bench"


def sealer() -> Seal:
    """The scoring server's seal callback, on an in-memory key."""
    keyring = Keyring(KEY_ID, {KEY_ID: os.urandom(32)})

    def seal(column: str, transaction_id: str, text: str) -> bytes:
        return keyring.seal(text.encode(), personal_aad(column, transaction_id))

    return seal


def make_blocks(n_blocks: int, id_prefix: str, seed: int = 3, rows: int = BLOCK_ROWS,
                factory: TransactionFactory | None = None) -> list[DecisionBlock]:
    """``n_blocks`` blocks of ``rows`` scored transactions each, ids ``{id_prefix}-{i:08d}``."""
    factory = factory or TransactionFactory(seed=11)
    transactions = factory.build(n_blocks * rows, stream_seed=seed, id_prefix=id_prefix)
    rng = np.random.default_rng(seed)
    n_features = len(FEATURES)
    decided_at_us = time.time_ns() // 1000
    blocks = []
    for b in range(n_blocks):
        request = scoring_pb2.ScoreStreamRequest(transactions=transactions[b * rows:(b + 1) * rows])
        features = rng.normal(size=(rows, n_features)).astype(np.float32)
        features[rng.random((rows, n_features)) < 0.05] = np.nan
        blocks.append(DecisionBlock(
            kind=MessageKind.STREAM, request=request.SerializeToString(), positions=np.arange(rows, dtype=np.uint32),
            scores=rng.random(rows), actions=rng.choice(np.array([1, 1, 1, 1, 1, 2, 3, 4], np.uint8), rows),
            features=features, reason_index=rng.integers(0, n_features, (rows, 3)).astype(np.uint16),
            reason_contribution=rng.normal(size=(rows, 3)).astype(np.float32), model_version="demo-1",
            server_time_us=4.25, decided_at_us=decided_at_us + b,
        ))  # fmt: skip
    return blocks

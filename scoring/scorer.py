"""The scoring core: features → model → decision for a batch. Knows nothing of gRPC.

All per-transaction work happens in the feature kernels, onnxruntime and the
contribution kernel, each called once per batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.decision import decide, thresholds_array
from scoring.features import FeatureEngine
from scoring.features.batch import TransactionBatch
from scoring.model import ActiveModel, Thresholds


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """Decisions for a batch, as arrays (row i answers transaction i)."""

    features: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float64]
    actions: npt.NDArray[np.int64]
    reason_index: npt.NDArray[np.int64]  # [n, k] feature indices, strongest first
    reason_contribution: npt.NDArray[np.float64]  # [n, k] log-odds contributions
    model_version: str
    server_time_us: float  # per transaction, amortised over the batch


class Scorer:
    """Holds the feature engine and the active model; swaps the model atomically."""

    def __init__(
        self, engine: FeatureEngine, model: ActiveModel, bands: Thresholds | None = None, top_reasons: int = 3
    ) -> None:
        self.engine = engine
        self._bands_override = bands
        self.top_reasons = top_reasons
        self._model = model
        self._thresholds = self._thresholds_for(model)

    @property
    def model(self) -> ActiveModel:
        return self._model

    @property
    def thresholds(self) -> npt.NDArray[np.float64]:
        return self._thresholds

    def _thresholds_for(self, model: ActiveModel) -> npt.NDArray[np.float64]:
        return thresholds_array(self._bands_override or model.bundle.manifest.thresholds)

    def swap_model(self, model: ActiveModel) -> None:
        """Take ``model`` for every later call; in-flight calls finish on the old one."""
        thresholds = self._thresholds_for(model)
        self._model, self._thresholds = model, thresholds

    def score(self, batch: TransactionBatch, started_ns: int | None = None) -> ScoredBatch:
        """Features, score, action and reasons for every transaction of ``batch``."""
        t0 = time.perf_counter_ns() if started_ns is None else started_ns
        model, thresholds = self._model, self._thresholds
        x = self.engine.process(batch)
        scores = model.runtime.predict(x)
        idx, contrib = model.runtime.top_reasons(x, self.top_reasons)
        actions = decide(scores, thresholds)
        n = max(len(batch), 1)
        elapsed_us = (time.perf_counter_ns() - t0) / 1000.0
        return ScoredBatch(x, scores, actions, idx, contrib, model.bundle.manifest.version, elapsed_us / n)

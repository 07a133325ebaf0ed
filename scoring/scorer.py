"""The scoring core: features → model → decision for a batch. Knows nothing of gRPC.

All per-transaction work happens in the feature kernels, onnxruntime and the
contribution kernel, each called once per batch. onnxruntime and the contribution
kernel both release the GIL, so for batches of ``OVERLAP_MIN_ROWS`` or more the reasons
are computed on a helper thread while onnxruntime scores on the caller's: with a second
core free, the model step of a 256-row batch takes max(onnxruntime, reasons) instead of
their sum (-35%). Waking the helper costs tens of microseconds (~65 µs for one row on the
2-core VM), and nothing is gained when the other core is busy (then a 32-row batch pays
~6% more), so smaller batches stay on one thread.
"""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.decision import decide, thresholds_array
from scoring.features import FeatureEngine
from scoring.features.batch import TransactionBatch
from scoring.model import ActiveModel, ModelRuntime, Thresholds
from scoring.rules import RuleColumns, RuleSet

# Batches of at least this many rows compute their reasons on the helper thread (measured on the 2-core VM:
# with a free core, 16 rows gain 16%, 32 rows 24%, 64 rows 30%; with both cores busy, 32 rows lose 6%).
OVERLAP_MIN_ROWS = 32

Reasons = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


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
    rule_set: RuleSet | None = None  # the rules that decided with the model (None: the model alone)
    rule_hits: npt.NDArray[np.bool_] | None = None  # [n, len(rule_set.rules)]: rule r hit transaction i

    @property
    def rule_set_version(self) -> str:
        return "" if self.rule_set is None else self.rule_set.version

    def hit_ids(self, row: int) -> tuple[str, ...]:
        """Ids of the rules that hit transaction ``row``, in rule-set order."""
        if self.rule_set is None or self.rule_hits is None:
            return ()
        ids = self.rule_set.rule_ids
        return tuple(ids[r] for r in np.flatnonzero(self.rule_hits[row]).tolist())


class Scorer:
    """Holds the feature engine, the active model and the active rules (if any); swaps either atomically.

    ``overlap_min_rows``: batches of at least this many rows run the reason codes on a helper
    thread (started on first use, one per scorer) in parallel with onnxruntime; ``None`` never does.
    """

    def __init__(
        self, engine: FeatureEngine, model: ActiveModel, bands: Thresholds | None = None, top_reasons: int = 3,
        *, overlap_min_rows: int | None = OVERLAP_MIN_ROWS, rules: RuleSet | None = None,
    ) -> None:
        if overlap_min_rows is not None and overlap_min_rows < 1:
            raise ValueError(f"overlap_min_rows must be >= 1 or None, got {overlap_min_rows}")
        self.engine = engine
        self._bands_override = bands
        self.top_reasons = top_reasons
        self._model = model
        self._thresholds = self._thresholds_for(model)
        self._rules = rules
        self._overlap_min_rows = overlap_min_rows
        self._helper: ThreadPoolExecutor | None = None
        self._helper_lock = threading.Lock()

    @property
    def model(self) -> ActiveModel:
        return self._model

    @property
    def rules(self) -> RuleSet | None:
        return self._rules

    @property
    def thresholds(self) -> npt.NDArray[np.float64]:
        return self._thresholds

    def _thresholds_for(self, model: ActiveModel) -> npt.NDArray[np.float64]:
        return thresholds_array(self._bands_override or model.bundle.manifest.thresholds)

    def swap_model(self, model: ActiveModel) -> None:
        """Take ``model`` for every later call; in-flight calls finish on the old one."""
        thresholds = self._thresholds_for(model)
        self._model, self._thresholds = model, thresholds

    def swap_rules(self, rules: RuleSet | None) -> None:
        """Take ``rules`` (``None``: the model alone decides) for every later call; in-flight calls finish on the
        old ones."""
        self._rules = rules

    def score(self, batch: TransactionBatch, started_ns: int | None = None) -> ScoredBatch:
        """Features, score, action and reasons for every transaction of ``batch``; with rules, the action is the
        model's combined with the rules' (see ``scoring.rules.ruleset``) and the hits are kept."""
        t0 = time.perf_counter_ns() if started_ns is None else started_ns
        model, thresholds, rules = self._model, self._thresholds, self._rules
        x = self.engine.process(batch)
        scores, (idx, contrib) = self._predict_and_explain(model.runtime, x)
        actions = decide(scores, thresholds)
        hits = None
        if rules is not None:
            outcome = rules.evaluate(RuleColumns.of(batch, x, scores), actions)
            actions, hits = outcome.action, outcome.hits
        n = max(len(batch), 1)
        elapsed_us = (time.perf_counter_ns() - t0) / 1000.0
        return ScoredBatch(x, scores, actions, idx, contrib, model.bundle.manifest.version, elapsed_us / n, rules,
                           hits)

    def close(self) -> None:
        """Stop the helper thread, if one was started (also done when the scorer is garbage-collected).
        A later large batch starts a new one."""
        with self._helper_lock:
            helper, self._helper = self._helper, None
        if helper is not None:
            helper.shutdown(wait=False)  # the thread finishes what is queued, then exits

    def _predict_and_explain(self, runtime: ModelRuntime, x: npt.NDArray[np.float32],
                             ) -> tuple[npt.NDArray[np.float64], Reasons]:
        """onnxruntime's scores and the reasons of one model, overlapped for large batches."""
        k = self.top_reasons
        if self._overlap_min_rows is None or x.shape[0] < self._overlap_min_rows:
            return runtime.predict(x), runtime.top_reasons(x, k)
        try:
            reasons = self._helper_thread().submit(runtime.top_reasons, x, k)
        except RuntimeError:  # closed by another thread since we took it: compute the reasons here
            return runtime.predict(x), runtime.top_reasons(x, k)
        scores = runtime.predict(x)  # if this raises, the helper's result is simply dropped
        return scores, reasons.result()

    def _helper_thread(self) -> ThreadPoolExecutor:
        helper = self._helper
        if helper is None:
            with self._helper_lock:
                helper = self._helper
                if helper is None:
                    helper = self._helper = ThreadPoolExecutor(1, thread_name_prefix=f"fraudguard-scorer-{id(self):x}")
                    weakref.finalize(self, helper.shutdown, wait=False)  # the thread holds no reference to us
        return helper

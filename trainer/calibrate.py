"""Action thresholds from operating targets, set on the validation slice.

A score at or above a band's threshold gets at least that band's action (as in
``scoring.decision``): rates below count every payment at or above a band, so a blocked
payment also counts as reviewed and challenged. Thresholds are placed midway between two
distinct validation scores at least ``_MIN_GAP`` apart, never on a score, so that the ONNX
model's float32 arithmetic cannot move a validation payment across one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudguard.errors import ValidationError
from scoring.model import Thresholds

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

BANDS = ("challenge", "review", "block")
_MIN_GAP = 1e-5  # between the scores a threshold separates; >> the ONNX export's error (~1e-7)


@dataclass(frozen=True, slots=True)
class OperatingTargets:
    """What the business accepts, measured on the validation slice."""

    block_precision: float = 0.9  # of the payments blocked, at least this share is fraud
    min_block_alerts: int = 5  # and at least this many validation payments are blocked for it to count
    block_rate: float = 0.01  # at most this share of payments is blocked outright
    review_rate: float = 0.02  # at most this share of payments is reviewed or blocked
    challenge_rate: float = 0.05  # at most this share meets any friction (challenge, review or block)
    review_per_day: float | None = None  # and at most this many payments a day reviewed or blocked (analyst capacity)

    def __post_init__(self) -> None:
        if not 0.0 < self.block_precision <= 1.0:
            raise ValidationError("block_precision", f"must be in (0, 1], got {self.block_precision}")
        if self.min_block_alerts < 1:
            raise ValidationError("min_block_alerts", f"must be at least 1, got {self.min_block_alerts}")
        if not 0.0 <= self.block_rate <= self.review_rate <= self.challenge_rate <= 1.0:
            raise ValidationError("review_rate", "need 0 <= block_rate <= review_rate <= challenge_rate <= 1, got "
                                  f"{self.block_rate}, {self.review_rate} and {self.challenge_rate}")  # fmt: skip
        if self.review_per_day is not None and not self.review_per_day > 0:
            raise ValidationError("review_per_day", f"must be > 0, got {self.review_per_day}")

    def for_volume(self, payments_per_day: float) -> OperatingTargets:
        """These targets with ``review_per_day`` turned into rates at ``payments_per_day`` (the tighter one wins)."""
        if self.review_per_day is None or not payments_per_day > 0:
            return self
        review = min(self.review_rate, self.review_per_day / payments_per_day)
        return dataclasses.replace(self, review_rate=review, block_rate=min(self.block_rate, review),
                                   review_per_day=None)  # fmt: skip


def calibrate_thresholds(y: B, p: F64, targets: OperatingTargets | None = None) -> Thresholds:
    """Thresholds meeting ``targets`` on validation labels ``y`` and scores ``p``.

    Block: the lowest threshold whose blocked set has the target precision (with at least
    ``min_block_alerts`` payments) and stays within ``block_rate``, else one above every
    score (never block). Review and challenge: the lowest thresholds within their rates,
    capped so that ``0 < challenge <= review <= block <= 1`` always holds (so a score of
    exactly 1.0 is always blocked).
    """
    t = targets or OperatingTargets()
    if len(p) == 0 or len(p) != len(y):
        raise ValidationError("validation", f"need as many labels as scores (> 0), got {len(y)} and {len(p)}")
    cuts = _Cuts.of(np.asarray(p, np.float64), np.asarray(y, np.bool_))
    precise = cuts.lowest_with_precision(t.block_precision, t.min_block_alerts)
    block = max(precise, cuts.lowest_within_rate(t.block_rate))
    review = min(cuts.lowest_within_rate(t.review_rate), block)
    challenge = min(cuts.lowest_within_rate(t.challenge_rate), review)
    tiny = float(np.nextafter(0.0, 1.0))
    return Thresholds(challenge=max(challenge, tiny), review=max(review, tiny), block=max(block, tiny))


def action_bands(p: F64, thresholds: Thresholds) -> npt.NDArray[np.int64]:
    """0 allow, 1 challenge, 2 review, 3 block — ``scoring.decision.decide`` minus its enum offset."""
    edges = np.array([thresholds.challenge, thresholds.review, thresholds.block], np.float64)
    return np.searchsorted(edges, np.asarray(p, np.float64), side="right").astype(np.int64)


def action_metrics(y: B, p: F64, thresholds: Thresholds) -> Mapping[str, float]:
    """Per band: share of payments at or above it (``<band>_rate``), share of fraud caught (``_recall``),
    share of those that are fraud (``_precision``, 0 when none)."""
    bands = action_bands(p, thresholds)
    y = np.asarray(y, np.bool_)
    frauds = max(int(y.sum()), 1)
    out: dict[str, float] = {}
    for level, name in enumerate(BANDS, start=1):
        flagged = bands >= level
        hits = int(np.count_nonzero(flagged & y))
        out[f"{name}_rate"] = float(flagged.mean()) if len(p) else 0.0
        out[f"{name}_recall"] = hits / frauds
        out[f"{name}_precision"] = hits / max(int(flagged.sum()), 1)
    return out


@dataclass(frozen=True, slots=True)
class _Cuts:
    """The places a threshold may go: between sorted scores ``desc[k-1]`` and ``desc[k]`` (top ``k`` flagged)."""

    k: npt.NDArray[np.int64]  # payments at or above the threshold
    threshold: F64
    frauds: npt.NDArray[np.int64]  # fraud among them
    n: int
    above_all: float  # a threshold that flags nothing

    @classmethod
    def of(cls, p: F64, y: B) -> _Cuts:
        order = np.argsort(-p, kind="stable")
        desc, hits = p[order], np.cumsum(y[order])
        gaps = desc[:-1] - desc[1:]
        k = np.flatnonzero(gaps >= _MIN_GAP) + 1
        threshold = (desc[k - 1] + desc[k]) / 2.0
        above_all = (float(desc[0]) + 1.0) / 2.0
        return cls(k.astype(np.int64), threshold, hits[k - 1].astype(np.int64), len(p), min(above_all, 1.0))

    def lowest_within_rate(self, rate: float) -> float:
        ok = self.k <= rate * self.n
        return float(self.threshold[ok][-1]) if ok.any() else self.above_all

    def lowest_with_precision(self, precision: float, min_alerts: int) -> float:
        ok = (self.k >= min_alerts) & (self.frauds >= precision * self.k)
        return float(self.threshold[ok][-1]) if ok.any() else self.above_all

"""Time periods of a training run: train, then a gap, then test — never a random split.

Payments before the training period are still replayed (they warm the feature windows
and the entity state, as a server that has been running would have them) but are not
trained on. The validation slice — early stopping, model choice, thresholds — is the end
of the training period, so every decision about the model is made on data later than the
data it was fitted on and earlier than the data it is judged on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudguard.errors import ValidationError
from fraudguard.timeparse import format_instant as _iso

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Row ranges of a time-sorted data set: fit < validation < (gap) < test in time."""

    train: slice  # fitted on
    valid: slice  # the end of the training period: early stopping, model choice, thresholds
    test: slice  # held out, after the gap
    bounds: tuple[float, float, float, float]  # train_from, train_to, test_from, test_to (epoch s; test_to may be inf)

    def describe(self) -> dict[str, object]:
        names = ("train_from", "train_to", "test_from", "test_to")
        out: dict[str, object] = {name: _iso(value) for name, value in zip(names, self.bounds, strict=True)}
        for name, rows in (("fit", self.train), ("validation", self.valid), ("test", self.test)):
            out[f"{name}_rows"] = [rows.start, rows.stop]
        return out


@dataclass(frozen=True, slots=True)
class TrainingPeriods:
    """When to train and when to test (epoch seconds, half-open ``[from, to)``); unset bounds come from the data.

    With nothing set: training starts ``warmup_s`` after the first payment, the last
    ``test_fraction`` of the remaining payments are the test period, and the training
    period ends ``gap_s`` before it. ``--test-from`` alone puts the end of training ``gap_s``
    before it; ``--train-to`` alone puts the test ``gap_s`` after it.
    """

    train_from: float | None = None
    train_to: float | None = None
    test_from: float | None = None
    test_to: float | None = None
    gap_s: float = 0.0
    validation_fraction: float = 0.2  # of the training period's payments, at its end
    test_fraction: float = 0.15  # when no test bound is given
    warmup_s: float = 3 * DAY_S  # when no train_from is given

    def __post_init__(self) -> None:
        for name in ("train_from", "train_to", "test_from", "test_to"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValidationError(_flag(name), f"must be a finite time, got {value}")
        if not (math.isfinite(self.gap_s) and self.gap_s >= 0):
            raise ValidationError("--gap", f"must be >= 0, got {self.gap_s}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValidationError("--validation-fraction", f"must be in (0, 1), got {self.validation_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValidationError("--test-fraction", f"must be in (0, 1), got {self.test_fraction}")
        if not (math.isfinite(self.warmup_s) and self.warmup_s >= 0):
            raise ValidationError("--warmup", f"must be >= 0, got {self.warmup_s}")

    def split(self, event_time: npt.NDArray[np.generic]) -> TimeSplit:
        """The rows of each period; ``ValidationError`` naming the flag when a period is empty or out of order."""
        t = np.asarray(event_time, np.float64)
        if len(t) == 0:
            raise ValidationError("input", "has no payments")
        if np.any(np.diff(t) < 0):
            raise ValidationError("event_time", "rows must be sorted by time")
        train_from = self.train_from if self.train_from is not None else float(t[0]) + self.warmup_s
        test_to = self.test_to if self.test_to is not None else math.inf
        train_to, test_from = self._middle(t, train_from, test_to)
        if not train_from < train_to:
            raise ValidationError("--train-to", f"the training period is empty: {_iso(train_from)} .. {_iso(train_to)}")
        if not test_from < test_to:
            raise ValidationError("--test-to", f"the test period is empty: {_iso(test_from)} .. {_iso(test_to)}")
        if test_from < train_to + self.gap_s:
            raise ValidationError("--test-from", f"{_iso(test_from)} must be at least the gap ({self.gap_s:g} s) "
                                  f"after the end of training, {_iso(train_to)}")  # fmt: skip
        lo, hi = (int(v) for v in np.searchsorted(t, [train_from, train_to], side="left"))
        s_lo, s_hi = (int(v) for v in np.searchsorted(t, [test_from, test_to], side="left"))
        if hi - lo < 2:
            raise ValidationError("--train-from", f"the training period {_iso(train_from)} .. {_iso(train_to)} "
                                  f"holds {hi - lo} payments")  # fmt: skip
        if s_hi == s_lo:
            raise ValidationError("--test-from", f"the test period {_iso(test_from)} .. {_iso(test_to)} "
                                  "has no payments")
        v = _same_second_start(t, lo + round((hi - lo) * (1.0 - self.validation_fraction)))
        if not lo < v < hi:
            raise ValidationError("--validation-fraction", "leaves the fit or the validation slice empty")
        return TimeSplit(slice(lo, v), slice(v, hi), slice(s_lo, s_hi), (train_from, train_to, test_from, test_to))

    def _middle(self, t: npt.NDArray[np.float64], train_from: float, test_to: float) -> tuple[float, float]:
        """``train_to`` and ``test_from``: as given, or one from the other across the gap, or from ``test_fraction``."""
        if self.train_to is not None and self.test_from is not None:
            return self.train_to, self.test_from
        if self.train_to is not None:
            return self.train_to, self.train_to + self.gap_s
        if self.test_from is not None:
            return self.test_from - self.gap_s, self.test_from
        lo, hi = (int(v) for v in np.searchsorted(t, [train_from, test_to], side="left"))
        if hi - lo < 3:
            raise ValidationError("input", f"only {hi - lo} payments after the warm-up; need more data")
        first_test = _same_second_start(t, lo + round((hi - lo) * (1.0 - self.test_fraction)))
        test_from = float(t[min(first_test, len(t) - 1)])
        return test_from - self.gap_s, test_from


def _same_second_start(t: npt.NDArray[np.float64], row: int) -> int:
    """The first row with ``t[row]``'s time, so payments of one second stay on one side of a boundary."""
    return int(np.searchsorted(t, t[row], side="left")) if row < len(t) else len(t)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


"""Risk bands: a score maps to an action; reasons come from the model's contributions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudguard.settings import SettingsError

# values of fraud.v1.Action
ALLOW, CHALLENGE, REVIEW, BLOCK = 1, 2, 3, 4
ACTION_NAMES = {ALLOW: "allow", CHALLENGE: "challenge", REVIEW: "review", BLOCK: "block"}


@dataclass(frozen=True, slots=True)
class RiskBands:
    """A score at or above a band's threshold gets at least that band's action."""

    challenge: float
    review: float
    block: float

    def __post_init__(self) -> None:
        if not 0.0 < self.challenge <= self.review <= self.block <= 1.0:
            raise SettingsError(
                f"bands: need 0 < challenge <= review <= block <= 1, got "
                f"challenge={self.challenge}, review={self.review}, block={self.block}"
            )

    @classmethod
    def parse(cls, text: str) -> RiskBands:
        """From ``'challenge=0.3,review=0.6,block=0.9'``."""
        values: dict[str, float] = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in {"challenge", "review", "block"}:
                raise SettingsError(f"bands: expected challenge=X,review=Y,block=Z, got {text!r}")
            try:
                values[name] = float(value)
            except ValueError as exc:
                raise SettingsError(f"bands: {name} is not a number: {value!r}") from exc
        if set(values) != {"challenge", "review", "block"}:
            raise SettingsError(f"bands: all of challenge, review, block are needed, got {text!r}")
        return cls(**values)

    def as_array(self) -> npt.NDArray[np.float64]:
        return np.array([self.challenge, self.review, self.block], np.float64)


def decide(scores: npt.NDArray[np.float64], thresholds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """fraud.v1.Action value per score (``thresholds``: ascending challenge, review, block)."""
    if scores.shape[0] == 1:  # the inline case: skip NumPy's per-call overhead
        s = float(scores[0])
        return np.array([ALLOW + sum(1 for t in thresholds.tolist() if s >= t)], np.int64)
    return np.searchsorted(thresholds, scores, side="right").astype(np.int64) + ALLOW

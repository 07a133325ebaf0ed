"""Risk bands: a score maps to an action through the bundle's (or ``--bands``) thresholds."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fraudguard.errors import BundleError
from fraudguard.settings import SettingsError
from scoring.model.bundle import Thresholds

# values of fraud.v1.Action
ALLOW, CHALLENGE, REVIEW, BLOCK = 1, 2, 3, 4
ACTION_NAMES = {ALLOW: "allow", CHALLENGE: "challenge", REVIEW: "review", BLOCK: "block"}


def parse_bands(text: str) -> Thresholds:
    """Action thresholds from ``'challenge=0.3,review=0.6,block=0.9'`` (the ``--bands`` setting)."""
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
    try:
        return Thresholds(**values)
    except BundleError as exc:  # the bundle's own rule for thresholds, reported as a setting
        raise SettingsError(f"bands: {exc}") from exc


def thresholds_array(thresholds: Thresholds) -> npt.NDArray[np.float64]:
    """Ascending challenge, review, block, as :func:`decide` takes them."""
    return np.array([thresholds.challenge, thresholds.review, thresholds.block], np.float64)


def decide(scores: npt.NDArray[np.float64], thresholds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """fraud.v1.Action value per score (``thresholds``: ascending challenge, review, block).

    A score that is not a number (only a broken model gives one) is held for REVIEW: neither let through
    nor refused without a person looking."""
    if scores.shape[0] == 1:  # the inline case: skip NumPy's per-call overhead
        s = float(scores[0])
        if s != s:
            return np.array([REVIEW], np.int64)
        return np.array([ALLOW + sum(1 for t in thresholds.tolist() if s >= t)], np.int64)
    actions = np.searchsorted(thresholds, scores, side="right").astype(np.int64) + ALLOW
    unknown = np.isnan(scores)
    if unknown.any():
        actions[unknown] = REVIEW
    return actions

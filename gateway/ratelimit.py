"""Per-caller token buckets: ``rate`` requests a second on average, ``burst`` at once.

In memory, per gateway process (run one gateway per key's traffic, or accept ``replicas × rate``). Buckets of
callers not seen for a while are dropped, so hostile callers with ever-new identities cannot grow it for ever.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: int  # whole seconds until one request would be allowed (0 when allowed)


class RateLimiter:
    """Token buckets keyed by caller (an API key's id, or a client address when keys are off)."""

    __slots__ = ("_buckets", "_burst", "_clock", "_last_sweep", "_max_callers", "_rate")

    def __init__(self, rate_per_s: float, burst: int, *, max_callers: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be positive and burst at least 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at)
        self._max_callers = max_callers
        self._last_sweep = clock()

    def take(self, caller: str) -> Verdict:
        now = self._clock()
        tokens, at = self._buckets.get(caller, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._buckets[caller] = (tokens - 1.0, now)
            self._sweep(now)
            return Verdict(True, 0)
        self._buckets[caller] = (tokens, now)
        return Verdict(False, max(1, math.ceil((1.0 - tokens) / self._rate)))

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled (they equal a new one) once a minute, or when there are too many."""
        if now - self._last_sweep < 60.0 and len(self._buckets) < self._max_callers:
            return
        self._last_sweep = now
        full_after = self._burst / self._rate
        self._buckets = {c: (t, at) for c, (t, at) in self._buckets.items() if now - at < full_after}

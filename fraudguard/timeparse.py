"""Times and durations as people type them on a command line: ``2024-02-01``, ``2024-02-01T12:00Z``, ``7d``."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from fraudguard.errors import ValidationError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 7 * 86_400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_EPOCH = re.compile(r"^\s*\d{9,11}(?:\.\d+)?\s*$")


def parse_duration(text: str, flag: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"6h"``, ``"7d"``, ``"2w"``; ``ValidationError`` naming ``flag``."""
    match = _DURATION.match(text)
    if match is None:
        raise ValidationError(flag, f"not a duration: {text!r} (e.g. 90s, 15m, 6h, 7d, 2w)")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds):
        raise ValidationError(flag, f"duration out of range: {text!r}")
    return seconds


def parse_instant(text: str, flag: str) -> float:
    """Epoch seconds of a date (``2024-02-01``, midnight UTC), an ISO-8601 time (naive means UTC) or epoch seconds."""
    raw = text.strip()
    if _EPOCH.match(raw):
        return float(raw)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationError(flag, f"not a date or time: {text!r} (e.g. 2024-02-01, 2024-02-01T12:00:00Z, "
                              "or epoch seconds)") from None  # fmt: skip
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_instant(epoch_s: float) -> str:
    """``2024-02-01T12:00:00Z`` for epoch seconds; an open bound (±inf) as "start/end of data"."""
    if not math.isfinite(epoch_s):
        return "end of data" if epoch_s > 0 else "start of data"
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")

"""Structured JSON logs on stderr, one object per line, redacted before they are written.

Every record goes through :class:`fraudguard.redaction.RedactingFilter` on the root
handler, so no logger of ours or of a library can write a PAN, CVV or e-mail address.
Pass context as ``extra={...}``: each key becomes a JSON field.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from fraudguard.redaction import _STANDARD_ATTRS, RedactingFilter


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extras}``; non-JSON values are written with ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Replace the root logger's handlers with one redacting JSON handler; returns it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return handler

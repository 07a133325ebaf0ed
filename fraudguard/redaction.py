"""Redaction of card numbers, CVVs and e-mail addresses from any text bound for a log.

A card number is redacted when a 13–19 digit run (spaces or dashes allowed between
digits) passes the Luhn check, so order numbers and timestamps survive.
"""

from __future__ import annotations

import logging
import re

MIN_PAN_DIGITS, MAX_PAN_DIGITS = 13, 19
_PAN = re.compile(rf"(?<![0-9])[0-9](?:[ -]?[0-9]){{{MIN_PAN_DIGITS - 1},{MAX_PAN_DIGITS - 1}}}(?![0-9])")
_CVV = re.compile(r"(?i)\b(cvv2?|cvc2?|cid|csc|security[_ ]?code)(\W{0,3})([0-9]{3,4})\b")
# the local part may hold a card number replaced already ("[PAN]@example.com" is an e-mail too)
_EMAIL = re.compile(r"(?:\[PAN\]|[A-Za-z0-9._%+-]){1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}")


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (digits only) passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pan_sub(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[PAN]" if luhn_valid(digits) else match.group(0)


def redact_pans(text: str) -> str:
    """``text`` with Luhn-valid card numbers replaced (and nothing else)."""
    return _PAN.sub(_pan_sub, text)


def redact(text: str) -> str:
    """``text`` with Luhn-valid card numbers, CVVs and e-mail addresses replaced."""
    if not text:
        return text
    text = _PAN.sub(_pan_sub, text)
    text = _CVV.sub(lambda m: f"{m.group(1)}{m.group(2)}[CVV]", text)
    return _EMAIL.sub("[EMAIL]", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, arguments and string extras in place before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

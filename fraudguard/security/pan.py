"""PAN tokenization at the edge: a card number becomes a keyed HMAC-SHA256 token, BIN and last four.

The PAN itself is never returned, stored or logged; error messages never quote it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fraudguard.errors import ValidationError
from fraudguard.redaction import luhn_valid

TOKEN_PREFIX = "pan_"


@dataclass(frozen=True, slots=True)
class CardRef:
    """What may be kept of a card: a stable token, the BIN (first 6 digits) and the last four."""

    token: str
    bin: str
    last4: str


class PanTokenizer:
    """Deterministic for a key: the same PAN always gives the same token."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("PAN tokenization key must be at least 16 bytes")
        self._key = key

    def tokenize(self, pan: str) -> CardRef:
        """Validate (12–19 digits, spaces/dashes allowed, Luhn) and tokenize; ``ValidationError`` on ``card.pan``."""
        digits = pan.replace(" ", "").replace("-", "")
        if not digits.isascii() or not digits.isdigit() or not 12 <= len(digits) <= 19:
            raise ValidationError("card.pan", "must be 12 to 19 digits")
        if not luhn_valid(digits):
            raise ValidationError("card.pan", "fails the Luhn check")
        mac = hmac.new(self._key, digits.encode(), hashlib.sha256).hexdigest()
        return CardRef(TOKEN_PREFIX + mac[:40], digits[:6], digits[-4:])

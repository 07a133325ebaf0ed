"""Search bytes for card numbers: what the PAN scans of the recording and gateway tests look for."""

from __future__ import annotations

import re

from fraudguard.redaction import luhn_valid

PANS = ("4111111111111111", "5500005555555559", "340000000000009", "6011000990139424", "4000056655665556")
# A card number: 13-19 digits (spaces or dashes between them allowed) standing alone — not the fraction of a
# decimal number, not a stretch of a hex digest or ciphertext (random hex holds Luhn-valid digit runs by chance).
_DIGIT_RUN = re.compile(rb"(?<![0-9A-Za-z.])[0-9](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z])")


def pans_in(data: bytes) -> list[str]:
    """Every Luhn-valid 13–19 digit number standing alone in ``data``."""
    found = []
    for match in _DIGIT_RUN.finditer(data):
        digits = re.sub(rb"[ -]", b"", match.group(0)).decode()
        if luhn_valid(digits):
            found.append(digits)
    return found

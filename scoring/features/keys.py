"""Stable 64-bit keys for entity ids, the same in every process and across restarts."""

from __future__ import annotations

import hashlib


def entity_key(value: str) -> int:
    """Signed 64-bit key of a non-empty id; ``0`` is reserved for "not given"."""
    if not value:
        return 0
    key = int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "little", signed=True)
    return key or 1


def country_code(alpha2: str) -> int:
    """ISO-3166 alpha-2 (upper case, validated by the caller) to a small int; 0 when empty."""
    if not alpha2:
        return 0
    return (ord(alpha2[0]) - 64) * 32 + (ord(alpha2[1]) - 64)

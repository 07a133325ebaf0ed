"""Stable 64-bit keys for entity ids, the same in every process and across restarts."""

from __future__ import annotations

import xxhash

_xxh3 = xxhash.xxh3_64_intdigest
_SIGN = 1 << 63
_WRAP = 1 << 64


def entity_key(value: str) -> int:
    """Signed 64-bit key of a non-empty id (XXH3-64 of its UTF-8); ``0`` is reserved for "not given".

    Non-cryptographic on purpose: ~0.2 µs, six times per transaction on the hot path. Keys
    only address entity state; a collision merges two entities' velocity, nothing more.
    """
    if not value:
        return 0
    key = _xxh3(value.encode())
    return (key - _WRAP if key >= _SIGN else key) or 1


def country_code(alpha2: str) -> int:
    """ISO-3166 alpha-2 (upper case, validated by the caller) to a small int; 0 when empty."""
    if not alpha2:
        return 0
    return (ord(alpha2[0]) - 64) * 32 + (ord(alpha2[1]) - 64)

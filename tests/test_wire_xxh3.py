"""The Numba XXH3-64 against the ``xxhash`` package, and ``entity_key_at`` against ``entity_key``."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from scoring.features.keys import entity_key
from scoring.wire.xxh3 import MAX_INPUT, entity_key_at, xxh3_64


def _buffer(prefix: bytes, data: bytes, suffix: bytes) -> np.ndarray:
    return np.frombuffer(prefix + data + suffix, np.uint8)


@pytest.mark.parametrize("offset", [0, 1, 7])
def test_every_length_matches_xxhash(offset: int) -> None:
    """Every length of every path (0, 1-3, 4-8, 9-16, 17-128, 129-240), not at the start of the buffer."""
    rng = np.random.default_rng(offset)
    for length in range(MAX_INPUT + 1):
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        buf = _buffer(b"\xff" * offset, data, b"\xee" * 3)
        assert int(xxh3_64(buf, offset, length)) == xxhash.xxh3_64_intdigest(data), length


@given(st.binary(max_size=MAX_INPUT), st.binary(max_size=9), st.binary(max_size=9))
def test_random_bytes_match_xxhash(data: bytes, prefix: bytes, suffix: bytes) -> None:
    buf = _buffer(prefix, data, suffix)
    assert int(xxh3_64(buf, len(prefix), len(data))) == xxhash.xxh3_64_intdigest(data)


@given(st.text(max_size=60).filter(lambda s: len(s.encode()) <= MAX_INPUT), st.binary(max_size=5))
def test_entity_key_at_is_entity_key(value: str, prefix: bytes) -> None:
    encoded = value.encode()
    buf = _buffer(prefix, encoded, b"")
    assert entity_key_at(buf, len(prefix), len(encoded)) == entity_key(value)


def test_entity_keys_are_signed_and_empty_is_zero() -> None:
    keys = [int(entity_key_at(np.frombuffer(f"id-{i}".encode(), np.uint8), 0, len(f"id-{i}"))) for i in range(64)]
    assert keys == [entity_key(f"id-{i}") for i in range(64)]
    assert min(keys) < 0 < max(keys)  # the upper half of the hashes maps to negative keys
    assert entity_key_at(np.zeros(4, np.uint8), 2, 0) == 0 == entity_key("")


def test_longer_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="240"):
        xxh3_64(np.zeros(MAX_INPUT + 1, np.uint8), 0, MAX_INPUT + 1)

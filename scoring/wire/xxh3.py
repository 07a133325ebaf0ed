"""XXH3-64 (seed 0, default secret) in Numba, for inputs of 0..240 bytes read straight from a byte buffer.

``scoring.features.keys.entity_key`` hashes an id's UTF-8 with the ``xxhash`` package; the wire
decoder hashes the same bytes where they lie in the request buffer, inside one kernel call, so
it needs the same function in Numba. Entity ids are at most 128 bytes, so only XXH3's short and
mid-size paths (0..240 bytes) are here; the long-input path is not. The 64×64→128-bit multiply is
emulated with 32-bit halves (Numba has no 128-bit integers), as xxHash's own portable code does.

Every integer in the kernels is ``uint64``: Numba turns mixed signed/unsigned arithmetic into
floats, so all constants below are ``np.uint64`` and lengths are converted on entry.

``buf`` is a uint8 array, or, inside other kernels, a ``CPointer(uint8)`` to one (``scoring.wire.decode``
passes pointers: a call that takes an array costs two atomic reference-count updates).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

U8 = npt.NDArray[np.uint8]

MAX_INPUT = 240  # XXH3_MIDSIZE_MAX: longer inputs take XXH3's stripe loop, not implemented here

# XXH3_kSecret: the default secret (xxhash.h, "pseudorandom secret taken directly from FARSH")
_SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671fcb79e64eccc0e578825ad07dccff7221"
    "b8084674f743248ee03590e6813a264c3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364eac5ac8334d3ebc3c581a0fffa1363eb"
    "170ddd51b7f0da49d316552629d4689e2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e"
)
# readLE64(secret + k) for every k: the kernels index this table instead of assembling secret words
_S64 = np.array([int.from_bytes(_SECRET[k : k + 8], "little") for k in range(len(_SECRET) - 7)], np.uint64)
_BITFLIP_0 = np.uint64(int.from_bytes(_SECRET[0:4], "little") ^ int.from_bytes(_SECRET[4:8], "little"))
_BITFLIP_4TO8 = np.uint64(int(_S64[8]) ^ int(_S64[16]))
_BITFLIP_9TO16_LO = np.uint64(int(_S64[24]) ^ int(_S64[32]))
_BITFLIP_9TO16_HI = np.uint64(int(_S64[40]) ^ int(_S64[48]))
_BITFLIP_EMPTY = np.uint64(int(_S64[56]) ^ int(_S64[64]))

_PRIME64_1 = np.uint64(0x9E3779B185EBCA87)
_PRIME64_2 = np.uint64(0xC2B2AE3D27D4EB4F)
_PRIME64_3 = np.uint64(0x165667B19E3779F9)
_PRIME_MX1 = np.uint64(0x165667919E3779F9)
_PRIME_MX2 = np.uint64(0x9FB21C651E98DF25)
_MIDSIZE_STARTOFFSET = 3
_MIDSIZE_LAST_SECRET = 136 - 17  # XXH3_SECRET_SIZE_MIN - XXH3_MIDSIZE_LASTOFFSET
_M32 = np.uint64(0xFFFFFFFF)
_0 = np.uint64(0)
_1 = np.uint64(1)
_2 = np.uint64(2)
_3 = np.uint64(3)
_4 = np.uint64(4)
_5 = np.uint64(5)
_6 = np.uint64(6)
_7 = np.uint64(7)
_8 = np.uint64(8)
_16 = np.uint64(16)
_24 = np.uint64(24)
_28 = np.uint64(28)
_29 = np.uint64(29)
_32 = np.uint64(32)
_33 = np.uint64(33)
_35 = np.uint64(35)
_37 = np.uint64(37)
_40 = np.uint64(40)
_48 = np.uint64(48)
_49 = np.uint64(49)
_56 = np.uint64(56)
_64 = np.uint64(64)
_BYTE = np.uint64(0xFF)


@njit(cache=True, nogil=True, inline="always")
def read_le64(buf: U8, p: int) -> np.uint64:
    """The little-endian uint64 at ``buf[p:p + 8]`` (no bounds check: the caller guarantees them).

    Indexes are unsigned so that Numba emits no negative-index wraparound: LLVM then merges the
    eight byte loads into one.
    """
    q = np.uint64(p)
    return (
        np.uint64(buf[q])
        | (np.uint64(buf[q + _1]) << _8)
        | (np.uint64(buf[q + _2]) << _16)
        | (np.uint64(buf[q + _3]) << _24)
        | (np.uint64(buf[q + _4]) << _32)
        | (np.uint64(buf[q + _5]) << _40)
        | (np.uint64(buf[q + _6]) << _48)
        | (np.uint64(buf[q + _7]) << _56)
    )


@njit(cache=True, nogil=True, inline="always")
def _read_le32(buf: U8, p: int) -> np.uint64:
    q = np.uint64(p)
    return (
        np.uint64(buf[q])
        | (np.uint64(buf[q + _1]) << _8)
        | (np.uint64(buf[q + _2]) << _16)
        | (np.uint64(buf[q + _3]) << _24)
    )


@njit(cache=True, nogil=True, inline="always")
def _mul128_fold64(lhs: np.uint64, rhs: np.uint64) -> np.uint64:
    """Low 64 bits XOR high 64 bits of the 128-bit product, from four 32×32→64 products."""
    lo_lo = (lhs & _M32) * (rhs & _M32)
    hi_lo = (lhs >> _32) * (rhs & _M32)
    lo_hi = (lhs & _M32) * (rhs >> _32)
    hi_hi = (lhs >> _32) * (rhs >> _32)
    cross = (lo_lo >> _32) + (hi_lo & _M32) + lo_hi
    upper = (hi_lo >> _32) + (cross >> _32) + hi_hi
    lower = (cross << _32) | (lo_lo & _M32)
    return lower ^ upper


@njit(cache=True, nogil=True, inline="always")
def _swap64(x: np.uint64) -> np.uint64:
    out = _0
    for i in range(8):
        out = (out << _8) | ((x >> np.uint64(8 * i)) & _BYTE)
    return out


@njit(cache=True, nogil=True, inline="always")
def _rotl64(x: np.uint64, r: np.uint64) -> np.uint64:
    return (x << r) | (x >> (_64 - r))


@njit(cache=True, nogil=True, inline="always")
def _avalanche(h: np.uint64) -> np.uint64:
    h ^= h >> _37
    h *= _PRIME_MX1
    return h ^ (h >> _32)


@njit(cache=True, nogil=True, inline="always")
def _xxh64_avalanche(h: np.uint64) -> np.uint64:
    h ^= h >> _33
    h *= _PRIME64_2
    h ^= h >> _29
    h *= _PRIME64_3
    return h ^ (h >> _32)


@njit(cache=True, nogil=True, inline="always")
def _rrmxmx(h: np.uint64, length: np.uint64) -> np.uint64:
    h ^= _rotl64(h, _49) ^ _rotl64(h, _24)
    h *= _PRIME_MX2
    h ^= (h >> _35) + length
    h *= _PRIME_MX2
    return h ^ (h >> _28)


@njit(cache=True, nogil=True, inline="always")
def _mix16(buf: U8, p: int, secret: int) -> np.uint64:
    return _mul128_fold64(read_le64(buf, p) ^ _S64[secret], read_le64(buf, p + 8) ^ _S64[secret + 8])


@njit(cache=True, nogil=True, inline="always")
def _len_0to16(buf: U8, start: int, length: int) -> np.uint64:
    n = np.uint64(length)
    if length > 8:
        lo = read_le64(buf, start) ^ _BITFLIP_9TO16_LO
        hi = read_le64(buf, start + length - 8) ^ _BITFLIP_9TO16_HI
        return _avalanche(n + _swap64(lo) + hi + _mul128_fold64(lo, hi))
    if length >= 4:
        input64 = _read_le32(buf, start + length - 4) + (_read_le32(buf, start) << _32)
        return _rrmxmx(input64 ^ _BITFLIP_4TO8, n)
    if length > 0:
        c1 = np.uint64(buf[np.uint64(start)])
        c2 = np.uint64(buf[np.uint64(start + (length >> 1))])
        c3 = np.uint64(buf[np.uint64(start + length - 1)])
        combined = (c1 << _16) | (c2 << _24) | c3 | (n << _8)
        return _xxh64_avalanche(combined ^ _BITFLIP_0)
    return _xxh64_avalanche(_BITFLIP_EMPTY)


@njit(cache=True, nogil=True, inline="always")
def _len_17to128(buf: U8, start: int, length: int) -> np.uint64:
    acc = np.uint64(length) * _PRIME64_1
    end = start + length
    if length > 32:
        if length > 64:
            if length > 96:
                acc += _mix16(buf, start + 48, 96)
                acc += _mix16(buf, end - 64, 112)
            acc += _mix16(buf, start + 32, 64)
            acc += _mix16(buf, end - 48, 80)
        acc += _mix16(buf, start + 16, 32)
        acc += _mix16(buf, end - 32, 48)
    acc += _mix16(buf, start, 0)
    acc += _mix16(buf, end - 16, 16)
    return _avalanche(acc)


@njit(cache=True, nogil=True, inline="always")
def _len_129to240(buf: U8, start: int, length: int) -> np.uint64:
    acc = np.uint64(length) * _PRIME64_1
    for i in range(8):
        acc += _mix16(buf, start + 16 * i, 16 * i)
    acc = _avalanche(acc)
    for i in range(8, length // 16):
        acc += _mix16(buf, start + 16 * i, 16 * (i - 8) + _MIDSIZE_STARTOFFSET)
    acc += _mix16(buf, start + length - 16, _MIDSIZE_LAST_SECRET)
    return _avalanche(acc)


@njit(cache=True, nogil=True)
def xxh3_64(buf: U8, start: int, length: int) -> np.uint64:
    """XXH3-64 (seed 0) of ``buf[start:start + length]``; ``0 <= length <= 240``, in bounds (not checked)."""
    if length <= 16:
        return _len_0to16(buf, start, length)
    if length <= 128:
        return _len_17to128(buf, start, length)
    if length <= MAX_INPUT:
        return _len_129to240(buf, start, length)
    raise ValueError("xxh3_64: inputs longer than 240 bytes are not supported")


@njit(cache=True, nogil=True)
def entity_key_at(buf: U8, start: int, length: int) -> np.int64:
    """``scoring.features.keys.entity_key`` of the id whose UTF-8 is ``buf[start:start + length]``:
    the hash as a signed 64-bit integer, ``0`` for an empty id, ``1`` where the hash is ``0``."""
    if length == 0:
        return np.int64(0)
    key = np.int64(xxh3_64(buf, start, length))
    return key if key != 0 else np.int64(1)

"""Request bytes straight to column blocks: one Numba kernel call per ``ScoreRequest`` /
``ScoreBatchRequest`` / ``ScoreStreamRequest``, with ``scoring.serde`` as the reference.

All three messages are, at the top level, field 1 = ``Transaction`` (repeated or not). The kernel
walks the protobuf wire format once, bounds-checking every read, and for each transaction either
validates and converts it exactly as ``serde._validate`` would (state OK: its columns are final) or
marks it SLOW: anything not certainly identical to the Python path — every validation failure (so
that ``_validate`` words the error), a ``pan`` (tokenized in Python), an ``email`` with 13 digits or more
(it may hold a card number, which the recorder takes out: see ``scrub_pans``), non-ASCII or non-printable
strings, unknown or repeated fields, wire-type mismatches, 10-byte varints, values protobuf would
truncate. SLOW rows are parsed on their own with ``Transaction.FromString`` and run through
``_validate``; their columns are merged into the blocks in request order.

Whole messages the kernel does not mirror — anything protobuf might reject (truncation, bad tags or
wire types, groups), top-level unknown fields, a ``ScoreRequest`` with its field given twice (protobuf
merges the two), more transactions than allowed — go to the reference path unchanged:
``FromString`` then ``batch_from_proto``. Either way the result is today's, bit for bit.

The kernel's validation rules are literals (Numba caches compiled code per source file and freezes
globals); ``_check_rules`` refuses to import when ``scoring.serde`` has moved on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError, Message
from numba import njit, types
from numba.core.extending import intrinsic

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.redaction import MIN_PAN_DIGITS
from fraudguard.security.pan import PanTokenizer
from scoring import serde
from scoring.features.batch import (
    K_CARD,
    K_CHANNEL,
    K_COUNTRY,
    K_CUSTOMER,
    K_DEVICE,
    K_ENTRY,
    K_IP,
    K_MCC,
    K_MERCHANT,
    K_TXN,
    N_INTS,
    N_REALS,
    R_AMOUNT,
    R_LAT,
    R_LON,
    R_TIME,
    TransactionBatch,
)
from scoring.serde import MAX_FUTURE_SKEW_S, MAX_ID_LEN, ItemFailure, batch_from_proto
from scoring.wire.xxh3 import entity_key_at, read_le64

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Ptr: TypeAlias = Any  # inside kernels: a Numba CPointer into an array's data
M = TypeVar("M", bound=Message)
BatchMessage: TypeAlias = type[scoring_pb2.ScoreBatchRequest] | type[scoring_pb2.ScoreStreamRequest]

# --- the kernel's copy of serde's rules (checked against serde at import) -----------------------
_MIN_EVENT_TIME = 946_684_800.0
_MAX_AMOUNT_MINOR = np.uint64(10**15)
_MAX_ID_LEN = 128
_MAX_MCC = np.uint64(9999)
_MAX_ENUM = np.uint64(6)  # Channel and EntryMode are both 0..6
_IP_MIN, _IP_MAX = 2, 45
_BIN_MIN, _BIN_MAX, _LAST4 = 6, 8, 4
_MAX_EMAIL_LEN = 254
_PAN_MIN_DIGITS = 13  # an e-mail with this many digits may hold a card number: Python's (recorder's) business

# --- kernel output: one int64 array [N_COLS + _TAIL_ROWS, n]: the column block, reals stored as float64
# bits, per-row bookkeeping, then the joined ids ------------------------------------------------------
C_REALS = 0  # rows C_REALS + R_*: serde's reals
C_INTS = N_REALS  # rows C_INTS + K_*: serde's ints
C_STATE, C_START, C_END, C_ID_START, C_ID_LEN = range(N_REALS + N_INTS, N_REALS + N_INTS + 5)
C_CHECKED = N_REALS + N_INTS + 5  # rows C_CHECKED + 2k, + 2k + 1: span of Transaction field 15 + k, if given
N_COLS = C_CHECKED + 6
_TAIL_ROWS = ((_MAX_ID_LEN + 1) + 7) // 8  # rows after the block: room for n ids of up to 128 bytes and "\n"
_OK, _SLOW, _PROTOBUF = 0, 1, -1  # row states; _PROTOBUF (from the kernel): hand the message to protobuf

# --- wire format ----------------------------------------------------------------------------------
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10
_MAX_TAG_BYTES = 5  # tags and lengths are 32-bit
_MAX_VALUE_BYTES = 9  # longer varints reach bit 63: negatives and truncation are Python's business
_MAX_TAG = np.uint64(0xFFFFFFFF)
_MIN_TAG = np.uint64(8)  # field number 0 is invalid
_LAST_TX_FIELD = 14
# Transaction: wire type of fields 1..14 (index 0 unused)
_TX_WIRE = np.array([-1, _LEN, _LEN, _VARINT, _LEN, _LEN, _LEN, _LEN, _VARINT, _LEN, _LEN, _LEN, _LEN,
                     _VARINT, _VARINT], np.int64)  # fmt: skip
# Transaction fields 15..17 (billing_country, shipping_country, email) and Card field 5 (country) are checked but
# make no column. They are taken on the branch for fields the kernel does not mirror, and the transaction's are
# checked after its loop, from spans noted in the output: any more code in the loop costs every transaction,
# those without these fields too.
_LAST_CHECKED_FIELD, _EMAIL = 17, 17
_CARD_COUNTRY = 5
_U0, _U3, _U7, _U7F, _U80 = (np.uint64(v) for v in (0, 3, 7, 0x7F, 0x80))
_ID_SEPARATOR = 0x0A  # "\n" joins the OK rows' ids: never inside a printable id
_A, _Z, _D0, _D9, _SPACE, _TILDE, _COLON, _DOT, _LOWER_A, _LOWER_F, _AT = (ord(c) for c in "AZ09 ~:.af@")


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """One request message, decoded and validated. ``buffer[id_start[k]:id_start[k] + id_len[k]]`` is the
    UTF-8 of ``batch.transaction_ids[k]``; ``buffer`` is the request bytes themselves (no copy), followed,
    only when protobuf's path decoded the message, by the ids it found."""

    batch: TransactionBatch
    failures: list[ItemFailure]
    n_requested: int
    buffer: U8
    id_start: I64
    id_len: I64
    pan_free: bool = False  # True when the fast path read every transaction: no card.pan, no e-mail holding a PAN


# ================================================================================================
# The kernel. Helpers take raw pointers, not arrays: a Numba call that passes an array increfs and
# decrefs it (two atomic operations), which cost more than parsing a field.
# ================================================================================================


def _intrinsic(fn: Callable[..., Any]) -> Any:
    """``numba.extending.intrinsic``; inside kernels the result is called like a plain function."""
    return intrinsic(fn)


@_intrinsic
def _pointer(typingctx: Any, array: Any, dtype: Any) -> Any:
    """The data pointer of a C-contiguous array as ``CPointer(dtype)``; index it like a flat array."""
    if not isinstance(array, types.Array) or array.layout != "C" or not isinstance(dtype, types.NumberClass):
        return None
    target = types.CPointer(dtype.instance_type)  # type: ignore[no-untyped-call]

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.bitcast(data, context.get_value_type(target))

    return target(array, dtype), codegen


@_intrinsic
def _f64(typingctx: Any, bits: Any) -> Any:
    """The float64 whose IEEE-754 bits are ``bits`` (a uint64)."""
    if bits != types.uint64:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.uint64), codegen


@njit(cache=True, nogil=True, inline="always")
def _i64(value: Any) -> int:
    """``value`` as an int64 (the same bits for a uint64; Numba's int() would keep it unsigned, and mixed
    signed/unsigned arithmetic in Numba is floating point)."""
    return np.int64(value)  # type: ignore[return-value]


@njit(cache=True, nogil=True, inline="always")
def _varint(ptr: Ptr, p: int, end: int) -> tuple[np.uint64, int]:
    """(value, position after it); position -1 when it runs past ``end`` or over 10 bytes."""
    value = _U0
    shift = _U0
    q = p
    stop = min(end, p + _MAX_VARINT_BYTES)
    while q < stop:
        byte = ptr[q]
        q += 1
        value |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, q
        shift += _U7
    return value, -1


@njit(cache=True, nogil=True, inline="always")
def _field(ptr: Ptr, p: int, end: int) -> tuple[int, int, np.uint64, int, int]:
    """The field at ``ptr[p:end]``: (number, wire type, value, payload start, next position).

    ``value`` is the varint (wire type 0) or the payload length (2); for wire type 0 the payload is the
    varint itself. Next position -1: a bad tag, a group or wire type 6/7, or a read past ``end``.
    """
    tag, q = _varint(ptr, p, end)
    if q < 0 or q - p > _MAX_TAG_BYTES or tag > _MAX_TAG or tag < _MIN_TAG:
        return 0, 0, _U0, p, -1
    number = _i64(tag >> _U3)
    wire = _i64(tag & _U7)
    if wire == _VARINT:
        value, r = _varint(ptr, q, end)
        return number, wire, value, q, r
    if wire == _LEN:
        length, r = _varint(ptr, q, end)
        if r < 0 or r - q > _MAX_TAG_BYTES or length > np.uint64(end - r):
            return number, wire, _U0, q, -1
        return number, wire, length, r, r + _i64(length)
    size = 8 if wire == _FIXED64 else 4 if wire == _FIXED32 else -1
    if size < 0 or q + size > end:
        return number, wire, _U0, q, -1
    return number, wire, _U0, q, q + size


@njit(cache=True, nogil=True)
def _count(ptr: Ptr, end: int, max_rows: int) -> int:
    """Transactions (field 1, length-delimited) in the message; -1 for anything else at the top level,
    malformed bytes or more than ``max_rows``."""
    p, n = 0, 0
    while p < end:
        number, wire, _, _, nxt = _field(ptr, p, end)
        if nxt < 0 or number != 1 or wire != _LEN:
            return -1
        n += 1
        p = nxt
    return n if n <= max_rows else -1


@njit(cache=True, nogil=True, inline="always")
def _all_in(ptr: Ptr, a: int, n: int, lo: int, hi: int) -> bool:
    for i in range(a, a + n):  # noqa: SIM110 (a generator is slower in Numba)
        if ptr[i] < lo or ptr[i] > hi:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _id_ok(ptr: Ptr, a: int, n: int, required: bool) -> bool:
    """serde._check_id, for ASCII: 1..128 printable characters (or empty when not required)."""
    if n == 0:
        return not required
    return n <= _MAX_ID_LEN and _all_in(ptr, a, n, _SPACE, _TILDE)


@njit(cache=True, nogil=True, inline="always")
def _ip_ok(ptr: Ptr, a: int, n: int) -> bool:
    """serde._IP: empty, or 2..45 of [0-9A-Fa-f:.]."""
    if n == 0:
        return True
    if n < _IP_MIN or n > _IP_MAX:
        return False
    for i in range(a, a + n):
        c = ptr[i]
        if not (_D0 <= c <= _COLON or c == _DOT or _LOWER_A <= (c | 0x20) <= _LOWER_F):  # '9' + 1 == ':'
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _currency_unit(ptr: Ptr, a: int, n: int, units: Ptr) -> float:
    """MINOR_UNIT of the code at ptr[a:a+n]; 0.0 when it is not three upper-case letters of a known code."""
    if n != 3 or not _all_in(ptr, a, 3, _A, _Z):
        return 0.0
    return float(units[(_i64(ptr[a]) - _A) * 676 + (_i64(ptr[a + 1]) - _A) * 26 + (_i64(ptr[a + 2]) - _A)])


@njit(cache=True, nogil=True, inline="always")
def _country(ptr: Ptr, a: int, n: int) -> int:
    """keys.country_code of an [A-Z]{2} code; 0 when empty; -1 when invalid."""
    if n == 0:
        return 0
    if n != 2 or not _all_in(ptr, a, 2, _A, _Z):
        return -1
    return (_i64(ptr[a]) - 64) * 32 + (_i64(ptr[a + 1]) - 64)


@njit(cache=True, nogil=True)
def _email_ok(ptr: Ptr, a: int, n: int) -> bool:
    """serde._check_email, for ASCII: empty, or up to 254 printable characters with one "@" inside. False too
    for an e-mail with _PAN_MIN_DIGITS digits or more (it may hold a card number: see scrub_pans)."""
    if n == 0:
        return True
    if n > _MAX_EMAIL_LEN:
        return False
    ats, digits = 0, 0
    for i in range(a, a + n):
        c = ptr[i]
        if c < _SPACE or c > _TILDE:
            return False
        if c == _AT:
            ats += 1
        elif _D0 <= c <= _D9:
            digits += 1
    return ats == 1 and ptr[a] != _AT and ptr[a + n - 1] != _AT and digits < _PAN_MIN_DIGITS


@njit(cache=True, nogil=True)
def _checked_ok(ptr: Ptr, seen: int, ints: Ptr, n_rows: int, j: int) -> bool:
    """Whether the Transaction's checked-only fields that were given (bits 15..17 of ``seen``) pass serde's
    checks; their spans are in rows C_CHECKED.. of column j."""
    for k in range(_LAST_CHECKED_FIELD - _LAST_TX_FIELD):
        number = _LAST_TX_FIELD + 1 + k
        if (seen >> number) & 1:
            a, n = ints[(C_CHECKED + 2 * k) * n_rows + j], ints[(C_CHECKED + 2 * k + 1) * n_rows + j]
            if not (_email_ok(ptr, a, n) if number == _EMAIL else _country(ptr, a, n) >= 0):
                return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _timestamp(ptr: Ptr, start: int, end: int) -> tuple[int, int, int]:
    """(state, seconds, nanos) of a google.protobuf.Timestamp; SLOW for unknown, repeated or long fields."""
    seconds, nanos, seen, state = 0, 0, 0, _OK
    p = start
    while p < end:
        number, wire, value, a, nxt = _field(ptr, p, end)
        if nxt < 0:
            return _PROTOBUF, 0, 0
        p = nxt
        if wire != _VARINT or number > 2 or (seen >> number) & 1 or nxt - a > _MAX_VALUE_BYTES:
            state = _SLOW
            continue
        seen |= 1 << number
        if number == 1:
            seconds = _i64(value)
        else:
            nanos = _i64(value)
    return state, seconds, nanos


@njit(cache=True, nogil=True, inline="always")
def _card(ptr: Ptr, start: int, end: int) -> tuple[int, int, int]:
    """(state, token start, token length) of a Card; SLOW for a pan, a bad bin, last4 or country, unknown or
    repeated fields. The token itself is checked by the caller."""
    tok_a, tok_n, seen, state = start, 0, 0, _OK
    p = start
    while p < end:
        number, wire, _, a, nxt = _field(ptr, p, end)
        if nxt < 0:
            return _PROTOBUF, 0, 0
        p = nxt
        n = nxt - a
        if wire != _LEN or number > 3 or (seen >> number) & 1:  # 4 = pan: tokenized in Python
            if number == _CARD_COUNTRY and wire == _LEN and not (seen >> number) & 1:  # checked, no column
                seen |= 1 << number
                if _country(ptr, a, n) < 0:
                    state = _SLOW
            else:
                state = _SLOW
            continue
        seen |= 1 << number
        if number == 1:
            tok_a, tok_n = a, n
        elif number == 2:
            if n and not (_BIN_MIN <= n <= _BIN_MAX and _all_in(ptr, a, n, _D0, _D9)):
                state = _SLOW
        elif n and not (n == _LAST4 and _all_in(ptr, a, n, _D0, _D9)):
            state = _SLOW
    return state, tok_a, tok_n


@njit(cache=True, nogil=True, inline="always")
def _geo(ptr: Ptr, start: int, end: int) -> tuple[int, float, float]:
    """(state, latitude, longitude) of a GeoPoint (0.0 when a field is absent); SLOW when out of range."""
    lat, lon, seen, state = 0.0, 0.0, 0, _OK
    p = start
    while p < end:
        number, wire, _, a, nxt = _field(ptr, p, end)
        if nxt < 0:
            return _PROTOBUF, 0.0, 0.0
        p = nxt
        if wire != _FIXED64 or number > 2 or (seen >> number) & 1:
            state = _SLOW
            continue
        seen |= 1 << number
        if number == 1:
            lat = _f64(read_le64(ptr, a))
        else:
            lon = _f64(read_le64(ptr, a))
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # NaN fails too
        state = _SLOW
    return state, lat, lon


@njit(cache=True, nogil=True)
def _transaction(ptr: Ptr, start: int, end: int, max_time: float, units: Ptr, reals: Ptr, ints: Ptr, n_rows: int,
                 j: int) -> int:
    """Decode the Transaction at ptr[start:end] into column j of the [N_COLS, n_rows] block (``reals`` and
    ``ints`` both point at it); returns its state (or _PROTOBUF)."""
    slow = False
    seen = 0
    id_a, id_n = start, 0
    seconds, nanos, amount, mcc, channel, entry = 0, 0, 0, 0, 0, 0
    lat, lon = np.nan, np.nan
    cur_a = cur_n = tok_a = tok_n = cus_a = cus_n = mer_a = mer_n = ctry_a = ctry_n = 0
    dev_a = dev_n = ip_a = ip_n = 0
    p = start
    while p < end:
        number, wire, value, a, nxt = _field(ptr, p, end)
        if nxt < 0:
            return _PROTOBUF
        p = nxt
        n = nxt - a
        if number == 1 and wire == _LEN:  # the last one wins, as in protobuf; kept for SLOW rows too
            id_a, id_n = a, n
        if slow:
            continue
        if number > _LAST_TX_FIELD or wire != _TX_WIRE[number] or (seen >> number) & 1:
            if _LAST_TX_FIELD < number <= _LAST_CHECKED_FIELD and wire == _LEN and not (seen >> number) & 1:
                seen |= 1 << number
                row = C_CHECKED + 2 * (number - _LAST_TX_FIELD - 1)  # checked after the loop (_checked_ok)
                ints[row * n_rows + j] = a
                ints[(row + 1) * n_rows + j] = n
            else:
                slow = True
            continue
        seen |= 1 << number
        if wire == _VARINT and n > _MAX_VALUE_BYTES:
            slow = True
        elif number == 2:
            state, seconds, nanos = _timestamp(ptr, a, nxt)
            if state == _PROTOBUF:
                return _PROTOBUF
            slow = state == _SLOW
        elif number == 3:
            amount = _i64(value)
            slow = bool(value > _MAX_AMOUNT_MINOR)
        elif number == 4:
            cur_a, cur_n = a, n
        elif number == 5:
            state, tok_a, tok_n = _card(ptr, a, nxt)
            if state == _PROTOBUF:
                return _PROTOBUF
            slow = state == _SLOW
        elif number == 6:
            cus_a, cus_n = a, n
        elif number == 7:
            mer_a, mer_n = a, n
        elif number == 8:
            mcc = _i64(value)
            slow = bool(value > _MAX_MCC)
        elif number == 9:
            ctry_a, ctry_n = a, n
        elif number == 10:
            dev_a, dev_n = a, n
        elif number == 11:
            ip_a, ip_n = a, n
        elif number == 12:
            state, lat, lon = _geo(ptr, a, nxt)
            if state == _PROTOBUF:
                return _PROTOBUF
            slow = state == _SLOW
        elif number == 13:
            channel = _i64(value)
            slow = bool(value > _MAX_ENUM)
        elif number == 14:
            entry = _i64(value)
            slow = bool(value > _MAX_ENUM)

    t = np.float64(seconds) + np.float64(nanos) * 1e-9  # serde: ts.seconds + nanos * 1e-9
    country = _country(ptr, ctry_a, ctry_n)
    unit = 0.0 if slow else _currency_unit(ptr, cur_a, cur_n, units)
    slow = slow or not (
        (seen & 0b100110) == 0b100110  # transaction_id, event_time, card
        and nanos < 1_000_000_000 and _MIN_EVENT_TIME <= t <= max_time
        and unit > 0.0 and country >= 0
        and _id_ok(ptr, id_a, id_n, True) and _id_ok(ptr, tok_a, tok_n, True)
        and _id_ok(ptr, cus_a, cus_n, False) and _id_ok(ptr, mer_a, mer_n, False)
        and _id_ok(ptr, dev_a, dev_n, False) and _ip_ok(ptr, ip_a, ip_n)
        and (seen >> (_LAST_TX_FIELD + 1) == 0 or _checked_ok(ptr, seen, ints, n_rows, j))
    )  # fmt: skip

    ints[C_STATE * n_rows + j] = _SLOW if slow else _OK
    ints[C_START * n_rows + j] = start
    ints[C_END * n_rows + j] = end
    ints[C_ID_START * n_rows + j] = id_a
    ints[C_ID_LEN * n_rows + j] = id_n
    if slow:  # placeholders: Python fills the row or drops it
        for r in range(N_REALS + N_INTS):
            ints[r * n_rows + j] = 0
        return _SLOW
    reals[(C_REALS + R_TIME) * n_rows + j] = t
    reals[(C_REALS + R_AMOUNT) * n_rows + j] = np.float64(amount) * unit
    reals[(C_REALS + R_LAT) * n_rows + j] = lat
    reals[(C_REALS + R_LON) * n_rows + j] = lon
    ints[(C_INTS + K_CARD) * n_rows + j] = entity_key_at(ptr, tok_a, tok_n)
    ints[(C_INTS + K_CUSTOMER) * n_rows + j] = entity_key_at(ptr, cus_a, cus_n)
    ints[(C_INTS + K_MERCHANT) * n_rows + j] = entity_key_at(ptr, mer_a, mer_n)
    ints[(C_INTS + K_DEVICE) * n_rows + j] = entity_key_at(ptr, dev_a, dev_n)
    ints[(C_INTS + K_IP) * n_rows + j] = entity_key_at(ptr, ip_a, ip_n)
    ints[(C_INTS + K_COUNTRY) * n_rows + j] = country
    ints[(C_INTS + K_MCC) * n_rows + j] = mcc
    ints[(C_INTS + K_CHANNEL) * n_rows + j] = channel
    ints[(C_INTS + K_ENTRY) * n_rows + j] = entry
    ints[(C_INTS + K_TXN) * n_rows + j] = entity_key_at(ptr, id_a, id_n)
    return _OK


@njit(cache=True, nogil=True)
def _join_ids(ptr: Ptr, ints: Ptr, n_rows: int, tail: Ptr) -> tuple[int, int]:
    """Where the OK rows' transaction ids are, as (start, length) in the request when there is one, else
    (-1, length) of all of them joined by "\\n" at ``tail`` (one str.split in Python makes them strs)."""
    count, first = 0, -1
    for j in range(n_rows):
        if ints[C_STATE * n_rows + j] == _OK:
            count += 1
            first = j if first < 0 else first
    if count == 1:
        return ints[C_ID_START * n_rows + first], ints[C_ID_LEN * n_rows + first]
    o = 0
    for j in range(n_rows):
        if ints[C_STATE * n_rows + j] != _OK:
            continue
        if o:
            tail[o - 1] = _ID_SEPARATOR
        a, n = ints[C_ID_START * n_rows + j], ints[C_ID_LEN * n_rows + j]
        for i in range(n):
            tail[o + i] = ptr[a + i]
        o += n + 1
    return -1, max(o - 1, 0)


@njit(cache=True, nogil=True)
def decode_transactions(buf: U8, max_time: float, units: F64, max_rows: int) -> tuple[int, int, int, I64]:
    """Decode a message whose only top-level field is 1 = Transaction: one call, one array out (each array
    a Numba function returns costs ~0.4 µs to box).

    Returns (status, ids_start, ids_length, out). ``status`` is the number of SLOW rows, or _PROTOBUF
    when protobuf must decode the message (then ``out`` is empty). ``out[:N_COLS]`` is the block
    [N_COLS, n]: serde's reals (as float64 bits) and ints, then per row its state, its bytes [start, end),
    its transaction_id's span (and scratch: the spans of its checked-only fields). The OK rows' ids are
    ``buf[ids_start:ids_start + ids_length]`` when ``ids_start >= 0``, else joined by "\\n" in the bytes of
    ``out[N_COLS:]``.
    ``max_time`` is serde's ``now + MAX_FUTURE_SKEW_S``; ``units`` is ``unit_table()``.
    """
    ptr, end = _pointer(buf, np.uint8), len(buf)
    n = _count(ptr, end, max_rows)
    if n < 0:
        return _PROTOBUF, -1, 0, np.empty((N_COLS + _TAIL_ROWS, 0), np.int64)
    out = np.empty((N_COLS + _TAIL_ROWS, n), np.int64)
    reals, ints, units_at = _pointer(out, np.float64), _pointer(out, np.int64), _pointer(units, np.float64)
    slow, p = 0, 0
    for j in range(n):
        _, _, _, a, nxt = _field(ptr, p, end)
        state = _transaction(ptr, a, nxt, max_time, units_at, reals, ints, n, j)
        if state == _PROTOBUF:
            return _PROTOBUF, -1, 0, np.empty((N_COLS + _TAIL_ROWS, 0), np.int64)
        slow += state
        p = nxt
    ids_start, ids_length = _join_ids(ptr, ints, n, _pointer(out[N_COLS:], np.uint8))
    return slow, ids_start, ids_length, out


# ================================================================================================
# Python: the wrappers, SLOW rows and the protobuf path
# ================================================================================================


def unit_table() -> F64:
    """MINOR_UNIT by code, indexed (c0 - 'A') * 676 + (c1 - 'A') * 26 + (c2 - 'A'); 0.0 = not a currency."""
    table = np.zeros(26**3)
    for code, unit in MINOR_UNIT.items():
        if len(code) == 3 and all("A" <= c <= "Z" for c in code):
            table[(ord(code[0]) - _A) * 676 + (ord(code[1]) - _A) * 26 + (ord(code[2]) - _A)] = unit
    return table


_UNITS = unit_table()


def decode_batch(data: bytes, message_type: BatchMessage, now: float, tokenizer: PanTokenizer,
                 max_batch: int) -> DecodedRequest:
    """A ScoreBatchRequest or ScoreStreamRequest: the same batch and failures as
    ``batch_from_proto(message_type.FromString(data).transactions, "transactions", now, tokenizer)``;
    ``ValidationError`` for bytes protobuf rejects and for more than ``max_batch`` transactions."""
    buf = np.frombuffer(data, np.uint8)
    status, ids_start, ids_length, out = decode_transactions(buf, now + MAX_FUTURE_SKEW_S, _UNITS, max_batch)
    if status >= 0:
        decoded = _assemble(data, buf, status, ids_start, ids_length, out, "transactions", now, tokenizer)
        if decoded is not None:
            return decoded
    return _protobuf_batch(data, message_type, now, tokenizer, max_batch)


def decode_single(data: bytes, now: float, tokenizer: PanTokenizer) -> DecodedRequest:
    """A ScoreRequest, as the Score handler treats it: ``ValidationError("transaction", "required")`` when
    there is none, the transaction's own ``ValidationError`` when it is bad."""
    buf = np.frombuffer(data, np.uint8)
    status, ids_start, ids_length, out = decode_transactions(buf, now + MAX_FUTURE_SKEW_S, _UNITS, 1)
    if status >= 0 and out.shape[1] == 0:  # no bytes at all: protobuf parses b"" to an empty message
        raise ValidationError("transaction", "required")
    decoded = None
    if status >= 0:
        decoded = _assemble(data, buf, status, ids_start, ids_length, out, "transaction", now, tokenizer)
    if decoded is None:
        decoded = _protobuf_single(data, now, tokenizer)
    if decoded.failures:
        raise decoded.failures[0].error
    return decoded


def _assemble(data: bytes, buf: U8, n_slow: int, ids_start: int, ids_length: int, out: I64, field: str,
              now: float, tokenizer: PanTokenizer) -> DecodedRequest | None:
    """The kernel's output as a DecodedRequest, SLOW rows done in Python; None when protobuf must decide."""
    n = out.shape[1]
    reals, ints = out[C_REALS : C_REALS + N_REALS].view(np.float64), out[C_INTS : C_INTS + N_INTS]
    id_start, id_len = out[C_ID_START], out[C_ID_LEN]
    if n == n_slow:
        ids = []
    elif ids_start >= 0:
        ids = [data[ids_start : ids_start + ids_length].decode("ascii")]
    else:
        ids = str(out.data.cast("B")[N_COLS * n * 8 :][:ids_length], "ascii").split("\n")
    failures: list[ItemFailure] = []
    if n_slow:
        failed = _slow_rows(data, out, ids, field, now, tokenizer)
        if failed is None:
            return None
        if failed:
            failures = [f for _, f in failed]
            keep = np.ones(n, np.bool_)
            keep[[i for i, _ in failed]] = False
            reals, ints = np.compress(keep, reals, axis=1), np.compress(keep, ints, axis=1)
            id_start, id_len = id_start[keep], id_len[keep]
    return DecodedRequest(TransactionBatch.packed(tuple(ids), reals, ints), failures, n, buf, id_start, id_len,
                          pan_free=n_slow == 0)


def _slow_rows(data: bytes, block: I64, ids: list[str], field: str, now: float,
               tokenizer: PanTokenizer) -> list[tuple[int, ItemFailure]] | None:
    """Parse and validate each SLOW row in Python, filling its columns of ``block`` (in place) and
    inserting its id into ``ids`` (which holds the OK rows' ids) at its place. Returns the failures, by
    row; None when a row does not parse on its own (then the message does not either) or its id is not
    where the kernel saw it."""
    indexed = field.endswith("s")  # as batch_from_proto: a repeated field's errors carry the index
    reals = block[C_REALS : C_REALS + N_REALS].view(np.float64)
    failed: list[tuple[int, ItemFailure]] = []
    for i in np.flatnonzero(block[C_STATE]).tolist():
        try:
            tx = transaction_pb2.Transaction.FromString(data[block[C_START, i] : block[C_END, i]])
        except DecodeError:
            return None
        try:
            r, k = serde._validate(tx, now, tokenizer)
        except ValidationError as exc:
            path = f"{field}[{i}].{exc.field}" if indexed else f"{field}.{exc.field}"
            failed.append((i, ItemFailure(i, tx.transaction_id[:MAX_ID_LEN], ValidationError(path, exc.message))))
            continue
        id_start = int(block[C_ID_START, i])
        if data[id_start : id_start + block[C_ID_LEN, i]] != tx.transaction_id.encode():
            return None
        reals[:, i] = r
        block[C_INTS : C_INTS + N_INTS, i] = k
        ids.insert(i - len(failed), tx.transaction_id)
    return failed


def _parse(data: bytes, message_type: type[M]) -> M:
    """``message_type.FromString``, with the servicer's error for bytes that do not parse."""
    try:
        return message_type.FromString(data)
    except DecodeError as exc:
        raise ValidationError("request", f"not a valid {message_type.DESCRIPTOR.full_name} message") from exc


def _protobuf_batch(data: bytes, message_type: BatchMessage, now: float, tokenizer: PanTokenizer,
                    max_batch: int) -> DecodedRequest:
    """The reference path, as the servicer's _score_into runs it."""
    request = _parse(data, message_type)
    transactions = request.transactions
    if len(transactions) > max_batch:
        raise ValidationError("transactions",
                              f"at most {max_batch} transactions per message, got {len(transactions)}")
    batch, failures = batch_from_proto(transactions, "transactions", now, tokenizer)
    return _with_ids_appended(data, batch, failures, len(transactions))


def _protobuf_single(data: bytes, now: float, tokenizer: PanTokenizer) -> DecodedRequest:
    """The reference path, as the Score handler runs it."""
    request = _parse(data, scoring_pb2.ScoreRequest)
    if not request.HasField("transaction"):
        raise ValidationError("transaction", "required")
    batch, failures = batch_from_proto([request.transaction], "transaction", now, tokenizer)
    return _with_ids_appended(data, batch, failures, 1)


def _with_ids_appended(data: bytes, batch: TransactionBatch, failures: list[ItemFailure],
                       n_requested: int) -> DecodedRequest:
    """Protobuf decoded the message, so the ids' bytes are not located: append them to the buffer."""
    encoded = [tx_id.encode() for tx_id in batch.transaction_ids]
    id_len = np.array([len(e) for e in encoded], np.int64)
    id_start = len(data) + np.cumsum(id_len) - id_len
    buffer = np.frombuffer(data + b"".join(encoded), np.uint8)
    return DecodedRequest(batch, failures, n_requested, buffer, id_start.astype(np.int64), id_len)


def _check_rules() -> None:
    """The kernel's literal rules must be serde's (its cached machine code would not see a change there)."""
    ours = (_MIN_EVENT_TIME, int(_MAX_AMOUNT_MINOR), _MAX_ID_LEN, f"[0-9A-Fa-f:.]{{{_IP_MIN},{_IP_MAX}}}",
            "[0-9]+", "[A-Z]{2}", frozenset(range(int(_MAX_ENUM) + 1)), frozenset(range(int(_MAX_ENUM) + 1)),
            _MAX_EMAIL_LEN, _PAN_MIN_DIGITS)
    theirs = (serde.MIN_EVENT_TIME, serde.MAX_AMOUNT_MINOR, serde.MAX_ID_LEN, serde._IP.pattern,
              serde._DIGITS.pattern, serde._COUNTRY.pattern, serde._CHANNELS, serde._ENTRY_MODES,
              serde.MAX_EMAIL_LEN, MIN_PAN_DIGITS)
    if ours != theirs:
        raise RuntimeError(f"scoring.wire.decode's rules {ours} differ from scoring.serde's {theirs}")


_check_rules()

"""Times: Parquet timestamps and dates, epoch-second numbers, or text (ISO-8601 or epoch seconds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.files.arrays import I64, B, _bools, _ints, _np
from trainer.files.mapping import MAX_TIME, MIN_TIME
from trainer.files.parse_shared import _NUMBER, _cast_each, _given, _matches, _Problem, _text

_PLAIN_NUMBER = r"^\+?\d{1,15}(?:\.\d*)?$"
_ISO = (r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
        r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$")
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_UTC_NS = pa.timestamp("ns", "UTC")


@dataclass(frozen=True, slots=True)
class _Times:
    """Epoch seconds (floored) per row; which cells were given; which of those were times at all."""

    seconds: I64
    given: B
    ok: B

    @property
    def out_of_range(self) -> B:
        return self.ok & ((self.seconds < MIN_TIME) | (self.seconds >= MAX_TIME))


def _times(values: pa.Array, name: str) -> _Times:
    """Times from a Parquet timestamp or date, epoch-second numbers, or text (ISO-8601 or epoch seconds)."""
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date64(kind):
        per_second = _UNITS_PER_SECOND[kind.unit] if pa.types.is_timestamp(kind) else 1_000
        return _times_from_ticks(values, per_second)
    if pa.types.is_date32(kind):
        days = _times_from_ticks(values, 1)
        return _Times(days.seconds * 86_400, days.given, days.ok)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _times_from_numbers(pc.cast(values, pa.float64()))
    return _times_from_text(_text(values, name))


def _times_from_ticks(values: pa.Array, per_second: int) -> _Times:
    given = _bools(values.is_valid())
    ticks = _ints(pc.fill_null(pc.cast(values, pa.int64()), 0))
    return _Times(ticks // per_second, given, given.copy())


def _times_from_numbers(values: pa.Array) -> _Times:
    """Epoch seconds as float64 (nulls: not given); non-finite: not a time; fractions floored."""
    x = np.asarray(_np(pc.fill_null(values, np.nan)), np.float64)
    given = _bools(values.is_valid())
    ok = given & np.isfinite(x)
    seconds = np.floor(np.clip(np.where(ok, x, 0.0), -1e15, 1e15)).astype(np.int64)
    return _Times(seconds, given, ok)


def _times_from_text(text: pa.Array) -> _Times:
    given = _given(text)
    seconds = np.zeros(len(text), np.int64)
    ok = np.zeros(len(text), np.bool_)
    rows = np.flatnonzero(given)
    cells = text.take(pa.array(rows))
    try:  # the common case: every cell an ISO time with an offset, as write_payments writes them
        seconds[rows] = _ints(pc.cast(cells, _UTC_NS).cast(pa.int64())) // 1_000_000_000
        ok[rows] = True
        return _Times(seconds, given, ok)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    numeric = _matches(cells, _NUMBER)
    iso = _matches(cells, _ISO) & ~numeric
    for mask, parse in ((numeric, _epoch_text), (iso, _iso_text)):
        part = rows[mask]
        seconds[part], ok[part] = parse(cells.filter(pa.array(mask)))
    return _Times(seconds, given, ok)


def _epoch_text(cells: pa.Array) -> tuple[I64, B]:
    """Epoch seconds from numeric text: whole seconds exactly; exponents and signs through float64."""
    plain = _matches(cells, _PLAIN_NUMBER)
    seconds = np.zeros(len(cells), np.int64)
    whole = pc.replace_substring_regex(cells.filter(pa.array(plain)), r"^\+?(\d+)(?:\.\d*)?$", r"\1")
    seconds[plain] = _ints(pc.cast(whole, pa.int64()))
    rest = _times_from_numbers(_cast_each(cells.filter(pa.array(~plain)), pa.float64()))
    seconds[~plain] = rest.seconds
    ok = plain.copy()
    ok[~plain] = rest.ok
    return seconds, ok


def _iso_text(cells: pa.Array) -> tuple[I64, B]:
    """Epoch seconds from ISO-8601 text: 'Z' or an offset, else UTC; fractions of a second floored."""
    text = pc.replace_substring(pc.ascii_upper(cells), ",", ".")
    text = pc.replace_substring_regex(text, r"(\.\d{9})\d+", r"\1")  # nanoseconds are plenty
    date_only = pa.array(_matches(text, r"^\d{4}-\d{2}-\d{2}$"))
    text = pc.if_else(date_only, pc.binary_join_element_wise(text, "T00:00:00", ""), text)
    naive = pa.array(~_matches(text, r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"))
    text = pc.if_else(naive, pc.binary_join_element_wise(text, "Z", ""), text)
    stamps = _cast_each(text, _UTC_NS)
    ok = _bools(stamps.is_valid())
    ns = _ints(pc.fill_null(stamps.cast(pa.int64()), 0))
    return ns // 1_000_000_000, ok


def _check_time(name: str, times: _Times, required: bool) -> list[_Problem]:
    problems = [
        _Problem(name, "not a time (ISO-8601 or epoch seconds)", times.given & ~times.ok),
        _Problem(name, "before 1990 or after 2100", times.out_of_range),
    ]
    if required:
        problems.append(_Problem(name, "missing", ~times.given))
    return problems

"""Amounts: decimal text to minor units, exactly, rounding half up."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trainer.files.arrays import F64, I64, B, _ints, _np
from trainer.files.mapping import MAX_AMOUNT_MINOR
from trainer.files.parse_shared import _NUMBER, _cast_each, _given, _matches, _Problem
from trainer.files.results import AmountUnit


@dataclass(frozen=True, slots=True)
class _Amounts:
    minor: I64
    number: B  # the cell is a finite number
    negative: B
    too_large: B
    rounded: B  # more decimals than the currency has (or any, for minor units)


def _numbers(text: pa.Array) -> tuple[F64, B]:
    """float64 per cell, and whether the cell is a finite number: one cast unless some cell is not a number."""
    given = _given(text)
    try:
        x = np.asarray(_np(pc.cast(pc.if_else(pa.array(given), text, "nan"), pa.float64())), np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        syntax = given & _matches(text, _NUMBER)
        x = np.full(len(text), np.nan)
        x[syntax] = _np(pc.fill_null(_cast_each(text.filter(pa.array(syntax)), pa.float64()), np.nan))
    return x, given & np.isfinite(x)


def _amounts(text: pa.Array, exponent: I64) -> _Amounts:
    """Amounts in minor units from decimal text, rounding half up.

    float64 is exact for what it handles here: a decimal with no more decimals than the
    currency has, up to 10^15 minor units, lands within 0.25 of its whole number of minor
    units. Longer decimals (which round) go through ``_decimal_minor``, digit by digit.
    """
    scientific = _ints(pc.find_substring(text, "e", ignore_case=True)) >= 0  # 1.5e3
    point = _ints(pc.find_substring(text, "."))
    trimmed = pc.utf8_rtrim(text, "0")  # 12.3400 has 2 decimals; 5.000 has 0, as '5.0'
    trimmed = pc.if_else(pc.ends_with(trimmed, "."), pc.binary_join_element_wise(trimmed, "0", ""), trimmed)
    text = pc.if_else(pa.array((point >= 0) & ~scientific), trimmed, text)
    x, number = _numbers(text)
    scaled = np.abs(np.where(number, x, 0.0)) * 10.0**exponent
    too_large = ~(scaled <= MAX_AMOUNT_MINOR)
    minor = np.floor(np.where(too_large, 0.0, scaled) + 0.5).astype(np.int64)
    rounded = scientific & (np.abs(minor - scaled) > 1e-9 * np.maximum(scaled, 1.0))
    decimals = np.where(point >= 0, _ints(pc.utf8_length(text)) - point - 1, 0)
    long = number & (decimals > exponent) & ~scientific
    if long.any():
        exact = _decimal_minor(text.filter(pa.array(long)), exponent[long])
        minor[long], too_large[long], rounded[long] = exact.minor, exact.too_large, exact.rounded
    return _Amounts(minor, number, number & (x < 0), number & too_large, number & rounded)


def _decimal_minor(cells: pa.Array, exponent: I64) -> _Amounts:
    """Exact decimal text to minor units, rounding half up on the digit after the currency's last."""
    unsigned = pc.replace_substring_regex(cells, r"^[+-]", "")
    integer = pc.utf8_ltrim(pc.replace_substring_regex(unsigned, r"\..*$", ""), "0")
    fraction = pc.replace_substring_regex(unsigned, r"^\d*\.?", "")
    long = _ints(pc.utf8_length(integer)) > 16
    integer = pc.if_else(pa.array(long | ~_given(integer)), "0", integer)
    units = _ints(pc.cast(integer, pa.int64()))
    first5 = pc.utf8_slice_codeunits(pc.utf8_rpad(fraction, 5, "0"), 0, 5)
    fifth = _ints(pc.cast(first5, pa.int64()))  # the fraction in units of 10^-5
    scale = 10**exponent
    step = 10 ** (5 - exponent)
    too_large = long | (units > MAX_AMOUNT_MINOR // scale)
    minor = np.where(too_large, 0, units) * scale + (fifth + step // 2) // step
    rounded = (fifth % step != 0) | _matches(fraction, r"^\d{5}\d*[1-9]")
    every = np.ones(len(cells), np.bool_)
    return _Amounts(minor, every, ~every, too_large | (minor > MAX_AMOUNT_MINOR), rounded)


def _check_amount(text: pa.Array, amounts: _Amounts, unit: AmountUnit) -> list[_Problem]:
    given = _given(text)
    problems = [
        _Problem("amount", "missing", ~given),
        _Problem("amount", "not a number", given & ~amounts.number),
        _Problem("amount", "negative", amounts.negative),
        _Problem("amount", "above 10^15 minor units", ~amounts.negative & amounts.too_large),
    ]
    if unit == "minor":
        problems.append(_Problem("amount", "not a whole number of minor units", amounts.rounded))
    return problems

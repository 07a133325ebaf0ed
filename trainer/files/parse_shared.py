"""Pieces every field's parsing uses: what is wrong with which rows, the parsed columns, checks on text cells."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudguard.errors import ValidationError
from trainer.files.arrays import I64, B, _bools, _ints
from trainer.files.mapping import MAX_ID_CHARS

_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"


@dataclass(frozen=True, slots=True)
class _Problem:
    """Rows (a mask over the data rows) that fail one check of one field."""

    field: str
    reason: str
    mask: B


@dataclass(slots=True)
class _Parsed:
    """Every Payments column for every data row, and what is wrong with which rows."""

    columns: dict[str, Any]  # Payments field -> pa.Array (text) or NumPy array
    problems: list[_Problem]
    warnings: list[str]

def _text(values: pa.Array, name: str) -> pa.Array:
    """A column as trimmed UTF-8 text, "" for null; numbers and booleans as pyarrow prints them."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    if pa.types.is_large_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            values = values.cast(pa.string())
        except pa.ArrowInvalid as exc:
            raise ValidationError(name, "column is not UTF-8 text") from exc
    elif not pa.types.is_string(kind):
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind) or pa.types.is_temporal(kind)):
            raise ValidationError(name, f"column has type {kind}, not text or numbers")
        values = pc.cast(values, pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(values, ""))


def _given(text: pa.Array) -> B:
    """Cells that are not empty."""
    return _bools(pc.not_equal(text, ""))


def _matches(text: pa.Array, pattern: str) -> B:
    return _bools(pc.match_substring_regex(text, pattern))


def _digits(text: pa.Array, fewest: int, most: int) -> B:
    """Cells of ``fewest`` to ``most`` ASCII digits."""
    length = _ints(pc.utf8_length(text))
    return _bools(pc.ascii_is_decimal(text)) & (length >= fewest) & (length <= most)


def _letters(text: pa.Array, count: int) -> B:
    """Cells of exactly ``count`` ASCII letters."""
    length = _ints(pc.utf8_length(text))
    return _bools(pc.ascii_is_alpha(text)) & np.equal(length, count)


def _too_long(text: pa.Array) -> B:
    return _ints(pc.utf8_length(text)) > MAX_ID_CHARS


def _cast_each(values: pa.Array, to: pa.DataType) -> pa.Array:
    """``values`` cast to ``to``, null where one value cannot be. Bisects around failures: good values cost no extra."""
    try:
        return pc.cast(values, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(values) <= 1:
            return pa.nulls(len(values), to)
        mid = len(values) // 2
        return pa.concat_arrays([_cast_each(values.slice(0, mid), to), _cast_each(values.slice(mid), to)])


def _lookup(text: pa.Array, table: Mapping[str, int], fill: int) -> tuple[I64, B]:
    """``table[cell]`` per cell, ``fill`` where the cell is not a key; and whether it was one."""
    keys = list(table)
    position = pc.index_in(text, value_set=pa.array(keys, pa.string()))
    found = _bools(position.is_valid())
    values = np.array([table[k] for k in keys] + [fill], np.int64)
    return values[_ints(pc.fill_null(position, len(keys)))], found

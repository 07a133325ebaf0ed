"""Reason texts (``FeatureDef.reason``) formatted in Numba, byte for byte as Python's ``str.format`` does.

Each template is compiled once into literal bytes (before and after its ``{value…}`` field) and a
spec kind, so the response encoder can write texts without Python. Output is identical to
``template.format(value=v)`` for every float32 value ``v`` (widened to float64):

* ``'.Nf'`` / ``',.Nf'`` / ``'.N%'``: a float32 times ``10**k`` (k = N, plus 2 for ``%``, k ≤ 12) is exact
  in float64, so ``np.rint`` of it (round half to even) is Python's correctly rounded digit string;
  the sign is the value's sign bit (``format(-0.001, '.2f') == '-0.00'``); NaN prints ``nan``, ±inf ``inf``.
* ``''`` (``str(value)``, the shortest round-trip repr): done here for integral values below 1e16
  (``'3.0'``, ``'-0.0'``), NaN and ±inf.

Anything else — a value that is not a float32, one too large for an int64 once scaled, a non-integral
value under ``''``, or a template of another shape — makes ``format_texts`` decline that text
(``NEEDS_PYTHON``); the caller formats it in Python, so output stays identical.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from numba import njit


class SpecKind(IntEnum):
    """How a template's number is written."""

    CONSTANT = 0  # no field: the literal text only
    FIXED = 1  # '[,][.N](f|%)'
    REPR = 2  # '': str(value)
    PYTHON = 3  # any other template: always formatted by Python


# Columns of ``ReasonTexts.index``.
COL_PREFIX_START, COL_PREFIX_LEN, COL_SUFFIX_START, COL_SUFFIX_LEN = 0, 1, 2, 3
COL_KIND, COL_DECIMALS, COL_GROUPING, COL_PERCENT, COL_MAX_LEN = 4, 5, 6, 7, 8
N_COLUMNS = 9

NEEDS_PYTHON = -1
# Longest number written here: sign, 19 digits, 6 commas, '.', 12 decimals, '%'.
MAX_NUMBER_LEN = 40
_MAX_SCALE_DIGITS = 12  # 5**12 < 2**29: a float32 (24 bits) times 10**12 is exact in a double
_INT_LIMIT = float(2**62)  # scaled values at or above it go to Python
_REPR_LIMIT = 1e16  # repr() switches to exponent notation from here
_FIXED_SPEC = re.compile(r"(,?)(?:\.([0-9]+))?([f%])")


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """One template, split for Numba: literal text around the field and how the number is written."""

    prefix: bytes
    suffix: bytes
    kind: SpecKind
    decimals: int = 0
    grouping: bool = False
    percent: bool = False


def compile_template(template: str) -> CompiledTemplate:
    """Split ``template`` at its ``{value…}`` field; kind PYTHON when it is not of a shape handled here."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return CompiledTemplate(b"", b"", SpecKind.PYTHON)
    literals = [literal.encode() for literal, *_ in parts]
    fields = [i for i, (_, name, _, _) in enumerate(parts) if name is not None]
    if not fields:
        return CompiledTemplate(b"".join(literals), b"", SpecKind.CONSTANT)
    at = fields[0]
    _, name, spec, conversion = parts[at]
    if len(fields) > 1 or name != "value" or conversion is not None:
        return CompiledTemplate(b"", b"", SpecKind.PYTHON)
    prefix, suffix = b"".join(literals[: at + 1]), b"".join(literals[at + 1 :])
    if spec == "":
        return CompiledTemplate(prefix, suffix, SpecKind.REPR)
    match = _FIXED_SPEC.fullmatch(spec or "")
    if match is None:
        return CompiledTemplate(b"", b"", SpecKind.PYTHON)
    decimals = int(match.group(2)) if match.group(2) is not None else 6
    percent = match.group(3) == "%"
    if decimals + 2 * percent > _MAX_SCALE_DIGITS:
        return CompiledTemplate(b"", b"", SpecKind.PYTHON)
    return CompiledTemplate(prefix, suffix, SpecKind.FIXED, decimals, bool(match.group(1)), percent)


@dataclass(frozen=True, slots=True, eq=False)
class ReasonTexts:
    """Templates compiled into one byte blob of literals and one int64 row per template (``COL_*``)."""

    templates: tuple[str, ...]
    blob: npt.NDArray[np.uint8]
    index: npt.NDArray[np.int64]  # [n_templates, N_COLUMNS]

    @classmethod
    def compile(cls, templates: Sequence[str]) -> ReasonTexts:
        blob = bytearray()
        rows: list[list[int]] = []
        for template in templates:
            c = compile_template(template)
            prefix_start = len(blob)
            blob += c.prefix
            suffix_start = len(blob)
            blob += c.suffix
            max_len = len(c.prefix) + len(c.suffix) + (0 if c.kind == SpecKind.CONSTANT else MAX_NUMBER_LEN)
            rows.append([prefix_start, len(c.prefix), suffix_start, len(c.suffix), int(c.kind), c.decimals,
                         int(c.grouping), int(c.percent), max_len])  # fmt: skip
        index = np.array(rows, dtype=np.int64).reshape(len(rows), N_COLUMNS)
        return cls(tuple(templates), np.frombuffer(bytes(blob), dtype=np.uint8).copy(), index)

    def kind(self, i: int) -> SpecKind:
        return SpecKind(int(self.index[i, COL_KIND]))

    def format_bytes(self, i: int, value: float) -> bytes:
        """Template ``i`` for ``value``, UTF-8: by ``format_texts``, or by Python where it declines."""
        values = np.zeros((1, len(self.templates)), dtype=np.float64)
        values[0, i] = value
        buffer, spans = self.format_all(values, np.array([[i]], dtype=np.int64))
        start, length = spans[0, 0]
        return buffer[start : start + length].tobytes()

    def format_all(self, values: npt.NDArray[np.float32] | npt.NDArray[np.float64],
                   which: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """Texts by template ``which[i, j]`` for ``values[i, which[i, j]]``, every one: (buffer, spans [n, k, 2]
        of (start, length) in it). ``format_texts`` writes them, Python the ones it declines."""
        buffer = np.empty(text_capacity(self.index, which), dtype=np.uint8)
        spans = np.empty((*which.shape, 2), dtype=np.int64)
        if format_texts(self.blob, self.index, values, which, buffer, spans) == 0:
            return buffer, spans
        extra = bytearray()
        for i, j in zip(*np.nonzero(spans[:, :, 1] == NEEDS_PYTHON), strict=True):
            t = int(which[i, j])
            text = self.templates[t].format(value=float(values[i, t])).encode()
            spans[i, j] = (buffer.shape[0] + len(extra), len(text))
            extra += text
        return np.concatenate([buffer, np.frombuffer(bytes(extra), dtype=np.uint8)]), spans


# --- Numba ----------------------------------------------------------------------------------------
# ``format_texts`` takes the arrays once per batch; the helpers it calls per text are scalar functions or
# small leaves writing into ``out``, for which Numba prunes its reference counting of array arguments
# (a per-text call with arrays to a larger function would cost atomic operations on every call).


@njit(cache=True, nogil=True)
def text_capacity(index: npt.NDArray[np.int64], which: npt.NDArray[np.int64]) -> int:
    """Bytes the texts of templates ``which`` [n, k] take at most; ValueError if one is not in ``index``."""
    total = 0
    for i in range(which.shape[0]):
        for j in range(which.shape[1]):
            if not 0 <= which[i, j] < index.shape[0]:
                raise ValueError("reason template index out of range")
            total += index[which[i, j], COL_MAX_LEN]
    return total


@njit(cache=True, nogil=True)
def format_texts(blob: npt.NDArray[np.uint8], index: npt.NDArray[np.int64],
                 values: npt.NDArray[np.float32] | npt.NDArray[np.float64], which: npt.NDArray[np.int64],
                 out: npt.NDArray[np.uint8], spans: npt.NDArray[np.int64]) -> int:
    """Write the text of template ``which[i, j]`` for ``values[i, which[i, j]]`` (as float64) for every i, j
    into ``out``, one after the other: ``spans[i, j]`` = (start, length). ``out`` holds
    ``text_capacity(index, which)`` bytes, which also checks ``which``. Returns how many texts were declined
    (length NEEDS_PYTHON): those Python must format."""
    n, k = which.shape
    declined, pos = 0, 0
    for i in range(n):
        for j in range(k):
            t = which[i, j]
            value = np.float64(values[i, t])
            kind = index[t, COL_KIND]
            decimals, percent = index[t, COL_DECIMALS], index[t, COL_PERCENT] != 0
            whole = _whole(value, decimals, percent) if kind == SpecKind.FIXED else _integral(value)
            if kind == SpecKind.PYTHON or (kind != SpecKind.CONSTANT and whole == NEEDS_PYTHON):
                spans[i, j, 0], spans[i, j, 1] = pos, NEEDS_PYTHON
                declined += 1
                continue
            end = copy_bytes(out, pos, blob, index[t, COL_PREFIX_START], index[t, COL_PREFIX_LEN])
            if kind != SpecKind.CONSTANT:
                if whole == _NOT_FINITE:
                    end = _put_special(out, end, value)
                elif kind == SpecKind.REPR:
                    end = _put_number(out, end, whole, math.copysign(1.0, value) < 0.0, 0, False)
                    end = _put2(out, end, 46, 48)  # '.0'
                else:
                    end = _put_number(out, end, whole, math.copysign(1.0, value) < 0.0, decimals,
                                      index[t, COL_GROUPING] != 0)
                if percent:
                    out[end] = 37  # '%'
                    end += 1
            end = copy_bytes(out, end, blob, index[t, COL_SUFFIX_START], index[t, COL_SUFFIX_LEN])
            spans[i, j, 0], spans[i, j, 1] = pos, end - pos
            pos = end
    return declined


_NOT_FINITE = -2


@njit(cache=True, nogil=True)
def _whole(value: float, decimals: int, percent: bool) -> int:
    """``|value| * 10**decimals`` (times 100 more for '%') rounded half to even, exactly: _NOT_FINITE for NaN
    and ±inf, NEEDS_PYTHON when ``value`` is no float32 or the result would not fit."""
    if not math.isfinite(value):
        return _NOT_FINITE
    if np.float64(np.float32(value)) != value:
        return NEEDS_PYTHON
    scale = 100.0 if percent else 1.0
    for _ in range(decimals):
        scale *= 10.0
    scaled = np.rint(abs(value) * scale)
    return int(scaled) if scaled < _INT_LIMIT else NEEDS_PYTHON


@njit(cache=True, nogil=True)
def _integral(value: float) -> int:
    """``|value|`` for ``str(value)``: _NOT_FINITE for NaN and ±inf, NEEDS_PYTHON unless integral below 1e16."""
    if not math.isfinite(value):
        return _NOT_FINITE
    if abs(value) < _REPR_LIMIT and value == math.floor(value):
        return int(abs(value))
    return NEEDS_PYTHON


@njit(cache=True, nogil=True)
def copy_bytes(out: npt.NDArray[np.uint8], pos: int, src: npt.NDArray[np.uint8], start: int, length: int) -> int:
    """``out[pos:] = src[start:start + length]``; unsigned indices (never wrapped around) let it vectorize."""
    to, at = np.uint64(pos), np.uint64(start)
    for b in range(np.uint64(length)):
        out[to + b] = src[at + b]
    return pos + length


@njit(cache=True, nogil=True)
def _put2(out: npt.NDArray[np.uint8], pos: int, first: int, second: int) -> int:
    out[pos] = first
    out[pos + 1] = second
    return pos + 2


@njit(cache=True, nogil=True)
def _put_special(out: npt.NDArray[np.uint8], pos: int, value: float) -> int:
    """'nan' (whatever its sign), 'inf' or '-inf', as Python prints them."""
    if math.isnan(value):
        out[pos] = 110  # 'n'
        return _put2(out, pos + 1, 97, 110)  # 'an'
    if value < 0.0:
        out[pos] = 45  # '-'
        pos += 1
    out[pos] = 105  # 'i'
    return _put2(out, pos + 1, 110, 102)  # 'nf'


@njit(cache=True, nogil=True)
def _n_digits(value: int) -> int:
    n = 1
    while value >= 10:
        n += 1
        value //= 10
    return n


@njit(cache=True, nogil=True)
def _put_number(out: npt.NDArray[np.uint8], pos: int, whole: int, negative: bool, decimals: int,
                grouping: bool) -> int:
    """``whole`` ≥ 0 / 10**decimals in decimal: sign, integer digits (',' every three if ``grouping``), and
    when ``decimals`` > 0 a point and exactly that many digits. Written backwards, unsigned."""
    if negative:
        out[pos] = 45  # '-'
        pos += 1
    n = max(_n_digits(whole), decimals + 1)
    end = pos + n + (1 if decimals > 0 else 0) + ((n - decimals - 1) // 3 if grouping else 0)
    at, rest, ten = np.uint64(end), np.uint64(whole), np.uint64(10)
    for d in range(n):
        if d == decimals and d > 0:
            at -= np.uint64(1)
            out[at] = 46  # '.'
        elif grouping and d > decimals and (d - decimals) % 3 == 0:
            at -= np.uint64(1)
            out[at] = 44  # ','
        at -= np.uint64(1)
        out[at] = np.uint64(48) + rest % ten
        rest //= ten
    return end

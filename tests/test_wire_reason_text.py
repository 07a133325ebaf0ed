"""Reason texts formatted in Numba against Python's ``str.format``, byte for byte: every feature's template
and a few other shapes, over float32 values of every kind (ties, signed zeros, subnormals, inf, NaN,
values too large for the fast path) and over doubles that are no float32 (Python's path)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scoring.features.schema import FEATURES
from scoring.wire.reason_text import NEEDS_PYTHON, ReasonTexts, SpecKind, compile_template, format_texts, text_capacity

OTHER_TEMPLATES = (
    "{value}",  # str(value)
    "{value:,.1%} of it",
    "{{literal}} {value:.3f} }}",
    "{value:f}",  # precision 6
    "{value:,.0%}",
    "{value:.12f}",  # the most decimals kept in Numba
    "{value:.10%}",
    "{value!r}",  # the rest: Python formats these
    "{value:e}",
    "{value:10.2f}",
    "{value:.13f}",
    "a {value} b {value}",
)
TEMPLATES = tuple(f.reason for f in FEATURES) + OTHER_TEMPLATES
TEXTS = ReasonTexts.compile(TEMPLATES)
FEATURE_TEMPLATES = range(len(FEATURES))

TIES = (0.125, 0.375, 2.5, 3.5, -2.5, 0.5, 1.5, 0.0625, 1234567.125, -0.125, 0.0078125, 1048576.5)
SPECIAL = (0.0, -0.0, 0.0005, -0.001, -0.0004, 0.001, 0.0015, 0.00125, 0.9995, 99.95, 1e-45, -1e-45, 1.1754942e-38,
           16777216.0, 16777217.0, 1e15, 1e16, 9.2e18, 3.4028235e38, -3.4028235e38, math.inf, -math.inf, math.nan,
           -math.nan, 0.1, 0.3, 2.675, 1.005)


def expected(template: int, value: float) -> bytes:
    return TEMPLATES[template].format(value=value).encode()


def f32(value: float) -> float:
    return float(np.float32(value))


# ---------------------------------------------------------------------------------------------------
# Compiling templates
# ---------------------------------------------------------------------------------------------------


def test_every_feature_template_is_formatted_in_numba() -> None:
    """A feature whose template only Python can format would quietly slow every response."""
    kinds = {f.name: TEXTS.kind(i) for i, f in enumerate(FEATURES)}
    assert set(kinds.values()) <= {SpecKind.CONSTANT, SpecKind.FIXED}, kinds


@pytest.mark.parametrize(("template", "kind", "decimals", "grouping", "percent"), [
    ("amount {value:,.2f}", SpecKind.FIXED, 2, True, False),
    ("{value:.0f} payments", SpecKind.FIXED, 0, False, False),
    ("rate {value:.1%}", SpecKind.FIXED, 1, False, True),
    ("{value:f}", SpecKind.FIXED, 6, False, False),
    ("location given", SpecKind.CONSTANT, 0, False, False),
    ("{value}", SpecKind.REPR, 0, False, False),
    ("{value!r}", SpecKind.PYTHON, 0, False, False),
    ("{value:>8.2f}", SpecKind.PYTHON, 0, False, False),
    ("{value:.10%}", SpecKind.FIXED, 10, False, True),
    ("{value:.11%}", SpecKind.PYTHON, 0, False, False),
    ("{value:.12%}", SpecKind.PYTHON, 0, False, False),
    ("{other:.2f}", SpecKind.PYTHON, 0, False, False),
    ("{value.real:.2f}", SpecKind.PYTHON, 0, False, False),
    ("{value:.2f} {value:.2f}", SpecKind.PYTHON, 0, False, False),
    ("{ {value}", SpecKind.PYTHON, 0, False, False),
])  # fmt: skip
def test_compile_template(template: str, kind: SpecKind, decimals: int, grouping: bool, percent: bool) -> None:
    compiled = compile_template(template)
    assert (compiled.kind, compiled.decimals, compiled.grouping, compiled.percent) == (kind, decimals, grouping,
                                                                                       percent)


def test_escaped_braces_become_literal_text() -> None:
    compiled = compile_template("{{x}} {value:.1f} }}y{{")
    assert (compiled.prefix, compiled.suffix) == (b"{x} ", b" }y{")
    assert compile_template("{{no field}}") == compile_template("{{no field}}")
    assert compile_template("{{no field}}").prefix == b"{no field}"


# ---------------------------------------------------------------------------------------------------
# Formatting: the same bytes as Python
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("template", range(len(TEMPLATES)))
def test_hand_picked_values(template: int) -> None:
    for value in map(f32, TIES + SPECIAL):
        assert TEXTS.format_bytes(template, value) == expected(template, value), value


@given(st.floats(width=32), st.sampled_from(range(len(TEMPLATES))))
@settings(max_examples=1500, deadline=None)
@example(0.125, 0)
@example(-0.0, 4)
@example(0.0005, TEMPLATES.index("merchant's recent fraud rate {value:.1%}"))
@example(-1e-45, 1)
def test_any_float32_value(value: float, template: int) -> None:
    assert TEXTS.format_bytes(template, value) == expected(template, value)


@st.composite
def ties(draw: st.DrawFn) -> float:
    """A float32 exactly halfway between two outputs of '.{d}f' (an odd multiple of 2**-(d + 1)), or of '.1%'."""
    exponent = draw(st.integers(1, 4))
    odd = 2 * draw(st.integers(-(2**22), 2**22)) + 1
    return f32(odd / 2**exponent) * draw(st.sampled_from((1.0, 0.01)))


@given(ties(), st.sampled_from(range(len(TEMPLATES))))
@settings(max_examples=600, deadline=None)
def test_values_on_and_near_ties(value: float, template: int) -> None:
    value = f32(value)
    for v in (value, float(np.nextafter(np.float32(value), np.float32(math.inf))),
              float(np.nextafter(np.float32(value), np.float32(-math.inf)))):
        assert TEXTS.format_bytes(template, v) == expected(template, v)


@given(st.floats(), st.sampled_from(FEATURE_TEMPLATES))
@settings(max_examples=300, deadline=None)
def test_doubles_that_are_no_float32_are_left_to_python(value: float, template: int) -> None:
    assert TEXTS.format_bytes(template, value) == expected(template, value)


def test_numba_declines_exactly_what_it_cannot_do_exactly() -> None:
    """The fast path really is taken for ordinary values, and really declined for the rest."""
    t = TEMPLATES.index("amount {value:,.2f}")
    values = (1.5, 3e30, 0.1, -0.0, math.nan, 1e18 + 2**40)  # 3e30 scaled overflows; 0.1 and 1e18 + 2**40 are
    which = np.array([[t]], dtype=np.int64)                 # no float32
    declined = []
    for value in values:
        grid = np.zeros((1, len(TEMPLATES)), dtype=np.float64)
        grid[0, t] = value
        out = np.empty(text_capacity(TEXTS.index, which), dtype=np.uint8)
        spans = np.empty((1, 1, 2), dtype=np.int64)
        declined.append(format_texts(TEXTS.blob, TEXTS.index, grid, which, out, spans) == 1)
        assert (spans[0, 0, 1] == NEEDS_PYTHON) == declined[-1]
    assert declined == [False, True, True, False, False, True]


def test_format_all_places_each_text_by_its_span() -> None:
    rng = np.random.default_rng(7)
    values = (rng.normal(size=(50, len(TEMPLATES))) * 10.0 ** rng.integers(-6, 37, size=(50, 1))).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = np.nan
    which = rng.integers(0, len(TEMPLATES), size=(50, 4))
    buffer, spans = TEXTS.format_all(values, which)
    for i in range(50):
        for j in range(4):
            start, length = spans[i, j]
            t = int(which[i, j])
            assert buffer[start : start + length].tobytes() == expected(t, float(values[i, t]))


def test_a_template_index_outside_the_table_is_an_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        text_capacity(TEXTS.index, np.array([[len(TEMPLATES)]], dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        TEXTS.format_all(np.zeros((1, 3), dtype=np.float32), np.array([[-1]], dtype=np.int64))

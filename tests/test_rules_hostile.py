"""Hostile rule text: always a clear RuleError with a position, never a crash or RecursionError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.rules import RuleError, RuleSet, RuleSyntaxError
from scoring.rules.parser import MAX_DEPTH, MAX_SOURCE_CHARS


def compile_or_error(text: str) -> None:
    try:
        RuleSet(text, {"cards": ["tok_1"]})
    except RuleError as exc:
        assert exc.line >= 1 and exc.column >= 1
        assert str(exc).startswith(f"line {exc.line}, column {exc.column}: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("block if " + "(" * 900 + "amount > 1" + ")" * 900, "nested deeper than"),
        ("block if " + "(" * 10_000 + "amount > 1" + ")" * 10_000, "line longer than"),
        ("block if " + "not " * 400 + "true", "nested deeper than"),
        ("block if " + "-" * 1_900 + "1 > 0", "nested deeper than"),
        ("block if " + " * ".join(["2"] * 200) + " > 1", "nested deeper than"),
        ("block if " + " + ".join(["amount"] * 5_000) + " > 1", "line longer than"),
        ("block if " + " and ".join(["true"] * 150), "nested deeper than"),
        ("block if amount > " + "9" * 1_000, "number longer than"),
        ('block if card.token == "' + "x" * 1_000 + '"', "string longer than"),
        ("block if amount > 1\n" * 100_000, "rule source longer than"),
        ("allow if true\n" * 2_001, "more than 2000 rules"),
        ("block if amount\x00 > 1", "U+0000 NUL"),
        ("block if amount\u202e > 1", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("block if amount\u00a0> 1", "U+00A0 NO-BREAK SPACE"),
        ("block if аmount > 1", "U+0430 CYRILLIC SMALL LETTER A"),  # a Cyrillic lookalike
        ("block if amount > 1\u2028block if true", "U+2028 LINE SEPARATOR"),
        ('block if card.token == "a\u202eb"', "is not allowed in a string"),
        ('block if card.token == "a\x00b"', "is not allowed in a string"),
        ("block if amount > １", "U+FF11 FULLWIDTH DIGIT ONE"),
        ("block if amount > 1 \ud800", "U+D800"),
    ],
)
def test_hostile_inputs_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        RuleSet(text)
    assert message in str(info.value)


def test_megabyte_of_text_points_at_the_limit() -> None:
    text = ("# " + "x" * 98 + "\n") * 10_000  # ~1 MB of comments
    with pytest.raises(RuleSyntaxError) as info:
        RuleSet(text)
    assert info.value.line == MAX_SOURCE_CHARS // 101 + 1


def test_depth_just_under_the_limit_compiles() -> None:
    depth = MAX_DEPTH - 2
    RuleSet("block if " + "(" * depth + "amount > 1" + ")" * depth)
    RuleSet("block if " + " + ".join(["amount"] * (MAX_DEPTH - 2)) + " > 1")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    compile_or_error(text)


TOKENS = ["block", "allow", "if", "and", "or", "not", "in", "(", ")", ",", "@cards", "amount", "score", "card.token",
          "channel", '"ecommerce"', '"DE"', "1_000", "0.5", "==", "!=", "<", ">=", "+", "-", "*", "/", "true", "rule",
          "x", ":", "#", "\n", '"', "\\", "@", "."]


@settings(max_examples=1_000, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_random_token_soup_never_crashes(tokens: list[str]) -> None:
    compile_or_error(" ".join(tokens))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS[4:28]), max_size=40))
def test_random_conditions_never_crash(tokens: list[str]) -> None:
    compile_or_error("block if " + " ".join(tokens))

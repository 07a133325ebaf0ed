"""Compile-time errors: unknown fields and lists, type mismatches, bad codes — each with line and column."""

from __future__ import annotations

import pytest

from scoring.features.schema import FEATURE_NAMES
from scoring.rules import FIELDS, Lists, RuleCompileError, RuleSet, Type

LISTS: Lists = {"cards": ["tok_1", "tok_2"], "mccs": [7995, 5967], "countries": ["DE", "FR"], "mixed": ["tok", 3]}


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("block if ip.country != card.country", 1, 10, "unknown field 'ip.country'"),
        ("block if amout > 5", 1, 10, "unknown field 'amout' (did you mean 'amount'?)"),
        ("\nblock if amount == \"DE\"", 2, 17, "'==' cannot compare a number with a string"),
        ('block if merchant_country == "Germany"', 1, 30, '"Germany" is not a country'),
        ('block if channel == "web"', 1, 21, '"web" is not a channel: one of unspecified, card_present, ecommerce'),
        ('block if entry_mode != "swipe"', 1, 24, "is not an entry mode"),
        ('block if card.token == ""', 1, 24, "an empty id matches nothing"),
        ("block if channel > 2", 1, 10, "'>' compares numbers, found a channel"),
        ("block if channel == 2", 1, 18, "cannot compare a channel with a number"),
        ('block if "a" == "b"', 1, 14, "comparing two strings"),
        ("block if amount", 1, 10, "a rule's condition must be true or false, not a number"),
        ("block if amount > 1 and score", 1, 25, "'and' takes true/false, found a number"),
        ("block if not amount", 1, 14, "'not' takes true/false, found a number"),
        ("block if -channel > 1", 1, 11, "'-' takes a number, found a channel"),
        ('block if amount + "x" > 1', 1, 19, "'+' takes a number, found a string"),
        ("block if (amount > 1) in (1, 2)", 1, 18, "'in' takes a number or a field"),
        ('block if amount in (1, "x")', 1, 24, "its items must be numbers"),
        ("block if merchant_country in (1, 2)", 1, 31, "its items must be strings"),
        ('block if merchant_country in ("DE", "xx")', 1, 37, '"xx" is not a country'),
        ("block if card.token in @nope", 1, 24, "unknown list '@nope' (known: @cards, @countries, @mccs, @mixed)"),
        ("block if card.token in @mccs", 1, 24, "list '@mccs' holds 7995, but is matched against an id"),
        ("block if mcc in @cards", 1, 17, "list '@cards' holds 'tok_1', but is matched against a number"),
        ("block if merchant_country in @cards", 1, 30, "list '@cards': \"tok_1\" is not a country"),
    ],
)
def test_compile_errors(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(RuleCompileError) as info:
        RuleSet(source, LISTS)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in info.value.message


def test_every_feature_is_a_number_field_under_its_name_and_feature_prefix() -> None:
    for column, name in enumerate(FEATURE_NAMES):
        prefixed = FIELDS[f"feature.{name}"]
        assert (prefixed.type, prefixed.index, prefixed.source.value) == (Type.NUMBER, column, "features")
        if name not in ("amount", "channel", "entry_mode", "mcc"):
            assert FIELDS[name] is prefixed
    assert FIELDS["velocity.card.count_1h"] is FIELDS["card_count_1h"]
    assert FIELDS["velocity.ip.count_24h"] is FIELDS["ip_count_24h"]
    assert FIELDS["channel"].type is Type.CHANNEL and FIELDS["amount"].source.value == "reals"


def test_valid_mixed_rules_compile_and_report_their_inputs() -> None:
    rules = RuleSet(
        'block if card.token in @cards and merchant_country in @countries and mcc in @mccs\n'
        "review if feature.channel == 2 and score >= 0.5 and latitude != longitude\n",
        LISTS,
    )
    assert rules.inputs.fields == ("card.token", "channel", "latitude", "longitude", "mcc", "merchant_country", "score")
    assert rules.inputs.score and rules.inputs.feature_columns == (FEATURE_NAMES.index("channel"),)
    assert rules.inputs.real_rows == (2, 3) and rules.inputs.int_rows == (0, 5, 6)


def test_version_is_a_content_hash_of_source_and_referenced_lists() -> None:
    a = RuleSet("allow if card.token in @cards", LISTS)
    assert a.version == RuleSet("allow if card.token in @cards", {**LISTS, "other": ["x"]}).version
    assert a.version != RuleSet("allow if card.token in @cards", {**LISTS, "cards": ["tok_1"]}).version
    assert a.version != RuleSet("allow if card.token in @cards ", LISTS).version
    assert len(a.version) == 16

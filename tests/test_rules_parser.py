"""The rules grammar: every construct, precedence, ids, and syntax errors at their exact line and column."""

from __future__ import annotations

import dataclasses

import pytest

from scoring.rules import Action, RuleSyntaxError, parse_expression, parse_rules
from scoring.rules import nodes as n


def shape(node: object) -> object:
    """The tree without positions, as nested tuples, for compact expectations."""
    if isinstance(node, n.Field):
        return node.path
    if isinstance(node, n.Number | n.String | n.Bool):
        return node.value
    if isinstance(node, n.Neg):
        return ("neg", shape(node.operand))
    if isinstance(node, n.Not):
        return ("not", shape(node.operand))
    if isinstance(node, n.Arith | n.Compare | n.Logic):
        return (node.op, shape(node.left), shape(node.right))
    if isinstance(node, n.In):
        target = node.target
        items = ("@" + target.name) if isinstance(target, n.NamedList) else tuple(shape(i) for i in target.items)
        return ("not in" if node.negated else "in", shape(node.operand), items)
    raise AssertionError(node)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a or b and c", ("or", "a", ("and", "b", "c"))),
        ("a and b or c", ("or", ("and", "a", "b"), "c")),
        ("not a and b", ("and", ("not", "a"), "b")),
        ("not a or not b", ("or", ("not", "a"), ("not", "b"))),
        ("not (a or b)", ("not", ("or", "a", "b"))),
        ("a or b or c", ("or", ("or", "a", "b"), "c")),
        ("x + y * 2 > 3", (">", ("+", "x", ("*", "y", 2.0)), 3.0)),
        ("(x + y) * 2 >= 3", (">=", ("*", ("+", "x", "y"), 2.0), 3.0)),
        ("x - y - z == 0", ("==", ("-", ("-", "x", "y"), "z"), 0.0)),
        ("x / 2 / 4 != 1", ("!=", ("/", ("/", "x", 2.0), 4.0), 1.0)),
        ("-x < --1", ("<", ("neg", "x"), ("neg", ("neg", 1.0)))),
        ("a.b.c <= 1_000_00", ("<=", "a.b.c", 100000.0)),
        ("x > 0.92", (">", "x", 0.92)),
        ('c in ("DE", "FR",)', ("in", "c", ("DE", "FR"))),
        ("c not in (1, -2.5)", ("not in", "c", (1.0, -2.5))),
        ("c in @trusted", ("in", "c", "@trusted")),
        ("not c in @trusted", ("not", ("in", "c", "@trusted"))),
        ("flag == true or false", ("or", ("==", "flag", True), False)),
        (r'k == "a\"b\\c\n\t"', ("==", "k", 'a"b\\c\n\t')),
        ('k == "Zürich 東京"', ("==", "k", "Zürich 東京")),
    ],
)
def test_expression_shapes(text: str, expected: object) -> None:
    assert shape(parse_expression(text)) == expected


def test_rules_lines_ids_descriptions_and_comments() -> None:
    source = (
        "# header comment\n"
        "\n"
        "block if score > 0.92   # trailing comment\r\n"
        'rule big_amount "over a thousand": review if amount > 1_000\n'
        "   allow if card.token in @trusted_cards\n"
        "rule c: challenge if true\n"
    )
    rules = parse_rules(source)
    assert [(r.rule_id, r.description, r.action) for r in rules] == [
        ("line3", "", Action.BLOCK),
        ("big_amount", "over a thousand", Action.REVIEW),
        ("line5", "", Action.ALLOW),
        ("c", "", Action.CHALLENGE),
    ]
    assert rules[2].pos == n.Pos(5, 4)
    cond = rules[1].condition
    assert isinstance(cond, n.Compare) and cond.pos == n.Pos(4, 53) and cond.left.pos == n.Pos(4, 46)


def test_nodes_are_frozen() -> None:
    node = parse_expression("a > 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.op = "<"  # type: ignore[misc, union-attr]


@pytest.mark.parametrize(
    ("source", "line", "column", "message"),
    [
        ("review if amount 500", 1, 18, "expected a comparison operator after 'amount'"),
        ("\n\nreview if velocity.card.count_1h > 5 and amount 500_00", 3, 49,
         "expected a comparison operator after 'amount'"),
        ("review if amount > 5 and", 1, 25, "expected a value"),
        ("review amount > 5", 1, 8, "expected 'if' after 'review'"),
        ("deny if amount > 5", 1, 1, "expected an action (allow, challenge, review, block), found 'deny'"),
        ("block if amount = 5", 1, 17, "compare with '=='"),
        ("block if !flag", 1, 10, "negate with 'not'"),
        ("block if c == 'DE'", 1, 15, "double quotes"),
        ('block if c == "DE', 1, 15, "unterminated string"),
        (r'block if c == "D\x"', 1, 17, "unknown escape"),
        ("block if (amount > 5", 1, 21, "expected ')' to close the '(' at column 10"),
        ("block if amount > 5)", 1, 20, "unexpected ')'"),
        ("block if 1 < amount < 5", 1, 21, "comparisons cannot be chained"),
        ("block if c in DE", 1, 15, "expected a tuple"),
        ("block if c in ()", 1, 15, "empty tuple"),
        ("block if c in (DE)", 1, 16, "expected a number or a string in the tuple"),
        ("block if c not ( 1 )", 1, 16, "expected 'in' after 'not'"),
        ("block if @list", 1, 10, "can only follow 'in'"),
        ("block if c in @", 1, 16, "expected a list name after '@'"),
        ("block if card. > 1", 1, 15, "expected a field name after 'card.'"),
        ("block if 1__0 > 1", 1, 10, "'_' goes only between digits"),
        ("block if 10_ > 1", 1, 10, "'_' goes only between digits"),
        ("block if 1.5.2 > 1", 1, 13, "unexpected '.' in the number"),
        ("block if amount > 12abc", 1, 21, "unexpected 'a' in the number"),
        ("rule : block if true", 1, 6, "expected a rule id after 'rule'"),
        ("rule x block if true", 1, 8, "expected ':' after the rule id"),
        ("rule x: block if true\nrule x: allow if true", 2, 1, "duplicate rule id 'x'"),
        ("block if true true", 1, 15, "expected a comparison operator after 'true'"),
        ("block if amount > 5 # ok\nblock if amount ≥ 5", 2, 17, "unexpected character U+2265 GREATER-THAN OR EQUAL"),
    ],
)
def test_syntax_errors_point_at_the_place(source: str, line: int, column: int, message: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        parse_rules(source)
    err = info.value
    assert (err.line, err.column) == (line, column), str(err)
    assert message in err.message
    assert str(err).startswith(f"line {line}, column {column}: ")


def test_the_documented_example_message() -> None:
    with pytest.raises(RuleSyntaxError, match=r"^line 3, column 17: expected a comparison operator after 'amount'$"):
        parse_rules("# one\n# two\nblock if amount 5")

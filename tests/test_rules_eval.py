"""Evaluation: hand-computed expectations, lists, action precedence, and the kernel against the reference
interpreter on random rules and random batches."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scoring.decision import ALLOW, BLOCK, CHALLENGE, REVIEW
from scoring.features.batch import TransactionBatch
from scoring.features.keys import country_code, entity_key
from scoring.features.schema import INDEX, N_FEATURES
from scoring.rules import Lists, RuleColumns, RuleSet
from scoring.rules import nodes as n
from scoring.rules.parser import parse_expression
from scoring.rules.reference import evaluate_rule

CARDS = ["tok_a", "tok_b", "tok_c", "tok_d"]
COUNTRIES = ["DE", "FR", "US", "GB"]


def make_columns(
    amount: list[float],
    *,
    card: list[str] | None = None,
    country: list[str] | None = None,
    channel: list[int] | None = None,
    mcc: list[int] | None = None,
    latitude: list[float] | None = None,
    scores: list[float] | None = None,
    features: dict[str, list[float]] | None = None,
) -> RuleColumns:
    size = len(amount)
    cards = card or ["tok_a"] * size
    batch = TransactionBatch(
        [f"t{i}" for i in range(size)], [1.7e9] * size, amount, [entity_key(c) for c in cards],
        [0] * size, [0] * size, [0] * size, [0] * size,
        [country_code(c) for c in (country or ["DE"] * size)], mcc or [5411] * size, channel or [1] * size,
        [1] * size, latitude or [math.nan] * size, [0.0] * size, range(1, size + 1),
    )  # fmt: skip
    feats = np.zeros((size, N_FEATURES), np.float32)
    for name, values in (features or {}).items():
        feats[:, INDEX[name]] = values
    return RuleColumns.of(batch, feats, np.array(scores or [0.0] * size, np.float64))


def test_hand_computed_masks() -> None:
    rules = RuleSet(
        "rule big: review if velocity.card.count_1h > 5 and amount > 500_00\n"
        'rule foreign_ecom: challenge if channel == "ecommerce" and not (merchant_country in ("DE", "FR"))'
        " or amount >= 1_000_00\n"
        "rule sure: block if score > 0.92 and merchant_country != \"DE\"\n"
        "rule arith: challenge if (amount - 10) / 2 * 3 + -1 == 14\n"
        "rule nan: challenge if latitude != latitude\n"
    )
    cols = make_columns(
        [600_00, 10, 2_000_00, 20],
        country=["DE", "US", "FR", "GB"],
        channel=[2, 2, 1, 1],
        latitude=[1.0, math.nan, 2.0, 3.0],
        scores=[0.99, 0.95, 0.5, 0.93],
        features={"card_count_1h": [6, 9, 5, 0]},
    )
    out = rules.evaluate(cols)
    assert out.hits.tolist() == [
        [True, False, False, False, False],
        [False, True, True, False, True],
        [False, True, False, False, False],
        [False, False, True, True, False],
    ]
    assert out.rule_action.tolist() == [REVIEW, BLOCK, CHALLENGE, BLOCK]
    assert out.action.tolist() == out.rule_action.tolist()
    assert out.hit_ids(1) == ("foreign_ecom", "sure", "nan")


def test_lists_of_ids_countries_and_numbers() -> None:
    lists: Lists = {"trusted": ["tok_b", "tok_d"], "risky_countries": ["US"], "gambling": [7995, 7801]}
    rules = RuleSet(
        "rule t: allow if card.token in @trusted\n"
        "rule r: review if merchant_country in @risky_countries or mcc in @gambling\n"
        "rule nt: challenge if card.token not in @trusted and card.token != \"tok_c\"\n",
        lists,
    )
    cols = make_columns([1, 1, 1, 1], card=CARDS, country=["DE", "US", "FR", "DE"], mcc=[5411, 5411, 5411, 7995])
    assert rules.evaluate(cols).hits.tolist() == [
        [False, False, True],
        [True, True, False],
        [False, False, False],
        [True, True, False],
    ]


def test_big_list_membership() -> None:
    tokens = [f"tok_{i}" for i in range(100_000)]
    rules = RuleSet("block if card.token in @stolen", {"stolen": tokens})
    cols = make_columns([1.0] * 4, card=["tok_0", "tok_99999", "tok_100000", "tok_5"])
    assert rules.evaluate(cols).hits[:, 0].tolist() == [True, True, False, True]


def test_action_precedence_and_combination_with_the_model() -> None:
    rules = RuleSet(
        "allow if amount == 1\n"
        "block if amount <= 2\n"
        "review if amount <= 3\n"
        "challenge if amount <= 4\n"
    )
    cols = make_columns([1, 2, 3, 4, 5, 4, 5])
    model = np.array([BLOCK, ALLOW, ALLOW, REVIEW, CHALLENGE, ALLOW, ALLOW], np.int64)
    out = rules.evaluate(cols, model)
    assert out.rule_action.tolist() == [ALLOW, BLOCK, REVIEW, CHALLENGE, 0, CHALLENGE, 0]
    # allow hit wins over the model's BLOCK; otherwise max(model, rules)
    assert out.action.tolist() == [ALLOW, BLOCK, REVIEW, REVIEW, CHALLENGE, CHALLENGE, ALLOW]


def test_shapes_are_checked() -> None:
    rules = RuleSet("block if score > 0.5 and card_count_1h > 1")
    cols = make_columns([1.0, 2.0])
    with pytest.raises(ValueError, match="model actions"):
        rules.evaluate(cols, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="read the score"):
        rules.evaluate(RuleColumns(cols.reals, cols.ints, cols.features, np.zeros(0)))
    with pytest.raises(ValueError, match="read features"):
        rules.evaluate(RuleColumns(cols.reals, cols.ints, np.zeros((2, 0), np.float32), cols.scores))
    assert RuleSet("block if amount > 1").evaluate(RuleColumns(cols.reals, cols.ints, np.zeros((2, 0), np.float32),
                                                               np.zeros(0))).hits[:, 0].tolist() == [False, True]


def test_empty_rule_set_and_empty_batch() -> None:
    empty = RuleSet("# nothing yet\n")
    out = empty.evaluate(make_columns([1.0]), np.array([REVIEW]))
    assert out.hits.shape == (1, 0) and out.action.tolist() == [REVIEW] and out.rule_action.tolist() == [0]
    out = RuleSet("block if amount > 1").evaluate(make_columns([]))
    assert out.hits.shape == (0, 1)


# --- random rules against the reference interpreter ---------------------------------------------------

NUMBER_FIELDS = ["amount", "score", "mcc", "latitude", "card_count_1h", "velocity.card.amount_24h", "feature.channel"]
NUMBERS = [0.0, 1.0, 2.0, 0.5, 5.0, 500.0, 5411.0]


def numbers(depth: int) -> st.SearchStrategy[n.Expr]:
    p = n.Pos(1, 1)
    leaf = st.one_of(st.sampled_from(NUMBER_FIELDS).map(lambda f: n.Field(f, p)),
                     st.sampled_from(NUMBERS).map(lambda v: n.Number(v, p)))
    if depth == 0:
        return leaf
    sub = numbers(depth - 1)
    return st.one_of(
        leaf,
        sub.map(lambda e: n.Neg(e, p)),
        st.builds(lambda op, a, b: n.Arith(op, a, b, p), st.sampled_from("+-*/"), sub, sub),
    )


def conditions(depth: int) -> st.SearchStrategy[n.Expr]:
    p = n.Pos(1, 1)
    strings = st.sampled_from
    atoms = st.one_of(
        st.builds(lambda op, a, b: n.Compare(op, a, b, p), st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
                  numbers(2), numbers(2)),
        st.builds(lambda op, c: n.Compare(op, n.Field("merchant_country", p), n.String(c, p), p),
                  st.sampled_from(["==", "!="]), strings(COUNTRIES)),
        st.builds(lambda c: n.Compare("==", n.Field("channel", p), n.String(c, p), p),
                  strings(["ecommerce", "card_present", "atm"])),
        st.builds(lambda neg, items: n.In(n.Field("merchant_country", p),
                                          n.TupleSet(tuple(n.String(i, p) for i in items), p), neg, p),
                  st.booleans(), st.lists(strings(COUNTRIES), min_size=1, max_size=3)),
        st.builds(lambda neg, e, items: n.In(e, n.TupleSet(tuple(n.Number(v, p) for v in items), p), neg, p),
                  st.booleans(), numbers(1), st.lists(st.sampled_from([*NUMBERS, -1.0]), min_size=1, max_size=3)),
        st.builds(lambda neg: n.In(n.Field("card.token", p), n.NamedList("cards", p), neg, p), st.booleans()),
        st.booleans().map(lambda v: n.Bool(v, p)),
    )
    if depth == 0:
        return atoms
    sub = conditions(depth - 1)
    return st.one_of(
        atoms,
        sub.map(lambda e: n.Not(e, p)),
        st.builds(lambda op, a, b: n.Logic(op, a, b, p), st.sampled_from(["and", "or"]), sub, sub),
    )


def render(e: n.Expr) -> str:
    """Source text for ``e``, parenthesised only where precedence needs it (so precedence is exercised)."""
    return _render(e)[0]


_LEVEL = {"or": 1, "and": 2, "not": 3, "cmp": 4, "+": 5, "-": 5, "*": 6, "/": 6, "neg": 7, "atom": 8}


def _wrap(e: n.Expr, need: int, strict: bool = False) -> str:
    text, level = _render(e)
    return f"({text})" if level < need or (strict and level == need) else text


def _render(e: n.Expr) -> tuple[str, int]:
    if isinstance(e, n.Number):
        return (f"{e.value:g}" if e.value >= 0 else f"({e.value:g})"), _LEVEL["atom"]
    if isinstance(e, n.String):
        return f'"{e.value}"', _LEVEL["atom"]
    if isinstance(e, n.Bool):
        return ("true" if e.value else "false"), _LEVEL["atom"]
    if isinstance(e, n.Field):
        return e.path, _LEVEL["atom"]
    if isinstance(e, n.Neg):
        return "-" + _wrap(e.operand, _LEVEL["neg"]), _LEVEL["neg"]
    if isinstance(e, n.Not):
        return "not " + _wrap(e.operand, _LEVEL["not"]), _LEVEL["not"]
    if isinstance(e, n.Arith | n.Logic):
        level = _LEVEL[e.op]
        return f"{_wrap(e.left, level)} {e.op} {_wrap(e.right, level, strict=True)}", level
    if isinstance(e, n.Compare):
        return f"{_wrap(e.left, 5)} {e.op} {_wrap(e.right, 5)}", _LEVEL["cmp"]
    assert isinstance(e, n.In)
    target = e.target
    if isinstance(target, n.NamedList):
        items = "@" + target.name
    else:
        items = "(" + ", ".join(_render(i)[0].strip("()") for i in target.items) + ")"
    return f"{_wrap(e.operand, 5)} {'not in' if e.negated else 'in'} {items}", _LEVEL["cmp"]


def strip(e: object) -> object:
    """``e`` with every position zeroed, for structural comparison."""
    if isinstance(e, n.Pos):
        return n.Pos(1, 1)
    if isinstance(e, tuple):
        return tuple(strip(x) for x in e)
    if hasattr(e, "__dataclass_fields__"):
        return type(e)(**{k: strip(getattr(e, k)) for k in e.__dataclass_fields__})
    return e


FLOATS = st.sampled_from([0.0, 1.0, 2.0, 0.5, 5.0, 500.0, 1e6, 5411.0, math.nan, math.inf])


@st.composite
def batches(draw: st.DrawFn) -> RuleColumns:
    size = draw(st.integers(1, 12))

    def col(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(values, min_size=size, max_size=size))

    return make_columns(
        col(st.sampled_from([0.0, 1.0, 2.0, 5.0, 500.0, 0.5])),
        card=col(st.sampled_from(CARDS)),
        country=col(st.sampled_from(COUNTRIES)),
        channel=col(st.integers(0, 6)),
        mcc=col(st.sampled_from([0, 1, 5411, 7995])),
        latitude=col(FLOATS),
        scores=col(st.sampled_from([0.0, 0.5, 0.93, 1.0])),
        features={"card_count_1h": col(FLOATS), "card_amount_24h": col(FLOATS), "channel": col(FLOATS)},
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(conditions(3), min_size=1, max_size=6), st.lists(st.sampled_from(["allow", "challenge", "review",
       "block"]), min_size=6, max_size=6), batches(), st.lists(st.integers(1, 4), min_size=12, max_size=12))
def test_kernel_matches_reference_interpreter(
    conds: list[n.Expr], actions: list[str], cols: RuleColumns, model: list[int]
) -> None:
    texts = [render(c) for c in conds]
    for c, text in zip(conds, texts, strict=True):
        assert strip(parse_expression(text)) == strip(c), text
    source = "\n".join(f"{a} if {t}" for a, t in zip(actions, texts, strict=False))
    rules = RuleSet(source, {"cards": CARDS[:2]})
    model_actions: npt.NDArray[np.int64] = np.array(model[: len(cols)], np.int64)
    out = rules.evaluate(cols, model_actions)
    for row in range(len(cols)):
        expected = [evaluate_rule(rule, rules.checked, cols, row) for rule in rules.rules]
        assert out.hits[row].tolist() == expected, (source, row)
        hit_actions = [rule.action.value for rule, hit in zip(rules.rules, expected, strict=True) if hit]
        rule_action = ALLOW if ALLOW in hit_actions else max(hit_actions, default=0)
        assert out.rule_action[row] == rule_action
        assert out.action[row] == (ALLOW if rule_action == ALLOW else max(rule_action, model[row]))

"""Rules on the hot path: 50 realistic rules over batches of 1 and 256 transactions.

``rules_kernel`` is the production path (one Numba kernel interpreting the compiled program);
``rules_numpy`` is the alternative design measured for comparison: one NumPy expression per AST node,
per rule (closures built from the AST once), then the same precedence in NumPy.

    .venv/bin/pytest benchmarks/test_bench_rules.py --benchmark-enable --benchmark-only -p no:cacheprovider \
        -o testpaths=benchmarks
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from benchmarks.conftest import PerTransactionRecorder
from scoring.features.batch import TransactionBatch
from scoring.features.keys import country_code, entity_key
from scoring.features.schema import N_FEATURES
from scoring.rules import Lists, RuleColumns, RuleSet
from scoring.rules import nodes as n
from scoring.rules.checker import Checked
from scoring.rules.fields import CODED, Source, lookup

COUNTRIES = ["DE", "FR", "US", "GB", "NL", "IT", "ES", "BR", "NG", "RU", "CN", "IN"]
LISTS: Lists = {
    "trusted_cards": [f"tok_{i}" for i in range(0, 200_000, 7)],
    "stolen_cards": [f"tok_{i}" for i in range(3, 200_000, 101)],
    "bad_ips": [f"10.0.{i // 256}.{i % 256}" for i in range(5_000)],
    "bad_devices": [f"dev_{i}" for i in range(0, 50_000, 13)],
    "vip_customers": [f"cus_{i}" for i in range(0, 100_000, 50)],
    "sanctioned": ["RU", "IR", "KP", "SY", "CU"],
    "gambling_mccs": [7995, 7800, 7801, 7802],
    "risky_merchants": [f"mer_{i}" for i in range(0, 20_000, 97)],
}


def fifty_rules() -> str:
    fixed = [
        "rule trusted: allow if card.token in @trusted_cards and score < 0.99",
        "rule vip: allow if customer.id in @vip_customers and amount < 2_000",
        "rule stolen: block if card.token in @stolen_cards",
        "rule bad_ip: block if ip.address in @bad_ips",
        "rule bad_device: review if device.id in @bad_devices",
        "rule sanctioned: block if merchant_country in @sanctioned",
        "rule gambling: review if mcc in @gambling_mccs and amount > 500",
        "rule risky_merchant: challenge if merchant.id in @risky_merchants and card_new_merchant == 1",
        "rule sure: block if score > 0.92 and merchant_country != \"DE\"",
        "rule ecom_foreign: challenge if channel == \"ecommerce\" and not (merchant_country in (\"DE\", \"FR\"))"
        " or amount >= 1_000_00",
        "rule travel: review if impossible_travel == 1 and score > 0.3",
        "rule testing: block if card_small_count_1h >= 5 and card_count_1m >= 3",
        "rule burst: review if velocity.card.count_1h > 5 and amount > 500",
        "rule new_device_big: challenge if card_new_device == 1 and card_amount_ratio > 4",
        "rule ip_many_cards: review if ip_distinct_cards >= 5 and ip_count_1h > 10",
        "rule device_many_cards: review if device_distinct_cards >= 4",
        "rule manual_big: challenge if entry_mode == \"manual\" and amount > 300",
        "rule atm_night: challenge if channel == \"atm\" and (hour_of_day < 5 or hour_of_day > 23)",
        "rule zscore: review if card_amount_zscore > 4 and card_history_count > 10",
        "rule merchant_fraud: review if merchant_fraud_rate > 0.2 and score > 0.4",
    ]
    generated = []
    for i in range(50 - len(fixed)):
        c1, c2 = COUNTRIES[i % len(COUNTRIES)], COUNTRIES[(i * 5 + 3) % len(COUNTRIES)]
        generated.append(
            f"rule g{i}: {('challenge', 'review', 'block')[i % 3]} if score > {0.5 + i / 100:.2f}"
            f" and (merchant_country in (\"{c1}\", \"{c2}\") or velocity.customer.count_24h > {10 + i})"
            f" and amount * {1 + i % 4} > {100 * (i + 1)} and not card_new_country == 1"
        )
    return "\n".join(fixed + generated) + "\n"


def make_columns(size: int, seed: int) -> RuleColumns:
    rng = np.random.default_rng(seed)

    def keys(prefix: str, high: int) -> list[int]:
        return [entity_key(f"{prefix}{v}") for v in rng.integers(0, high, size)]

    batch = TransactionBatch(
        [f"t{i}" for i in range(size)], 1.7e9 + rng.random(size) * 86_400, rng.lognormal(4, 1.5, size),
        keys("tok_", 200_000), keys("cus_", 100_000), keys("mer_", 20_000), keys("dev_", 50_000),
        [entity_key(f"10.0.{v // 256}.{v % 256}") for v in rng.integers(0, 60_000, size)],
        [country_code(COUNTRIES[v]) for v in rng.integers(0, len(COUNTRIES), size)],
        rng.choice([5411, 5812, 7995, 4829], size), rng.integers(1, 7, size), rng.integers(1, 7, size),
        rng.uniform(-60, 60, size), rng.uniform(-120, 120, size), rng.integers(1, 2**62, size),
    )  # fmt: skip
    features = (rng.random((size, N_FEATURES)) * rng.choice([1, 5, 20, 500], N_FEATURES)).astype(np.float32)
    return RuleColumns.of(batch, features, rng.random(size))


# --- the NumPy-per-node alternative, for comparison ---------------------------------------------------

Column = Callable[[RuleColumns], Any]


def _numpy_expr(node: n.Expr, checked: Checked) -> Column:
    if isinstance(node, n.Number | n.Bool):
        value = float(node.value)
        return lambda c: value
    if isinstance(node, n.String):
        code = checked.codes[id(node)]
        return lambda c: code
    if isinstance(node, n.Field):
        d = lookup(node.path)
        assert d is not None
        if d.source is Source.REAL:
            return lambda c: c.reals[d.index]
        if d.source is Source.INT:
            return (lambda c: c.ints[d.index]) if d.type in CODED else (lambda c: c.ints[d.index].astype(np.float64))
        if d.source is Source.FEATURE:
            return lambda c: c.features[:, d.index].astype(np.float64)
        return lambda c: c.scores
    if isinstance(node, n.Neg):
        inner = _numpy_expr(node.operand, checked)
        return lambda c: -inner(c)
    if isinstance(node, n.Not):
        inner = _numpy_expr(node.operand, checked)
        return lambda c: ~inner(c)
    if isinstance(node, n.In):
        operand = _numpy_expr(node.operand, checked)
        values = np.array(checked.sets[id(node)])
        negated = node.negated
        return lambda c: np.isin(operand(c), values) != negated
    assert isinstance(node, n.Arith | n.Compare | n.Logic)
    left, right = _numpy_expr(node.left, checked), _numpy_expr(node.right, checked)
    ops: dict[str, Callable[[Any, Any], Any]] = {
        "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "==": np.equal, "!=": np.not_equal,
        "<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "and": np.logical_and,
        "or": np.logical_or,
    }  # fmt: skip
    op = ops[node.op]
    return lambda c: op(left(c), right(c))


def numpy_rules(rules: RuleSet) -> Callable[[RuleColumns, npt.NDArray[np.int64]], npt.NDArray[np.int64]]:
    masks = [_numpy_expr(rule.condition, rules.checked) for rule in rules.rules]
    actions = np.array([rule.action.value for rule in rules.rules], np.int64)

    def evaluate(cols: RuleColumns, model: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        with np.errstate(all="ignore"):
            hits = np.stack([np.broadcast_to(m(cols), (len(cols),)) for m in masks], axis=1)
        allowed = (hits & (actions == 1)).any(axis=1)
        worst = np.where(hits, actions, 0).max(axis=1)
        return np.where(allowed, 1, np.maximum(worst, model))

    return evaluate


# --- the benchmarks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rule_set() -> RuleSet:
    rules = RuleSet(fifty_rules(), LISTS)
    assert len(rules.rules) == 50
    return rules


@pytest.mark.parametrize("size", [1, 256])
def test_rules_kernel(benchmark: Any, per_transaction: PerTransactionRecorder, rule_set: RuleSet, size: int) -> None:
    cols = make_columns(size, seed=size)
    model = np.ones(size, np.int64)
    rule_set.evaluate(cols, model)  # JIT / cache load outside the timing
    out = benchmark.pedantic(rule_set.evaluate, (cols, model), rounds=300 if size == 1 else 100, iterations=20,
                             warmup_rounds=5)
    assert (numpy_rules(rule_set)(cols, model) == out.action).all()
    per_transaction(benchmark, size)


@pytest.mark.parametrize("size", [1, 256])
def test_rules_numpy(benchmark: Any, per_transaction: PerTransactionRecorder, rule_set: RuleSet, size: int) -> None:
    cols = make_columns(size, seed=size)
    model = np.ones(size, np.int64)
    evaluate = numpy_rules(rule_set)
    benchmark.pedantic(evaluate, (cols, model), rounds=100, iterations=5, warmup_rounds=2)
    per_transaction(benchmark, size)


def test_rules_compile(benchmark: Any) -> None:
    """Parsing, checking and compiling 50 rules and ~40k list entries (a hot reload)."""
    benchmark.pedantic(RuleSet, (fifty_rules(), LISTS), rounds=5, iterations=1)

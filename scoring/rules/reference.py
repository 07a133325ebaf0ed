"""A slow, obviously correct interpreter over the AST, one transaction at a time, in plain Python.

The tests hold the compiled kernel to it; it can also explain one decision offline. Never on the
hot path. Arithmetic is IEEE float64 like the kernel's (x / 0 is ±inf or NaN, never an exception).
"""

from __future__ import annotations

import math

from scoring.rules import nodes as n
from scoring.rules.checker import Checked
from scoring.rules.columns import RuleColumns
from scoring.rules.fields import CODED, Source, lookup


def evaluate_rule(rule: n.Rule, checked: Checked, columns: RuleColumns, row: int) -> bool:
    return bool(_Interpreter(checked, columns, row).value(rule.condition))


class _Interpreter:
    def __init__(self, checked: Checked, columns: RuleColumns, row: int) -> None:
        self._checked = checked
        self._columns = columns
        self._row = row

    def _read(self, node: n.Field) -> float | int:
        definition = lookup(node.path)
        assert definition is not None
        c, i = self._columns, self._row
        if definition.source is Source.REAL:
            return float(c.reals[definition.index, i])
        if definition.source is Source.INT:
            raw = int(c.ints[definition.index, i])
            return raw if definition.type in CODED else float(raw)
        if definition.source is Source.FEATURE:
            return float(c.features[i, definition.index])
        return float(c.scores[i])

    def value(self, node: n.Expr) -> float | int | bool:
        if isinstance(node, n.Number):
            return node.value
        if isinstance(node, n.Bool):
            return node.value
        if isinstance(node, n.String):
            return self._checked.codes[id(node)]
        if isinstance(node, n.Field):
            return self._read(node)
        if isinstance(node, n.Neg):
            return -float(self.value(node.operand))
        if isinstance(node, n.Arith):
            return _arith(node.op, float(self.value(node.left)), float(self.value(node.right)))
        if isinstance(node, n.Not):
            return not self.value(node.operand)
        if isinstance(node, n.Logic):
            left = bool(self.value(node.left))
            right = bool(self.value(node.right))
            return (left and right) if node.op == "and" else (left or right)
        if isinstance(node, n.Compare):
            return _compare(node.op, self.value(node.left), self.value(node.right))
        assert isinstance(node, n.In)
        x = self.value(node.operand)
        values = self._checked.sets[id(node)]
        found = any(x == v for v in values)
        return found != node.negated


def _arith(op: str, x: float, y: float) -> float:
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    if y == 0.0:
        if x == 0.0 or math.isnan(x):
            return math.nan
        return math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def _compare(op: str, x: float | int | bool, y: float | int | bool) -> bool:
    if op == "==":
        return x == y
    if op == "!=":
        return x != y
    if op == "<":
        return x < y
    if op == "<=":
        return x <= y
    if op == ">":
        return x > y
    return x >= y


__all__ = ["evaluate_rule"]

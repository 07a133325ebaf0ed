"""Type checking: every field known, every operator applied to the types it takes, every string a valid code.

Types: numbers, true/false, and four coded kinds that are written as strings but compared as codes
(countries, channels, entry modes, ids). The rules:

* ``+ - * /`` and unary ``-`` take numbers; ``< <= > >=`` compare numbers;
* ``== !=`` compare two numbers, two true/false values, a coded field with a string literal, or
  two fields of the same coded kind;
* ``x in (…)`` / ``x in @list`` takes a number or a coded field; tuple items and list values must be
  numbers for a number and valid codes (as strings) for a coded field;
* ``and or not`` and a rule's condition take true/false.

Checking also encodes each string literal and each set into the codes the evaluation compares
(``Checked.codes`` and ``Checked.sets``), so the compiler and the reference interpreter share them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from scoring.rules import nodes as n
from scoring.rules.errors import RuleCompileError
from scoring.rules.fields import CODED, Type, encode, lookup, suggestion

Lists = Mapping[str, Collection[str | int | float]]


@dataclass(slots=True)
class Checked:
    """Per node (keyed by ``id(node)``): its type; for string literals their code; for ``in`` its sorted set."""

    types: dict[int, Type] = field(default_factory=dict)
    codes: dict[int, int] = field(default_factory=dict)
    sets: dict[int, tuple[float, ...] | tuple[int, ...]] = field(default_factory=dict)


def _error(node: n.Expr | n.TupleSet | n.NamedList, message: str) -> RuleCompileError:
    return RuleCompileError(node.pos.line, node.pos.column, message)


def check_rule(rule: n.Rule, lists: Lists, checked: Checked | None = None) -> Checked:
    """Check ``rule`` against the fields and ``lists``; ``RuleCompileError`` with the position of the culprit."""
    out = checked if checked is not None else Checked()
    kind = _Checker(lists, out).type_of(rule.condition)
    if kind is not Type.BOOL:
        raise _error(rule.condition, f"a rule's condition must be true or false, not {kind.value}: compare it")
    return out


class _Checker:
    def __init__(self, lists: Lists, out: Checked) -> None:
        self._lists = lists
        self._out = out

    def type_of(self, node: n.Expr) -> Type:
        kind = self._type(node)
        self._out.types[id(node)] = kind
        return kind

    def _type(self, node: n.Expr) -> Type:
        if isinstance(node, n.Number):
            return Type.NUMBER
        if isinstance(node, n.String):
            return Type.STRING
        if isinstance(node, n.Bool):
            return Type.BOOL
        if isinstance(node, n.Field):
            definition = lookup(node.path)
            if definition is None:
                raise _error(node, f"unknown field '{node.path}'{suggestion(node.path)}")
            return definition.type
        if isinstance(node, n.Neg):
            self._want(node.operand, Type.NUMBER, "'-'")
            return Type.NUMBER
        if isinstance(node, n.Arith):
            self._want(node.left, Type.NUMBER, f"'{node.op}'")
            self._want(node.right, Type.NUMBER, f"'{node.op}'")
            return Type.NUMBER
        if isinstance(node, n.Not):
            self._want(node.operand, Type.BOOL, "'not'")
            return Type.BOOL
        if isinstance(node, n.Logic):
            self._want(node.left, Type.BOOL, f"'{node.op}'")
            self._want(node.right, Type.BOOL, f"'{node.op}'")
            return Type.BOOL
        if isinstance(node, n.Compare):
            self._compare(node)
            return Type.BOOL
        self._in(node)
        return Type.BOOL

    def _want(self, node: n.Expr, kind: Type, where: str) -> None:
        found = self.type_of(node)
        if found is not kind:
            raise _error(node, f"{where} takes {kind.value}, found {found.value}")

    def _compare(self, node: n.Compare) -> None:
        left, right = self.type_of(node.left), self.type_of(node.right)
        if node.op not in ("==", "!="):
            for side, kind in ((node.left, left), (node.right, right)):
                if kind is not Type.NUMBER:
                    raise _error(side, f"'{node.op}' compares numbers, found {kind.value}")
            return
        if left is Type.STRING and right is Type.STRING:
            raise _error(node, "comparing two strings: compare a field with a string")
        if left is Type.STRING and right in CODED:
            self._code(node.left, right)
        elif right is Type.STRING and left in CODED:
            self._code(node.right, left)
        elif left is not right:
            raise _error(node, f"'{node.op}' cannot compare {left.value} with {right.value}")

    def _code(self, literal: n.Expr, kind: Type) -> None:
        assert isinstance(literal, n.String)
        try:
            self._out.codes[id(literal)] = encode(kind, literal.value)
        except ValueError as exc:
            raise _error(literal, str(exc)) from None

    def _in(self, node: n.In) -> None:
        kind = self.type_of(node.operand)
        if kind is not Type.NUMBER and kind not in CODED:
            raise _error(node.operand, f"'in' takes a number or a field such as a country or an id, found {kind.value}")
        target = node.target
        if isinstance(target, n.TupleSet):
            values: list[float] | list[int] = [self._item(item, kind) for item in target.items]
        else:
            values = self._list(target, kind)
        self._out.sets[id(node)] = tuple(sorted(set(values)))

    def _item(self, item: n.Number | n.String, kind: Type) -> float | int:
        if kind is Type.NUMBER:
            if not isinstance(item, n.Number):
                raise _error(item, "this tuple is matched against a number: its items must be numbers")
            return item.value
        if not isinstance(item, n.String):
            raise _error(item, f"this tuple is matched against {kind.value}: its items must be strings")
        try:
            return encode(kind, item.value)
        except ValueError as exc:
            raise _error(item, str(exc)) from None

    def _list(self, target: n.NamedList, kind: Type) -> list[float] | list[int]:
        if target.name not in self._lists:
            known = ", ".join(f"@{name}" for name in sorted(self._lists)[:10]) or "none"
            raise _error(target, f"unknown list '@{target.name}' (known: {known})")
        values = self._lists[target.name]
        if kind is Type.NUMBER:
            bad = next((v for v in values if isinstance(v, str | bool)), None)
            if bad is not None:
                raise _error(target, f"list '@{target.name}' holds {bad!r}, but is matched against a number")
            numbers = [float(v) for v in values]
            if not all(math.isfinite(v) for v in numbers):
                raise _error(target, f"list '@{target.name}' holds a number that is not finite")
            return numbers
        codes: list[int] = []
        for value in values:
            if not isinstance(value, str):
                raise _error(target, f"list '@{target.name}' holds {value!r}, but is matched against {kind.value}")
            try:
                codes.append(encode(kind, value))
            except ValueError as exc:
                raise _error(target, f"list '@{target.name}': {exc}") from None
        return codes

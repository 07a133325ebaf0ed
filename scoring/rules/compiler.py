"""Checked rules → one stack program for ``scoring.rules.vm.run_rules`` (no Python per transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.rules import nodes as n
from scoring.rules import vm
from scoring.rules.checker import Checked
from scoring.rules.fields import CODED, FieldDef, Source, Type, lookup

_ARITH = {"+": vm.ADD, "-": vm.SUB, "*": vm.MUL, "/": vm.DIV}
_COMPARE = {"<": vm.LT, "<=": vm.LE, ">": vm.GT, ">=": vm.GE, "==": vm.EQ, "!=": vm.NE}
_LOAD = {Source.REAL: vm.REAL, Source.FEATURE: vm.FEATURE, Source.SCORE: vm.SCORE}


@dataclass(frozen=True, slots=True, eq=False)
class Program:
    """The arrays ``run_rules`` takes (see its docstring); read-only once built."""

    code: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    rule_actions: npt.NDArray[np.int64]
    consts: npt.NDArray[np.float64]
    codes: npt.NDArray[np.int64]
    int_sets: npt.NDArray[np.int64]
    int_offsets: npt.NDArray[np.int64]
    real_sets: npt.NDArray[np.float64]
    real_offsets: npt.NDArray[np.int64]
    stack_size: int
    fields: frozenset[FieldDef]


def compile_program(rules: Sequence[n.Rule], checked: Checked) -> Program:
    emitter = _Emitter(checked)
    starts = [0]
    for rule in rules:
        emitter.expr(rule.condition)
        emitter.depth = 0
        starts.append(len(emitter.code))
    return emitter.program(starts, [rule.action.value for rule in rules])


def _array(values: Sequence[int] | Sequence[float], dtype: type[np.generic]) -> npt.NDArray[np.generic]:
    out = np.array(values, dtype)
    out.setflags(write=False)
    return out


class _Emitter:
    def __init__(self, checked: Checked) -> None:
        self._checked = checked
        self.code: list[tuple[int, int, int]] = []
        self.depth = 0
        self._max_depth = 0
        self._consts: list[float] = []
        self._codes: list[int] = []
        self._int_sets: list[int] = []
        self._int_offsets = [0]
        self._real_sets: list[float] = []
        self._real_offsets = [0]
        self._fields: set[FieldDef] = set()

    def program(self, starts: list[int], actions: list[int]) -> Program:
        code = np.array(self.code, np.int64).reshape(-1, 3)
        code.setflags(write=False)
        return Program(
            code, _array(starts, np.int64), _array(actions, np.int64), _array(self._consts, np.float64),  # type: ignore[arg-type]
            _array(self._codes, np.int64), _array(self._int_sets, np.int64), _array(self._int_offsets, np.int64),  # type: ignore[arg-type]
            _array(self._real_sets, np.float64), _array(self._real_offsets, np.int64), self._max_depth,  # type: ignore[arg-type]
            frozenset(self._fields),
        )  # fmt: skip

    def _emit(self, op: int, a: int = 0, b: int = 0, push: int = 0) -> int:
        self.code.append((op, a, b))
        self.depth += push
        self._max_depth = max(self._max_depth, self.depth)
        return len(self.code) - 1

    def _field(self, node: n.Expr) -> FieldDef:
        assert isinstance(node, n.Field)
        definition = lookup(node.path)
        assert definition is not None  # checked
        self._fields.add(definition)
        return definition

    def expr(self, node: n.Expr) -> None:
        if isinstance(node, n.Number | n.Bool):
            self._consts.append(float(node.value))
            self._emit(vm.CONST, len(self._consts) - 1, push=1)
        elif isinstance(node, n.Field):
            definition = self._field(node)
            op = vm.INT_AS_REAL if definition.source is Source.INT else _LOAD[definition.source]
            self._emit(op, definition.index, push=1)
        elif isinstance(node, n.Neg):
            self.expr(node.operand)
            self._emit(vm.NEG)
        elif isinstance(node, n.Arith):
            self.expr(node.left)
            self.expr(node.right)
            self._emit(_ARITH[node.op], push=-1)
        elif isinstance(node, n.Not):
            self.expr(node.operand)
            self._emit(vm.NOT)
        elif isinstance(node, n.Logic):
            self.expr(node.left)
            jump = self._emit(vm.JUMP_IF_FALSE if node.op == "and" else vm.JUMP_IF_TRUE)
            self.depth -= 1  # the fall-through path pops the left value
            self.expr(node.right)
            self.code[jump] = (self.code[jump][0], len(self.code), 0)
        elif isinstance(node, n.Compare):
            self._compare(node)
        else:
            assert isinstance(node, n.In)
            self._in(node)

    def _compare(self, node: n.Compare) -> None:
        types = self._checked.types
        left, right = types[id(node.left)], types[id(node.right)]
        if left in CODED or right in CODED:  # coded kinds: int64 equality, never through float64
            if left is Type.STRING or right is Type.STRING:
                field, literal = (node.right, node.left) if left is Type.STRING else (node.left, node.right)
                self._codes.append(self._checked.codes[id(literal)])
                self._emit(vm.INT_EQ_CODE, self._field(field).index, len(self._codes) - 1, push=1)
            else:
                self._emit(vm.INT_EQ_INT, self._field(node.left).index, self._field(node.right).index, push=1)
            if node.op == "!=":
                self._emit(vm.NOT)
            return
        self.expr(node.left)
        self.expr(node.right)
        self._emit(_COMPARE[node.op], push=-1)

    def _in(self, node: n.In) -> None:
        values = self._checked.sets[id(node)]
        if self._checked.types[id(node.operand)] in CODED:
            self._int_sets.extend(int(v) for v in values)
            self._int_offsets.append(len(self._int_sets))
            self._emit(vm.INT_IN_SET, self._field(node.operand).index, len(self._int_offsets) - 2, push=1)
        else:
            self.expr(node.operand)
            self._real_sets.extend(float(v) for v in values)
            self._real_offsets.append(len(self._real_sets))
            self._emit(vm.REAL_IN_SET, len(self._real_offsets) - 2)
        if node.negated:
            self._emit(vm.NOT)

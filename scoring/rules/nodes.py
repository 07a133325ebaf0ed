"""The abstract syntax tree of a rule: frozen dataclasses, each carrying its source position."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    """What a rule asks for; the values are fraud.v1.Action's (``scoring.decision``)."""

    ALLOW = 1
    CHALLENGE = 2
    REVIEW = 3
    BLOCK = 4


@dataclass(frozen=True, slots=True)
class Pos:
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Number:
    value: float
    pos: Pos


@dataclass(frozen=True, slots=True)
class String:
    value: str
    pos: Pos


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    pos: Pos


@dataclass(frozen=True, slots=True)
class Field:
    path: str  # dotted, as written: "velocity.card.count_1h"
    pos: Pos


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + - * /
    left: Expr
    right: Expr
    pos: Pos  # of the operator


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >=
    left: Expr
    right: Expr
    pos: Pos  # of the operator


@dataclass(frozen=True, slots=True)
class TupleSet:
    items: tuple[Number | String, ...]
    pos: Pos


@dataclass(frozen=True, slots=True)
class NamedList:
    name: str  # without the "@"
    pos: Pos


@dataclass(frozen=True, slots=True)
class In:
    operand: Expr
    target: TupleSet | NamedList
    negated: bool  # "not in"
    pos: Pos  # of "in" (or of "not" in "not in")


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    pos: Pos


@dataclass(frozen=True, slots=True)
class Logic:
    op: str  # "and" | "or"
    left: Expr
    right: Expr
    pos: Pos  # of the operator


Expr = Number | String | Bool | Field | Neg | Arith | Compare | In | Not | Logic


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    description: str
    action: Action
    condition: Expr
    pos: Pos  # of the rule's first token

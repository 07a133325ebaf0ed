"""A versioned set of compiled rules, evaluated on a whole batch in one kernel call.

Precedence, per transaction:

1. an ``allow`` rule that hits wins over everything: the rule action is ALLOW, and so is the final
   decision, whatever the model says (an allow-list is an analyst's explicit override);
2. otherwise the rule action is the most severe hit, block > review > challenge (0 when no rule hit);
3. the final action is max(severity) of the model's action and the rule action — rules can only
   make a decision stricter, never looser, except through ``allow``.

The version is a content hash (SHA-256, 16 hex digits) of the source and of the lists the rules
reference, so an edited rule or an edited list both give a new version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from scoring.rules import nodes as n
from scoring.rules.checker import Checked, Lists, check_rule
from scoring.rules.columns import RuleColumns, RuleInputs
from scoring.rules.compiler import Program, compile_program
from scoring.rules.parser import parse_rules
from scoring.rules.vm import run_rules


@dataclass(frozen=True, slots=True, eq=False)
class RuleOutcome:
    """Row i answers transaction i."""

    rule_ids: tuple[str, ...]
    hits: npt.NDArray[np.bool_]  # [n, n_rules]
    rule_action: npt.NDArray[np.int64]  # fraud.v1.Action of the rules alone; 0 when none hit
    action: npt.NDArray[np.int64]  # the final action, combined with the model's (see the module docstring)

    def hit_ids(self, row: int) -> tuple[str, ...]:
        """Ids of the rules that hit transaction ``row``, in rule-set order."""
        return tuple(self.rule_ids[r] for r in np.flatnonzero(self.hits[row]).tolist())


class RuleSet:
    """Parsed, checked and compiled rules; immutable, safe to share between threads."""

    __slots__ = ("checked", "inputs", "program", "rule_ids", "rules", "source", "version")

    def __init__(self, source: str, lists: Lists | None = None) -> None:
        """``RuleSyntaxError`` / ``RuleCompileError`` (with line and column) when ``source`` is not usable."""
        lists = lists or {}
        self.source = source
        self.rules: tuple[n.Rule, ...] = parse_rules(source)
        self.rule_ids: tuple[str, ...] = tuple(rule.rule_id for rule in self.rules)
        self.checked = Checked()
        for rule in self.rules:
            check_rule(rule, lists, self.checked)
        self.program: Program = compile_program(self.rules, self.checked)
        self.inputs = RuleInputs.of(self.program.fields)
        self.version = _version(source, lists, self.rules)

    def rule(self, rule_id: str) -> n.Rule:
        return next(rule for rule in self.rules if rule.rule_id == rule_id)

    def evaluate(self, columns: RuleColumns, model_actions: npt.NDArray[np.int64] | None = None) -> RuleOutcome:
        """Every rule on every transaction. ``model_actions`` (fraud.v1.Action per row) feed the final action;
        without them the final action is the rules' alone."""
        columns.check(self.inputs)
        count = len(columns)
        if model_actions is None:
            model_actions = np.zeros(count, np.int64)
        elif model_actions.shape != (count,):
            raise ValueError(f"expected {count} model actions, got shape {model_actions.shape}")
        p = self.program
        hits = np.empty((count, len(self.rules)), np.bool_)
        rule_action = np.empty(count, np.int64)
        action = np.empty(count, np.int64)
        run_rules(
            p.code, p.starts, p.rule_actions, p.consts, p.codes, p.int_sets, p.int_offsets, p.real_sets,
            p.real_offsets, p.stack_size, columns.reals, columns.ints, columns.features, columns.scores,
            model_actions.astype(np.int64, copy=False), hits, rule_action, action,
        )  # fmt: skip
        return RuleOutcome(self.rule_ids, hits, rule_action, action)


def _version(source: str, lists: Lists, rules: tuple[n.Rule, ...]) -> str:
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass"))
    for name in sorted(_list_names(rules)):
        if name in lists:
            values = sorted(repr(v) for v in lists[name])
            digest.update(b"\0@" + name.encode() + b"\0" + "\0".join(values).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()[:16]


def _list_names(rules: tuple[n.Rule, ...]) -> set[str]:
    names: set[str] = set()
    stack: list[n.Expr] = [rule.condition for rule in rules]
    while stack:
        node = stack.pop()
        if isinstance(node, n.In):
            if isinstance(node.target, n.NamedList):
                names.add(node.target.name)
            stack.append(node.operand)
        elif isinstance(node, n.Neg | n.Not):
            stack.append(node.operand)
        elif isinstance(node, n.Arith | n.Compare | n.Logic):
            stack.extend((node.left, node.right))
    return names

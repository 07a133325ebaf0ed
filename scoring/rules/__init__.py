"""Rules: a small, safe language analysts use to steer decisions (DESIGN.md, hot path step 4).

One rule per line; ``#`` starts a comment; blank lines are ignored::

    rule high_risk_mismatch "model sure, foreign merchant": block if score > 0.92 and merchant_country != "DE"
    review if velocity.card.count_1h > 5 and amount > 500
    allow if card.token in @trusted_cards
    challenge if channel == "ecommerce" and not (merchant_country in ("DE", "FR")) or amount >= 1_000

The grammar (EBNF) is in ``scoring.rules.parser``, the fields a rule reads in ``scoring.rules.fields``,
the type rules in ``scoring.rules.checker``. The text is never given to Python's ``eval``: it is
lexed, parsed into frozen dataclasses, type-checked, and compiled into one stack program that a
single Numba kernel (``scoring.rules.vm``) runs over a whole batch.

Decision precedence (``scoring.rules.ruleset``): an ``allow`` hit wins over everything, the final
action is then ALLOW; otherwise the rule action is the most severe hit (block > review > challenge),
and the final action is max(severity) of the model's action and the rule action.

Modules: ``lexer`` (tokens) → ``parser`` (AST in ``nodes``) → ``checker`` (types, codes, sets) →
``compiler`` (program) → ``vm`` (kernel); ``ruleset`` ties them together; ``columns`` describes the
arrays evaluation reads; ``reference`` is a slow interpreter the tests compare the kernel with. Serving:
``files`` reads the rules text and its ``@lists`` (``DATA_DIR/rules/lists/NAME.txt``) into a ``RuleSet``,
``watcher`` swaps an edited one into the running scorer.
"""

from scoring.rules.checker import Lists
from scoring.rules.columns import RuleColumns, RuleInputs
from scoring.rules.errors import RuleCompileError, RuleError, RuleSyntaxError
from scoring.rules.fields import FIELDS, FieldDef, Type
from scoring.rules.nodes import Action, Rule
from scoring.rules.parser import parse_expression, parse_rules
from scoring.rules.ruleset import RuleOutcome, RuleSet

__all__ = [
    "FIELDS",
    "Action",
    "FieldDef",
    "Lists",
    "Rule",
    "RuleColumns",
    "RuleCompileError",
    "RuleError",
    "RuleInputs",
    "RuleOutcome",
    "RuleSet",
    "RuleSyntaxError",
    "Type",
    "parse_expression",
    "parse_rules",
]

"""Rule text → :class:`~scoring.rules.nodes.Rule` values. Grammar (EBNF; one rule per line)::

    source     = { line } ;
    line       = [ rule ] [ "#" comment ] ;
    rule       = [ "rule" NAME [ STRING ] ":" ] action "if" expr ;
    action     = "allow" | "challenge" | "review" | "block" ;
    expr       = and_expr { "or" and_expr } ;
    and_expr   = not_expr { "and" not_expr } ;
    not_expr   = "not" not_expr | comparison ;
    comparison = sum [ ( "==" | "!=" | "<" | "<=" | ">" | ">=" ) sum
                     | [ "not" ] "in" ( tuple | "@" NAME ) ] ;
    tuple      = "(" [ literal { "," literal } [ "," ] ] ")" ;
    literal    = [ "-" ] NUMBER | STRING ;
    sum        = product { ( "+" | "-" ) product } ;
    product    = unary { ( "*" | "/" ) unary } ;
    unary      = "-" unary | primary ;
    primary    = NUMBER | STRING | "true" | "false" | path | "(" expr ")" ;
    path       = NAME { "." NAME } ;

Precedence, loosest first: ``or``, ``and``, ``not``, comparisons and ``in`` (not chainable),
``+ -``, ``* /``, unary ``-``. A rule without ``rule NAME:`` gets the id ``line<N>``.

Hostile input is bounded, never a crash: nesting deeper than ``MAX_DEPTH`` (parentheses,
``not``, ``-`` and long operator chains alike), lines over ``lexer.MAX_LINE_CHARS``, sources over
``MAX_SOURCE_CHARS`` and more than ``MAX_RULES`` rules are syntax errors with a position.
"""

from __future__ import annotations

from scoring.rules import nodes as n
from scoring.rules.errors import RuleSyntaxError
from scoring.rules.lexer import Kind, Token, tokenize

MAX_DEPTH = 48
MAX_SOURCE_CHARS = 512 * 1024
MAX_RULES = 2_000
MAX_TUPLE_ITEMS = 256

_ACTIONS = {action.name.lower(): action for action in n.Action}
_COMPARE = frozenset({"==", "!=", "<", "<=", ">", ">="})
_STARTS_OPERAND = frozenset({Kind.NUMBER, Kind.STRING, Kind.NAME, Kind.LIST})


def _starts_operand(tok: Token) -> bool:
    return (
        tok.kind in _STARTS_OPERAND
        or (tok.kind is Kind.OP and tok.text == "(")
        or (tok.kind is Kind.KEYWORD and tok.text in ("true", "false"))
    )


def parse_rules(source: str) -> tuple[n.Rule, ...]:
    """Every rule of ``source``; ``RuleSyntaxError`` at the first mistake (also for duplicate rule ids)."""
    if len(source) > MAX_SOURCE_CHARS:
        line = source.count("\n", 0, MAX_SOURCE_CHARS) + 1
        column = MAX_SOURCE_CHARS - (source.rfind("\n", 0, MAX_SOURCE_CHARS) + 1) + 1
        raise RuleSyntaxError(line, column, f"rule source longer than {MAX_SOURCE_CHARS} characters")
    rules: list[n.Rule] = []
    seen: set[str] = set()
    for index, text in enumerate(source.split("\n")):
        tokens = tokenize(text.removesuffix("\r"), index + 1)
        if tokens[0].kind is Kind.END:
            continue
        rule = _Parser(tokens).rule()
        if rule.rule_id in seen:
            raise RuleSyntaxError(rule.pos.line, rule.pos.column, f"duplicate rule id '{rule.rule_id}'")
        if len(rules) == MAX_RULES:
            raise RuleSyntaxError(rule.pos.line, rule.pos.column, f"more than {MAX_RULES} rules")
        seen.add(rule.rule_id)
        rules.append(rule)
    return tuple(rules)


def parse_expression(text: str) -> n.Expr:
    """One condition on its own (line 1), as after ``if``."""
    parser = _Parser(tokenize(text, 1))
    expr = parser.expr()
    parser.expect_end()
    return expr


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._i = 0
        self._nesting = 0
        self._depth: dict[int, int] = {}  # id(node) -> height of its subtree, to bound left-deep chains

    # --- helpers -------------------------------------------------------------------------------
    @property
    def _tok(self) -> Token:
        return self._tokens[self._i]

    def _advance(self) -> Token:
        token = self._tokens[self._i]
        if token.kind is not Kind.END:
            self._i += 1
        return token

    def _is(self, kind: Kind, text: str | None = None) -> bool:
        return self._tok.kind is kind and (text is None or self._tok.text == text)

    def _error(self, message: str, token: Token | None = None) -> RuleSyntaxError:
        pos = (token or self._tok).pos
        return RuleSyntaxError(pos.line, pos.column, message)

    def _expect(self, kind: Kind, text: str, what: str) -> Token:
        if not self._is(kind, text):
            raise self._error(f"expected {what}, found {self._tok.describe()}")
        return self._advance()

    def _previous(self) -> Token:
        return self._tokens[self._i - 1]

    def _enter(self) -> None:
        self._nesting += 1
        if self._nesting > MAX_DEPTH:
            raise self._error(f"expression nested deeper than {MAX_DEPTH} levels")

    def _node(self, node: n.Expr, *children: n.Expr) -> n.Expr:
        height = 1 + max((self._depth.get(id(c), 1) for c in children), default=0)
        if height > MAX_DEPTH:
            raise RuleSyntaxError(node.pos.line, node.pos.column, f"expression nested deeper than {MAX_DEPTH} levels")
        self._depth[id(node)] = height
        return node

    def expect_end(self) -> None:
        if not self._is(Kind.END):
            tok = self._tok
            if _starts_operand(tok):
                prev = self._previous().describe() if self._i else "the start"
                raise self._error(f"expected an operator ('and', 'or', a comparison) after {prev}")
            raise self._error(f"unexpected {tok.describe()}")

    # --- grammar -------------------------------------------------------------------------------
    def rule(self) -> n.Rule:
        first = self._tok
        rule_id, description = f"line{first.pos.line}", ""
        if self._is(Kind.KEYWORD, "rule"):
            self._advance()
            if not self._is(Kind.NAME) or "." in self._tok.text:
                raise self._error(f"expected a rule id after 'rule', found {self._tok.describe()}")
            rule_id = self._advance().text
            if self._is(Kind.STRING):
                description = self._advance().text
            self._expect(Kind.OP, ":", "':' after the rule id")
        if not (self._tok.kind is Kind.KEYWORD and self._tok.text in _ACTIONS):
            raise self._error(f"expected an action (allow, challenge, review, block), found {self._tok.describe()}")
        action = _ACTIONS[self._advance().text]
        self._expect(Kind.KEYWORD, "if", f"'if' after '{action.name.lower()}'")
        condition = self.expr()
        self.expect_end()
        return n.Rule(rule_id, description, action, condition, first.pos)

    def expr(self) -> n.Expr:
        left = self._and()
        while self._is(Kind.KEYWORD, "or"):
            op = self._advance()
            right = self._and()
            left = self._node(n.Logic("or", left, right, op.pos), left, right)
        return left

    def _and(self) -> n.Expr:
        left = self._not()
        while self._is(Kind.KEYWORD, "and"):
            op = self._advance()
            right = self._not()
            left = self._node(n.Logic("and", left, right, op.pos), left, right)
        return left

    def _not(self) -> n.Expr:
        if self._is(Kind.KEYWORD, "not"):
            op = self._advance()
            self._enter()
            operand = self._not()
            self._nesting -= 1
            return self._node(n.Not(operand, op.pos), operand)
        return self._comparison()

    def _comparison(self) -> n.Expr:
        left = self._sum()
        tok = self._tok
        if tok.kind is Kind.OP and tok.text in _COMPARE:
            self._advance()
            right = self._sum()
            if self._tok.kind is Kind.OP and self._tok.text in _COMPARE:
                raise self._error("comparisons cannot be chained: join them with 'and'")
            return self._node(n.Compare(tok.text, left, right, tok.pos), left, right)
        negated = False
        if self._is(Kind.KEYWORD, "not"):
            self._advance()
            if not self._is(Kind.KEYWORD, "in"):
                raise self._error(f"expected 'in' after 'not', found {self._tok.describe()}")
            negated = True
        if self._is(Kind.KEYWORD, "in"):
            in_tok = self._advance()
            target = self._set_target()
            return self._node(n.In(left, target, negated, tok.pos if negated else in_tok.pos), left)
        if _starts_operand(tok):
            raise self._error(f"expected a comparison operator after {self._previous().describe()}")
        return left

    def _set_target(self) -> n.TupleSet | n.NamedList:
        tok = self._tok
        if tok.kind is Kind.LIST:
            self._advance()
            return n.NamedList(tok.text, tok.pos)
        if not self._is(Kind.OP, "("):
            found = tok.describe()
            raise self._error(f"expected a tuple such as (\"DE\", \"FR\") or a @list after 'in', found {found}")
        self._advance()
        items: list[n.Number | n.String] = []
        while not self._is(Kind.OP, ")"):
            if len(items) == MAX_TUPLE_ITEMS:
                raise self._error(f"more than {MAX_TUPLE_ITEMS} values in a tuple: use a named list")
            items.append(self._literal())
            if not self._is(Kind.OP, ")"):
                self._expect(Kind.OP, ",", "',' or ')' in the tuple")
        self._advance()
        if not items:
            raise RuleSyntaxError(tok.pos.line, tok.pos.column, "empty tuple after 'in'")
        return n.TupleSet(tuple(items), tok.pos)

    def _literal(self) -> n.Number | n.String:
        tok = self._tok
        if tok.kind is Kind.STRING:
            self._advance()
            return n.String(tok.text, tok.pos)
        sign = 1.0
        if self._is(Kind.OP, "-"):
            self._advance()
            sign = -1.0
        if not self._is(Kind.NUMBER):
            raise self._error(f"expected a number or a string in the tuple, found {self._tok.describe()}")
        return n.Number(sign * self._advance().value, tok.pos)

    def _sum(self) -> n.Expr:
        left = self._product()
        while self._tok.kind is Kind.OP and self._tok.text in ("+", "-"):
            op = self._advance()
            right = self._product()
            left = self._node(n.Arith(op.text, left, right, op.pos), left, right)
        return left

    def _product(self) -> n.Expr:
        left = self._unary()
        while self._tok.kind is Kind.OP and self._tok.text in ("*", "/"):
            op = self._advance()
            right = self._unary()
            left = self._node(n.Arith(op.text, left, right, op.pos), left, right)
        return left

    def _unary(self) -> n.Expr:
        if self._is(Kind.OP, "-"):
            op = self._advance()
            self._enter()
            operand = self._unary()
            self._nesting -= 1
            return self._node(n.Neg(operand, op.pos), operand)
        return self._primary()

    def _primary(self) -> n.Expr:
        tok = self._tok
        if tok.kind is Kind.NUMBER:
            self._advance()
            return n.Number(tok.value, tok.pos)
        if tok.kind is Kind.STRING:
            self._advance()
            return n.String(tok.text, tok.pos)
        if tok.kind is Kind.KEYWORD and tok.text in ("true", "false"):
            self._advance()
            return n.Bool(tok.text == "true", tok.pos)
        if tok.kind is Kind.NAME:
            self._advance()
            return n.Field(tok.text, tok.pos)
        if self._is(Kind.OP, "("):
            self._advance()
            self._enter()
            inner = self.expr()
            self._nesting -= 1
            if not self._is(Kind.OP, ")"):
                found = self._tok.describe()
                raise self._error(f"expected ')' to close the '(' at column {tok.pos.column}, found {found}")
            self._advance()
            return inner
        if tok.kind is Kind.LIST:
            raise self._error(f"a list such as {tok.describe()} can only follow 'in'")
        raise self._error(f"expected a value (a field, a number, a string, true/false or '('), found {tok.describe()}")

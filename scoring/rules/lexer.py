"""Tokens of one line of rule text.

Only ASCII outside string literals: identifiers ``[A-Za-z_][A-Za-z0-9_]*`` joined by dots, numbers
with ``_`` separators (``1_000_00``, ``0.92``), double-quoted strings with the escapes ``\\"``,
``\\\\``, ``\\n`` and ``\\t``, the operators ``== != < <= > >= + - * / ( ) , :``, ``@name`` and
``#`` comments. Any other character (a NUL, a bidi override, a non-breaking space, a lookalike
letter) is an error at its column, named by its code point.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import Enum

from scoring.rules.errors import RuleSyntaxError
from scoring.rules.nodes import Pos

MAX_LINE_CHARS = 2_000
MAX_NUMBER_CHARS = 24  # with separators; keeps every literal exact-ish and far from overflow
MAX_STRING_CHARS = 256

KEYWORDS = frozenset({"and", "or", "not", "in", "if", "true", "false", "rule", "allow", "challenge", "review", "block"})


class Kind(Enum):
    NUMBER = "number"
    STRING = "string"
    NAME = "name"  # a dotted path, or a keyword (then ``text`` is the keyword)
    KEYWORD = "keyword"
    LIST = "list"  # @name; ``text`` is the name
    OP = "operator"
    END = "end of line"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # the source text (for strings: the decoded value; for lists: the name)
    pos: Pos
    value: float = 0.0  # numbers only

    def describe(self) -> str:
        """How an error message names this token."""
        if self.kind is Kind.END:
            return "the end of the line"
        if self.kind is Kind.STRING:
            return f'"{self.text}"' if len(self.text) <= 20 else f'"{self.text[:20]}…"'
        if self.kind is Kind.LIST:
            return f"'@{self.text}'"
        return f"'{self.text}'"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NUMBER = re.compile(r"[0-9][0-9_]*(?:\.[0-9_]+)?")
_NUMBER_OK = re.compile(r"[0-9]+(?:_[0-9]+)*(?:\.[0-9]+(?:_[0-9]+)*)?")
_OPS = ("==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", ",", ":")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def char_name(ch: str) -> str:
    """``'x'`` for a visible ASCII character, else code point and name (``U+202E RIGHT-TO-LEFT OVERRIDE``)."""
    if " " < ch < "\x7f":
        return f"'{ch}'"
    name = unicodedata.name(ch, "")
    if ch == "\0":
        name = "NUL"
    return f"U+{ord(ch):04X}" + (f" {name}" if name else "")


def tokenize(line: str, line_no: int) -> list[Token]:
    """The tokens of ``line`` (no newline in it), ending with an END token."""
    if len(line) > MAX_LINE_CHARS:
        raise RuleSyntaxError(line_no, MAX_LINE_CHARS + 1, f"line longer than {MAX_LINE_CHARS} characters")
    tokens: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        pos = Pos(line_no, i + 1)
        if ch in " \t":
            i += 1
        elif ch == "#":
            break
        elif ch == '"':
            token, i = _string(line, i, pos)
            tokens.append(token)
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            i = _name(line, i, pos, tokens)
        elif "0" <= ch <= "9":
            token, i = _number(line, i, pos)
            tokens.append(token)
        elif ch == "@":
            m = _NAME.match(line, i + 1)
            if m is None or "." in m.group():
                raise RuleSyntaxError(line_no, i + 2, "expected a list name after '@'")
            tokens.append(Token(Kind.LIST, m.group(), pos))
            i = m.end()
        else:
            op = next((o for o in _OPS if line.startswith(o, i)), None)
            if op is None:
                raise RuleSyntaxError(line_no, i + 1, _unexpected(ch))
            tokens.append(Token(Kind.OP, op, pos))
            i += len(op)
    tokens.append(Token(Kind.END, "", Pos(line_no, min(len(line), MAX_LINE_CHARS) + 1)))
    return tokens


def _unexpected(ch: str) -> str:
    if ch == "=":
        return "unexpected '=': compare with '=='"
    if ch == "!":
        return "unexpected '!': negate with 'not', compare with '!='"
    if ch == "'":
        return "unexpected \"'\": strings are written in double quotes"
    return f"unexpected character {char_name(ch)}"


def _name(line: str, i: int, pos: Pos, tokens: list[Token]) -> int:
    m = _NAME.match(line, i)
    assert m is not None  # the caller saw a letter or "_"
    end = m.end()
    if end < len(line) and line[end] == ".":
        raise RuleSyntaxError(pos.line, end + 2, f"expected a field name after '{m.group()}.'")
    text = m.group()
    tokens.append(Token(Kind.KEYWORD if text in KEYWORDS else Kind.NAME, text, pos))
    return end


def _number(line: str, i: int, pos: Pos) -> tuple[Token, int]:
    m = _NUMBER.match(line, i)
    assert m is not None  # the caller saw a digit
    text, end = m.group(), m.end()
    if end < len(line) and (line[end].isalnum() or line[end] in "_."):
        raise RuleSyntaxError(pos.line, end + 1, f"unexpected {char_name(line[end])} in the number '{text}'")
    if len(text) > MAX_NUMBER_CHARS:
        raise RuleSyntaxError(pos.line, pos.column, f"number longer than {MAX_NUMBER_CHARS} characters")
    if not _NUMBER_OK.fullmatch(text):
        raise RuleSyntaxError(pos.line, pos.column, f"malformed number '{text}': '_' goes only between digits")
    return Token(Kind.NUMBER, text, pos, float(text.replace("_", ""))), end


def _string(line: str, i: int, pos: Pos) -> tuple[Token, int]:
    chars: list[str] = []
    j = i + 1
    while j < len(line):
        ch = line[j]
        if ch == '"':
            return Token(Kind.STRING, "".join(chars), pos), j + 1
        if ch == "\\":
            nxt = line[j + 1] if j + 1 < len(line) else ""
            if nxt not in _ESCAPES:
                raise RuleSyntaxError(pos.line, j + 1, 'unknown escape: use \\", \\\\, \\n or \\t')
            chars.append(_ESCAPES[nxt])
            j += 2
        elif not ch.isprintable():
            raise RuleSyntaxError(pos.line, j + 1, f"character {char_name(ch)} is not allowed in a string")
        else:
            chars.append(ch)
            j += 1
        if len(chars) > MAX_STRING_CHARS:
            raise RuleSyntaxError(pos.line, pos.column, f"string longer than {MAX_STRING_CHARS} characters")
    raise RuleSyntaxError(pos.line, pos.column, "unterminated string: missing the closing '\"'")

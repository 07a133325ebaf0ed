"""Errors in rule text, each pointing at a line and column (both 1-based) of the source."""

from __future__ import annotations

from fraudguard.errors import FraudguardError


class RuleError(FraudguardError):
    """A rule source that cannot be used. ``str()`` reads ``line 3, column 17: <message>``."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column
        self.message = message


class RuleSyntaxError(RuleError):
    """The text does not follow the grammar (or exceeds a size limit)."""


class RuleCompileError(RuleError):
    """Well-formed text that cannot be compiled: an unknown field or list, a type mismatch, a bad literal."""

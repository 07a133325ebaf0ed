"""What an import is told (``ImportOptions``) and what it gives back (``ImportedPayments``, ``ImportReport``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from fraudguard.currencies import EXPONENTS
from fraudguard.errors import ValidationError
from trainer.payments import Payments

AmountUnit = Literal["major", "minor"]
RowUnit = Literal["line", "row"]  # how a report numbers rows: CSV file lines, or Parquet data rows


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """How to read values a file does not spell out, and how many bad rows to accept."""

    amount_unit: AmountUnit = "major"  # major: 12.34 in the currency's units; minor: 1234 cents
    default_currency: str = "USD"  # for every row when no currency column is mapped (or a cell is empty)
    label_delay_s: float = 7 * 86400  # a fraud row's label arrives this long after it, unless label_time says
    max_bad_fraction: float = 0.5  # fail the import when more than this share of rows is bad
    max_reported_rows: int = 20  # bad rows kept as examples in the report
    pan_key: bytes | None = field(default=None, repr=False)  # None: the server's key file, else a random key

    def __post_init__(self) -> None:
        if self.amount_unit not in ("major", "minor"):
            raise ValidationError("amount_unit", f"expected 'major' or 'minor', got {self.amount_unit!r}")
        if self.default_currency.strip().upper() not in EXPONENTS:
            raise ValidationError("default_currency", f"unknown ISO-4217 currency {self.default_currency!r}")
        if not 0.0 <= self.label_delay_s < 100 * 365 * 86400:
            raise ValidationError("label_delay_s", f"must be from 0 to 100 years, got {self.label_delay_s}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValidationError("max_bad_fraction", f"must be in [0, 1], got {self.max_bad_fraction}")
        if self.max_reported_rows < 0:
            raise ValidationError("max_reported_rows", f"must not be negative, got {self.max_reported_rows}")
        if self.pan_key is not None and len(self.pan_key) < 16:
            raise ValidationError("pan_key", "must be at least 16 bytes")

    @property
    def currency(self) -> str:
        """``default_currency`` as an upper-case ISO-4217 code."""
        return self.default_currency.strip().upper()


@dataclass(frozen=True, slots=True)
class BadRow:
    """One reason one row was left out. ``row`` is what a person finds in the file (see ``ImportReport``)."""

    row: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProblemCount:
    """How many rows were left out for one (field, reason), and the first of them."""

    field: str
    reason: str
    rows: int
    first_row: int


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import read, kept and left out.

    Row numbers are what a person sees in the file: for CSV the line number (the header is
    line 1, so the first data row is line 2, and a value spanning lines counts them all); for
    Parquet the 1-based data row. ``row_unit`` says which ("line" or "row"). A row can fail
    for several fields; ``problems`` counts each (field, reason) separately.
    """

    source: str
    row_unit: RowUnit
    rows_read: int
    rows_imported: int
    problems: tuple[ProblemCount, ...]
    examples: tuple[BadRow, ...]
    warnings: tuple[str, ...]

    @property
    def rows_rejected(self) -> int:
        return self.rows_read - self.rows_imported

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        """Rows left out per (field, reason)."""
        return {(p.field, p.reason): p.rows for p in self.problems}

    def summary(self) -> str:
        """A few lines for a person: totals, each kind of problem with example rows, warnings."""
        lines = [f"{self.source}: imported {self.rows_imported:,} of {self.rows_read:,} rows"
                 + (f" ({self.rows_rejected:,} left out)" if self.rows_rejected else "")]
        for p in self.problems:
            shown = [str(e.row) for e in self.examples if (e.field, e.reason) == (p.field, p.reason)][:5]
            rows = ", ".join(shown or [str(p.first_row)]) + (", …" if p.rows > max(1, len(shown)) else "")
            lines.append(f"  {p.field}: {p.reason}: {p.rows:,} rows ({self.row_unit} {rows})")
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class ImportedPayments:
    """The payments read from a file, which optional fields it provided, and what was left out."""

    payments: Payments
    provided: frozenset[str]
    report: ImportReport
    mapping: Mapping[str, str]  # canonical field -> the file column it was read from

"""Payment files in and out of the trainer: CSV (optionally gzipped) or Parquet, through a column mapping.

``read_payments`` turns a file whose columns may be named anything into ``Payments``. Each
canonical field (``REQUIRED_FIELDS`` + ``OPTIONAL_FIELDS``) is read from the file column that
a ``ColumnMapping`` names, parsed a whole column at a time with pyarrow.compute and NumPy,
and checked the way the scoring server checks a request. A row that fails any check is left
out and reported by row number, field and reason, never by value, so no card number can
reach a message. Too many bad rows, or no good one, fail the whole import with one
``ValidationError`` that says why. Raw card numbers (PANs) become the server's keyed tokens
and are dropped.

``write_payments`` writes the canonical columns; ``read_payments`` with no mapping reads them
back to the same columns.
"""

from __future__ import annotations

from trainer.files.mapping import (
    CANONICAL_FIELDS,
    MAP_OPTION,
    MAX_AMOUNT_MINOR,
    MAX_ID_CHARS,
    MAX_TIME,
    MIN_TIME,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    ColumnMapping,
)
from trainer.files.raw import FileKind
from trainer.files.read import read_payments
from trainer.files.results import (
    AmountUnit,
    BadRow,
    ImportedPayments,
    ImportOptions,
    ImportReport,
    ProblemCount,
    RowUnit,
)
from trainer.files.write import write_payments

__all__ = [
    "CANONICAL_FIELDS",
    "MAP_OPTION",
    "MAX_AMOUNT_MINOR",
    "MAX_ID_CHARS",
    "MAX_TIME",
    "MIN_TIME",
    "OPTIONAL_FIELDS",
    "REQUIRED_FIELDS",
    "AmountUnit",
    "BadRow",
    "ColumnMapping",
    "FileKind",
    "ImportOptions",
    "ImportReport",
    "ImportedPayments",
    "ProblemCount",
    "RowUnit",
    "read_payments",
    "write_payments",
]

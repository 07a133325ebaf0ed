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

import codecs
import gzip
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from fraudguard.currencies import EXPONENTS
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from fraudguard.redaction import luhn_valid, redact
from fraudguard.security.keyfile import KeyFileError, load_or_create_key
from fraudguard.security.pan import CardRef, PanTokenizer
from fraudguard.settings import Settings, SettingsError
from trainer.payments import Payments

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
B = npt.NDArray[np.bool_]
S = npt.NDArray[np.str_]

REQUIRED_FIELDS: Final[tuple[str, ...]] = ("transaction_id", "timestamp", "amount", "card")
OPTIONAL_FIELDS: Final[tuple[str, ...]] = (
    "currency", "card_bin", "card_last4", "customer", "merchant", "mcc", "merchant_country", "device", "ip",
    "latitude", "longitude", "channel", "entry_mode", "label", "scenario", "label_time",
)  # fmt: skip
CANONICAL_FIELDS: Final[tuple[str, ...]] = REQUIRED_FIELDS + OPTIONAL_FIELDS

MIN_TIME: Final = 631_152_000  # 1990-01-01T00:00:00Z, the earliest accepted time
MAX_TIME: Final = 4_102_444_800  # 2100-01-01T00:00:00Z, the first time no longer accepted
MAX_AMOUNT_MINOR: Final = 10**15
MAX_ID_CHARS: Final = 128
MAP_OPTION: Final = "--map"

AmountUnit = Literal["major", "minor"]
FileKind = Literal["csv", "parquet"]
RowUnit = Literal["line", "row"]  # how a report numbers rows: CSV file lines, or Parquet data rows


# --- the column mapping ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which file column holds each canonical field, as ``(field, column)`` pairs in canonical order.

    A mapping is complete: fields it does not name are not read, even if the file happens
    to have a column of that name. Several fields may share one column. Build one with
    ``parse`` (the CLI's ``--map`` text), ``of`` (a dict) or ``identity`` (canonical names).
    """

    pairs: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name, column in self.pairs:
            if name not in CANONICAL_FIELDS:
                known = ", ".join(CANONICAL_FIELDS)
                raise ValidationError(MAP_OPTION, f"unknown field {redact(name)!r}; known fields: {known}")
            if name in seen:
                raise ValidationError(MAP_OPTION, f"field {name!r} is given twice")
            if not column.strip():
                raise ValidationError(MAP_OPTION, f"field {name!r} has an empty column name")
            seen.add(name)

    @classmethod
    def of(cls, columns: Mapping[str, str]) -> ColumnMapping:
        """From ``{field: column}`` (whitespace around column names is dropped, as in a file's header)."""
        return cls(_in_canonical_order((name, column.strip()) for name, column in columns.items()))

    @classmethod
    def parse(cls, text: str) -> ColumnMapping:
        """From ``--map`` text: ``field=COLUMN`` pairs separated by commas, e.g. ``transaction_id=ID,amount=AMT``.

        Whitespace around names is ignored; a column name may not contain a comma.
        """
        pairs: list[tuple[str, str]] = []
        for part in text.split(","):
            name, sep, column = part.partition("=")
            if not sep:
                raise ValidationError(MAP_OPTION, f"expected field=COLUMN, got {redact(part.strip())!r}")
            if not name.strip():
                raise ValidationError(MAP_OPTION, f"empty field name in {redact(part.strip())!r}")
            pairs.append((name.strip().lower(), column.strip()))
        return cls(_in_canonical_order(pairs))

    @classmethod
    def identity(cls, file_columns: Iterable[str]) -> ColumnMapping:
        """Every canonical field that is also a column name of the file, mapped to that column."""
        present = set(file_columns)
        return cls(tuple((name, name) for name in CANONICAL_FIELDS if name in present))

    def column(self, name: str) -> str | None:
        """The file column holding field ``name``, or None when the mapping does not give one."""
        return dict(self.pairs).get(name)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.pairs)

    def resolve(self, file_columns: Sequence[str], source: str = "the file") -> dict[str, str]:
        """``{field: column}``, after checking it against the file: required fields mapped, columns present."""
        for name in REQUIRED_FIELDS:
            if self.column(name) is None:
                raise ValidationError(MAP_OPTION, f"required field {name!r} has no column (name a column {name!r} "
                                                  f"or give --map {name}=COLUMN); {_columns_of(source, file_columns)}")
        present = set(file_columns)
        for name, column in self.pairs:
            if column not in present:
                raise ValidationError(MAP_OPTION, f"{name}={redact(column)!r}: no such column; "
                                                  f"{_columns_of(source, file_columns)}")
        if ("latitude" in self.fields) != ("longitude" in self.fields):
            raise ValidationError(MAP_OPTION, "latitude and longitude go together: map both or neither")
        return dict(self.pairs)


def _in_canonical_order(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    rank = {name: i for i, name in enumerate(CANONICAL_FIELDS)}
    return tuple(sorted(pairs, key=lambda pair: rank.get(pair[0], len(rank))))


def _columns_of(source: str, columns: Sequence[str], limit: int = 30) -> str:
    """``source``'s column names for a message: at most ``limit``, shortened, card numbers redacted."""
    shown = [redact(name if len(name) <= 40 else name[:39] + "…") for name in columns[:limit]]
    more = f" … ({len(columns) - limit:,} more)" if len(columns) > limit else ""
    return f"{source} has columns: {', '.join(repr(name) for name in shown)}{more}"


# --- options and results ---------------------------------------------------------------------


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


# --- reading ---------------------------------------------------------------------------------

_DEFAULT_OPTIONS = ImportOptions()


def read_payments(path: str | os.PathLike[str], mapping: ColumnMapping | None = None,
                  options: ImportOptions = _DEFAULT_OPTIONS) -> ImportedPayments:
    """Read a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file into ``Payments``, sorted by event time.

    With no ``mapping``, columns named like canonical fields are read. Bad rows are left
    out and reported (see ``ImportReport`` for how rows are numbered); the import fails
    with a ``ValidationError`` naming the file when more than ``options.max_bad_fraction``
    of the rows are bad, when none is good, or when the file cannot be read at all. No
    other exception escapes for anything a file may contain.
    """
    file = Path(path)
    raw = _read_raw(file)
    resolved = (mapping or ColumnMapping.identity(raw.header)).resolve(raw.header, file.name)
    try:
        parsed = _parse(raw, resolved, options)
    except pa.ArrowException as exc:  # a case the checks above did not foresee: still no traceback
        raise ValidationError(str(file), f"could not be read ({_arrow_detail(exc)})") from exc
    return _finish(raw, parsed, resolved, options)


@dataclass(frozen=True, slots=True)
class _Raw:
    """A file's header and data rows as read, before any field is parsed."""

    source: str  # the file, for messages
    header: tuple[str, ...]
    table: pa.Table  # the data rows; column i holds header[i]
    rows: I64  # the row number a person sees, per data row
    row_unit: RowUnit
    misshapen: I64  # CSV rows left out because their number of columns differs from the header's
    blank: int  # CSV rows left out because every cell is empty

    def column(self, name: str) -> pa.Array:
        """The one column called ``name`` as a single array."""
        where = [i for i, h in enumerate(self.header) if h == name]
        if len(where) > 1:
            raise ValidationError(self.source, f"column {redact(name)!r} appears {len(where)} times in the header")
        return self.table.column(where[0]).combine_chunks()


def _file_kind(path: Path) -> FileKind:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise ValidationError(str(path), "unknown file type: expected a name ending in .csv, .csv.gz, .parquet or .pq")


def _read_raw(path: Path) -> _Raw:
    """Header and data rows of ``path``; ``ValidationError`` naming the file if it cannot be read."""
    kind = _file_kind(path)
    try:
        raw = _read_csv(path) if kind == "csv" else _read_parquet(path)
    except OSError as exc:
        if isinstance(exc, pa.ArrowException) or exc.errno is None:  # pyarrow's, not the operating system's
            raise ValidationError(str(path), _arrow_reason(exc, kind)) from exc
        raise ValidationError(str(path), f"cannot be opened ({exc.strerror or exc})") from exc
    except pa.ArrowException as exc:
        raise ValidationError(str(path), _arrow_reason(exc, kind)) from exc
    if not any(raw.header):
        raise ValidationError(str(path), "has no header row (the first line must name the columns)")
    if raw.table.num_rows + len(raw.misshapen) == 0:
        raise ValidationError(str(path), "has no data rows")
    return raw


def _arrow_reason(exc: Exception, kind: FileKind) -> str:
    """What went wrong reading a file, in words, from a pyarrow error."""
    text = str(exc)
    if "Empty CSV file" in text:
        return "is empty"
    if "UTF8" in text or "UTF-8" in text:
        return "is not UTF-8 text (is it a CSV file?)"
    if kind == "parquet":
        return f"is not a readable Parquet file ({_arrow_detail(exc)})"
    if any(word in text.lower() for word in ("gzip", "zlib", "compress")):
        return f"is not a readable gzip file ({_arrow_detail(exc)})"
    return f"is not a readable CSV file ({_arrow_detail(exc)})"


def _arrow_detail(exc: Exception) -> str:
    """pyarrow's message, first line only, shortened, with any card number redacted."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    first = "".join(c if c.isprintable() else "?" for c in first)
    return redact(first if len(first) <= 160 else first[:159] + "…")


def _read_parquet(path: Path) -> _Raw:
    table = pq.read_table(path)
    header = tuple(name.strip() for name in table.column_names)
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return _Raw(str(path), header, table, rows, "row", np.zeros(0, np.int64), 0)


# CSV: every cell is read as text. pyarrow names the columns f0, f1, … so that the header,
# read as the first row, goes through the same parser as the data.
_CSV_MAX_COLUMNS = 16_384
_CSV_TYPES = {f"f{i}": pa.string() for i in range(_CSV_MAX_COLUMNS)}


@dataclass(frozen=True, slots=True)
class _Skipped:
    """A CSV row pyarrow left out: its record number (header = 1) and the line breaks inside it."""

    record: int
    newlines: int


def _read_csv(path: Path) -> _Raw:
    table, skipped = _parse_csv_numbering_misshapen_rows(path)
    if table.num_rows == 0:
        raise ValidationError(str(path), "is empty")
    header = tuple(str(v).replace("\ufeff", "").strip() for v in table.slice(0, 1).to_pylist()[0].values())
    body = table.slice(1)
    rows, skipped_rows = _csv_line_numbers(_newlines(table.slice(0, 1))[0], _newlines(body), skipped)
    blank = _blank_rows(body)
    if blank.any():
        body, rows = body.filter(pa.array(~blank)), rows[~blank]
    return _Raw(str(path), header, body, rows, "line", skipped_rows, int(blank.sum()))


def _parse_csv_numbering_misshapen_rows(path: Path) -> tuple[pa.Table, list[_Skipped]]:
    """Parse on all threads; only if some row has the wrong number of columns, parse again to skip and number them.

    The second pass runs on one thread (only then does pyarrow number the rows it skips), and
    only on valid UTF-8 (pyarrow decodes a skipped row's text before it reaches us).
    """
    try:
        return _parse_csv(path, None), []
    except pa.ArrowInvalid as exc:
        if not re.search(r"Expected \d+ columns, got \d+", str(exc)):
            raise
        if not _is_utf8(path):
            raise ValidationError(str(path), "is not UTF-8 text (is it a CSV file?)") from exc
    skipped: list[_Skipped] = []

    def skip(row: Any) -> str:
        skipped.append(_Skipped(row.number if row.number is not None else -1, str(row.text).count("\n")))
        return "skip"

    return _parse_csv(path, skip), skipped


def _parse_csv(path: Path, on_misshapen_row: Callable[[Any], str] | None) -> pa.Table:
    """Every cell as text; a row with the wrong number of columns goes to ``on_misshapen_row`` (None: an error)."""
    return pv.read_csv(
        path,
        read_options=pv.ReadOptions(autogenerate_column_names=True, use_threads=on_misshapen_row is None),
        parse_options=pv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False,
                                      invalid_row_handler=on_misshapen_row),
        convert_options=pv.ConvertOptions(column_types=_CSV_TYPES, strings_can_be_null=False,
                                          quoted_strings_can_be_null=False),
    )


def _is_utf8(path: Path) -> bool:
    """Whether the (possibly gzipped) file decodes as UTF-8, read a megabyte at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _newlines(table: pa.Table) -> I64:
    """Line breaks inside each row's values (they push later rows down the file)."""
    total = np.zeros(table.num_rows, np.int64)
    for column in table.columns:
        if any(_has_newline(chunk) for chunk in column.chunks):
            total += pc.fill_null(pc.count_substring(column, "\n"), 0).to_numpy().astype(np.int64)
    return total


def _has_newline(text: pa.Array) -> bool:
    """Whether any value holds a line break, from a byte scan of the data buffer (no per-value work)."""
    data = text.buffers()[2]
    return data is not None and bool((np.frombuffer(data, np.uint8) == 0x0A).any())


def _csv_line_numbers(header_newlines: int, body_newlines: I64, skipped: list[_Skipped]) -> tuple[I64, I64]:
    """The file line each kept data row starts on, and the lines of the skipped rows.

    Records are numbered from 1 (the header); a record starts on its number plus the line
    breaks inside all the records before it.
    """
    records = 1 + len(body_newlines) + len(skipped)
    numbers = np.array([s.record for s in skipped], np.int64)
    newlines = np.zeros(records + 1, np.int64)
    kept = np.ones(records + 1, np.bool_)
    kept[:2] = False
    if len(numbers) and (numbers.min() < 2 or numbers.max() > records or len(np.unique(numbers)) < len(numbers)):
        numbers = np.arange(records - len(skipped) + 1, records + 1)  # unnumbered: at least count them
    kept[numbers] = False
    newlines[1] = header_newlines
    newlines[kept] = body_newlines
    newlines[numbers] = [s.newlines for s in skipped]
    starts = np.arange(records + 1) + np.cumsum(newlines) - newlines
    return starts[kept], starts[numbers]


def _blank_rows(body: pa.Table) -> B:
    """Rows whose every cell is empty (blank lines): skipped, not counted."""
    blank = np.ones(body.num_rows, np.bool_)
    for column in body.columns:
        blank &= pc.equal(pc.fill_null(column, ""), "").to_numpy(zero_copy_only=False)
    return blank


# --- parsing: shared pieces ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    """Rows (a mask over the data rows) that fail one check of one field."""

    field: str
    reason: str
    mask: B


@dataclass(slots=True)
class _Parsed:
    """Every Payments column for every data row, and what is wrong with which rows."""

    columns: dict[str, Any]  # Payments field -> pa.Array (text) or NumPy array
    problems: list[_Problem]
    warnings: list[str]


def _np(values: pa.Array) -> npt.NDArray[Any]:
    return np.asarray(values.to_numpy(zero_copy_only=False))


def _bools(values: pa.Array) -> B:
    return np.asarray(_np(values), np.bool_)


def _ints(values: pa.Array) -> I64:
    return np.asarray(_np(values), np.int64)


def _text(values: pa.Array, name: str) -> pa.Array:
    """A column as trimmed UTF-8 text, "" for null; numbers and booleans as pyarrow prints them."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    if pa.types.is_large_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            values = values.cast(pa.string())
        except pa.ArrowInvalid as exc:
            raise ValidationError(name, "column is not UTF-8 text") from exc
    elif not pa.types.is_string(kind):
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind) or pa.types.is_temporal(kind)):
            raise ValidationError(name, f"column has type {kind}, not text or numbers")
        values = pc.cast(values, pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(values, ""))


def _given(text: pa.Array) -> B:
    """Cells that are not empty."""
    return _bools(pc.not_equal(text, ""))


def _matches(text: pa.Array, pattern: str) -> B:
    return _bools(pc.match_substring_regex(text, pattern))


def _digits(text: pa.Array, fewest: int, most: int) -> B:
    """Cells of ``fewest`` to ``most`` ASCII digits."""
    length = _ints(pc.utf8_length(text))
    return _bools(pc.ascii_is_decimal(text)) & (length >= fewest) & (length <= most)


def _letters(text: pa.Array, count: int) -> B:
    """Cells of exactly ``count`` ASCII letters."""
    length = _ints(pc.utf8_length(text))
    return _bools(pc.ascii_is_alpha(text)) & np.equal(length, count)


def _too_long(text: pa.Array) -> B:
    return _ints(pc.utf8_length(text)) > MAX_ID_CHARS


def _cast_each(values: pa.Array, to: pa.DataType) -> pa.Array:
    """``values`` cast to ``to``, null where one value cannot be. Bisects around failures: good values cost no extra."""
    try:
        return pc.cast(values, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(values) <= 1:
            return pa.nulls(len(values), to)
        mid = len(values) // 2
        return pa.concat_arrays([_cast_each(values.slice(0, mid), to), _cast_each(values.slice(mid), to)])


def _lookup(text: pa.Array, table: Mapping[str, int], fill: int) -> tuple[I64, B]:
    """``table[cell]`` per cell, ``fill`` where the cell is not a key; and whether it was one."""
    keys = list(table)
    position = pc.index_in(text, value_set=pa.array(keys, pa.string()))
    found = _bools(position.is_valid())
    values = np.array([table[k] for k in keys] + [fill], np.int64)
    return values[_ints(pc.fill_null(position, len(keys)))], found


# --- parsing: times --------------------------------------------------------------------------

_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_PLAIN_NUMBER = r"^\+?\d{1,15}(?:\.\d*)?$"
_ISO = (r"^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?"
        r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?)?$")
_UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_UTC_NS = pa.timestamp("ns", "UTC")


@dataclass(frozen=True, slots=True)
class _Times:
    """Epoch seconds (floored) per row; which cells were given; which of those were times at all."""

    seconds: I64
    given: B
    ok: B

    @property
    def out_of_range(self) -> B:
        return self.ok & ((self.seconds < MIN_TIME) | (self.seconds >= MAX_TIME))


def _times(values: pa.Array, name: str) -> _Times:
    """Times from a Parquet timestamp or date, epoch-second numbers, or text (ISO-8601 or epoch seconds)."""
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date64(kind):
        per_second = _UNITS_PER_SECOND[kind.unit] if pa.types.is_timestamp(kind) else 1_000
        return _times_from_ticks(values, per_second)
    if pa.types.is_date32(kind):
        days = _times_from_ticks(values, 1)
        return _Times(days.seconds * 86_400, days.given, days.ok)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _times_from_numbers(pc.cast(values, pa.float64()))
    return _times_from_text(_text(values, name))


def _times_from_ticks(values: pa.Array, per_second: int) -> _Times:
    given = _bools(values.is_valid())
    ticks = _ints(pc.fill_null(pc.cast(values, pa.int64()), 0))
    return _Times(ticks // per_second, given, given.copy())


def _times_from_numbers(values: pa.Array) -> _Times:
    """Epoch seconds as float64 (nulls: not given); non-finite: not a time; fractions floored."""
    x = np.asarray(_np(pc.fill_null(values, np.nan)), np.float64)
    given = _bools(values.is_valid())
    ok = given & np.isfinite(x)
    seconds = np.floor(np.clip(np.where(ok, x, 0.0), -1e15, 1e15)).astype(np.int64)
    return _Times(seconds, given, ok)


def _times_from_text(text: pa.Array) -> _Times:
    given = _given(text)
    seconds = np.zeros(len(text), np.int64)
    ok = np.zeros(len(text), np.bool_)
    rows = np.flatnonzero(given)
    cells = text.take(pa.array(rows))
    try:  # the common case: every cell an ISO time with an offset, as write_payments writes them
        seconds[rows] = _ints(pc.cast(cells, _UTC_NS).cast(pa.int64())) // 1_000_000_000
        ok[rows] = True
        return _Times(seconds, given, ok)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    numeric = _matches(cells, _NUMBER)
    iso = _matches(cells, _ISO) & ~numeric
    for mask, parse in ((numeric, _epoch_text), (iso, _iso_text)):
        part = rows[mask]
        seconds[part], ok[part] = parse(cells.filter(pa.array(mask)))
    return _Times(seconds, given, ok)


def _epoch_text(cells: pa.Array) -> tuple[I64, B]:
    """Epoch seconds from numeric text: whole seconds exactly; exponents and signs through float64."""
    plain = _matches(cells, _PLAIN_NUMBER)
    seconds = np.zeros(len(cells), np.int64)
    whole = pc.replace_substring_regex(cells.filter(pa.array(plain)), r"^\+?(\d+)(?:\.\d*)?$", r"\1")
    seconds[plain] = _ints(pc.cast(whole, pa.int64()))
    rest = _times_from_numbers(_cast_each(cells.filter(pa.array(~plain)), pa.float64()))
    seconds[~plain] = rest.seconds
    ok = plain.copy()
    ok[~plain] = rest.ok
    return seconds, ok


def _iso_text(cells: pa.Array) -> tuple[I64, B]:
    """Epoch seconds from ISO-8601 text: 'Z' or an offset, else UTC; fractions of a second floored."""
    text = pc.replace_substring(pc.ascii_upper(cells), ",", ".")
    text = pc.replace_substring_regex(text, r"(\.\d{9})\d+", r"\1")  # nanoseconds are plenty
    date_only = pa.array(_matches(text, r"^\d{4}-\d{2}-\d{2}$"))
    text = pc.if_else(date_only, pc.binary_join_element_wise(text, "T00:00:00", ""), text)
    naive = pa.array(~_matches(text, r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"))
    text = pc.if_else(naive, pc.binary_join_element_wise(text, "Z", ""), text)
    stamps = _cast_each(text, _UTC_NS)
    ok = _bools(stamps.is_valid())
    ns = _ints(pc.fill_null(stamps.cast(pa.int64()), 0))
    return ns // 1_000_000_000, ok


def _check_time(name: str, times: _Times, required: bool) -> list[_Problem]:
    problems = [
        _Problem(name, "not a time (ISO-8601 or epoch seconds)", times.given & ~times.ok),
        _Problem(name, "before 1990 or after 2100", times.out_of_range),
    ]
    if required:
        problems.append(_Problem(name, "missing", ~times.given))
    return problems


# --- parsing: amounts ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Amounts:
    minor: I64
    number: B  # the cell is a finite number
    negative: B
    too_large: B
    rounded: B  # more decimals than the currency has (or any, for minor units)


def _numbers(text: pa.Array) -> tuple[F64, B]:
    """float64 per cell, and whether the cell is a finite number: one cast unless some cell is not a number."""
    given = _given(text)
    try:
        x = np.asarray(_np(pc.cast(pc.if_else(pa.array(given), text, "nan"), pa.float64())), np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        syntax = given & _matches(text, _NUMBER)
        x = np.full(len(text), np.nan)
        x[syntax] = _np(pc.fill_null(_cast_each(text.filter(pa.array(syntax)), pa.float64()), np.nan))
    return x, given & np.isfinite(x)


def _amounts(text: pa.Array, exponent: I64) -> _Amounts:
    """Amounts in minor units from decimal text, rounding half up.

    float64 is exact for what it handles here: a decimal with no more decimals than the
    currency has, up to 10^15 minor units, lands within 0.25 of its whole number of minor
    units. Longer decimals (which round) go through ``_decimal_minor``, digit by digit.
    """
    scientific = _ints(pc.find_substring(text, "e", ignore_case=True)) >= 0  # 1.5e3
    point = _ints(pc.find_substring(text, "."))
    trimmed = pc.utf8_rtrim(text, "0")  # 12.3400 has 2 decimals; 5.000 has 0, as '5.0'
    trimmed = pc.if_else(pc.ends_with(trimmed, "."), pc.binary_join_element_wise(trimmed, "0", ""), trimmed)
    text = pc.if_else(pa.array((point >= 0) & ~scientific), trimmed, text)
    x, number = _numbers(text)
    scaled = np.abs(np.where(number, x, 0.0)) * 10.0**exponent
    too_large = ~(scaled <= MAX_AMOUNT_MINOR)
    minor = np.floor(np.where(too_large, 0.0, scaled) + 0.5).astype(np.int64)
    rounded = scientific & (np.abs(minor - scaled) > 1e-9 * np.maximum(scaled, 1.0))
    decimals = np.where(point >= 0, _ints(pc.utf8_length(text)) - point - 1, 0)
    long = number & (decimals > exponent) & ~scientific
    if long.any():
        exact = _decimal_minor(text.filter(pa.array(long)), exponent[long])
        minor[long], too_large[long], rounded[long] = exact.minor, exact.too_large, exact.rounded
    return _Amounts(minor, number, number & (x < 0), number & too_large, number & rounded)


def _decimal_minor(cells: pa.Array, exponent: I64) -> _Amounts:
    """Exact decimal text to minor units, rounding half up on the digit after the currency's last."""
    unsigned = pc.replace_substring_regex(cells, r"^[+-]", "")
    integer = pc.utf8_ltrim(pc.replace_substring_regex(unsigned, r"\..*$", ""), "0")
    fraction = pc.replace_substring_regex(unsigned, r"^\d*\.?", "")
    long = _ints(pc.utf8_length(integer)) > 16
    integer = pc.if_else(pa.array(long | ~_given(integer)), "0", integer)
    units = _ints(pc.cast(integer, pa.int64()))
    first5 = pc.utf8_slice_codeunits(pc.utf8_rpad(fraction, 5, "0"), 0, 5)
    fifth = _ints(pc.cast(first5, pa.int64()))  # the fraction in units of 10^-5
    scale = 10**exponent
    step = 10 ** (5 - exponent)
    too_large = long | (units > MAX_AMOUNT_MINOR // scale)
    minor = np.where(too_large, 0, units) * scale + (fifth + step // 2) // step
    rounded = (fifth % step != 0) | _matches(fraction, r"^\d{5}\d*[1-9]")
    every = np.ones(len(cells), np.bool_)
    return _Amounts(minor, every, ~every, too_large | (minor > MAX_AMOUNT_MINOR), rounded)


def _check_amount(text: pa.Array, amounts: _Amounts, unit: AmountUnit) -> list[_Problem]:
    given = _given(text)
    problems = [
        _Problem("amount", "missing", ~given),
        _Problem("amount", "not a number", given & ~amounts.number),
        _Problem("amount", "negative", amounts.negative),
        _Problem("amount", "above 10^15 minor units", ~amounts.negative & amounts.too_large),
    ]
    if unit == "minor":
        problems.append(_Problem("amount", "not a whole number of minor units", amounts.rounded))
    return problems


# --- parsing: cards --------------------------------------------------------------------------

_PAN_LIKE = r"^\d(?:[ -]?\d){11,18}$"


@dataclass(frozen=True, slots=True)
class _Cards:
    token: pa.Array
    bin: pa.Array
    last4: pa.Array
    is_pan: B


def _cards(card: pa.Array, bins: pa.Array, last4s: pa.Array, key: Callable[[], bytes]) -> _Cards:
    """Card tokens: a Luhn-valid 12–19 digit value is a raw PAN and becomes its keyed token, BIN and last four.

    Each distinct PAN is tokenized once; the PANs themselves go no further than this function.
    """
    refs = _tokenize(card.filter(pa.array(_matches(card, _PAN_LIKE))), key)
    if not refs:
        return _Cards(card, bins, last4s, np.zeros(len(card), np.bool_))
    position = pc.index_in(card, value_set=pa.array(list(refs), pa.string()))
    is_pan = _bools(position.is_valid())
    mask = pa.array(is_pan)

    def pick(values: list[str], otherwise: pa.Array) -> pa.Array:
        return pc.if_else(mask, pc.take(pa.array(values, pa.string()), position), otherwise)

    return _Cards(pick([r.token for r in refs.values()], card), pick([r.bin for r in refs.values()], bins),
                  pick([r.last4 for r in refs.values()], last4s), is_pan)


def _tokenize(candidates: pa.Array, key: Callable[[], bytes]) -> dict[str, CardRef]:
    """``{raw value: CardRef}`` for the distinct candidates that pass the Luhn check."""
    values = [v for v in pc.unique(candidates).to_pylist() if luhn_valid(re.sub(r"[ -]", "", v))]
    if not values:
        return {}
    tokenizer = PanTokenizer(key())
    return {v: tokenizer.tokenize(v) for v in values}


def _pan_key(options: ImportOptions, warnings: list[str]) -> bytes:
    """``options.pan_key``, else the scoring server's key file (as ``fraudguard serve`` finds it), else a random key."""
    if options.pan_key is not None:
        return options.pan_key
    try:
        settings = Settings.from_sources(None)
    except SettingsError as exc:
        raise ValidationError("pan_key", f"cannot find the server's PAN key: {exc}") from exc
    path = settings.pan_key_file or settings.keys_dir / "pan.key"
    if path.is_file():
        try:
            return load_or_create_key(path)
        except KeyFileError as exc:
            raise ValidationError("pan_key", f"cannot use the server's PAN key: {exc}") from exc
    warnings.append(f"raw card numbers were tokenized with a random key made for this import: tokens will not "
                    f"match the server's (no key file at {path}; set FRAUDGUARD_PAN_KEY_FILE or "
                    f"FRAUDGUARD_DATA_DIR to use the server's key)")
    return secrets.token_bytes(32)


def _check_card(card: pa.Array, cards: _Cards) -> list[_Problem]:
    bins = cards.bin
    last4 = cards.last4
    return [
        _Problem("card", "missing", ~_given(card)),
        _Problem("card", f"longer than {MAX_ID_CHARS} characters", _too_long(card)),
        _Problem("card_bin", "not 6 to 8 digits", _given(bins) & ~_digits(bins, 6, 8)),
        _Problem("card_last4", "not 4 digits", _given(last4) & ~_digits(last4, 4, 4)),
    ]


# --- parsing: the other fields ---------------------------------------------------------------


def _enum_names(items: Iterable[tuple[str, int]], prefix: str) -> dict[str, int]:
    """Accepted spellings of an enum: full and short names (any case, matched lower-case) and numbers."""
    table: dict[str, int] = {}
    for name, value in items:
        table[name.lower()] = value
        table[name.lower().removeprefix(prefix)] = value
        table[str(value)] = value
    return table


_CHANNELS = _enum_names(pb.Channel.items(), "channel_")
_ENTRY_MODES = _enum_names(pb.EntryMode.items(), "entry_mode_")
_LABELS = {word: 1 for word in ("true", "1", "yes", "fraud", "chargeback")} | {
    word: 0 for word in ("false", "0", "no", "legit", "legitimate")
}


def _coordinate(values: pa.Array | None, name: str, limit: float, n: int) -> tuple[F64, B, list[_Problem]]:
    """Degrees per row (NaN: not given), whether given, and the problems (not a number, out of range)."""
    if values is None:
        return np.full(n, np.nan), np.zeros(n, np.bool_), []
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        x = np.asarray(_np(pc.fill_null(pc.cast(values, pa.float64()), np.nan)), np.float64)
        given = ~np.isnan(x)
        bad = np.zeros(len(x), np.bool_)
    else:
        text = _text(values, name)
        given = _given(text)
        x, number = _numbers(text)
        bad = given & ~number
    outside = given & ~bad & ~(np.abs(x) <= limit)
    problems = [_Problem(name, "not a number", bad), _Problem(name, f"outside [-{limit:g}, {limit:g}]", outside)]
    return x, given, problems


def _parse(raw: _Raw, resolved: Mapping[str, str], options: ImportOptions) -> _Parsed:
    """Parse every mapped field of every data row, vectorised; unmapped optional fields take their defaults."""
    n = raw.table.num_rows
    parsed = _Parsed({}, [], [])

    def column(name: str) -> pa.Array | None:
        return raw.column(resolved[name]) if name in resolved else None

    def text(name: str) -> pa.Array:
        values = column(name)
        return pa.nulls(n, pa.string()).fill_null("") if values is None else _text(values, name)

    _parse_ids(parsed, text)
    event = _parse_event_time(parsed, raw.column(resolved["timestamp"]))
    exponent = _parse_currency(parsed, text("currency"), "currency" in resolved, options)
    _parse_amount(parsed, text("amount"), exponent, options.amount_unit)
    _parse_card(parsed, text("card"), text("card_bin"), text("card_last4"), options)
    _parse_merchant(parsed, text("mcc"), text("merchant_country"))
    _parse_location(parsed, column("latitude"), column("longitude"), n)
    _parse_enum(parsed, "channel", text("channel"), _CHANNELS)
    _parse_enum(parsed, "entry_mode", text("entry_mode"), _ENTRY_MODES)
    _parse_labels(parsed, text("label"), text("scenario"), column("label_time"), event, options)
    return parsed


_ID_FIELDS = {"transaction_id": "transaction_id", "customer": "customer_id", "merchant": "merchant_id",
              "device": "device_id", "ip": "ip_address"}


def _parse_ids(parsed: _Parsed, text: Callable[[str], pa.Array]) -> None:
    for name, column in _ID_FIELDS.items():
        values = text(name)
        parsed.columns[column] = values
        parsed.problems.append(_Problem(name, f"longer than {MAX_ID_CHARS} characters", _too_long(values)))
    parsed.problems.append(_Problem("transaction_id", "missing", ~_given(parsed.columns["transaction_id"])))


def _parse_event_time(parsed: _Parsed, values: pa.Array) -> I64:
    times = _times(values, "timestamp")
    parsed.problems.extend(_check_time("timestamp", times, required=True))
    parsed.columns["event_time"] = times.seconds
    return times.seconds


def _parse_currency(parsed: _Parsed, text: pa.Array, mapped: bool, options: ImportOptions) -> I64:
    """Currency codes (empty: the default) and each row's minor-unit exponent (0 for minor-unit amounts)."""
    codes = pc.if_else(pa.array(_given(text) & mapped), pc.ascii_upper(text), options.currency)
    exponent, known = _lookup(codes, EXPONENTS, 2)
    parsed.problems.append(_Problem("currency", "not an ISO-4217 currency", ~known))
    parsed.columns["currency"] = codes
    return exponent if options.amount_unit == "major" else np.zeros_like(exponent)


def _parse_amount(parsed: _Parsed, text: pa.Array, exponent: I64, unit: AmountUnit) -> None:
    amounts = _amounts(text, exponent)
    parsed.problems.extend(_check_amount(text, amounts, unit))
    parsed.columns["amount_minor"] = amounts.minor
    rounded = int(amounts.rounded.sum())
    if rounded and unit == "major":
        parsed.warnings.append(f"{rounded:,} amounts had more decimals than their currency and were rounded")


def _parse_card(parsed: _Parsed, card: pa.Array, bins: pa.Array, last4s: pa.Array, options: ImportOptions) -> None:
    cards = _cards(card, bins, last4s, lambda: _pan_key(options, parsed.warnings))
    parsed.problems.extend(_check_card(card, cards))
    parsed.columns.update(card_token=cards.token, card_bin=cards.bin, card_last4=cards.last4)
    if cards.is_pan.any():
        parsed.warnings.append(f"{int(cards.is_pan.sum()):,} rows held raw card numbers; they were tokenized "
                               f"and not kept")


def _parse_merchant(parsed: _Parsed, mcc: pa.Array, country: pa.Array) -> None:
    digits = _digits(mcc, 1, 4)
    values = np.zeros(len(mcc), np.int32)
    values[digits] = _np(pc.cast(mcc.filter(pa.array(digits)), pa.int32()))
    country = pc.ascii_upper(country)
    parsed.columns.update(mcc=values, merchant_country=country)
    parsed.problems += [
        _Problem("mcc", "not a whole number from 0 to 9999", _given(mcc) & ~digits),
        _Problem("merchant_country", "not two ASCII letters", _given(country) & ~_letters(country, 2)),
    ]


def _parse_location(parsed: _Parsed, latitude: pa.Array | None, longitude: pa.Array | None, n: int) -> None:
    lat, lat_given, lat_problems = _coordinate(latitude, "latitude", 90.0, n)
    lon, lon_given, lon_problems = _coordinate(longitude, "longitude", 180.0, n)
    parsed.problems += lat_problems + lon_problems
    parsed.problems += [
        _Problem("latitude", "given without longitude", lat_given & ~lon_given),
        _Problem("longitude", "given without latitude", lon_given & ~lat_given),
    ]
    none = ~(lat_given & lon_given)
    parsed.columns.update(latitude=np.where(none, np.nan, lat), longitude=np.where(none, np.nan, lon))


def _parse_enum(parsed: _Parsed, name: str, text: pa.Array, table: Mapping[str, int]) -> None:
    values, known = _lookup(pc.utf8_lower(text), table, 0)
    reason = f"unknown {name.replace('_', ' ')} (expected an enum name or number)"
    parsed.problems.append(_Problem(name, reason, _given(text) & ~known))
    parsed.columns[name] = values.astype(np.int32)


def _parse_labels(parsed: _Parsed, label: pa.Array, scenario: pa.Array, label_time: pa.Array | None,
                  event: I64, options: ImportOptions) -> None:
    """is_fraud, the scenario ("" for legitimate rows) and when each fraud row's label arrives."""
    values, known = _lookup(pc.utf8_lower(label), _LABELS, 0)
    fraud = values.astype(np.bool_)
    parsed.problems.append(_Problem("label", "not a label (true/false, 1/0, yes/no, fraud/legit, chargeback)",
                                    _given(label) & ~known))
    parsed.problems.append(_Problem("scenario", f"longer than {MAX_ID_CHARS} characters", _too_long(scenario)))
    arrives = event + options.label_delay_s
    if label_time is not None:
        times = _times(label_time, "label_time")
        parsed.problems.extend(_check_time("label_time", times, required=False))
        early = fraud & times.ok & (times.seconds < event)
        parsed.problems.append(_Problem("label_time", "before the payment's own time", early))
        arrives = np.where(times.ok, times.seconds.astype(np.float64), arrives)
    parsed.columns.update(
        is_fraud=fraud,
        scenario=pc.if_else(pa.array(fraud), pc.utf8_lower(scenario), ""),
        label_time=np.where(fraud, arrives, np.inf).astype(np.float64),
    )


# --- from parsed columns to Payments ---------------------------------------------------------


def _finish(raw: _Raw, parsed: _Parsed, resolved: Mapping[str, str], options: ImportOptions) -> ImportedPayments:
    """Drop bad and duplicate rows, sort by time, check the share of bad rows, and build the result."""
    bad = np.zeros(raw.table.num_rows, np.bool_)
    for problem in parsed.problems:
        bad |= problem.mask
    duplicate = _duplicates(parsed.columns["transaction_id"], ~bad)
    parsed.problems.append(_Problem("transaction_id", "duplicate of an earlier row", duplicate))
    keep = np.flatnonzero(~bad & ~duplicate)
    order = keep[np.argsort(parsed.columns["event_time"][keep], kind="stable")]
    report = _report(raw, parsed, len(order), options)
    _check_enough(report, options)
    payments = Payments(**{name: _take(values, order) for name, values in parsed.columns.items()})
    provided = frozenset(resolved) & frozenset(OPTIONAL_FIELDS)
    return ImportedPayments(payments, provided, report, MappingProxyType(dict(resolved)))


def _duplicates(ids: pa.Array, candidates: B) -> B:
    """Candidate rows whose id an earlier candidate row already has (dictionary codes grow with first sightings)."""
    rows = np.flatnonzero(candidates)
    codes = _ints(pc.dictionary_encode(ids.take(pa.array(rows))).indices)
    seen_before = np.maximum.accumulate(np.concatenate([[-1], codes]))[:-1]
    duplicate = np.zeros(len(candidates), np.bool_)
    duplicate[rows[codes <= seen_before]] = True
    return duplicate


def _take(values: Any, order: I64) -> npt.NDArray[Any]:
    """Rows ``order`` of a parsed column, as NumPy (text as the narrowest ``str_`` dtype that fits)."""
    if isinstance(values, pa.Array):
        return _numpy_text(values.take(pa.array(order)))
    return np.ascontiguousarray(values[order])


def _numpy_text(values: pa.Array) -> S:
    """Arrow text as NumPy ``str_`` of the narrowest width. ASCII goes straight from the buffers: 10x faster."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = pc.fill_null(values.cast(pa.string()), "")
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset:values.offset + n + 1]
    data = values.buffers()[2]
    chars = np.frombuffer(data, np.uint8)[offsets[0]:offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    if chars.size and chars.max() >= 0x80:
        return np.asarray(_np(values).astype(np.str_))
    lengths = np.diff(offsets)
    width = max(1, int(lengths.max(initial=0)))
    codes = np.zeros((n, width), np.uint32)
    codes[np.arange(width) < lengths[:, None]] = chars  # row-major order is the buffer's order
    return codes.view(np.dtype(f"U{width}")).reshape(n)


def _report(raw: _Raw, parsed: _Parsed, imported: int, options: ImportOptions) -> ImportReport:
    """Counts per (field, reason) and the first bad rows, with row numbers as the file shows them."""
    found: list[tuple[str, str, I64]] = [(p.field, p.reason, raw.rows[p.mask]) for p in parsed.problems if p.mask.any()]
    if len(raw.misshapen):
        found.insert(0, ("row", "a different number of columns from the header", raw.misshapen))
    counts = tuple(ProblemCount(name, reason, len(rows), int(rows[0])) for name, reason, rows in found)
    k = options.max_reported_rows
    examples = sorted((int(r), name, reason) for name, reason, rows in found for r in rows[:k])  # rows ascend
    warnings = list(parsed.warnings)
    if raw.blank:
        warnings.append(f"{raw.blank:,} blank lines were skipped")
    return ImportReport(
        source=raw.source,
        row_unit=raw.row_unit,
        rows_read=raw.table.num_rows + len(raw.misshapen),
        rows_imported=imported,
        problems=tuple(sorted(counts, key=lambda p: (-p.rows, p.first_row))),
        examples=tuple(BadRow(r, name, reason) for r, name, reason in examples[:k]),
        warnings=tuple(warnings),
    )


def _check_enough(report: ImportReport, options: ImportOptions) -> None:
    """Fail the import when too many rows are bad or none is good, summing up why."""
    share = report.rows_rejected / report.rows_read
    if report.rows_imported and share <= options.max_bad_fraction:
        return
    reasons = "; ".join(f"{p.field}: {p.reason} ({p.rows:,} rows, e.g. {report.row_unit} {p.first_row})"
                        for p in report.problems[:8])
    more = f"; and {len(report.problems) - 8} more kinds of problem" if len(report.problems) > 8 else ""
    percent = f"{100 * share:.0f}%" if share < 1 else "all"
    raise ValidationError(report.source, f"{percent} of {report.rows_read:,} rows could not be read: {reasons}{more}")


# --- writing ---------------------------------------------------------------------------------


def write_payments(payments: Payments, path: str | os.PathLike[str]) -> None:
    """Write ``payments`` with canonical column names to a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.

    CSV holds text: ISO-8601 UTC times to the second, amounts in major units exact to the
    currency's exponent, enum names, label 1/0, empty cells for no location and for labels
    that never arrive. Parquet holds timestamp[s, UTC] times, decimal128(23, 4) amounts,
    float64 coordinates and a bool label. ``label_time`` is floored to whole seconds. The
    file appears whole or not at all (written aside, then renamed).
    """
    file = Path(path)
    kind = _file_kind(file)
    table = _csv_table(payments) if kind == "csv" else _parquet_table(payments)
    compress = file.name.lower().endswith(".gz")
    _write_atomically(file, lambda tmp: _write_table(table, tmp, kind, compress))


_CSV_ORDER = ("transaction_id", "timestamp", "amount", "currency", "card", "card_bin", "card_last4", "customer",
              "merchant", "mcc", "merchant_country", "device", "ip", "latitude", "longitude", "channel",
              "entry_mode", "label", "scenario", "label_time")


def _common_columns(p: Payments) -> dict[str, pa.Array]:
    """The columns written the same way to CSV and Parquet."""
    text = _arrow_text
    return {
        "transaction_id": text(p.transaction_id), "currency": text(p.currency), "card": text(p.card_token),
        "card_bin": text(p.card_bin), "card_last4": text(p.card_last4), "customer": text(p.customer_id),
        "merchant": text(p.merchant_id), "merchant_country": text(p.merchant_country), "device": text(p.device_id),
        "ip": text(p.ip_address), "channel": _enum_text(p.channel, pb.Channel.items()),
        "entry_mode": _enum_text(p.entry_mode, pb.EntryMode.items()), "scenario": text(p.scenario),
    }  # fmt: skip


def _arrow_text(values: S) -> pa.Array:
    """NumPy ``str_`` as Arrow text. ASCII goes straight to the buffers: several times faster than ``pa.array``."""
    width = max(1, values.dtype.itemsize // 4)
    codes = np.ascontiguousarray(values, dtype=f"U{width}").view(np.uint32).reshape(len(values), width)
    lengths = np.char.str_len(values).astype(np.int64)
    if lengths.sum() >= 2**31 or (codes.size and codes.max() >= 0x80):
        return pa.array(values, pa.string())
    chars = codes[np.arange(width) < lengths[:, None]].astype(np.uint8)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.StringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(chars))


def _csv_table(p: Payments) -> pa.Table:
    columns = _common_columns(p) | {
        "timestamp": _iso_seconds(p.event_time),
        "amount": _major_text(p.amount_minor, p.currency),
        "mcc": pc.cast(pa.array(p.mcc), pa.string()),
        "latitude": _float_text(p.latitude),
        "longitude": _float_text(p.longitude),
        "label": pa.array(np.where(p.is_fraud, "1", "0")),
        "label_time": _label_time_text(p.label_time),
    }
    return pa.table({name: columns[name] for name in _CSV_ORDER})


def _parquet_table(p: Payments) -> pa.Table:
    finite = np.isfinite(p.label_time)
    columns = _common_columns(p) | {
        "timestamp": pa.array(p.event_time, pa.timestamp("s", "UTC")),
        "amount": pc.cast(_major_text(p.amount_minor, p.currency), pa.decimal128(23, 4)),
        "mcc": pa.array(p.mcc, pa.int32()),
        "latitude": pa.array(p.latitude, pa.float64(), mask=np.isnan(p.latitude)),
        "longitude": pa.array(p.longitude, pa.float64(), mask=np.isnan(p.longitude)),
        "label": pa.array(p.is_fraud, pa.bool_()),
        "label_time": pa.array(np.floor(np.where(finite, p.label_time, 0.0)).astype(np.int64),
                               pa.timestamp("s", "UTC"), mask=~finite),
    }
    return pa.table({name: columns[name] for name in _CSV_ORDER})


def _iso_seconds(seconds: I64) -> pa.Array:
    """'YYYY-MM-DDTHH:MM:SSZ' per epoch second."""
    text = pc.cast(pa.array(seconds, pa.timestamp("s")), pa.string())  # 'YYYY-MM-DD HH:MM:SS'
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, start=10, stop=11, replacement="T"), "Z", "")


def _label_time_text(label_time: F64) -> pa.Array:
    finite = np.isfinite(label_time)
    text = _iso_seconds(np.floor(np.where(finite, label_time, 0.0)).astype(np.int64))
    return pc.if_else(pa.array(finite), text, "")


def _float_text(values: F64) -> pa.Array:
    """Shortest text that reads back to the same float64; empty for NaN."""
    return pc.if_else(pa.array(np.isnan(values)), "", pc.cast(pa.array(values, pa.float64()), pa.string()))


def _major_text(minor: I64, currency: S) -> pa.Array:
    """Minor units as major-unit decimal text with exactly the currency's decimals: 1234 USD -> '12.34', JPY '1200'."""
    exponent = _exponents(currency)
    scale = 10**exponent
    magnitude = np.abs(minor)
    whole = pc.cast(pa.array(magnitude // scale), pa.string())
    # scale + remainder has a leading 1 and then exactly `exponent` digits: drop the 1
    fraction = pc.utf8_slice_codeunits(pc.cast(pa.array(scale + magnitude % scale), pa.string()), 1)
    text = pc.if_else(pa.array(exponent == 0), whole, pc.binary_join_element_wise(whole, fraction, "."))
    return pc.if_else(pa.array(minor < 0), pc.binary_join_element_wise("-", text, ""), text)


def _exponents(currency: S) -> I64:
    codes, inverse = np.unique(currency, return_inverse=True)
    unknown = [str(c) for c in codes if str(c) not in EXPONENTS]
    if unknown:
        raise ValidationError("currency", f"cannot write amounts in unknown currencies: {', '.join(unknown[:5])}")
    return np.array([EXPONENTS[str(c)] for c in codes], np.int64)[inverse.reshape(-1)]


def _enum_text(values: I32, items: Iterable[tuple[str, int]]) -> pa.Array:
    """Enum names per value (the number itself for a value the enum does not have)."""
    by_value = {v: k for k, v in items}
    names = pa.array([by_value.get(v, str(v)) for v in range(max(by_value) + 1)], pa.string())
    known = (values >= 0) & (values < len(names))
    text = pc.take(names, pa.array(np.where(known, values, 0)))
    return text if known.all() else pc.if_else(pa.array(known), text, pc.cast(pa.array(values), pa.string()))


def _write_table(table: pa.Table, path: Path, kind: FileKind, compress: bool) -> None:
    if kind == "parquet":
        pq.write_table(table, str(path))
    elif compress:  # Python's zlib at level 3: pyarrow's gzip stream is ~10x slower
        with gzip.open(path, "wb", compresslevel=3) as out:
            pv.write_csv(table, out)
    else:
        pv.write_csv(table, str(path))


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a hidden temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

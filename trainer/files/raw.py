"""A file's header and data rows as read, before any field is parsed, with the row numbers a person sees.

CSV (optionally gzipped) is read as text, every cell; Parquet as its own types. A file that
cannot be read at all is a ``ValidationError`` naming it.
"""

from __future__ import annotations

import codecs
import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from fraudguard.errors import ValidationError
from fraudguard.redaction import redact
from trainer.files.arrays import I64, B
from trainer.files.results import RowUnit

FileKind = Literal["csv", "parquet"]


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

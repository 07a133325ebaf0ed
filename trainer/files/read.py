"""``read_payments``: a file, through a column mapping, to ``Payments``; bad rows left out and reported."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fraudguard.errors import ValidationError
from trainer.files.arrays import I64, B, S, _ints, _np
from trainer.files.mapping import OPTIONAL_FIELDS, ColumnMapping
from trainer.files.parse import _parse
from trainer.files.parse_shared import _Parsed, _Problem
from trainer.files.raw import _arrow_detail, _Raw, _read_raw
from trainer.files.results import BadRow, ImportedPayments, ImportOptions, ImportReport, ProblemCount
from trainer.payments import Payments

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

"""What the decision writer stores: a single :class:`DecisionRecord` (one row) or a :class:`DecisionBlock` (the
scored transactions of one request message), with their journal encodings and their table rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scoring.record.block import (
    BLOCK_VERSIONS,
    DecisionBlock,
    Seal,
    block_copy_rows,
    block_rows,
    is_small,
    mergeable,
    merged_copy_rows,
)
from scoring.record.rows import READ_VERSIONS, CopyRows, DecisionRecord, decode, encode, record_copy_rows, to_row

Item = DecisionRecord | DecisionBlock
MERGE_SMALL_BLOCKS = True  # runs of small blocks laid out together (tests turn it off to check the row-by-row way)
Row = tuple[Any, ...]


def row_count(item: Item) -> int:
    return 1 if isinstance(item, DecisionRecord) else len(item)


def encode_item(item: Item) -> bytes:
    return encode(item) if isinstance(item, DecisionRecord) else item.encode()


def decode_item(payload: bytes) -> Item:
    """The item :func:`encode_item` wrote (the first byte tells which kind); ValueError for anything else."""
    if payload[:1] and payload[0] in BLOCK_VERSIONS:
        return DecisionBlock.decode(payload)
    if payload[:1] and payload[0] in READ_VERSIONS:
        return decode(payload)
    raise ValueError(f"decision journal payload of unknown version {payload[:1]!r}")


def item_rows(item: Item, seal: Seal | None, key_id: str | None) -> list[Row]:
    """The ``decisions`` rows of ``item``, in :data:`scoring.record.rows.COLUMNS` order."""
    if isinstance(item, DecisionRecord):
        return [to_row(item)]
    return block_rows(item, seal, key_id)


def rows_of(items: Sequence[Item], seal: Seal | None, key_id: str | None) -> list[Row]:
    rows: list[Row] = []
    for item in items:
        rows.extend(item_rows(item, seal, key_id))
    return rows


def item_copy_rows(item: Item, seal: Seal | None, key_id: str | None) -> CopyRows:
    """The rows of :func:`item_rows`, value for value, in PostgreSQL's binary COPY format
    (:data:`scoring.record.rows.COPY_COLUMNS` order)."""
    if isinstance(item, DecisionRecord):
        return record_copy_rows(item)
    return block_copy_rows(item, seal, key_id)


def copy_rows_of(items: Sequence[Item], seal: Seal | None, key_id: str | None) -> list[CopyRows]:
    """The rows of every item, in order; runs of small blocks of one model version (unary calls) are laid out
    together, as one big block would be."""
    out: list[CopyRows] = []
    run: list[DecisionBlock] = []
    for item in items:
        if MERGE_SMALL_BLOCKS and isinstance(item, DecisionBlock) and is_small(item):
            if run and not mergeable(run[0], item):
                _flush_run(run, out, seal, key_id)
            run.append(item)
            continue
        _flush_run(run, out, seal, key_id)
        out.append(item_copy_rows(item, seal, key_id))
    _flush_run(run, out, seal, key_id)
    return out


def _flush_run(run: list[DecisionBlock], out: list[CopyRows], seal: Seal | None, key_id: str | None) -> None:
    if len(run) == 1:
        out.append(block_copy_rows(run[0], seal, key_id))
    elif run:
        out.append(merged_copy_rows(run, seal, key_id))
    run.clear()

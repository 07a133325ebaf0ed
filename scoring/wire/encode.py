"""Response bytes straight from a ``ScoredBatch``: the protobuf wire format of ``fraud.v1.ScoreResponse`` and
``ScoreBatchResponse`` / ``ScoreStreamResponse``, written by one Numba call per message.

The bytes equal ``SerializeToString()`` of the messages ``serde.fill_decisions`` / ``serde.results_into``
build (python-protobuf on upb): fields in field-number order, proto3 implicit presence (a double is
written unless its bits are all zero, so ``-0.0`` and NaN are written), reason texts by
``scoring.wire.reason_text``. The kernel formats the texts, measures every message, then writes them
into a buffer of the exact size. A text that only Python formats identically (rare, see reason_text)
makes it answer an empty array; the wrapper then has all texts formatted (Python doing those) and
runs the kernel again with them. Failed items (``ItemFailure``) are few: serialized by protobuf and
spliced between the scored rows' entries, which a repeated field allows. A rule's ``RuleHit`` entry is the same
for every transaction it hits: each rule set's entries are serialized once (``HitTable``) and the kernel copies
those of each row's hits between its reasons and its model version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from numba import njit

from fraudguard.proto.fraud.v1 import scoring_pb2
from scoring.features.schema import FEATURES
from scoring.rules import RuleSet
from scoring.scorer import ScoredBatch
from scoring.serde import ItemFailure, error_result
from scoring.wire.reason_text import N_COLUMNS, ReasonTexts, copy_bytes, format_texts, text_capacity

# Columns of the encoder's table after ReasonTexts' own: where each feature's name lies in the blob.
COL_NAME_START, COL_NAME_LEN = N_COLUMNS, N_COLUMNS + 1
# Wire tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited).
_TAG_DECISION_ID, _TAG_SCORE, _TAG_ACTION, _TAG_REASON, _TAG_TIME = 0x0A, 0x11, 0x18, 0x22, 0x41
_TAG_REASON_FEATURE, _TAG_REASON_VALUE, _TAG_REASON_CONTRIBUTION, _TAG_REASON_TEXT = 0x0A, 0x11, 0x19, 0x22
_TAG_RESULT_ID, _TAG_RESULT_DECISION, _TAG_RESULTS, _TAG_RESPONSE_DECISION = 0x0A, 0x12, 0x0A, 0x0A


@dataclass(frozen=True, slots=True, eq=False)
class EncoderTable:
    """Reason texts and feature names for the kernel: one literal blob, one int64 row per feature."""

    texts: ReasonTexts
    blob: npt.NDArray[np.uint8]
    index: npt.NDArray[np.int64]  # [n_features, N_COLUMNS + 2]

    @classmethod
    def build(cls, names: Sequence[str], templates: Sequence[str]) -> EncoderTable:
        if len(names) != len(templates):
            raise ValueError(f"{len(names)} names for {len(templates)} templates")
        texts = ReasonTexts.compile(templates)
        encoded = [name.encode() for name in names]
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        starts = texts.blob.shape[0] + np.cumsum(lengths) - lengths
        blob = np.concatenate([texts.blob, np.frombuffer(b"".join(encoded), dtype=np.uint8)])
        index = np.ascontiguousarray(np.hstack([texts.index, np.stack([starts, lengths], axis=1)]), dtype=np.int64)
        return cls(texts, blob, index)


TABLE = EncoderTable.build([f.name for f in FEATURES], [f.reason for f in FEATURES])
_NO_TEXTS = np.empty(0, dtype=np.uint8)
_NO_SPANS = np.empty((0, 0, 2), dtype=np.int64)
_NO_ROW_ENDS = np.empty(0, dtype=np.int64)
_NO_HITS = np.empty((0, 0), dtype=np.bool_)


@dataclass(frozen=True, slots=True, eq=False)
class HitTable:
    """Each rule's ``Decision.rule_hits`` entry (tag, length, ``RuleHit{rule_id, action, description}``), one blob;
    ``spans[r]`` is rule r's (start, length) in it."""

    blob: npt.NDArray[np.uint8]
    spans: npt.NDArray[np.int64]  # [n_rules, 2]

    @classmethod
    def build(cls, rules: RuleSet) -> HitTable:
        entries = [_hit_entry(r.rule_id, scoring_pb2.Action.Name(r.action.value), r.description) for r in rules.rules]
        lengths = np.array([len(e) for e in entries], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        blob = np.frombuffer(b"".join(entries), dtype=np.uint8).copy()
        return cls(blob, np.ascontiguousarray(np.stack([starts, lengths], axis=1).reshape(-1, 2), dtype=np.int64))


def _hit_entry(rule_id: str, action: str, description: str) -> bytes:
    hit = scoring_pb2.RuleHit(rule_id=rule_id, action=action, description=description)
    return scoring_pb2.Decision(rule_hits=[hit]).SerializeToString()


_NO_HIT_TABLE = HitTable(np.empty(0, dtype=np.uint8), np.empty((0, 2), dtype=np.int64))


@lru_cache(maxsize=8)
def _hit_table(rules: RuleSet) -> HitTable:
    return HitTable.build(rules)


def _hits(scored: ScoredBatch) -> tuple[npt.NDArray[np.bool_], HitTable]:
    if scored.rule_set is None or scored.rule_hits is None:
        return _NO_HITS, _NO_HIT_TABLE
    return np.ascontiguousarray(scored.rule_hits), _hit_table(scored.rule_set)


# --- public API ------------------------------------------------------------------------------------


def encode_score_response(scored: ScoredBatch, id_buffer: npt.NDArray[np.uint8], id_start: int, id_len: int,
                          rule_set_version: str = "") -> bytes:
    """``fraud.v1.ScoreResponse{decision}`` for row 0 of ``scored``; its transaction id is
    ``id_buffer[id_start:id_start + id_len]`` (UTF-8). ``rule_set_version`` defaults to that of ``scored``."""
    s, tail = scored, _decision_tail(scored.model_version, rule_set_version or scored.rule_set_version)
    hits, table = _hits(s)
    out = _encode_response(s.features, s.scores, s.actions, s.reason_index, s.reason_contribution, id_buffer,
                           id_start, id_len, tail, s.server_time_us, TABLE.blob, TABLE.index, _NO_TEXTS, _NO_SPANS,
                           hits, table.blob, table.spans)
    if out.shape[0] == 0:  # a text that only Python formats identically (rare): again, with all texts given
        texts, spans = TABLE.texts.format_all(s.features[:1], s.reason_index[:1])
        out = _encode_response(s.features, s.scores, s.actions, s.reason_index, s.reason_contribution, id_buffer,
                               id_start, id_len, tail, s.server_time_us, TABLE.blob, TABLE.index, texts, spans,
                               hits, table.blob, table.spans)
    return out.tobytes()


def encode_results(scored: ScoredBatch | None, id_buffer: npt.NDArray[np.uint8], id_start: npt.NDArray[np.int64],
                   id_len: npt.NDArray[np.int64], failures: Sequence[ItemFailure], n_requested: int,
                   rule_set_version: str = "") -> bytes:
    """``fraud.v1.ScoreBatchResponse`` (the same bytes as ``ScoreStreamResponse``): one ``ScoreResult`` per
    requested transaction, in request order. Scored row k answers the k-th transaction not in ``failures``
    (``ItemFailure.index`` is its request index); row k's id is ``id_buffer[id_start[k]:][:id_len[k]]``.
    ``rule_set_version`` defaults to that of ``scored``."""
    n_scored = 0 if scored is None else scored.scores.shape[0]
    if n_scored != n_requested - len(failures) or id_start.shape[0] != n_scored or id_len.shape[0] != n_scored:
        raise ValueError(f"{n_requested} requested and {len(failures)} failed, but {n_scored} scored rows, "
                         f"{id_start.shape[0]} id starts and {id_len.shape[0]} id lengths")
    ordered = sorted(failures, key=_by_index) if failures else []
    positions = _failure_positions(ordered, n_requested)
    if scored is None or n_scored == 0:
        return b"".join(_failure_bytes(f) for f in ordered)
    row_ends = np.empty(n_scored, dtype=np.int64) if failures else _NO_ROW_ENDS
    s, tail = scored, _decision_tail(scored.model_version, rule_set_version or scored.rule_set_version)
    hits, table = _hits(s)
    out = _encode(s.features, s.scores, s.actions, s.reason_index, s.reason_contribution, id_buffer, id_start, id_len,
                  tail, s.server_time_us, TABLE.blob, TABLE.index, _NO_TEXTS, _NO_SPANS, True, row_ends, hits,
                  table.blob, table.spans)
    if out.shape[0] == 0:  # a text that only Python formats identically (rare): again, with all texts given
        texts, spans = TABLE.texts.format_all(s.features, s.reason_index)
        out = _encode(s.features, s.scores, s.actions, s.reason_index, s.reason_contribution, id_buffer, id_start,
                      id_len, tail, s.server_time_us, TABLE.blob, TABLE.index, texts, spans, True, row_ends, hits,
                      table.blob, table.spans)
    if not failures:
        return out.tobytes()
    return _splice(out, row_ends, positions, [_failure_bytes(f) for f in ordered])


# --- Python side: constants per model, failures ---------------------------------------------------


@lru_cache(maxsize=64)
def _decision_tail(model_version: str, rule_set_version: str) -> npt.NDArray[np.uint8]:
    """Decision fields 6 and 7 (model_version, rule_set_version), the same for every row: encoded once."""
    tail = scoring_pb2.Decision(model_version=model_version, rule_set_version=rule_set_version).SerializeToString()
    return np.frombuffer(tail, dtype=np.uint8).copy()


def _by_index(failure: ItemFailure) -> int:
    return failure.index


def _failure_positions(ordered: Sequence[ItemFailure], n_requested: int) -> list[int]:
    """For each failure (in request order), how many scored rows precede it."""
    if not ordered:
        return []
    indexes = [f.index for f in ordered]
    if len(set(indexes)) != len(indexes) or not 0 <= indexes[0] <= indexes[-1] < n_requested:
        raise ValueError(f"failure indexes must be distinct and in 0..{n_requested - 1}, got {indexes}")
    return [index - before for before, index in enumerate(indexes)]


def _failure_bytes(failure: ItemFailure) -> bytes:
    """One ``results`` entry (tag, length, ``ScoreResult{transaction_id, error}``), as results_into builds it."""
    return scoring_pb2.ScoreBatchResponse(results=[error_result(failure)]).SerializeToString()


def _splice(out: npt.NDArray[np.uint8], row_ends: npt.NDArray[np.int64], positions: Sequence[int],
            inserts: Sequence[bytes]) -> bytes:
    """``out`` (the scored rows' entries) with ``inserts[i]`` placed before scored row ``positions[i]``."""
    view = out.data
    pieces: list[bytes | memoryview] = []
    done = 0
    for position, insert in zip(positions, inserts, strict=True):
        cut = int(row_ends[position - 1]) if position > 0 else 0
        pieces += (view[done:cut], insert)
        done = cut
    pieces.append(view[done:])
    return b"".join(pieces)


# --- Numba -----------------------------------------------------------------------------------------
# The arrays go to a kernel once per message and stay there: the helpers called in its loops get at
# most ``out`` and one source array and have no branch around their writes, so Numba's reference
# counting of array arguments is pruned away (a call with arrays to a larger helper costs atomic
# increments and decrements per call, which here would outweigh the work).


@njit(cache=True, nogil=True)
def _encode_response(features: npt.NDArray[np.float32], scores: npt.NDArray[np.float64],
                     actions: npt.NDArray[np.int64], reason_index: npt.NDArray[np.int64],
                     reason_contribution: npt.NDArray[np.float64], id_buffer: npt.NDArray[np.uint8], id_start: int,
                     id_len: int, tail: npt.NDArray[np.uint8], server_time_us: float, blob: npt.NDArray[np.uint8],
                     index: npt.NDArray[np.int64], texts: npt.NDArray[np.uint8],
                     text_spans: npt.NDArray[np.int64], hits: npt.NDArray[np.bool_], hit_blob: npt.NDArray[np.uint8],
                     hit_spans: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """``ScoreResponse{decision}`` for row 0 (see ``_encode``)."""
    if reason_index.shape[0] < 1:
        raise ValueError("scored holds no rows")
    span = np.empty(2, dtype=np.int64)
    span[0], span[1] = id_start, id_len
    return _encode(features[:1], scores[:1], actions[:1], reason_index[:1], reason_contribution[:1], id_buffer,
                   span[:1], span[1:], tail, server_time_us, blob, index, texts, text_spans, False, span[:0],
                   hits[:1], hit_blob, hit_spans)


@njit(cache=True, nogil=True)
def _encode(features: npt.NDArray[np.float32], scores: npt.NDArray[np.float64], actions: npt.NDArray[np.int64],
            reason_index: npt.NDArray[np.int64], reason_contribution: npt.NDArray[np.float64],
            id_buffer: npt.NDArray[np.uint8], id_start: npt.NDArray[np.int64], id_len: npt.NDArray[np.int64],
            tail: npt.NDArray[np.uint8], server_time_us: float, blob: npt.NDArray[np.uint8],
            index: npt.NDArray[np.int64], texts: npt.NDArray[np.uint8], text_spans: npt.NDArray[np.int64],
            as_results: bool, row_ends: npt.NDArray[np.int64], hits: npt.NDArray[np.bool_],
            hit_blob: npt.NDArray[np.uint8], hit_spans: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """Every row as a ``results`` entry (``ScoreResult{transaction_id, decision}``) if ``as_results``, else as
    ``ScoreResponse.decision``, concatenated. Reason texts are formatted here unless given (``texts``,
    ``text_spans`` [n, k, 2]); an empty array if one must come from Python. Fills ``row_ends[i]`` (where row i's
    bytes end) unless ``row_ends`` is empty. ``hits`` [n, n_rules] (or [0, 0]: no rules) says which rules hit
    row i; rule r's whole ``rule_hits`` entry is ``hit_blob[hit_spans[r, 0]:][:hit_spans[r, 1]]``.

    One function on purpose: each call of a Numba function with arrays that loops costs two atomic reference
    count operations per array, which at one transaction would weigh more than the writing itself."""
    n, k = reason_index.shape
    _check_shapes(n, k, features.shape[0], features.shape[1], scores.shape[0], actions.shape[0],
                  reason_contribution.shape[0], reason_contribution.shape[1], id_start.shape[0], id_len.shape[0],
                  index.shape[0])
    n_rules = hits.shape[1]
    if n_rules > 0 and (hits.shape[0] != n or hit_spans.shape[0] != n_rules):
        raise ValueError("rule hits do not match the rows or the rules")
    if text_spans.shape[0] != n:
        texts = np.empty(text_capacity(index, reason_index), dtype=np.uint8)
        text_spans = np.empty((n, k, 2), dtype=np.int64)
        if format_texts(blob, index, features, reason_index, texts, text_spans) > 0:
            return np.empty(0, dtype=np.uint8)
    # Measure: sizes[i, 0] is row i's Decision, sizes[i, 1 + j] its j-th Reason.
    sizes = np.empty((n, k + 1), dtype=np.int64)
    total, fixed = 0, tail.shape[0] + _double_size(server_time_us)
    for i in range(n):
        if id_start[i] < 0 or id_len[i] < 0 or id_start[i] + id_len[i] > id_buffer.shape[0]:
            raise ValueError("transaction id span outside id_buffer")
        size = fixed + _string_size(id_len[i]) + _double_size(scores[i]) + _enum_size(actions[i])
        for j in range(k):
            f = reason_index[i, j]
            if not 0 <= f < index.shape[0]:
                raise ValueError("reason_index holds a feature index out of range")
            reason = (_string_size(index[f, COL_NAME_LEN]) + _double_size(np.float64(features[i, f]))
                      + _double_size(reason_contribution[i, j]) + _string_size(text_spans[i, j, 1]))
            sizes[i, 1 + j] = reason
            size += _message_size(reason)
        for r in range(n_rules):
            if hits[i, r]:
                size += hit_spans[r, 1]
        sizes[i, 0] = size
        total += _message_size(_string_size(id_len[i]) + _message_size(size)) if as_results else _message_size(size)
    # Write, in field-number order, leaving fields at their default out.
    out = np.empty(total, dtype=np.uint8)
    pos = 0
    for i in range(n):
        if as_results:
            pos = _put_tag_varint(out, pos, _TAG_RESULTS, _string_size(id_len[i]) + _message_size(sizes[i, 0]))
            if id_len[i] > 0:
                pos = _put_field(out, pos, _TAG_RESULT_ID, id_buffer, id_start[i], id_len[i])
            pos = _put_tag_varint(out, pos, _TAG_RESULT_DECISION, sizes[i, 0])
        else:
            pos = _put_tag_varint(out, pos, _TAG_RESPONSE_DECISION, sizes[i, 0])
        if id_len[i] > 0:
            pos = _put_field(out, pos, _TAG_DECISION_ID, id_buffer, id_start[i], id_len[i])
        if _bits(scores[i]) != 0:
            pos = _put_double(out, pos, _TAG_SCORE, scores[i])
        if actions[i] != 0:
            pos = _put_tag_varint(out, pos, _TAG_ACTION, actions[i])
        for j in range(k):
            f = reason_index[i, j]
            value, contribution = np.float64(features[i, f]), reason_contribution[i, j]
            pos = _put_tag_varint(out, pos, _TAG_REASON, sizes[i, 1 + j])
            if index[f, COL_NAME_LEN] > 0:
                pos = _put_field(out, pos, _TAG_REASON_FEATURE, blob, index[f, COL_NAME_START], index[f, COL_NAME_LEN])
            if _bits(value) != 0:
                pos = _put_double(out, pos, _TAG_REASON_VALUE, value)
            if _bits(contribution) != 0:
                pos = _put_double(out, pos, _TAG_REASON_CONTRIBUTION, contribution)
            if text_spans[i, j, 1] > 0:
                pos = _put_field(out, pos, _TAG_REASON_TEXT, texts, text_spans[i, j, 0], text_spans[i, j, 1])
        for r in range(n_rules):
            if hits[i, r]:
                pos = copy_bytes(out, pos, hit_blob, hit_spans[r, 0], hit_spans[r, 1])
        pos = copy_bytes(out, pos, tail, 0, tail.shape[0])
        if _bits(server_time_us) != 0:
            pos = _put_double(out, pos, _TAG_TIME, server_time_us)
        if row_ends.shape[0] > 0:
            row_ends[i] = pos
    return out


@njit(cache=True, nogil=True)
def _check_shapes(n: int, k: int, n_features_rows: int, n_features: int, n_scores: int, n_actions: int,
                  n_contribution_rows: int, n_contributions: int, n_id_starts: int, n_id_lens: int,
                  n_table: int) -> None:
    if not n == n_features_rows == n_scores == n_actions == n_contribution_rows == n_id_starts == n_id_lens:
        raise ValueError("scored arrays and ids differ in length")
    if n_features != n_table or n_contributions != k:
        raise ValueError("features or contributions do not match the reasons")


# Sizes. proto3 leaves a scalar field at its default out (a double whose bits are all zero, a zero enum, an
# empty string); a message in a repeated or oneof field is always written, even when empty.


@njit(cache=True, nogil=True)
def _bits(value: float) -> int:
    return int(np.float64(value).view(np.int64))


@njit(cache=True, nogil=True)
def _varint_size(value: int) -> int:
    """Bytes of ``value`` as a varint; a negative int64 takes 10 (two's complement, as for int32 enums)."""
    size = 1
    value = (value >> 7) & 0x01FF_FFFF_FFFF_FFFF
    while value != 0:
        size += 1
        value >>= 7
    return size


@njit(cache=True, nogil=True)
def _double_size(value: float) -> int:
    return 0 if _bits(value) == 0 else 9


@njit(cache=True, nogil=True)
def _enum_size(value: int) -> int:
    return 0 if value == 0 else 1 + _varint_size(value)


@njit(cache=True, nogil=True)
def _string_size(length: int) -> int:
    return 0 if length <= 0 else 1 + _varint_size(length) + length


@njit(cache=True, nogil=True)
def _message_size(length: int) -> int:
    return 1 + _varint_size(length) + length


# Writers: each writes one whole field (or a field's tag and length) at ``out[pos:]`` and returns its end.


@njit(cache=True, nogil=True)
def _put_varint(out: npt.NDArray[np.uint8], pos: int, value: int) -> int:
    at = np.uint64(pos)
    while value > 0x7F or value < 0:
        out[at] = (value & 0x7F) | 0x80
        value = (value >> 7) & 0x01FF_FFFF_FFFF_FFFF  # a logical shift, also for a negative value
        at += np.uint64(1)
    out[at] = value
    return int(at) + 1


@njit(cache=True, nogil=True)
def _put_tag_varint(out: npt.NDArray[np.uint8], pos: int, tag: int, value: int) -> int:
    """A varint field, or the tag and length of a length-delimited one."""
    out[pos] = tag
    return _put_varint(out, pos + 1, value)


@njit(cache=True, nogil=True)
def _put_field(out: npt.NDArray[np.uint8], pos: int, tag: int, src: npt.NDArray[np.uint8], start: int,
               length: int) -> int:
    """A length-delimited field holding ``src[start:start + length]``."""
    return copy_bytes(out, _put_tag_varint(out, pos, tag, length), src, start, length)


@njit(cache=True, nogil=True)
def _put_double(out: npt.NDArray[np.uint8], pos: int, tag: int, value: float) -> int:
    """A fixed64 field: the double's bits, little-endian."""
    bits = np.float64(value).view(np.uint64)
    at = np.uint64(pos)
    out[at] = tag
    for b in range(8):
        out[at + np.uint64(1 + b)] = (bits >> np.uint64(8 * b)) & np.uint64(0xFF)
    return pos + 9

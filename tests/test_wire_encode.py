"""The Numba response encoder against the protobuf path it replaces (``fill_decisions`` / ``results_into`` then
``SerializeToString``): the same bytes, for random scored batches full of awkward values, for real ones from
a model, with failures anywhere, non-ASCII ids and model versions, and the rare texts Python formats."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features import EngineCapacity, FeatureEngine
from scoring.features.batch import N_INTS, N_REALS, TransactionBatch
from scoring.features.schema import FEATURES, N_FEATURES
from scoring.model import load_promoted
from scoring.rules import RuleSet
from scoring.scorer import ScoredBatch, Scorer
from scoring.serde import ItemFailure, batch_from_proto, fill_decisions, results_into
from scoring.wire.encode import TABLE, encode_results, encode_score_response
from scoring.wire.reason_text import format_texts, text_capacity
from tests.conftest import make_transaction

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
AMOUNT = next(i for i, f in enumerate(FEATURES) if f.name == "amount")
SPECIAL_VALUES = np.array([0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 1e-45, -1e-45, 0.125, 2.5, -0.001,
                           0.0005, 1234567.125, 16777216.0, 3e38, -3e38, 1.0, -1.0], dtype=np.float32)
SPECIAL_DOUBLES = np.array([0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1.0, 1e300], dtype=np.float64)
ID_TEXT = st.text(st.characters(codec="utf-8"), max_size=24)  # any valid UTF-8


# ---------------------------------------------------------------------------------------------------
# The reference: what the servicer builds today
# ---------------------------------------------------------------------------------------------------


def reference_response(scored: ScoredBatch, transaction_id: str, rule_set_version: str) -> scoring_pb2.ScoreResponse:
    response = scoring_pb2.ScoreResponse()
    fill_decisions([response.decision], scored, [transaction_id], rule_set_version)
    return response


def reference_results(scored: ScoredBatch | None, ids: Sequence[str], failures: Sequence[ItemFailure],
                      n_requested: int, rule_set_version: str = "") -> scoring_pb2.ScoreBatchResponse:
    """``results_into`` (which knows no rule set version; it is set on the decisions afterwards)."""
    response = scoring_pb2.ScoreBatchResponse()
    n = len(ids)
    batch = TransactionBatch.packed(tuple(ids), np.zeros((N_REALS, n)), np.zeros((N_INTS, n), dtype=np.int64))
    results_into(response.results, scored, batch, n_requested, failures)
    if rule_set_version:
        for result in response.results:
            if result.HasField("decision"):
                result.decision.rule_set_version = rule_set_version
    return response


def pack_ids(ids: Sequence[str], readonly: bool = False) -> tuple[U8, I64, I64]:
    """The ids' UTF-8 in one buffer, with a byte of padding around each (as inside request bytes)."""
    encoded = [i.encode() for i in ids]
    lengths = np.array([len(e) for e in encoded], dtype=np.int64)
    starts = np.cumsum(lengths + 2) - lengths - 1
    data = b"".join(b"\x12" + e + b"\x22" for e in encoded)
    buffer = np.frombuffer(data, dtype=np.uint8)
    return (buffer if readonly else buffer.copy()), starts.astype(np.int64), lengths


def has_nan(message: scoring_pb2.ScoreResponse | scoring_pb2.ScoreBatchResponse) -> bool:
    decisions = [message.decision] if isinstance(message, scoring_pb2.ScoreResponse) else [
        r.decision for r in message.results]
    doubles = [v for d in decisions for v in (d.score, d.server_time_us)]
    doubles += [v for d in decisions for r in d.reasons for v in (r.value, r.contribution)]
    return any(math.isnan(v) for v in doubles)


def assert_same(got: bytes, reference: scoring_pb2.ScoreResponse | scoring_pb2.ScoreBatchResponse) -> None:
    """Byte for byte, and parsed back (message equality, which NaN defeats, when there is none)."""
    assert got == reference.SerializeToString()
    parsed = type(reference).FromString(got)
    if not has_nan(reference):
        assert parsed == reference
    if isinstance(reference, scoring_pb2.ScoreBatchResponse):  # the stream response is the same message
        assert scoring_pb2.ScoreStreamResponse.FromString(got).SerializeToString() == got


# ---------------------------------------------------------------------------------------------------
# Random scored batches
# ---------------------------------------------------------------------------------------------------


def sprinkle(rng: np.random.Generator, values: npt.NDArray[np.float64] | npt.NDArray[np.float32],
             special: npt.NDArray[np.float64] | npt.NDArray[np.float32], rate: float) -> None:
    where = rng.random(values.shape) < rate
    values[where] = rng.choice(special, size=int(where.sum()))


@st.composite
def scored_batches(draw: st.DrawFn, rows: int | None = None) -> ScoredBatch:
    n = draw(st.integers(1, 10)) if rows is None else rows
    k = draw(st.sampled_from((3, 0, 1, 2, 5)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    features = (rng.normal(size=(n, N_FEATURES)) * 10.0 ** rng.integers(-5, 12, size=(n, N_FEATURES)))
    features = features.astype(np.float32)
    sprinkle(rng, features, SPECIAL_VALUES, draw(st.sampled_from((0.0, 0.1, 0.5))))
    scores = rng.random(n)
    sprinkle(rng, scores, SPECIAL_DOUBLES, 0.2)
    actions = rng.choice(np.array([0, 1, 2, 3, 4, 1, 2, 7, -1], dtype=np.int64), size=n)
    contributions = rng.normal(size=(n, k))
    sprinkle(rng, contributions, SPECIAL_DOUBLES, 0.2)
    reason_index = rng.integers(0, N_FEATURES, size=(n, k))
    model_version = draw(st.sampled_from(("demo-2026-11", "", "modèle-β ✓")) | ID_TEXT)
    server_time_us = draw(st.sampled_from((12.25, 0.0, -0.0, math.nan)) | st.floats())
    return ScoredBatch(features, scores, actions, reason_index, contributions, model_version, server_time_us)


def failure(index: int, transaction_id: str) -> ItemFailure:
    field = f"transactions[{index}].amount_minor"
    return ItemFailure(index, transaction_id, ValidationError(field, "must be between 0 and 10^15 — ✗"))


@given(scored_batches(), ID_TEXT, st.sampled_from(("", "rules-7", "règles")))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_score_response_matches_protobuf(scored: ScoredBatch, transaction_id: str, rule_set_version: str) -> None:
    buffer, starts, lengths = pack_ids([transaction_id, "next"])
    got = encode_score_response(scored, buffer, int(starts[0]), int(lengths[0]), rule_set_version)
    assert_same(got, reference_response(scored, transaction_id, rule_set_version))


@st.composite
def requests(draw: st.DrawFn) -> tuple[ScoredBatch | None, list[str], list[ItemFailure], int]:
    """(scored rows, their ids, failures, transactions requested), failures anywhere among the requested."""
    n_requested = draw(st.integers(1, 12))
    failed = sorted(draw(st.sets(st.integers(0, n_requested - 1), max_size=n_requested)))
    n_scored = n_requested - len(failed)
    scored = draw(scored_batches(rows=n_scored)) if n_scored else draw(st.sampled_from((None, "empty")))
    if scored == "empty":
        empty = np.empty((0, 3), dtype=np.int64)
        scored = ScoredBatch(np.empty((0, N_FEATURES), dtype=np.float32), np.empty(0), np.empty(0, dtype=np.int64),
                             empty, np.empty((0, 3)), "m", 1.0)
    ids = draw(st.lists(ID_TEXT, min_size=n_scored, max_size=n_scored))
    failures = [failure(i, draw(ID_TEXT)) for i in failed]
    assert scored is None or isinstance(scored, ScoredBatch)
    return scored, ids, draw(st.permutations(failures)), n_requested


@given(requests(), st.sampled_from(("", "rules-7")), st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_results_match_protobuf(request: tuple[ScoredBatch | None, list[str], list[ItemFailure], int],
                                rule_set_version: str, readonly: bool) -> None:
    scored, ids, failures, n_requested = request
    buffer, starts, lengths = pack_ids(ids, readonly)
    got = encode_results(scored, buffer, starts, lengths, failures, n_requested, rule_set_version)
    assert_same(got, reference_results(scored, ids, failures, n_requested, rule_set_version))


@pytest.mark.parametrize(("n_requested", "failed"), [
    (1, []), (1, [0]), (5, [0]), (5, [2]), (5, [4]), (5, [0, 4]), (5, [1, 2, 3]), (5, [0, 1, 2, 3, 4]), (3, [0, 1]),
    (200, [0, 57, 58, 199]),
])  # fmt: skip
def test_failures_at_the_start_middle_and_end(n_requested: int, failed: list[int]) -> None:
    ids = [f"tx-{i}-é" for i in range(n_requested) if i not in failed]
    n = len(ids)
    rng = np.random.default_rng(n_requested)
    features = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    scored = ScoredBatch(features, rng.random(n), rng.integers(0, 5, n), rng.integers(0, N_FEATURES, (n, 3)),
                         rng.normal(size=(n, 3)), "demo", 3.5) if n else None
    failures = [failure(i, f"bad-{i}") for i in failed]
    buffer, starts, lengths = pack_ids(ids)
    got = encode_results(scored, buffer, starts, lengths, failures, n_requested)
    assert_same(got, reference_results(scored, ids, failures, n_requested))


def test_texts_only_python_formats_exactly_are_spliced_in() -> None:
    """3e38 '{:,.2f}' does not fit an int64 once scaled: Python formats that text, the rest stays in Numba."""
    rng = np.random.default_rng(3)
    n = 4
    features = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    features[1, AMOUNT] = 3e38
    features[3, AMOUNT] = -1.5e30
    reason_index = np.array([[AMOUNT, 1, 2], [3, AMOUNT, 4], [5, 6, 7], [AMOUNT, AMOUNT, 0]], dtype=np.int64)
    spans = np.empty((n, 3, 2), dtype=np.int64)
    texts = np.empty(text_capacity(TABLE.index, reason_index), dtype=np.uint8)
    declined = format_texts(TABLE.blob, TABLE.index, features, reason_index, texts, spans)
    assert declined == int((reason_index[[1, 3]] == AMOUNT).sum())  # so the Python path is taken
    scored = ScoredBatch(features, rng.random(n), rng.integers(0, 5, n), reason_index, rng.normal(size=(n, 3)),
                         "m", 2.0)
    ids = [f"t{i}" for i in range(n)]
    buffer, starts, lengths = pack_ids(ids)
    assert_same(encode_results(scored, buffer, starts, lengths, [], n), reference_results(scored, ids, [], n))
    for row in (1, 3):
        single = ScoredBatch(features[row:], scored.scores[row:], scored.actions[row:], reason_index[row:],
                             scored.reason_contribution[row:], "m", 2.0)
        got = encode_score_response(single, buffer, int(starts[row]), int(lengths[row]))
        assert_same(got, reference_response(single, ids[row], ""))


# ---------------------------------------------------------------------------------------------------
# Real scored batches, from a model and the feature engine
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scored_traffic(bundle_store: Path) -> list[tuple[ScoredBatch, list[str]]]:
    """Batches of 1, 7 and 64 transactions scored by the test bundle, state building up between them."""
    scorer = Scorer(FeatureEngine(EngineCapacity(1024, 1024, 1024)), load_promoted(bundle_store, threads=1))
    tokenizer = PanTokenizer(bytes(range(32)))
    transactions = [make_transaction(i, card=f"card-{i % 11}", amount_minor=(i * 7919) % 900_000 + 1,
                                     transaction_id=f"tx-{i}-ü") for i in range(300)]
    out = []
    start = 0
    for size in (1, 7, 64, 1, 64, 64, 7, 1):
        batch, failures = batch_from_proto(transactions[start : start + size], "transactions", 1.9e9, tokenizer)
        assert not failures
        out.append((scorer.score(batch), list(batch.transaction_ids)))
        start += size
    return out


def test_real_batches_match_protobuf(scored_traffic: list[tuple[ScoredBatch, list[str]]]) -> None:
    for scored, ids in scored_traffic:
        buffer, starts, lengths = pack_ids(ids)
        got = encode_results(scored, buffer, starts, lengths, [], len(ids))
        assert_same(got, reference_results(scored, ids, [], len(ids)))
        got = encode_score_response(scored, buffer, int(starts[0]), int(lengths[0]), "rules-1")
        assert_same(got, reference_response(scored, ids[0], "rules-1"))


def test_real_batch_with_failures_among_it(scored_traffic: list[tuple[ScoredBatch, list[str]]]) -> None:
    scored, ids = scored_traffic[2]
    failures = [failure(0, "first"), failure(30, "middle"), failure(len(ids) + 2, "last")]
    buffer, starts, lengths = pack_ids(ids)
    n_requested = len(ids) + 3
    got = encode_results(scored, buffer, starts, lengths, failures, n_requested)
    assert_same(got, reference_results(scored, ids, failures, n_requested))


# ---------------------------------------------------------------------------------------------------
# Wrong input is an error, not wrong bytes
# ---------------------------------------------------------------------------------------------------


def small_batch(n: int = 2) -> ScoredBatch:
    rng = np.random.default_rng(n)
    return ScoredBatch(rng.normal(size=(n, N_FEATURES)).astype(np.float32), rng.random(n),
                       rng.integers(0, 5, n), rng.integers(0, N_FEATURES, (n, 3)), rng.normal(size=(n, 3)), "m", 1.0)


def test_nothing_requested_is_an_empty_response() -> None:
    empty = np.empty(0, dtype=np.int64)
    assert encode_results(None, np.empty(0, dtype=np.uint8), empty, empty, [], 0) == b""


def test_id_spans_outside_the_buffer_are_rejected() -> None:
    buffer, starts, lengths = pack_ids(["a", "b"])
    with pytest.raises(ValueError, match="outside id_buffer"):
        encode_results(small_batch(), buffer, starts, lengths + 10, [], 2)
    with pytest.raises(ValueError, match="outside id_buffer"):
        encode_score_response(small_batch(), buffer, -1, 1)


def test_counts_that_do_not_add_up_are_rejected() -> None:
    buffer, starts, lengths = pack_ids(["a", "b"])
    with pytest.raises(ValueError, match="requested"):
        encode_results(small_batch(), buffer, starts, lengths, [], 3)
    with pytest.raises(ValueError, match="requested"):
        encode_results(small_batch(), buffer, starts[:1], lengths[:1], [], 2)
    with pytest.raises(ValueError, match="distinct"):
        encode_results(small_batch(), buffer, starts, lengths, [failure(1, "x"), failure(1, "y")], 4)
    with pytest.raises(ValueError, match="distinct"):
        encode_results(small_batch(), buffer, starts, lengths, [failure(3, "x")], 3)
    with pytest.raises(ValueError, match="no rows"):
        encode_score_response(ScoredBatch(np.empty((0, N_FEATURES), dtype=np.float32), np.empty(0),
                                          np.empty(0, dtype=np.int64), np.empty((0, 3), dtype=np.int64),
                                          np.empty((0, 3)), "m", 1.0), buffer, 0, 1)


def test_a_reason_naming_no_feature_is_rejected() -> None:
    scored = small_batch()
    scored.reason_index[1, 2] = N_FEATURES
    buffer, starts, lengths = pack_ids(["a", "b"])
    with pytest.raises(ValueError, match="out of range"):
        encode_results(scored, buffer, starts, lengths, [], 2)


def test_rule_hits_are_written_as_protobuf_writes_them() -> None:
    """Each hit's ``RuleHit{rule_id, action, description}`` between the reasons and the model version, with the
    rule set's version; rows with no hit, rules without a description, failures spliced in."""
    rules = RuleSet('rule big "more than 1000, ä": block if amount > 1000\nreview if mcc == 5411\n'
                    'rule trusted: allow if card.token == "x"\n')
    rng = np.random.default_rng(11)
    n = 5
    hits = np.array([[1, 1, 1], [0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]], np.bool_)
    scored = ScoredBatch(rng.normal(size=(n, N_FEATURES)).astype(np.float32), rng.random(n), rng.integers(1, 5, n),
                         rng.integers(0, N_FEATURES, (n, 3)), rng.normal(size=(n, 3)), "m", 2.0, rules, hits)
    ids = [f"t{i}-é" for i in range(n)]
    buffer, starts, lengths = pack_ids(ids)
    got = encode_results(scored, buffer, starts, lengths, [], n)
    assert_same(got, reference_results(scored, ids, [], n))
    decisions = [r.decision for r in scoring_pb2.ScoreBatchResponse.FromString(got).results]
    assert [[h.rule_id for h in d.rule_hits] for d in decisions] == [
        ["big", "line2", "trusted"], [], ["line2"], ["big"], ["trusted"]]
    assert decisions[0].rule_hits[0].description == "more than 1000, ä" and decisions[0].rule_hits[0].action == 4
    assert {d.rule_set_version for d in decisions} == {rules.version}
    failures = [failure(2, "bad")]
    got = encode_results(scored, buffer, starts, lengths, failures, n + 1)
    assert_same(got, reference_results(scored, ids, failures, n + 1))
    for row in range(n):
        single = ScoredBatch(scored.features[row:], scored.scores[row:], scored.actions[row:],
                             scored.reason_index[row:], scored.reason_contribution[row:], "m", 2.0, rules, hits[row:])
        got = encode_score_response(single, buffer, int(starts[row]), int(lengths[row]))
        assert_same(got, reference_response(single, ids[row], ""))

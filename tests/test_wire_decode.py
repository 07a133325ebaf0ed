"""The Numba request decoder against the protobuf path it replaces: same batch, bit for bit, same
failures, same errors; for generated transactions of every kind, hand-made wire bytes and garbage."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.loadgen_transactions import TransactionFactory
from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features.batch import TransactionBatch
from scoring.serde import MAX_FUTURE_SKEW_S, MIN_EVENT_TIME, ItemFailure, batch_from_proto
from scoring.wire.decode import (
    BatchMessage,
    DecodedRequest,
    decode_batch,
    decode_single,
    decode_transactions,
    unit_table,
)

NOW = 1_750_000_000.25
MAX_BATCH = 64
TOKENIZER = PanTokenizer(bytes(range(32)))
Tx = transaction_pb2.Transaction

# ---------------------------------------------------------------------------------------------------
# The reference: what the servicer does today with protobuf objects
# ---------------------------------------------------------------------------------------------------


def reference_batch(data: bytes, message_type: BatchMessage = scoring_pb2.ScoreBatchRequest,
                    max_batch: int = MAX_BATCH) -> tuple[TransactionBatch, list[ItemFailure]]:
    """ScoringServicer._score_into on ``_tolerant``-parsed bytes, up to the scorer."""
    try:
        request = message_type.FromString(data)
    except DecodeError:
        raise ValidationError("request", f"not a valid {message_type.DESCRIPTOR.full_name} message") from None
    if len(request.transactions) > max_batch:
        raise ValidationError("transactions",
                              f"at most {max_batch} transactions per message, got {len(request.transactions)}")
    return batch_from_proto(request.transactions, "transactions", NOW, TOKENIZER)


def reference_single(data: bytes) -> tuple[TransactionBatch, list[ItemFailure]]:
    """ScoringServicer.Score on ``_tolerant``-parsed bytes, up to the scorer."""
    try:
        request = scoring_pb2.ScoreRequest.FromString(data)
    except DecodeError:
        raise ValidationError("request", "not a valid fraud.v1.ScoreRequest message") from None
    if not request.HasField("transaction"):
        raise ValidationError("transaction", "required")
    batch, failures = batch_from_proto([request.transaction], "transaction", NOW, TOKENIZER)
    if failures:
        raise failures[0].error
    return batch, failures


@dataclass(frozen=True)
class Outcome:
    """Everything observable of one decode: the error, or the batch (reals by their bits) and failures."""

    error: tuple[str, str] | None
    ids: tuple[str, ...] = ()
    real_bits: tuple[tuple[int, ...], ...] = ()
    ints: tuple[tuple[int, ...], ...] = ()
    failures: tuple[tuple[int, str, str, str], ...] = ()


def outcome(run: Callable[[], tuple[TransactionBatch, list[ItemFailure]]]) -> Outcome:
    try:
        batch, failures = run()
    except ValidationError as exc:
        return Outcome((exc.field, exc.message))
    assert batch.reals.flags.c_contiguous and batch.ints.flags.c_contiguous
    return Outcome(
        None, batch.transaction_ids,
        tuple(map(tuple, batch.reals.view(np.int64).tolist())), tuple(map(tuple, batch.ints.tolist())),
        tuple((f.index, f.transaction_id, f.error.field, f.error.message) for f in failures),
    )  # fmt: skip


def decoded_batch(data: bytes, message_type: BatchMessage = scoring_pb2.ScoreBatchRequest,
                  max_batch: int = MAX_BATCH) -> tuple[TransactionBatch, list[ItemFailure]]:
    decoded = decode_batch(data, message_type, NOW, TOKENIZER, max_batch)
    check_spans(decoded, data)
    assert decoded.n_requested == len(decoded.batch) + len(decoded.failures)
    return decoded.batch, decoded.failures


def decoded_single(data: bytes) -> tuple[TransactionBatch, list[ItemFailure]]:
    decoded = decode_single(data, NOW, TOKENIZER)
    check_spans(decoded, data)
    assert decoded.n_requested == 1 and not decoded.failures
    return decoded.batch, decoded.failures


def check_spans(decoded: DecodedRequest, data: bytes) -> None:
    """Every id's span holds its UTF-8; the buffer starts with the request bytes."""
    buffer = decoded.buffer
    assert bytes(buffer[: len(data)]) == data
    assert len(decoded.id_start) == len(decoded.id_len) == len(decoded.batch)
    for k, tx_id in enumerate(decoded.batch.transaction_ids):
        start, length = int(decoded.id_start[k]), int(decoded.id_len[k])
        assert bytes(buffer[start : start + length]) == tx_id.encode()


def in_place(decoded: DecodedRequest, data: bytes) -> bool:
    """The buffer is the request bytes themselves (no copy, nothing appended)."""
    return len(decoded.buffer) == len(data) and np.shares_memory(decoded.buffer, np.frombuffer(data, np.uint8))


def assert_batch_same(data: bytes, message_type: BatchMessage = scoring_pb2.ScoreBatchRequest,
                      max_batch: int = MAX_BATCH) -> Outcome:
    expected = outcome(lambda: reference_batch(data, message_type, max_batch))
    assert outcome(lambda: decoded_batch(data, message_type, max_batch)) == expected
    return expected


def assert_single_same(data: bytes) -> Outcome:
    expected = outcome(lambda: reference_single(data))
    assert outcome(lambda: decoded_single(data)) == expected
    return expected


def kernel_slow_rows(data: bytes, max_rows: int = MAX_BATCH) -> int:
    """How many rows the kernel hands to Python (-1: the whole message)."""
    status, _, _, _ = decode_transactions(np.frombuffer(data, np.uint8), NOW + MAX_FUTURE_SKEW_S, unit_table(),
                                          max_rows)
    return int(status)


# ---------------------------------------------------------------------------------------------------
# Generated transactions: valid ones, and every kind of bad field
# ---------------------------------------------------------------------------------------------------

_PRINTABLE_ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
_ID = st.text(_PRINTABLE_ASCII, min_size=1, max_size=40)
_ODD_IDS = st.sampled_from([
    "x" * 128, "y" * 129, "a\x00b", "tab\there", "new\nline", "del\x7f", "héllo", "日本語", "\u2028",
    "caf\u00e9" * 32, "é" * 128, "é" * 129, " ", "~", "\x85", "emoji-🙂",
])  # fmt: skip
_DIGITS = st.text(st.characters(min_codepoint=0x30, max_codepoint=0x39), min_size=1, max_size=10)
_TIMES = st.one_of(
    st.tuples(st.integers(int(MIN_EVENT_TIME), int(NOW + MAX_FUTURE_SKEW_S) - 1), st.integers(0, 999_999_999)),
    st.sampled_from([(int(MIN_EVENT_TIME), 0), (int(MIN_EVENT_TIME) - 1, 999_999_999),
                     (int(NOW + MAX_FUTURE_SKEW_S), 0), (int(NOW + MAX_FUTURE_SKEW_S), 250_000_000),
                     (int(NOW + MAX_FUTURE_SKEW_S), 250_000_001), (0, 0), (-5, 0), (2**62, 0),
                     (int(NOW), -1), (int(NOW), 1_000_000_000), (int(NOW), 2**31 - 1), (int(NOW), -(2**31))]),
)  # fmt: skip
_LUHN_PANS = ["4111111111111111", "4111 1111 1111 1111", "5555-5555-5555-4444", "4111111111111112", "41111",
              "4111a11111111111", "4242"]  # fmt: skip
_COORD = st.one_of(st.floats(-90, 90), st.sampled_from([-0.0, 90.0, -90.0, 180.0, -180.0, math.nan, math.inf,
                                                        -math.inf, 90.0000001, -180.5, 1e300]))  # fmt: skip
_ENUMS = st.one_of(st.integers(0, 6), st.sampled_from([-1, 7, 99, 2**31 - 1, -(2**31)]))
_COUNTRIES = st.sampled_from(["", "US", "DE", "ZZ", "AA"])
_EMAIL_PART = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="@0123456789"),
                      min_size=1, max_size=40)
# valid ASCII e-mails the kernel takes itself: fewer than 13 digits (more may be a card number: Python's business)
_EMAILS = st.one_of(st.just(""), st.sampled_from(["ann.lee+x@example.co.uk", "a@b", " @ ", "x" * 252 + "@y",
                                                  "0123456789ab@example.com", "1-2 3@4.5"]),
                    st.builds(lambda a, b: f"{a}@{b}", _EMAIL_PART, _EMAIL_PART))
_ODD_EMAILS = st.sampled_from([
    "x" * 253 + "@y", "x" * 300, "no-at-sign", "a@b@c", "@example.com", "ann@", "@", "tab\t@x", "a\n@b", "del\x7f@x",
    "\u2028@x", "jöhn@exämple.de", "日本@例え.jp", "4111111111111111@example.com", "4111 1111 1111 1111@x.com",
    "0123456789abc@example.com", "0123456789012@x", "é" * 250 + "@y.z", "é" * 253 + "@y", "a\x00@b",
])  # fmt: skip
_ODD_COUNTRIES = st.sampled_from(["us", "U", "USA", "ÜS", "U1", "  ", "U\x00", "ＵＳ"])


@st.composite
def valid_fields(draw: st.DrawFn) -> dict[str, Any]:
    """The fields of a valid transaction, ASCII only: the kernel must take all of these itself."""
    seconds, nanos = draw(st.tuples(st.integers(int(MIN_EVENT_TIME), int(NOW)), st.integers(0, 999_999_999)))
    fields: dict[str, Any] = {
        "transaction_id": draw(_ID), "event_time": (seconds, nanos),
        "amount_minor": draw(st.one_of(st.integers(0, 10**6), st.integers(0, 10**15))),
        "currency": draw(st.sampled_from(sorted(MINOR_UNIT))),
        "card": (draw(_ID), draw(st.sampled_from(["", "411111", "4242424", "35301113"])),
                 draw(st.sampled_from(["", "0000", "9876"])), ""),
        "customer_id": draw(st.one_of(st.just(""), _ID)), "merchant_id": draw(st.one_of(st.just(""), _ID)),
        "mcc": draw(st.integers(0, 9999)), "merchant_country": draw(st.sampled_from(["", "US", "DE", "ZZ", "AA"])),
        "device_id": draw(st.one_of(st.just(""), _ID)),
        "ip_address": draw(st.sampled_from(["", "10.0.0.1", "2001:db8::1", "::", "FFFF:abcd::", "1." * 22 + "1"])),
        "location": draw(st.one_of(st.none(), st.tuples(st.floats(-90, 90), st.floats(-180, 180)))),
        "channel": draw(st.integers(0, 6)), "entry_mode": draw(st.integers(0, 6)),
        "card_country": draw(_COUNTRIES), "billing_country": draw(_COUNTRIES),
        "shipping_country": draw(_COUNTRIES), "email": draw(_EMAILS),
    }  # fmt: skip
    return fields


# one field replaced by something unusual (often invalid), by field name
_ODD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "transaction_id": st.one_of(_ODD_IDS, st.just("")),
    "event_time": st.one_of(st.none(), _TIMES),
    "amount_minor": st.sampled_from([-1, 10**15, 10**15 + 1, 2**63 - 1, -(2**63)]),
    "currency": st.sampled_from(["", "usd", "XXX", "US", "USDD", "€UR", "ÜSD", "ABC"]),
    "card": st.one_of(
        st.none(),
        st.tuples(st.one_of(_ID, _ODD_IDS, st.just("")), st.one_of(st.just(""), _DIGITS, st.just("١٢٣٤٥٦")),
                  st.one_of(st.just(""), _DIGITS, st.just("12a4")), st.sampled_from(["", *_LUHN_PANS]))),
    "customer_id": _ODD_IDS, "merchant_id": _ODD_IDS, "device_id": _ODD_IDS,
    "mcc": st.sampled_from([9999, 10_000, 2**31, 2**32 - 1]),
    "merchant_country": st.sampled_from(["us", "U", "USA", "ÜS", "U1", "  "]),
    "ip_address": st.sampled_from(["1", "1.2.3.x", "１.2.3.4", "a" * 45, "a" * 46, "1.2.3.4 ", "::1\n", "fe80::g1",
                                   "G::1", "1/2"]),
    "location": st.one_of(st.none(), st.tuples(_COORD, _COORD)),
    "channel": _ENUMS, "entry_mode": _ENUMS,
    "card_country": _ODD_COUNTRIES, "billing_country": _ODD_COUNTRIES, "shipping_country": _ODD_COUNTRIES,
    "email": _ODD_EMAILS,
}  # fmt: skip


def build(fields: dict[str, Any]) -> transaction_pb2.Transaction:
    tx = Tx(transaction_id=fields["transaction_id"], amount_minor=fields["amount_minor"],
            currency=fields["currency"], customer_id=fields["customer_id"], merchant_id=fields["merchant_id"],
            mcc=fields["mcc"], merchant_country=fields["merchant_country"], device_id=fields["device_id"],
            ip_address=fields["ip_address"], channel=fields["channel"], entry_mode=fields["entry_mode"],
            billing_country=fields.get("billing_country", ""), shipping_country=fields.get("shipping_country", ""),
            email=fields.get("email", ""))  # fmt: skip
    if fields["event_time"] is not None:
        tx.event_time.seconds, tx.event_time.nanos = fields["event_time"]
    if fields["card"] is not None:
        token, bin_, last4, pan = fields["card"]
        tx.card.SetInParent()
        tx.card.token, tx.card.bin, tx.card.last4, tx.card.pan = token, bin_, last4, pan
        tx.card.country = fields.get("card_country", "")
    if fields["location"] is not None:
        tx.location.SetInParent()
        tx.location.latitude, tx.location.longitude = fields["location"]
    return tx


@st.composite
def transactions(draw: st.DrawFn) -> transaction_pb2.Transaction:
    """Mostly valid; otherwise one or two fields made unusual."""
    fields = draw(valid_fields())
    for name in draw(st.lists(st.sampled_from(sorted(_ODD_VALUES)), max_size=2)):
        fields[name] = draw(_ODD_VALUES[name])
    return build(fields)


_SLOW_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SLOW_SETTINGS
@given(st.lists(transactions(), max_size=12), st.sampled_from([scoring_pb2.ScoreBatchRequest,
                                                               scoring_pb2.ScoreStreamRequest]))
def test_generated_batches_decode_as_protobuf_does(txs: list[transaction_pb2.Transaction],
                                                   message_type: BatchMessage) -> None:
    assert_batch_same(message_type(transactions=txs).SerializeToString(), message_type)


@settings(max_examples=200, deadline=None)
@given(st.lists(valid_fields().map(build), min_size=1, max_size=8))
def test_valid_ascii_transactions_never_leave_the_kernel(txs: list[transaction_pb2.Transaction]) -> None:
    """The fast path is the common path: no valid ASCII transaction is handed to Python."""
    data = scoring_pb2.ScoreBatchRequest(transactions=txs).SerializeToString()
    assert kernel_slow_rows(data) == 0
    expected = assert_batch_same(data)
    assert expected.error is None and not expected.failures


@_SLOW_SETTINGS
@given(transactions())
def test_generated_single_transactions_decode_as_score_does(tx: transaction_pb2.Transaction) -> None:
    assert_single_same(scoring_pb2.ScoreRequest(transaction=tx).SerializeToString())


def test_each_kind_of_bad_field_is_reported_as_protobuf_reports_it() -> None:
    """One deterministic bad value per field, each alone in a batch with good ones around it."""
    bad_values = {
        "transaction_id": "y" * 129, "event_time": None, "amount_minor": -1, "currency": "usd", "card": None,
        "customer_id": "a\x00b", "merchant_id": "é" * 129, "device_id": "tab\there", "mcc": 10_000,
        "merchant_country": "us", "ip_address": "1.2.3.x", "location": (math.nan, 0.0), "channel": 7,
        "entry_mode": -1, "card_country": "usa", "billing_country": "F", "shipping_country": "fr",
        "email": "no-at-sign",
    }  # fmt: skip
    good = TransactionFactory(seed=3).build(2, stream_seed=1, id_prefix="good", now=NOW)
    for name, value in bad_values.items():
        fields = {**_good_fields(), name: value}
        data = scoring_pb2.ScoreBatchRequest(transactions=[good[0], build(fields), good[1]]).SerializeToString()
        expected = assert_batch_same(data)
        assert len(expected.failures) == 1 and expected.failures[0][0] == 1, name
        assert expected.failures[0][2].startswith("transactions[1]."), name


_CHARACTERS = [chr(c) for c in range(128)] + ["é", "\u00a0", "\u2028", "٣", "Ａ", "🙂"]
_CHARACTER_SLOTS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "transaction_id": lambda f, c: f.update(transaction_id=f"id{c}"),
    "customer_id": lambda f, c: f.update(customer_id=c),
    "token": lambda f, c: f.update(card=(f"t{c}", "411111", "1111", "")),
    "bin": lambda f, c: f.update(card=("tok", f"41111{c}", "1111", "")),
    "last4": lambda f, c: f.update(card=("tok", "411111", f"11{c}1", "")),
    "currency": lambda f, c: f.update(currency=f"E{c}R"),
    "merchant_country": lambda f, c: f.update(merchant_country=f"D{c}"),
    "ip_address": lambda f, c: f.update(ip_address=f"fe80::{c}1"),
    "card_country": lambda f, c: f.update(card_country=f"D{c}"),
    "billing_country": lambda f, c: f.update(billing_country=f"{c}E"),
    "shipping_country": lambda f, c: f.update(shipping_country=f"D{c}"),
    "email": lambda f, c: f.update(email=f"a{c}b@example.com"),
    "email domain": lambda f, c: f.update(email=f"ab@{c}"),
}


@pytest.mark.parametrize("slot", sorted(_CHARACTER_SLOTS))
def test_every_character_in_every_string_field(slot: str) -> None:
    """Each ASCII character (and some others) in each checked string: accepted or refused as serde does."""
    txs = []
    for i, c in enumerate(_CHARACTERS):
        fields = {**_good_fields(), "transaction_id": f"c-{i}"}
        _CHARACTER_SLOTS[slot](fields, c)
        txs.append(build(fields))
    expected = assert_batch_same(scoring_pb2.ScoreBatchRequest(transactions=txs).SerializeToString(), max_batch=256)
    assert expected.ids and expected.failures  # some of each


def _good_fields() -> dict[str, Any]:
    return {"transaction_id": "t-1", "event_time": (int(NOW) - 60, 5), "amount_minor": 1234, "currency": "EUR",
            "card": ("tok_1", "411111", "1111", ""), "customer_id": "c", "merchant_id": "m", "mcc": 5411,
            "merchant_country": "DE", "device_id": "d", "ip_address": "10.1.2.3", "location": (48.1, 11.5),
            "channel": 2, "entry_mode": 5, "card_country": "US", "billing_country": "FR", "shipping_country": "BE",
            "email": "ann@example.com"}  # fmt: skip


def test_load_generator_traffic_is_decoded_by_the_kernel_alone() -> None:
    txs = TransactionFactory(seed=11).build(256, stream_seed=5, id_prefix="lg", now=NOW)
    data = scoring_pb2.ScoreBatchRequest(transactions=txs).SerializeToString()
    assert kernel_slow_rows(data, 256) == 0
    decoded = decode_batch(data, scoring_pb2.ScoreBatchRequest, NOW, TOKENIZER, 256)
    assert in_place(decoded, data)  # the request bytes themselves, not a copy
    assert outcome(lambda: (decoded.batch, decoded.failures)) == outcome(lambda: reference_batch(data, max_batch=256))


def test_pan_rows_are_tokenized_by_python_and_merged_in_order() -> None:
    fields = [{**_good_fields(), "transaction_id": f"t-{i}"} for i in range(5)]
    fields[1]["card"] = ("", "", "", "4111 1111 1111 1111")
    fields[3]["card"] = ("", "", "", "4111111111111112")  # fails Luhn
    data = scoring_pb2.ScoreBatchRequest(transactions=[build(f) for f in fields]).SerializeToString()
    assert kernel_slow_rows(data) == 2
    expected = assert_batch_same(data)
    assert expected.ids == ("t-0", "t-1", "t-2", "t-4")
    assert expected.failures == ((3, "t-3", "transactions[3].card.pan", "fails the Luhn check"),)


# ---------------------------------------------------------------------------------------------------
# Hand-made wire bytes
# ---------------------------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def vfield(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def lfield(number: int, payload: bytes | str) -> bytes:
    raw = payload.encode() if isinstance(payload, str) else payload
    return key(number, 2) + varint(len(raw)) + raw


def dfield(number: int, value: float) -> bytes:
    return key(number, 1) + struct.pack("<d", value)


SECONDS = int(NOW) - 3600
TIMESTAMP = lfield(2, vfield(1, SECONDS) + vfield(2, 123_456_789))
CARD = lfield(5, lfield(1, "tok_9") + lfield(2, "411111") + lfield(3, "1234"))
LOCATION = lfield(12, dfield(1, 52.5) + dfield(2, 13.4))
BASE = (lfield(1, "wire-1") + TIMESTAMP + vfield(3, 4200) + lfield(4, "EUR") + CARD + lfield(6, "cus")
        + lfield(7, "mer") + vfield(8, 5812) + lfield(9, "DE") + lfield(10, "dev") + lfield(11, "10.0.0.7")
        + LOCATION + vfield(13, 1) + vfield(14, 2))  # fmt: skip


COUNTRIES_AND_EMAIL = lfield(15, "FR") + lfield(16, "BE") + lfield(17, "ann.lee@example.com")
CARD_WITH_COUNTRY = lfield(5, lfield(1, "tok_9") + lfield(2, "411111") + lfield(3, "1234") + lfield(5, "US"))
FULL = BASE.replace(CARD, CARD_WITH_COUNTRY) + COUNTRIES_AND_EMAIL


def batch_of(*transactions: bytes) -> bytes:
    return b"".join(lfield(1, tx) for tx in transactions)


def test_hand_made_base_transaction_is_fast_and_right() -> None:
    data = batch_of(BASE, BASE.replace(b"wire-1", b"wire-2"))
    assert kernel_slow_rows(data) == 0
    expected = assert_batch_same(data)
    assert expected.ids == ("wire-1", "wire-2") and not expected.failures


WIRE_CASES: dict[str, bytes] = {
    "unknown varint field": BASE + vfield(15, 7),
    "unknown length field": BASE + lfield(100, b"\xff\xfe anything"),
    "unknown fixed32 field": BASE + key(99, 5) + b"\x01\x02\x03\x04",
    "unknown field in card": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + vfield(9, 1))),
    "unknown field in timestamp": BASE.replace(TIMESTAMP, lfield(2, vfield(1, SECONDS) + vfield(3, 1))),
    "unknown field in location": BASE.replace(LOCATION, lfield(12, dfield(1, 1.0) + dfield(7, 2.0))),
    "unknown fixed64 field 3 in location": BASE.replace(LOCATION, lfield(12, dfield(1, 1.0) + dfield(3, 2.0))),
    "token and a four-digit pan": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(4, "1234"))),
    "token and an empty pan": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(4, ""))),
    "amount twice (last wins)": BASE + vfield(3, 99),
    "amount twice, the last bad": BASE + vfield(3, 2**64 - 1),
    "id twice": BASE + lfield(1, "wire-again"),
    "id twice, the first bad": lfield(1, "bad\x01") + BASE,
    "currency twice": BASE + lfield(4, "JPY"),
    "card twice (merged)": BASE + lfield(5, lfield(3, "9999")),
    "card twice, the second with a pan": BASE + lfield(5, lfield(4, "4111111111111111")),
    "event time twice (merged)": BASE + lfield(2, vfield(2, 5)),
    "location twice (merged)": BASE + lfield(12, dfield(2, -1.0)),
    "lat twice in one location": BASE.replace(LOCATION, lfield(12, dfield(1, 1.0) + dfield(1, 95.0))),
    "timestamp seconds twice": BASE.replace(TIMESTAMP, lfield(2, vfield(1, 0) + vfield(1, SECONDS))),
    "amount as length-delimited": BASE.replace(vfield(3, 4200), lfield(3, b"\x01")),
    "id as varint": BASE.replace(lfield(1, "wire-1"), vfield(1, 5)) + lfield(1, "late-id"),
    "location as fixed64": BASE.replace(LOCATION, key(12, 1) + struct.pack("<d", 1.0)),
    "latitude as varint": BASE.replace(LOCATION, lfield(12, vfield(1, 3))),
    "seconds as fixed64": BASE.replace(TIMESTAMP, lfield(2, key(1, 1) + struct.pack("<q", SECONDS))),
    "mcc above 2**32 (truncated to 5812)": BASE.replace(vfield(8, 5812), vfield(8, 2**32 + 5812)),
    "mcc 2**32 - 1": BASE.replace(vfield(8, 5812), vfield(8, 2**32 - 1)),
    "channel above 2**32 (truncated to 1)": BASE.replace(vfield(13, 1), vfield(13, 2**32 + 1)),
    "nanos above 2**32 (truncated)": BASE.replace(TIMESTAMP, lfield(2, vfield(1, SECONDS) + vfield(2, 2**32 + 7))),
    "negative amount (10-byte varint)": BASE.replace(vfield(3, 4200), vfield(3, -5)),
    "negative channel (10-byte varint)": BASE.replace(vfield(13, 1), vfield(13, -1)),
    "overlong varint amount": BASE.replace(vfield(3, 4200), key(3, 0) + b"\xe8\xa0\x80\x80\x00"),
    "10-byte varint of a small amount": BASE.replace(vfield(3, 4200), key(3, 0) + b"\x85" + b"\x80" * 8 + b"\x00"),
    "10-byte varint with high bits": BASE.replace(vfield(3, 4200), key(3, 0) + b"\x85" + b"\x80" * 8 + b"\x7e"),
    "11-byte varint": BASE.replace(vfield(3, 4200), key(3, 0) + b"\x85" + b"\x80" * 9 + b"\x00"),
    "overlong tag": BASE.replace(vfield(3, 4200), b"\x98\x80\x80\x00" + varint(4200)),
    "overlong length": BASE.replace(lfield(4, "EUR"), key(4, 2) + b"\x83\x80\x00EUR"),
    "6-byte length": BASE.replace(lfield(4, "EUR"), key(4, 2) + b"\x83\x80\x80\x80\x80\x00EUR"),
    "explicit zero values": (lfield(1, "z") + TIMESTAMP + vfield(3, 0) + lfield(4, "USD") + CARD + vfield(8, 0)
                             + vfield(13, 0) + vfield(14, 0)),
    "explicit empty strings": (lfield(1, "e") + TIMESTAMP + lfield(4, "USD") + lfield(5, lfield(1, "t")
                               + lfield(2, "") + lfield(3, "")) + lfield(6, "") + lfield(9, "") + lfield(11, "")
                               + vfield(8, 0) + vfield(13, 0)),
    "empty location": BASE.replace(LOCATION, lfield(12, b"")),
    "empty card": BASE.replace(CARD, lfield(5, b"")),
    "empty timestamp": BASE.replace(TIMESTAMP, lfield(2, b"")),
    "empty transaction": b"",
    "invalid UTF-8 in id": BASE.replace(b"wire-1", b"wire\xff1"),
    "invalid UTF-8 in token": BASE.replace(b"tok_9", b"tok\xc3("),
    "invalid UTF-8 in an unknown field": BASE + lfield(50, b"\xff"),
    "group, unknown": BASE + key(20, 3) + vfield(1, 5) + key(20, 4),
    "group, unterminated": BASE + key(20, 3) + vfield(1, 5),
    "end group alone": BASE + key(20, 4),
    "wire type 6": BASE + key(20, 6),
    "wire type 7": BASE + key(20, 7),
    "field number 0": BASE + key(0, 0) + b"\x01",
    "field number 2**29 - 1": BASE + vfield(2**29 - 1, 1),
    "truncated varint": BASE + key(3, 0) + b"\x80",
    "length past the end": BASE + key(4, 2) + b"\x05EU",
    "submessage length past its parent": BASE.replace(CARD, lfield(5, key(1, 2) + b"\x20tok")),
    "fixed64 past the end": BASE + key(40, 1) + b"\x00\x00",
    "NUL in currency": BASE.replace(lfield(4, "EUR"), lfield(4, "EU\x00")),
    # the fields the kernel checks but keeps no column of: card country, billing and shipping country, e-mail
    "countries and e-mail": FULL,
    "countries and e-mail first": COUNTRIES_AND_EMAIL + BASE.replace(CARD, CARD_WITH_COUNTRY),
    "card country first in the card": BASE.replace(CARD, lfield(5, lfield(5, "US") + lfield(1, "tok_9"))),
    "empty countries and e-mail": (BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(5, "")))
                                   + lfield(15, "") + lfield(16, "") + lfield(17, "")),
    "card country lower case": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(5, "us"))),
    "card country of 3 letters": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(5, "USA"))),
    "card country twice": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(5, "us") + lfield(5, "US"))),
    "card country twice, the last bad": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(5, "US")
                                                                 + lfield(5, "U"))),
    "card country as varint": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + vfield(5, 1))),
    "card country and a pan": BASE.replace(CARD, lfield(5, lfield(4, "4111111111111111") + lfield(5, "us"))),
    "card field 6 (unknown)": BASE.replace(CARD, lfield(5, lfield(1, "tok_9") + lfield(6, "US"))),
    "billing country bad": BASE + lfield(15, "F1"),
    "shipping country bad": BASE + lfield(16, "fr"),
    "shipping country non-ASCII": BASE + lfield(16, "ÜS"),
    "billing country twice": BASE + lfield(15, "FR") + lfield(15, "DE"),
    "billing country twice, the first bad": BASE + lfield(15, "fr") + lfield(15, "DE"),
    "shipping country as varint": BASE + vfield(16, 5),
    "email as fixed32": BASE + key(17, 5) + b"abcd",
    "email twice": BASE + lfield(17, "a@b") + lfield(17, "c@d"),
    "email twice, the first bad": BASE + lfield(17, "no-at") + lfield(17, "c@d"),
    "email twice, the last bad": BASE + lfield(17, "c@d") + lfield(17, "no-at"),
    "email without @": BASE + lfield(17, "ann.example.com"),
    "email with two @": BASE + lfield(17, "a@b@c"),
    "email starting with @": BASE + lfield(17, "@b"),
    "email ending with @": BASE + lfield(17, "a@"),
    "email of 254 characters": BASE + lfield(17, "a" * 250 + "@b.c"),
    "email of 255 characters": BASE + lfield(17, "a" * 251 + "@b.c"),
    "email of 254 non-ASCII characters": BASE + lfield(17, "é" * 250 + "@b.c"),
    "email with a tab": BASE + lfield(17, "a\t@b"),
    "email with DEL": BASE + lfield(17, "a\x7f@b"),
    "email with 12 digits": BASE + lfield(17, "012345678901@b"),
    "email with 13 digits": BASE + lfield(17, "0123456789012@b"),
    "email holding a PAN": BASE + lfield(17, "4111111111111111@example.com"),
    "email with invalid UTF-8": BASE + lfield(17, b"a\xff@b"),
    "field 18 (unknown)": BASE + lfield(18, "FR"),
    "fields 15-17 after an unknown field": BASE + vfield(20, 1) + COUNTRIES_AND_EMAIL,
}


def test_countries_and_email_stay_on_the_fast_path() -> None:
    """The fields only checked (no column) cost no trip to Python when valid, and change no column."""
    cases = ("countries and e-mail", "countries and e-mail first", "card country first in the card",
             "empty countries and e-mail", "email of 254 characters", "email with 12 digits")
    without = assert_batch_same(batch_of(BASE, BASE))
    for case in cases:
        data = batch_of(BASE, WIRE_CASES[case])
        assert kernel_slow_rows(data) == 0, case
        assert assert_batch_same(data) == without, case
        decoded = decode_batch(data, scoring_pb2.ScoreBatchRequest, NOW, TOKENIZER, MAX_BATCH)
        assert decoded.pan_free and in_place(decoded, data), case


def test_an_email_that_may_hold_a_pan_is_valid_but_read_by_python() -> None:
    """13 digits or more: the row goes to Python (valid all the same), so the message is not PAN-free and the recorder
    scrubs it (scoring.record.block.scrub_pans)."""
    for case in ("email with 13 digits", "email holding a PAN"):
        data = batch_of(BASE, WIRE_CASES[case])
        assert kernel_slow_rows(data) == 1, case
        assert assert_batch_same(data).failures == (), case
        assert not decode_batch(data, scoring_pb2.ScoreBatchRequest, NOW, TOKENIZER, MAX_BATCH).pan_free


def test_bad_countries_and_emails_are_named_and_never_quoted() -> None:
    expected = {"card country lower case": "card.country", "billing country bad": "billing_country",
                "shipping country bad": "shipping_country", "email without @": "email",
                "email of 255 characters": "email", "email with a tab": "email", "email with two @": "email"}
    for case, field in expected.items():
        failures = assert_batch_same(batch_of(BASE, WIRE_CASES[case])).failures
        assert [f[:3] for f in failures] == [(1, "wire-1", f"transactions[1].{field}")], case
    for case in ("email without @", "email with two @", "email of 255 characters"):
        email = Tx.FromString(WIRE_CASES[case]).email
        with pytest.raises(ValidationError) as caught:
            decode_single(lfield(1, WIRE_CASES[case]), NOW, TOKENIZER)
        assert caught.value.field == "transaction.email" and email not in str(caught.value)


@pytest.mark.parametrize("case", sorted(WIRE_CASES))
def test_hand_made_transactions_decode_as_protobuf_does(case: str) -> None:
    tx = WIRE_CASES[case]
    good = BASE.replace(b"wire-1", b"good-1")
    assert_batch_same(batch_of(good, tx, good.replace(b"good-1", b"good-2")))
    assert_batch_same(batch_of(tx))
    assert_single_same(lfield(1, tx))


TOP_LEVEL_CASES: dict[str, bytes] = {
    "empty message": b"",
    "unknown top-level field": batch_of(BASE) + vfield(2, 1),
    "unknown top-level field first": lfield(9, b"xyz") + batch_of(BASE),
    "field 1 as varint": vfield(1, 5) + batch_of(BASE),
    "field 1 as fixed32": key(1, 5) + b"abcd",
    "truncated after the tag": batch_of(BASE) + key(1, 2),
    "truncated transaction": batch_of(BASE)[:-1],
    "length varint of 11 bytes": key(1, 2) + b"\x80" * 10 + b"\x00",
    "top-level group": key(3, 3) + key(3, 4) + batch_of(BASE),
    "one byte": b"\x0a",
    "zero byte": b"\x00",
}


@pytest.mark.parametrize("case", sorted(TOP_LEVEL_CASES))
def test_hand_made_messages_decode_as_protobuf_does(case: str) -> None:
    data = TOP_LEVEL_CASES[case]
    for message_type in (scoring_pb2.ScoreBatchRequest, scoring_pb2.ScoreStreamRequest):
        assert_batch_same(data, message_type)
    assert_single_same(data)


def test_every_prefix_of_a_message_decodes_as_protobuf_does() -> None:
    data = batch_of(BASE, WIRE_CASES["card twice (merged)"], FULL.replace(b"wire-1", b"wire-3"))
    for end in range(len(data) + 1):
        assert_batch_same(data[:end])
        assert_single_same(data[:end])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_as_protobuf_does(data: bytes) -> None:
    assert_batch_same(data)
    assert_single_same(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_messages_decode_as_protobuf_does(data: st.DataObject) -> None:
    """Valid wire bytes with a few bytes flipped, cut or inserted: mostly near-valid structure."""
    raw = bytearray(batch_of(BASE, FULL.replace(b"wire-1", b"wire-2")))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "cut":
            del raw[at]
        else:
            raw.insert(at, data.draw(st.integers(0, 255)))
    assert_batch_same(bytes(raw))
    assert_single_same(bytes(raw))


# ---------------------------------------------------------------------------------------------------
# Whole-message rules: the batch size limit, the single transaction
# ---------------------------------------------------------------------------------------------------


def test_too_many_transactions_is_refused_like_the_servicer() -> None:
    data = batch_of(BASE, BASE, BASE)
    assert assert_batch_same(data, max_batch=2).error == ("transactions", "at most 2 transactions per message, got 3")
    assert assert_batch_same(data, max_batch=3).error is None
    # malformed bytes win over the size limit, as protobuf parses first
    malformed = batch_of(BASE, BASE, WIRE_CASES["invalid UTF-8 in id"])
    assert assert_batch_same(malformed, max_batch=2).error == (
        "request", "not a valid fraud.v1.ScoreBatchRequest message")
    stream = assert_batch_same(malformed, scoring_pb2.ScoreStreamRequest, max_batch=2)
    assert stream.error == ("request", "not a valid fraud.v1.ScoreStreamRequest message")


def test_single_without_a_transaction_is_required() -> None:
    for data in (b"", vfield(7, 1), lfield(2, b"x")):
        with pytest.raises(ValidationError) as exc:
            decode_single(data, NOW, TOKENIZER)
        assert (exc.value.field, exc.value.message) == ("transaction", "required")


def test_single_bad_transaction_raises_its_own_error() -> None:
    with pytest.raises(ValidationError) as exc:
        decode_single(lfield(1, BASE.replace(vfield(3, 4200), vfield(3, -5))), NOW, TOKENIZER)
    assert exc.value.field == "transaction.amount_minor"
    with pytest.raises(ValidationError) as exc:
        decode_single(lfield(1, b""), NOW, TOKENIZER)
    assert exc.value.field == "transaction.transaction_id"


def test_single_with_two_transaction_fields_merges_them() -> None:
    first = lfield(1, "first") + TIMESTAMP + lfield(4, "USD") + CARD
    second = vfield(3, 777) + lfield(1, "second") + lfield(5, lfield(3, "4321"))
    data = lfield(1, first) + lfield(1, second)
    expected = assert_single_same(data)
    assert expected.ids == ("second",) and expected.error is None
    decoded = decode_single(data, NOW, TOKENIZER)
    assert decoded.batch.amount[0] == 777 * MINOR_UNIT["USD"]


def test_single_fast_path_points_into_the_request() -> None:
    data = lfield(1, BASE)
    decoded = decode_single(data, NOW, TOKENIZER)
    assert in_place(decoded, data)
    start = int(decoded.id_start[0])
    assert data[start : start + int(decoded.id_len[0])] == b"wire-1"
    assert decoded.batch.transaction_ids == ("wire-1",)


def test_spans_point_at_ids_on_every_path() -> None:
    """Fast rows, rows done in Python, and messages done by protobuf (ids appended to the buffer)."""
    pan = lfield(1, "pan-row") + TIMESTAMP + lfield(4, "EUR") + lfield(5, lfield(4, "4111111111111111"))
    fast_and_slow = batch_of(BASE, pan, WIRE_CASES["id twice"])
    by_protobuf = fast_and_slow + vfield(2, 1)  # an unknown top-level field
    for data in (fast_and_slow, by_protobuf):
        decoded = decode_batch(data, scoring_pb2.ScoreBatchRequest, NOW, TOKENIZER, MAX_BATCH)
        assert decoded.batch.transaction_ids == ("wire-1", "pan-row", "wire-again")
        check_spans(decoded, data)
        assert in_place(decoded, data) == (data is fast_and_slow)  # found in place unless protobuf decoded
    assert kernel_slow_rows(fast_and_slow) == 2 and kernel_slow_rows(by_protobuf) == -1

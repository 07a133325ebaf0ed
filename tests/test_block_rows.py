"""The writer's binary COPY encoding (``block_copy_rows``, ``record_copy_rows``) stores exactly what the tuple path
(``block_rows``, ``to_row`` through asyncpg's ``copy_records_to_table``) stores, value for value: NULLs, NaN scores
and features, non-ASCII ids, empty reasons, a message with a refused transaction."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest

from fraudguard.db.migrate import migrate
from fraudguard.db.partitions import ensure_partitions
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.features.schema import FEATURES
from scoring.record import block as block_module
from scoring.record import items as items_module
from scoring.record.block import (
    BLOCK_VERSION,
    BLOCK_VERSION_RULES,
    DecisionBlock,
    MessageKind,
    block_copy_rows,
    block_rows,
    rule_entries,
    scrub_pans,
)
from scoring.record.items import copy_rows_of, decode_item, rows_of
from scoring.record.rows import COLUMNS, COPY_COLUMNS, CopyEncodingError, CopyRows, DecisionRecord, copy_payload
from scoring.rules import RuleSet
from tests.conftest import make_transaction
from tests.test_decision_writer import make_record

N_FEATURES = len(FEATURES)


def _seal(column: str, transaction_id: str, text: str) -> bytes:
    """Deterministic (the server's seal draws a random nonce), so both paths store the same bytes."""
    return f"{column}|{transaction_id}|{text}".encode()


def _transactions(prefix: str) -> list[transaction_pb2.Transaction]:
    full = make_transaction(1, transaction_id="tx-full-1", billing_country="FR", shipping_country="BE",
                            email="jöhn.doe+x@exämple.de")
    full.device_id, full.ip_address, full.card.country = "dev-ä", "2001:db8::1", "US"
    full.location.latitude, full.location.longitude = -33.87, 151.21
    bare = transaction_pb2.Transaction(transaction_id="tx-ü€-漢字", amount_minor=0, currency="JPY",
                                       merchant_id="m-ß")
    bare.card.token = "tok_ñ"
    bare.event_time.FromMicroseconds(1_700_000_000_123_456)
    refused = make_transaction(2, transaction_id="tx-refused")  # position 2: answered with its error, not recorded
    device_only = make_transaction(3, transaction_id="tx-device-only", mcc=0, customer_id="", ip_address="")
    device_only.device_id = "d"
    email_only = make_transaction(4, transaction_id="tx-email-only", customer_id="", ip_address="", device_id="",
                                  email="a@b", shipping_country="JP")
    for tx in (full, bare, refused, device_only, email_only):
        tx.transaction_id = prefix + tx.transaction_id
    return [full, bare, refused, device_only, email_only]


_RULES = RuleSet('rule big "more than 1000": block if amount > 1000\n'
                 'rule mcc_check "grocery, ä": review if mcc == 5411\nallow if card.token == "x"\n')


def _block(k: int, kind: MessageKind = MessageKind.BATCH, prefix: str = "", ruled: bool = False) -> DecisionBlock:
    rng = np.random.default_rng(k)
    transactions = _transactions(prefix)
    if kind is MessageKind.SCORE:
        request = scoring_pb2.ScoreRequest(transaction=transactions[0]).SerializeToString()
        positions = np.array([0], np.uint32)
    else:
        request = scoring_pb2.ScoreBatchRequest(transactions=transactions).SerializeToString()
        positions = np.array([0, 1, 3, 4], np.uint32)
    n = len(positions)
    features = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    features[0, :5] = np.nan
    features[-1, 7] = np.float32(1e-40)  # a float32 subnormal
    reason_index = rng.integers(0, N_FEATURES, (n, k)).astype(np.uint16)
    if k:
        reason_index[0, 0] = 2  # a reason whose value is NaN: null in the JSON
    return DecisionBlock(
        kind=kind, request=request, positions=positions,
        scores=np.array([math.nan, 0.25, 1.0, 0.5][:n]), actions=np.array([3, 1, 4, 2][:n], np.uint8),
        features=features,
        reason_index=reason_index, reason_contribution=rng.normal(size=(n, k)).astype(np.float32),
        model_version="modèle-7", server_time_us=12.5, decided_at_us=1_700_000_001_000_000,
        rule_set_version=_RULES.version if ruled else "", rule_entries=rule_entries(_RULES) if ruled else (),
        rule_hits=np.array([[1, 1, 0], [0, 0, 0], [0, 1, 1], [1, 0, 1]][:n], np.bool_) if ruled else None,
    )  # fmt: skip


def _items() -> list[Any]:
    return [_block(3), _block(0, prefix="k0-"), _block(3, MessageKind.SCORE, prefix="one-"),
            _block(3, MessageKind.SCORE, prefix="two-"), _block(4, MessageKind.STREAM, prefix="three-"),
            _block(3, prefix="ruled-", ruled=True), _block(3, MessageKind.SCORE, prefix="ruled-one-", ruled=True),
            _block(3, MessageKind.SCORE, prefix="ruled-two-", ruled=True),
            make_record("rec-1"), make_record("rec-é", anomaly_score=None, mcc=None, latitude=None, longitude=None,
                                              card_bin=None, device_id_enc=None, email_enc=None, score=math.nan,
                                              card_country=None, billing_country=None, shipping_country=None)]


async def _stored(conn: Any, table: str) -> dict[str, dict[str, Any]]:
    columns = [c for c in COLUMNS if c not in ("rule_versions", "rule_hits", "reasons")]
    rows = await conn.fetch(f"SELECT {', '.join(columns)}, rule_versions::text, rule_hits::text, reasons::text, "
                            f"features::text AS features_text FROM {table}")
    return {row["transaction_id"]: dict(row) for row in rows}


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.fixture(params=["vectorised", "row by row", "small blocks merged"])
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ways blocks are laid out: NumPy for a block of many rows, row by row for a few, and runs of small
    blocks merged into one NumPy layout (the writer's way for unary calls)."""
    monkeypatch.setattr(block_module, "SMALL_BLOCK", 1 if request.param == "vectorised" else 1000)
    monkeypatch.setattr(items_module, "MERGE_SMALL_BLOCKS", request.param == "small blocks merged")
    return str(request.param)


async def test_binary_copy_stores_what_the_tuple_path_stores(conn: Any, layout: str) -> None:
    await migrate(conn)
    items = _items()  # once: the transactions' times are now's
    for day in {r[2] for r in rows_of(items, _seal, "key-1")}:
        await ensure_partitions(conn, day, 0, None, behind_days=0)
    await conn.execute("CREATE TABLE decisions_binary (LIKE decisions INCLUDING ALL)")
    await conn.copy_records_to_table("decisions", records=rows_of(items, _seal, "key-1"), columns=COLUMNS)
    status = await conn.copy_to_table("decisions_binary", source=memoryview(copy_payload(copy_rows_of(
        items, _seal, "key-1"))), columns=COPY_COLUMNS, format="binary")
    assert status == "COPY 22"
    tuples, binary = await _stored(conn, "decisions"), await _stored(conn, "decisions_binary")
    assert set(tuples) == set(binary) and len(tuples) == 22 and "tx-refused" not in tuples
    for tx_id, row in tuples.items():
        other = binary[tx_id]
        for column, value in row.items():
            if column == "recorded_at":
                continue
            if column == "features":
                assert np.array_equal(np.array(value, np.float32), np.array(other[column], np.float32),
                                      equal_nan=True), tx_id
                continue
            assert _same(value, other[column]), (tx_id, column, value, other[column])
    assert tuples["tx-ü€-漢字"]["card_bin"] is None and tuples["tx-ü€-漢字"]["device_id_enc"] is None
    assert tuples["tx-full-1"]["personal_key_id"] == "key-1" and tuples["tx-device-only"]["mcc"] is None
    assert binary["tx-full-1"]["device_id_enc"] == b"device_id|tx-full-1|dev-\xc3\xa4"
    assert binary["tx-full-1"]["email_enc"] == "email|tx-full-1|jöhn.doe+x@exämple.de".encode()
    assert [binary["tx-full-1"][c] for c in ("card_country", "billing_country", "shipping_country")] == ["US", "FR",
                                                                                                         "BE"]
    email_only = binary["tx-email-only"]
    assert (email_only["email_enc"], email_only["personal_key_id"], email_only["device_id_enc"]) == (
        b"email|tx-email-only|a@b", "key-1", None)
    assert [email_only[c] for c in ("card_country", "billing_country", "shipping_country")] == [None, None, "JP"]
    assert tuples["tx-ü€-漢字"]["email_enc"] is None and tuples["tx-ü€-漢字"]["shipping_country"] is None
    assert tuples["rec-1"]["card_country"] == "US" and tuples["rec-é"]["card_country"] is None
    assert math.isnan(binary["tx-full-1"]["score"])
    assert json.loads(binary["ruled-tx-full-1"]["rule_hits"]) == [{"rule_id": "big", "action": "block"},
                                                                 {"rule_id": "mcc_check", "action": "review"}]
    assert json.loads(binary["ruled-tx-ü€-漢字"]["rule_hits"]) == [] and binary["tx-full-1"]["rule_hits"] == "[]"
    assert json.loads(binary["ruled-one-tx-full-1"]["rule_versions"]) == {"rule_set": _RULES.version}
    assert binary["tx-full-1"]["rule_versions"] == "{}"


def test_a_block_with_rules_round_trips_through_its_journal_payload() -> None:
    plain, ruled = _block(3), _block(3, ruled=True)
    assert plain.encode()[0] == BLOCK_VERSION and ruled.encode()[0] == BLOCK_VERSION_RULES
    assert isinstance(decode_item(plain.encode()), DecisionBlock)
    assert decode_item(plain.encode()).encode() == plain.encode()  # type: ignore[union-attr]
    again = decode_item(ruled.encode())
    assert isinstance(again, DecisionBlock) and again.encode() == ruled.encode()
    assert (again.rule_set_version, again.rule_entries) == (ruled.rule_set_version, ruled.rule_entries)
    assert again.rule_hits is not None and np.array_equal(again.rule_hits, ruled.rule_hits)  # type: ignore[arg-type]
    columns = [COLUMNS.index("rule_versions"), COLUMNS.index("rule_hits")]
    assert [[r[c] for c in columns] for r in block_rows(again, None, None)] == [
        [r[c] for c in columns] for r in block_rows(ruled, None, None)]


def test_the_reasons_are_json_dumps_text_byte_for_byte(layout: str) -> None:
    block = _block(3)
    tuples = block_rows(block, None, None)
    encoded = block_copy_rows(block, None, None)
    assert COPY_COLUMNS[-1] == "reasons"  # the last field of each row: length, jsonb version 1, the text
    for i, row in enumerate(tuples):
        text = row[COLUMNS.index("reasons")].encode()
        assert encoded.row(i).pieces[0].endswith(struct.pack(">i", len(text) + 1) + b"\x01" + text)
    assert '"value": null' in tuples[0][COLUMNS.index("reasons")]
    empty = block_copy_rows(_block(0), None, None)
    assert all(empty.row(i).pieces[0].endswith(b"\x00\x00\x00\x03\x01[]") for i in range(4))


def test_rows_split_one_by_one_and_know_their_days(layout: str) -> None:
    rows = block_copy_rows(_block(3), _seal, "key-1")
    assert len(rows) == 4 and rows.row(1).pieces[0] == b"".join(rows.pieces[rows.per_row:2 * rows.per_row])
    days = {r[COLUMNS.index("event_day")] for r in block_rows(_block(3), _seal, "key-1")}
    assert rows.event_days() == days
    empty = block_copy_rows(DecisionBlock(
        kind=MessageKind.BATCH, request=b"", positions=np.zeros(0, np.uint32), scores=np.zeros(0),
        actions=np.zeros(0, np.uint8), features=np.zeros((0, N_FEATURES), np.float32),
        reason_index=np.zeros((0, 3), np.uint16), reason_contribution=np.zeros((0, 3), np.float32),
        model_version="m", server_time_us=1.0, decided_at_us=0), None, None)  # fmt: skip
    assert len(empty) == 0 and empty.pieces == []


def test_a_value_the_binary_format_cannot_carry_is_a_copy_encoding_error() -> None:
    with pytest.raises(CopyEncodingError):
        copy_rows_of([make_record("r", mcc=2**31)], None, None)
    with pytest.raises(CopyEncodingError):
        copy_rows_of([DecisionRecord(**{**_fields(make_record("r")), "features": np.zeros((2, 2), np.float32)})],
                     None, None)
    assert isinstance(copy_rows_of([make_record("r")], None, None)[0], CopyRows)


def _fields(record: DecisionRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__slots__}


def test_scrubbing_takes_a_card_number_out_of_an_email() -> None:
    """An e-mail is sealed when stored, but the write-ahead journal holds the request as it came: a card number in
    it is replaced there already, as the log filter replaces it (and a message without one is left as it is)."""
    emails = ["4111111111111111@example.com", "x4111-1111-1111-1111@y.z", "5500 0055 5555 5559@m.com",
              "4111111111111112@example.com", "0123456789@example.com", "ann@example.com", ""]
    request = scoring_pb2.ScoreBatchRequest(transactions=[make_transaction(i, email=e)
                                                          for i, e in enumerate(emails)]).SerializeToString()
    scrubbed = scrub_pans(request, MessageKind.BATCH, PanTokenizer(bytes(32)))
    assert [tx.email for tx in scoring_pb2.ScoreBatchRequest.FromString(scrubbed).transactions] == [
        "[PAN]@example.com", "x[PAN]@y.z", "[PAN]@m.com", *emails[3:]]
    assert all(pan.encode() not in scrubbed for pan in ("4111111111111111", "4111-1111-1111-1111",
                                                         "5500 0055 5555 5559"))
    clean = scoring_pb2.ScoreRequest(transaction=make_transaction(1, email="ann@example.com")).SerializeToString()
    assert scrub_pans(clean, MessageKind.SCORE, PanTokenizer(bytes(32))) is clean

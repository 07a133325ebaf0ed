"""``scoring.serde``'s checks of the fields the scorer keeps no column of: the card's issuing country, the billing
and shipping countries, the payer's e-mail. (The Numba decoder must agree with these on every input: see
tests/test_wire_decode.py.)"""

from __future__ import annotations

import time

import pytest

from fraudguard.proto.fraud.v1 import transaction_pb2
from fraudguard.security.pan import PanTokenizer
from scoring.serde import MAX_EMAIL_LEN, batch_from_proto
from tests.conftest import make_transaction

TOKENIZER = PanTokenizer(bytes(range(32)))
GOOD_COUNTRIES = ["", "US", "DE", "ZZ"]
BAD_COUNTRIES = ["us", "U", "USA", "Us", "U1", " US", "US ", "ÜS", "ＵＳ", "U\x00", "\n"]
GOOD_EMAILS = [
    "", "ann@example.com", "ann.lee+tag@mail.example.co.uk", "a@b", "jöhn@exämple.de", "用户@例子.广告",
    "a b@c", '"quoted"@example.com', "x" * (MAX_EMAIL_LEN - 2) + "@y", "é" * (MAX_EMAIL_LEN - 4) + "@y.z",
    "4111111111111111@example.com",  # valid: the recorder takes the card number out (see test_block_rows)
]  # fmt: skip
BAD_EMAILS = [
    "ann.example.com", "a@b@c", "@example.com", "ann@", "@", "x" * (MAX_EMAIL_LEN - 1) + "@y", "x" * 1000,
    "ann\t@example.com", "ann@example.com\n", "a\x00@b", "a\x7f@b", "a\u2028@b", "a\u200b@b",
]  # fmt: skip


def _errors(tx: transaction_pb2.Transaction) -> list[tuple[str, str]]:
    batch, failures = batch_from_proto([tx], "transaction", time.time(), TOKENIZER)
    assert len(batch) + len(failures) == 1
    return [(f.error.field, f.error.message) for f in failures]


@pytest.mark.parametrize("field", ["billing_country", "shipping_country", "card.country"])
def test_countries_are_empty_or_two_upper_case_letters(field: str) -> None:
    for value in GOOD_COUNTRIES + BAD_COUNTRIES:
        tx = make_transaction(1)
        if field == "card.country":
            tx.card.country = value
        else:
            setattr(tx, field, value)
        expected = [] if value in GOOD_COUNTRIES else [
            (f"transaction.{field}", "must be an ISO-3166 alpha-2 code in upper case")]
        assert _errors(tx) == expected, value


def test_the_card_country_is_checked_with_a_pan_too() -> None:
    tx = make_transaction(1)
    tx.card.CopyFrom(transaction_pb2.Card(pan="4111111111111111", country="us"))
    assert [field for field, _ in _errors(tx)] == ["transaction.card.country"]
    tx.card.country = "US"
    assert _errors(tx) == []


@pytest.mark.parametrize("email", GOOD_EMAILS)
def test_good_emails_pass(email: str) -> None:
    assert _errors(make_transaction(1, email=email)) == []


@pytest.mark.parametrize("email", BAD_EMAILS)
def test_bad_emails_are_refused_without_being_quoted(email: str) -> None:
    [(field, message)] = _errors(make_transaction(1, email=email))
    assert field == "transaction.email"
    assert len(email) < 3 or email not in message  # personal data: never echoed


def test_the_length_limit_counts_characters() -> None:
    [(_, message)] = _errors(make_transaction(1, email="é" * MAX_EMAIL_LEN + "@y"))
    assert message == f"at most {MAX_EMAIL_LEN} characters, got {MAX_EMAIL_LEN + 2}"


def test_in_a_batch_the_bad_field_is_indexed_and_the_others_are_scored() -> None:
    txs = [make_transaction(i) for i in range(4)]
    txs[1].billing_country, txs[2].email, txs[3].shipping_country = "FR", "nobody", "fr"
    batch, failures = batch_from_proto(txs, "transactions", time.time(), TOKENIZER)
    assert batch.transaction_ids == ("tx-0", "tx-1")
    assert [(f.index, f.error.field) for f in failures] == [(2, "transactions[2].email"),
                                                            (3, "transactions[3].shipping_country")]

"""Stripe webhook events into actions: every handled type from Stripe-shaped fixtures, expanded and unexpanded
references, card present, Connect, events without a card, each malformed field, and hostile input (hypothesis):
``interpret`` returns an action or raises ``StripeEventError``, and every payment it returns passes the scorer's
own validation."""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.redaction import luhn_valid
from fraudguard.security.pan import PanTokenizer
from gateway import stripe_events
from gateway.stripe_events import (
    Ignore,
    ReportOutcome,
    ScorePayment,
    StripeAction,
    StripeEventError,
    interpret,
)
from scoring import serde

FIXTURES = Path(__file__).parent / "stripe_events"
NOW = 1_719_500_000.0  # 2024-06-27, after every fixture
VISA = "4111111111111111"
DELETE = object()  # as a value for ``edit``: remove the key
EVENT_FIXTURES = sorted(p.stem for p in FIXTURES.glob("*.json") if not p.stem.startswith("payment_method."))

Tx = transaction_pb2.Transaction
PI_ID = "pi_3PQdF2LkdIwHu7ix1Q9yNx2k"
CH_ID = "ch_3PQdF2LkdIwHu7ix1hbWuE8Q"


@cache
def _fixture_text(name: str) -> str:
    return (FIXTURES / f"{name}.json").read_text(encoding="utf-8")


def load(name: str) -> dict[str, Any]:
    """A fresh copy of fixture ``name`` (an event, or an API object)."""
    value: dict[str, Any] = json.loads(_fixture_text(name))
    return value


def edit(event: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """``event`` with the value at dotted ``path`` replaced (``DELETE``: removed), in place; returned."""
    *parents, last = path.split(".")
    node = event
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return event


def edited(name: str, **changes: object) -> dict[str, Any]:
    """Fixture ``name`` with changes given as ``data__object__amount=...`` (``__`` for ``.``)."""
    event = load(name)
    for path, value in changes.items():
        edit(event, path.replace("__", "."), value)
    return event


def scored(event: dict[str, Any], **kwargs: Any) -> Tx:
    action = interpret(event, now=NOW, **kwargs)
    assert isinstance(action, ScorePayment), action
    return action.transaction


def card_details(event: dict[str, Any]) -> dict[str, Any]:
    details: dict[str, Any] = event["data"]["object"]["payment_method_details"]
    return details


# ---- handled types


def test_charge_succeeded_is_scored_as_its_payment_intent() -> None:
    expected = Tx(
        transaction_id=PI_ID, event_time=Timestamp(seconds=1718200211), amount_minor=4999, currency="EUR",
        card=transaction_pb2.Card(token="Xt5EWLLDS7FJjR1c", last4="4242", country="US"),
        customer_id="cus_QH3nX0Yv7aYk2B", merchant_id="stripe", device_id="dev_5f1c9a2e", ip_address="203.0.113.7",
        location=transaction_pb2.GeoPoint(latitude=52.5321, longitude=13.3849),
        channel=transaction_pb2.CHANNEL_ECOMMERCE, entry_mode=transaction_pb2.ENTRY_MODE_UNSPECIFIED,
        billing_country="DE", shipping_country="DE", email="jenny.rosen@example.com",
    )  # fmt: skip
    assert scored(load("charge.succeeded")) == expected


def test_payment_intent_succeeded_names_the_same_transaction_as_its_charge() -> None:
    expected = Tx(
        transaction_id=PI_ID, event_time=Timestamp(seconds=1718200200), amount_minor=4999, currency="EUR",
        card=transaction_pb2.Card(token="pm_1PQdF1LkdIwHu7ixh6Xk0w3L"), customer_id="cus_QH3nX0Yv7aYk2B",
        merchant_id="stripe", device_id="dev_5f1c9a2e", ip_address="2001:db8::2:1",
        channel=transaction_pb2.CHANNEL_ECOMMERCE, email="jenny.rosen@example.com",  # its receipt_email
    )  # fmt: skip
    tx = scored(load("payment_intent.succeeded"))
    assert tx == expected
    assert not tx.HasField("location")
    assert tx.transaction_id == scored(load("charge.succeeded")).transaction_id


def test_payment_intent_requires_action() -> None:
    tx = scored(load("payment_intent.requires_action"))
    assert (tx.transaction_id, tx.amount_minor, tx.currency) == ("pi_3PR0aLLkdIwHu7ix0vXb3c9S", 125000, "GBP")
    assert tx.card == transaction_pb2.Card(token="pm_1PR0aKLkdIwHu7ixd1w0cQyB")
    assert (tx.customer_id, tx.ip_address, tx.device_id) == ("", "198.51.100.23", "")


@pytest.mark.parametrize(
    "kind", ["payment_intent.created", "payment_intent.requires_action", "payment_intent.processing",
             "payment_intent.succeeded"],
)  # fmt: skip
def test_every_payment_intent_type_is_scored(kind: str) -> None:
    event = edited("payment_intent.succeeded", type=kind)
    assert scored(event).transaction_id == PI_ID


@pytest.mark.parametrize("kind", ["charge.succeeded", "charge.pending"])
def test_every_charge_type_is_scored(kind: str) -> None:
    assert scored(edited("charge.succeeded", type=kind)).card.token == "Xt5EWLLDS7FJjR1c"


def test_charge_captured_is_not_scored_twice() -> None:
    assert interpret(load("charge.captured")) == Ignore("already_scored")


def test_dispute_reports_a_chargeback() -> None:
    assert interpret(load("charge.dispute.created")) == ReportOutcome(
        PI_ID, scoring_pb2.OUTCOME_CHARGEBACK, datetime(2024, 6, 24, 11, 59, 59, tzinfo=UTC), "stripe"
    )


def test_early_fraud_warning_reports_fraud() -> None:
    action = interpret(load("radar.early_fraud_warning.created"))
    assert action == ReportOutcome(PI_ID, scoring_pb2.OUTCOME_FRAUD, datetime.fromtimestamp(1718900006, UTC), "stripe")
    assert isinstance(action, ReportOutcome)
    assert action.reported_at.utcoffset() is not None


@pytest.mark.parametrize("name", ["charge.dispute.created", "radar.early_fraud_warning.created"])
def test_label_of_a_charge_without_payment_intent_names_the_charge(name: str) -> None:
    action = interpret(edited(name, data__object__payment_intent=None))
    assert isinstance(action, ReportOutcome)
    assert action.transaction_id == CH_ID
    action = interpret(edited(name, data__object__payment_intent=DELETE))
    assert isinstance(action, ReportOutcome)
    assert action.transaction_id == CH_ID


def test_charge_without_payment_intent_is_its_own_transaction() -> None:
    assert scored(edited("charge.succeeded", data__object__payment_intent=None)).transaction_id == CH_ID


@pytest.mark.parametrize("name", ["customer.created", "invoice.paid"])
def test_other_types_are_ignored(name: str) -> None:
    assert interpret(load(name)) == Ignore("unhandled_type")


@pytest.mark.parametrize("kind", ["payment_intent.canceled", "charge.refunded", "charge.dispute.closed", "ping"])
def test_unknown_types_are_ignored_whatever_the_object(kind: str) -> None:
    assert interpret(edited("charge.succeeded", type=kind)) == Ignore("unhandled_type")


# ---- expanded references


def test_expanded_payment_intent_and_customer_on_a_charge() -> None:
    event = load("charge.succeeded")
    intent = load("payment_intent.succeeded")["data"]["object"]
    edit(event, "data.object.payment_intent", intent)
    edit(event, "data.object.customer", {"id": "cus_QH3nX0Yv7aYk2B", "object": "customer", "deleted": True})
    tx = scored(event)
    assert (tx.transaction_id, tx.customer_id) == (PI_ID, "cus_QH3nX0Yv7aYk2B")


def test_payment_intent_takes_the_card_of_an_expanded_latest_charge() -> None:
    charge = load("charge.succeeded")["data"]["object"]
    charge["payment_method_details"]["card"]["iin"] = "42424242"
    tx = scored(edited("payment_intent.succeeded", data__object__latest_charge=charge))
    assert tx.card == transaction_pb2.Card(token="Xt5EWLLDS7FJjR1c", bin="42424242", last4="4242", country="US")
    assert tx.transaction_id == PI_ID


def test_payment_intent_falls_back_from_a_cardless_latest_charge_to_its_payment_method() -> None:
    charge = load("charge.pending")["data"]["object"]  # us_bank_account: no card there
    tx = scored(edited("payment_intent.succeeded", data__object__latest_charge=charge))
    assert tx.card.token == "pm_1PQdF1LkdIwHu7ixh6Xk0w3L"


def test_payment_intent_with_an_expanded_payment_method() -> None:
    method = load("payment_method.card")
    tx = scored(edited("payment_intent.requires_action", data__object__payment_method=method))
    assert tx.card == transaction_pb2.Card(token="Jq8w0Lz3aXc5VbN1", last4="4444", country="GB")
    assert (tx.channel, tx.entry_mode) == (transaction_pb2.CHANNEL_ECOMMERCE, transaction_pb2.ENTRY_MODE_WALLET)
    method = edit(load("payment_method.card"), "card.fingerprint", None)
    tx = scored(edited("payment_intent.requires_action", data__object__payment_method=method))
    assert tx.card.token == "pm_1PR0aKLkdIwHu7ixd1w0cQyB"


def test_expanded_charge_on_a_dispute() -> None:
    charge = load("charge.succeeded")["data"]["object"]
    event = edited("charge.dispute.created", data__object__payment_intent=None, data__object__charge=charge)
    action = interpret(event)
    assert isinstance(action, ReportOutcome)
    assert action.transaction_id == PI_ID  # the expanded charge's own payment_intent
    charge["payment_intent"] = None
    action = interpret(event)
    assert isinstance(action, ReportOutcome)
    assert action.transaction_id == CH_ID


def test_expanded_payment_intent_on_an_early_fraud_warning() -> None:
    intent = load("payment_intent.succeeded")["data"]["object"]
    action = interpret(edited("radar.early_fraud_warning.created", data__object__payment_intent=intent))
    assert isinstance(action, ReportOutcome)
    assert action.transaction_id == PI_ID


# ---- cards and channels


def test_card_present_with_connect_account() -> None:
    tx = scored(load("charge.succeeded.card_present"))
    assert tx.merchant_id == "acct_1NzK3eE2Hb8sKq0a"
    assert tx.card == transaction_pb2.Card(token="q2QmtGfRcd0MbN7x", bin="52251234", last4="0019", country="CA")
    assert (tx.channel, tx.entry_mode) == (transaction_pb2.CHANNEL_CARD_PRESENT, transaction_pb2.ENTRY_MODE_CHIP)
    assert (tx.currency, tx.amount_minor, tx.customer_id) == ("CAD", 1850, "")


@pytest.mark.parametrize(
    ("read_method", "mode"),
    [
        ("contact_emv", transaction_pb2.ENTRY_MODE_CHIP),
        ("contactless_emv", transaction_pb2.ENTRY_MODE_CONTACTLESS),
        ("contactless_magstripe_mode", transaction_pb2.ENTRY_MODE_CONTACTLESS),
        ("magnetic_stripe_track2", transaction_pb2.ENTRY_MODE_MAGSTRIPE),
        ("magnetic_stripe_fallback", transaction_pb2.ENTRY_MODE_MAGSTRIPE),
        ("some_future_method", transaction_pb2.ENTRY_MODE_UNSPECIFIED),
        (None, transaction_pb2.ENTRY_MODE_UNSPECIFIED),
    ],
)
def test_read_methods(read_method: str | None, mode: int) -> None:
    event = edited("charge.succeeded.card_present",
                   data__object__payment_method_details__card_present__read_method=read_method)  # fmt: skip
    assert scored(event).entry_mode == mode


def test_interac_present() -> None:
    event = load("charge.succeeded.card_present")
    details = card_details(event)
    details["interac_present"] = details.pop("card_present")
    details["type"] = "interac_present"
    details["interac_present"]["read_method"] = "contactless_emv"
    tx = scored(event)
    assert (tx.channel, tx.entry_mode) == (transaction_pb2.CHANNEL_CARD_PRESENT, transaction_pb2.ENTRY_MODE_CONTACTLESS)
    assert tx.card.token == "q2QmtGfRcd0MbN7x"


def test_wallet_tap_at_a_terminal() -> None:
    event = load("charge.succeeded.card_present")
    card_details(event)["card_present"].update(read_method="contactless_emv", wallet={"type": "apple_pay"})
    assert scored(event).entry_mode == transaction_pb2.ENTRY_MODE_WALLET


def test_wallet_online() -> None:
    event = load("charge.succeeded")
    card_details(event)["card"]["wallet"] = {"apple_pay": {}, "dynamic_last4": "8831", "type": "apple_pay"}
    tx = scored(event)
    assert (tx.channel, tx.entry_mode) == (transaction_pb2.CHANNEL_ECOMMERCE, transaction_pb2.ENTRY_MODE_WALLET)
    assert tx.card.last4 == "4242"


def test_moto() -> None:
    event = load("charge.succeeded")
    card_details(event)["card"]["moto"] = True
    tx = scored(event)
    assert (tx.channel, tx.entry_mode) == (transaction_pb2.CHANNEL_MOTO, transaction_pb2.ENTRY_MODE_MANUAL)


def test_fingerprint_missing_falls_back_to_the_payment_method() -> None:
    event = load("charge.succeeded")
    card_details(event)["card"]["fingerprint"] = None
    assert scored(event).card == transaction_pb2.Card(token="pm_1PQdF1LkdIwHu7ixh6Xk0w3L", last4="4242", country="US")


@pytest.mark.parametrize(("iin", "expected"), [("424242", "424242"), ("42424242", "42424242"), ("4242", ""),
                                               ("424242424", ""), ("42x424", ""), ("", ""), (None, "")])  # fmt: skip
def test_bin_from_iin(iin: str | None, expected: str) -> None:
    event = load("charge.succeeded")
    card_details(event)["card"]["iin"] = iin
    assert scored(event).card.bin == expected


def test_payment_intent_for_a_terminal_is_card_present() -> None:
    event = edited("payment_intent.requires_action", data__object__payment_method_types=["card_present"])
    tx = scored(event)
    assert (tx.channel, tx.entry_mode) == (transaction_pb2.CHANNEL_CARD_PRESENT, transaction_pb2.ENTRY_MODE_UNSPECIFIED)


# ---- no card


def test_payment_intent_created_without_payment_method_has_no_card() -> None:
    assert interpret(load("payment_intent.created")) == Ignore("no_card")


def test_sepa_payment_intent_has_no_card() -> None:
    assert interpret(load("payment_intent.processing")) == Ignore("no_card")


def test_bank_debit_charge_has_no_card() -> None:
    assert interpret(load("charge.pending")) == Ignore("no_card")


@pytest.mark.parametrize(
    "change",
    [
        {"data__object__payment_method_details": None},
        {"data__object__payment_method_details": DELETE},
        {"data__object__payment_method_details__card__fingerprint": None, "data__object__payment_method": None},
        {"data__object__payment_method_details__card": None, "data__object__payment_method": None},
    ],
)
def test_charge_without_card_information(change: dict[str, object]) -> None:
    assert interpret(edited("charge.succeeded", **change)) == Ignore("no_card")


def test_expanded_payment_method_that_is_no_card() -> None:
    method = {"id": "pm_1PR1bbLkdIwHu7ixmE2o0R4c", "object": "payment_method", "type": "sepa_debit",
              "sepa_debit": {"bank_code": "37040044", "country": "DE", "fingerprint": "Tq0w", "last4": "3000"}}
    event = edited("payment_intent.succeeded", data__object__payment_method=method)
    assert interpret(event) == Ignore("no_card")


# ---- amounts and currencies


@pytest.mark.parametrize(
    ("currency", "amount", "code", "minor"),
    [
        ("usd", 1000, "USD", 1000),
        ("JPY", 500, "JPY", 500),
        ("kwd", 5120, "KWD", 5120),
        ("isk", 50000, "ISK", 500),  # Stripe counts ISK in hundredths, ISO in krónur
        ("isk", 149, "ISK", 1),
        ("mga", 500, "MGA", 50000),  # Stripe counts MGA in ariary, ISO in hundredths
        ("eur", 0, "EUR", 0),
        ("eur", 10**15, "EUR", 10**15),
    ],
)
def test_amount_and_currency(currency: str, amount: int, code: str, minor: int) -> None:
    tx = scored(edited("charge.succeeded", data__object__currency=currency, data__object__amount=amount))
    assert (tx.currency, tx.amount_minor) == (code, minor)


def test_amount_too_large_once_rescaled() -> None:
    with pytest.raises(StripeEventError) as info:
        interpret(edited("charge.succeeded", data__object__currency="mga", data__object__amount=10**15))
    assert info.value.field == "data.object.amount"


# ---- metadata: best effort


@pytest.mark.parametrize(
    ("metadata", "ip"),
    [
        ({"ip": "203.0.113.7"}, "203.0.113.7"),
        ({"ip_address": " 2001:DB8:0:0::1 "}, "2001:db8::1"),
        ({"client_ip": "::ffff:192.0.2.1"}, str(ipaddress.ip_address("::ffff:192.0.2.1"))),
        ({"ip": "not an ip", "client_ip": "192.0.2.9"}, "192.0.2.9"),
        ({"ip": "fe80::1%eth0"}, ""),
        ({"ip": "999.1.1.1"}, ""),
        ({"ip": 3232235777}, ""),
        ({"ip": "1" * 1000}, ""),
        ({}, ""),
    ],
)
def test_ip_address(metadata: dict[str, object], ip: str) -> None:
    assert scored(edited("charge.succeeded", data__object__metadata=metadata)).ip_address == ip


@pytest.mark.parametrize(
    ("device", "expected"),
    [("dev_1", "dev_1"), ("x" * 128, "x" * 128), ("x" * 129, ""), ("dev\n1", ""), ("   ", ""), (7, ""),
     (VISA, ""), ("device 4111 1111 1111 1111", ""), ("4111111111111112", "4111111111111112")],
)  # fmt: skip
def test_device_id(device: object, expected: str) -> None:
    tx = scored(edited("charge.succeeded", data__object__metadata={"device_id": device}))
    assert tx.device_id == expected


@pytest.mark.parametrize(
    ("latitude", "longitude", "expected"),
    [
        ("-33.8688", "151.2093", (-33.8688, 151.2093)),
        ("90", "-180", (90.0, -180.0)),
        (45, 7.5, (45.0, 7.5)),
        ("91", "0", None),
        ("0", "180.5", None),
        ("nan", "0", None),
        ("inf", "0", None),
        ("1e999", "0", None),
        ("52.5", None, None),
        ("north", "east", None),
        (True, "0", None),
        ("1" * 400, "0", None),
    ],
)
def test_location(latitude: object, longitude: object, expected: tuple[float, float] | None) -> None:
    metadata = {"latitude": latitude, "longitude": longitude}
    tx = scored(edited("charge.succeeded", data__object__metadata=metadata))
    got = (tx.location.latitude, tx.location.longitude) if tx.HasField("location") else None
    assert got == expected


def test_metadata_may_be_null() -> None:
    tx = scored(edited("charge.succeeded", data__object__metadata=None))
    assert (tx.ip_address, tx.device_id, tx.HasField("location")) == ("", "", False)


# ---- merchants


def test_default_merchant() -> None:
    assert scored(load("charge.succeeded"), default_merchant_id="shop-eu").merchant_id == "shop-eu"
    assert scored(load("charge.succeeded.card_present"), default_merchant_id="shop-eu").merchant_id == \
        "acct_1NzK3eE2Hb8sKq0a"  # fmt: skip
    action = interpret(edited("charge.dispute.created", account="acct_1NzK3eE2Hb8sKq0a"))
    assert isinstance(action, ReportOutcome)
    assert action.merchant_id == "acct_1NzK3eE2Hb8sKq0a"


@pytest.mark.parametrize("merchant", ["", "x" * 129, "shop\n", VISA])
def test_bad_default_merchant_is_a_programming_error(merchant: str) -> None:
    with pytest.raises(ValueError, match="default_merchant_id"):
        interpret(load("charge.succeeded"), default_merchant_id=merchant)


# ---- malformed events


LONG = "x" * 129
MALFORMED: list[tuple[str, str, object, str]] = [
    # (fixture, dotted path to change, new value or DELETE, the field the error names)
    ("charge.succeeded", "object", "charge", "object"),
    ("charge.succeeded", "object", DELETE, "object"),
    ("charge.succeeded", "id", "ch_3PQdF2", "id"),
    ("charge.succeeded", "id", 12, "id"),
    ("charge.succeeded", "id", DELETE, "id"),
    ("charge.succeeded", "id", "evt_" + LONG, "id"),
    ("charge.succeeded", "type", 7, "type"),
    ("charge.succeeded", "type", DELETE, "type"),
    ("charge.succeeded", "type", "", "type"),
    ("charge.succeeded", "created", "1718200212", "created"),
    ("charge.succeeded", "created", 1718200212.0, "created"),
    ("charge.succeeded", "created", True, "created"),
    ("charge.succeeded", "created", 10**30, "created"),
    ("charge.succeeded", "created", -1, "created"),
    ("customer.created", "data", None, "data"),
    ("customer.created", "data", DELETE, "data"),
    ("customer.created", "data.object", [], "data.object"),
    ("customer.created", "data.object", "cus_QH3nX0Yv7aYk2B", "data.object"),
    ("charge.succeeded", "account", 5, "account"),
    ("charge.succeeded", "account", "acct_" + LONG, "account"),
    ("charge.succeeded", "account", "acct_\u202e1", "account"),
    ("charge.succeeded", "data.object.object", "payment_intent", "data.object.object"),
    ("charge.succeeded", "data.object.object", DELETE, "data.object.object"),
    ("charge.captured", "data.object.object", "dispute", "data.object.object"),
    ("payment_intent.succeeded", "data.object.object", "charge", "data.object.object"),
    ("charge.dispute.created", "data.object.object", "charge", "data.object.object"),
    ("radar.early_fraud_warning.created", "data.object.object", "dispute", "data.object.object"),
    ("charge.succeeded", "data.object.id", DELETE, "data.object.id"),
    ("charge.succeeded", "data.object.id", "ch_" + LONG, "data.object.id"),
    ("charge.succeeded", "data.object.id", "ch_\x00", "data.object.id"),
    ("charge.succeeded", "data.object.id", "ch_\ud800", "data.object.id"),
    ("charge.succeeded", "data.object.id", ["ch_1"], "data.object.id"),
    ("charge.succeeded", "data.object.amount", -1, "data.object.amount"),
    ("charge.succeeded", "data.object.amount", 10**15 + 1, "data.object.amount"),
    ("charge.succeeded", "data.object.amount", 2**64, "data.object.amount"),
    ("charge.succeeded", "data.object.amount", 49.99, "data.object.amount"),
    ("charge.succeeded", "data.object.amount", float("nan"), "data.object.amount"),
    ("charge.succeeded", "data.object.amount", float("inf"), "data.object.amount"),
    ("charge.succeeded", "data.object.amount", "4999", "data.object.amount"),
    ("charge.succeeded", "data.object.amount", True, "data.object.amount"),
    ("charge.succeeded", "data.object.amount", None, "data.object.amount"),
    ("charge.succeeded", "data.object.currency", "eu", "data.object.currency"),
    ("charge.succeeded", "data.object.currency", "euro", "data.object.currency"),
    ("charge.succeeded", "data.object.currency", "xyz", "data.object.currency"),
    ("charge.succeeded", "data.object.currency", "\u0131sk", "data.object.currency"),
    ("charge.succeeded", "data.object.currency", 978, "data.object.currency"),
    ("charge.succeeded", "data.object.currency", None, "data.object.currency"),
    ("charge.succeeded", "data.object.created", 946684799, "data.object.created"),
    ("charge.succeeded", "data.object.created", 253402300800, "data.object.created"),
    ("charge.succeeded", "data.object.created", int(NOW) + 86_401, "data.object.created"),
    ("charge.succeeded", "data.object.created", "2024-06-12", "data.object.created"),
    ("charge.succeeded", "data.object.payment_intent", 42, "data.object.payment_intent"),
    ("charge.succeeded", "data.object.payment_intent", {"object": "payment_intent"}, "data.object.payment_intent.id"),
    ("charge.succeeded", "data.object.payment_intent", "pi_" + LONG, "data.object.payment_intent"),
    ("charge.succeeded", "data.object.customer", ["cus_1"], "data.object.customer"),
    ("charge.succeeded", "data.object.customer", {"id": 3}, "data.object.customer.id"),
    ("charge.succeeded", "data.object.metadata", "ip=203.0.113.7", "data.object.metadata"),
    ("charge.succeeded", "data.object.payment_method", 5, "data.object.payment_method"),
    ("charge.succeeded", "data.object.payment_method_details", "card", "data.object.payment_method_details"),
    ("charge.succeeded", "data.object.payment_method_details.type", None, "data.object.payment_method_details.type"),
    ("charge.succeeded", "data.object.payment_method_details.card", 1, "data.object.payment_method_details.card"),
    ("charge.succeeded", "data.object.payment_method_details.card.fingerprint", 7,
     "data.object.payment_method_details.card.fingerprint"),
    ("charge.succeeded", "data.object.payment_method_details.card.fingerprint", LONG,
     "data.object.payment_method_details.card.fingerprint"),
    ("charge.succeeded", "data.object.payment_method_details.card.last4", "42",
     "data.object.payment_method_details.card.last4"),
    ("charge.succeeded", "data.object.payment_method_details.card.last4", "42a2",
     "data.object.payment_method_details.card.last4"),
    ("charge.succeeded", "data.object.payment_method_details.card.last4", 4242,
     "data.object.payment_method_details.card.last4"),
    ("charge.succeeded", "data.object.payment_method_details.card.last4", "\u0664\u0662\u0664\u0662",
     "data.object.payment_method_details.card.last4"),
    ("charge.succeeded", "data.object.payment_method_details.card.iin", 424242,
     "data.object.payment_method_details.card.iin"),
    ("charge.succeeded", "data.object.payment_method_details.card.wallet", "apple_pay",
     "data.object.payment_method_details.card.wallet"),
    ("charge.succeeded", "data.object.payment_method_details.card.moto", "yes",
     "data.object.payment_method_details.card.moto"),
    ("charge.succeeded.card_present", "data.object.payment_method_details.card_present.read_method", 5,
     "data.object.payment_method_details.card_present.read_method"),
    ("payment_intent.succeeded", "data.object.payment_method_types", "card", "data.object.payment_method_types"),
    ("payment_intent.succeeded", "data.object.payment_method_types", ["card", 1],
     "data.object.payment_method_types[1]"),
    ("payment_intent.succeeded", "data.object.latest_charge", 5, "data.object.latest_charge"),
    ("payment_intent.succeeded", "data.object.latest_charge", {"object": "charge", "payment_method_details": []},
     "data.object.latest_charge.payment_method_details"),
    ("payment_intent.succeeded", "data.object.payment_method", {"object": "payment_method", "type": "card"},
     "data.object.payment_method.id"),
    ("payment_intent.succeeded", "data.object.payment_method", {"id": "pm_1", "type": None},
     "data.object.payment_method.type"),
    ("charge.dispute.created", "data.object.id", DELETE, "data.object.id"),
    ("charge.dispute.created", "data.object.payment_intent", 3, "data.object.payment_intent"),
    ("charge.dispute.created", "data.object.created", None, "data.object.created"),
    ("charge.dispute.created", "data.object.created", int(NOW) + 86_401, "data.object.created"),
    ("radar.early_fraud_warning.created", "data.object.payment_intent", {"id": LONG},
     "data.object.payment_intent.id"),
    ("radar.early_fraud_warning.created", "data.object.charge", {"id": "ch_1", "payment_intent": 9},
     "data.object.charge.payment_intent"),
]


@pytest.mark.parametrize(("name", "path", "value", "field"), MALFORMED)
def test_malformed(name: str, path: str, value: object, field: str) -> None:
    event = edit(load(name), path, value)
    if path == "data.object.charge" or path.startswith("data.object.charge."):
        edit(event, "data.object.payment_intent", None)
    with pytest.raises(StripeEventError) as info:
        interpret(event, now=NOW)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("name", ["charge.dispute.created", "radar.early_fraud_warning.created"])
def test_label_without_any_reference(name: str) -> None:
    with pytest.raises(StripeEventError) as info:
        interpret(edited(name, data__object__payment_intent=None, data__object__charge=None))
    assert info.value.field == "data.object.charge"


@pytest.mark.parametrize("event", [None, [], "evt_1", 3, 2.5, True])
def test_not_an_object(event: Any) -> None:
    with pytest.raises(StripeEventError) as info:
        interpret(event)
    assert info.value.field == "event"


def test_card_numbers_are_refused_and_never_quoted() -> None:
    for path in ("data.object.id", "data.object.customer", "data.object.payment_method_details.card.fingerprint",
                 "account"):  # fmt: skip
        with pytest.raises(StripeEventError) as info:
            interpret(edit(load("charge.succeeded"), path, f"x_{VISA}"))
        assert info.value.field == path
        assert "4111" not in str(info.value)


def test_error_is_a_validation_error() -> None:
    assert issubclass(StripeEventError, ValidationError)


def test_without_now_future_times_are_not_checked() -> None:
    event = edited("charge.succeeded", data__object__created=int(NOW) + 86_401)
    assert isinstance(interpret(event), ScorePayment)


# ---- against the scorer


def test_limits_agree_with_the_scorer() -> None:
    assert stripe_events.MAX_ID_LEN == serde.MAX_ID_LEN
    assert stripe_events.MAX_AMOUNT_MINOR == serde.MAX_AMOUNT_MINOR
    assert stripe_events.MIN_TIME == serde.MIN_EVENT_TIME
    assert stripe_events.MAX_FUTURE_SKEW_S == serde.MAX_FUTURE_SKEW_S


_TOKENIZER = PanTokenizer(b"stripe-events-test-key")


def assert_acceptable(action: StripeAction) -> None:
    """What the scorer would accept, and no card number in any text field."""
    if isinstance(action, ScorePayment):
        tx = action.transaction
        _, failures = serde.batch_from_proto([tx], "transaction", NOW, _TOKENIZER)
        assert not failures, failures[0].error
        assert not tx.card.pan
        for text in (tx.transaction_id, tx.customer_id, tx.merchant_id, tx.device_id, tx.ip_address, tx.card.token):
            assert not holds_pan(text), text
    elif isinstance(action, ReportOutcome):
        assert action.outcome in (scoring_pb2.OUTCOME_FRAUD, scoring_pb2.OUTCOME_CHARGEBACK)
        assert 0 < len(action.transaction_id) <= serde.MAX_ID_LEN and action.transaction_id.isprintable()
        assert action.reported_at.tzinfo is UTC
        assert action.reported_at.timestamp() <= NOW + serde.MAX_FUTURE_SKEW_S
    else:
        assert action.reason in ("unhandled_type", "no_card", "already_scored", "dispute_not_fraud")


_PAN_RUN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def holds_pan(text: str) -> bool:
    return any(luhn_valid(re.sub(r"[ -]", "", run)) for run in _PAN_RUN.findall(text))


@pytest.mark.parametrize("name", EVENT_FIXTURES)
def test_every_fixture_is_acceptable(name: str) -> None:
    assert_acceptable(interpret(load(name), now=NOW))


# ---- hostile input


def _json(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | text | st.sampled_from(NASTY)
    return st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=5), max_leaves=20
    )


NASTY: list[object] = [
    None, "", " ", "x" * 129, "\x00", "\u202e", "\ud800", VISA, f"dev {VISA}", -1, 0, 10**15, 10**16, 2**63, 2**64,
    -(2**63) - 1, 10**400, float("nan"), float("inf"), -0.0, 1e308, True, False, [], {}, "nan", "1e999", "::1",
    "fe80::1%eth0", "card", "card_present", "interac_present", "sepa_debit", "usd", "isk", "mga", "USD",
    "pi_1", "ch_1", "evt_1", {"id": "pi_1"}, {"id": None}, {"id": VISA}, 946_684_800, 1_718_200_000,
    253_402_300_799, 253_402_300_800,
]  # fmt: skip
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
KEYS = st.sampled_from(["id", "object", "type", "created", "data", "amount", "currency", "card", "metadata",
                        "payment_intent", "charge", "payment_method", "payment_method_details", "latest_charge",
                        "fingerprint", "last4", "iin", "wallet", "read_method", "customer", "ip", "device_id",
                        "latitude", "longitude", "payment_method_types", "moto", "account"]) | TEXT  # fmt: skip
JSON = _json(TEXT)
JSON_WITH_KEYS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT | st.sampled_from(NASTY),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=8),
    max_leaves=30,
)
KINDS = st.sampled_from([*stripe_events._SCORED, *stripe_events._LABELS, *stripe_events._ALREADY_SCORED,
                         "customer.created"]) | TEXT  # fmt: skip
OBJECT_KINDS = st.sampled_from(["payment_intent", "charge", "dispute", "radar.early_fraud_warning"]) | JSON


def check(event: Any) -> None:
    try:
        action = interpret(event, now=NOW)
    except StripeEventError as exc:
        assert exc.field
        return
    assert isinstance(action, StripeAction)
    assert_acceptable(action)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_arbitrary_json(event: Any) -> None:
    check(event)


EVENT_SHAPED = st.fixed_dictionaries(
    {
        "object": st.just("event") | JSON,
        "id": st.just("evt_1") | JSON,
        "type": KINDS,
        "created": st.just(1_718_200_000) | JSON,
        "data": st.fixed_dictionaries(
            {"object": st.builds(lambda d, k: {**d, "object": k}, st.dictionaries(KEYS, JSON_WITH_KEYS, max_size=12),
                                 OBJECT_KINDS)}
        ),
    },
    optional={"account": JSON},
)


@settings(max_examples=400, deadline=None)
@given(EVENT_SHAPED)
def test_arbitrary_event_shaped_json(event: dict[str, Any]) -> None:
    check(event)


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from _paths(item, (*prefix, i))


def _variants() -> list[dict[str, Any]]:
    """The event fixtures, and the handled ones again with their references expanded."""
    events = [load(name) for name in EVENT_FIXTURES]
    charge = load("charge.succeeded")["data"]["object"]
    intent = load("payment_intent.succeeded")["data"]["object"]
    events.append(edited("payment_intent.succeeded", data__object__latest_charge=copy.deepcopy(charge)))
    events.append(edited("payment_intent.requires_action", data__object__payment_method=load("payment_method.card")))
    events.append(edited("charge.succeeded", data__object__payment_intent=copy.deepcopy(intent)))
    events.append(edited("charge.dispute.created", data__object__payment_intent=None,
                         data__object__charge=copy.deepcopy(charge)))  # fmt: skip
    return events


VARIANTS = _variants()


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = copy.deepcopy(draw(st.sampled_from(VARIANTS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(event))
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        node: Any = event
        for key in parents:
            node = node[key]
        if draw(st.booleans()) and isinstance(node, dict):
            del node[last]
        else:
            node[last] = copy.deepcopy(draw(st.sampled_from(NASTY) | JSON))  # NASTY's lists and dicts are shared
    return event


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_mutated_events(event: dict[str, Any]) -> None:
    check(event)


def test_fixtures_are_not_changed_by_interpret() -> None:
    for event in VARIANTS:
        before = copy.deepcopy(event)
        interpret(event, now=NOW)
        assert event == before



@pytest.mark.parametrize(("reason", "fraud"), [("fraudulent", True), ("unrecognized", True),
                                               ("product_not_received", False), ("duplicate", False),
                                               ("subscription_canceled", False), ("general", False)])
def test_only_fraud_disputes_become_labels(reason: str, fraud: bool) -> None:
    action = interpret(edited("charge.dispute.created", data__object__reason=reason), now=NOW)
    if fraud:
        assert isinstance(action, ReportOutcome)
        assert action.outcome == scoring_pb2.OUTCOME_CHARGEBACK
    else:
        assert action == Ignore("dispute_not_fraud")


def test_addresses_and_email_are_best_effort() -> None:
    event = load("charge.succeeded")
    charge = event["data"]["object"]
    charge["billing_details"]["address"]["country"] = "de"  # not an alpha-2 code as Stripe writes them
    charge["shipping"] = None
    charge["billing_details"]["email"] = "4111111111111111@example.com"  # a PAN in disguise is left out
    charge["receipt_email"] = "not-an-address"
    card_details(event)["card"]["country"] = 7
    tx = scored(event)
    assert (tx.billing_country, tx.shipping_country, tx.email, tx.card.country) == ("", "", "", "")
    charge["receipt_email"] = "jenny@example.com"
    assert scored(event).email == "jenny@example.com"

"""The synthetic payments generator: deterministic, sorted, labelled, every scenario present."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from trainer.synthetic import DAY_S, FraudType, ScenarioMix, SyntheticConfig, SyntheticPayments, generate_payments

CONFIG = SyntheticConfig(n_transactions=20_000, seed=11, days=30)


@pytest.fixture(scope="module")
def payments() -> SyntheticPayments:
    return generate_payments(CONFIG)


def test_same_seed_gives_identical_columns(payments: SyntheticPayments) -> None:
    again = generate_payments(CONFIG)
    for field in dataclasses.fields(SyntheticPayments):
        a, b = getattr(payments, field.name), getattr(again, field.name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), field.name
    assert payments.fingerprint() == again.fingerprint()


def test_another_seed_gives_other_payments(payments: SyntheticPayments) -> None:
    other = generate_payments(dataclasses.replace(CONFIG, seed=12))
    assert other.fingerprint() != payments.fingerprint()
    assert not np.array_equal(other.amount_minor, payments.amount_minor)
    assert not set(other.card_token.tolist()) & set(payments.card_token.tolist())


def test_rows_are_sorted_by_time_within_the_period(payments: SyntheticPayments) -> None:
    assert len(payments) == CONFIG.n_transactions
    assert np.all(np.diff(payments.event_time) >= 0)
    assert payments.event_time[0] >= CONFIG.start_time
    assert payments.event_time[-1] < CONFIG.start_time + (CONFIG.days + 1) * DAY_S
    assert len(np.unique(payments.transaction_id)) == len(payments)


def test_fraud_rate_and_every_scenario(payments: SyntheticPayments) -> None:
    assert payments.fraud_rate == pytest.approx(CONFIG.fraud_rate, abs=1e-4)
    counts = np.bincount(payments.fraud_type, minlength=len(FraudType))
    shares = CONFIG.scenarios.shares()
    n_fraud = int(payments.is_fraud.sum())
    for kind in FraudType:
        if kind is not FraudType.NONE:
            assert counts[kind] == pytest.approx(shares[kind] * n_fraud, abs=1), kind.name
    assert np.array_equal(payments.is_fraud, payments.fraud_type != FraudType.NONE)


def test_fraud_rate_is_configurable() -> None:
    few = generate_payments(dataclasses.replace(CONFIG, n_transactions=5_000, fraud_rate=0.005))
    assert few.fraud_rate == pytest.approx(0.005, abs=1e-4)
    only_testing = generate_payments(dataclasses.replace(
        CONFIG, n_transactions=5_000, scenarios=ScenarioMix(1, 0, 0, 0, 0, 0, 0)))
    assert set(np.unique(only_testing.fraud_type[only_testing.is_fraud]).tolist()) == {FraudType.CARD_TESTING}


def test_labels_arrive_after_the_payment_within_the_configured_delay(payments: SyntheticPayments) -> None:
    fraud = payments.is_fraud
    delay = payments.label_time[fraud] - payments.event_time[fraud]
    lo, hi = CONFIG.label_delay_days
    assert np.all(delay >= lo * DAY_S) and np.all(delay <= hi * DAY_S)
    assert np.all(np.isinf(payments.label_time[~fraud]))
    assert np.all(payments.label_time >= payments.event_time)


def test_card_testing_is_bursts_of_small_amounts_on_one_card(payments: SyntheticPayments) -> None:
    rows = np.flatnonzero(payments.fraud_type == FraudType.CARD_TESTING)
    unit = np.array([MINOR_UNIT[c] for c in payments.currency[rows].tolist()])
    assert np.all(payments.amount_minor[rows] * unit < 5.0)
    for i in rows[:200].tolist():  # each has a companion on the same card within minutes
        same_card = rows[payments.card_token[rows] == payments.card_token[i]]
        gaps = np.abs(payments.event_time[same_card] - payments.event_time[i])
        assert np.sort(gaps)[1] <= 10 * 60


def test_customers_hold_one_or_two_cards(payments: SyntheticPayments) -> None:
    legit = ~payments.is_fraud
    pairs = np.unique(np.stack([payments.customer_id[legit], payments.card_token[legit]]), axis=1)
    _, cards_per_customer = np.unique(pairs[0], return_counts=True)
    assert set(np.unique(cards_per_customer).tolist()) <= {1, 2}
    assert (cards_per_customer == 2).any()


def test_card_present_payments_carry_the_store_location_and_no_device(payments: SyntheticPayments) -> None:
    present = payments.channel == pb.CHANNEL_CARD_PRESENT
    assert present.any() and (payments.channel == pb.CHANNEL_ECOMMERCE).any()
    assert not np.isnan(payments.latitude[present]).any()
    assert np.all(payments.device_id[present] == "")
    online = payments.channel == pb.CHANNEL_ECOMMERCE
    assert np.all(payments.device_id[online] != "") and np.all(payments.ip_address[online] != "")
    assert np.isnan(payments.latitude[online]).any()  # not every app shares a location


def test_columns_are_read_only(payments: SyntheticPayments) -> None:
    with pytest.raises(ValueError, match="read-only"):
        payments.amount_minor[0] = 1


def test_proto_conversion_keeps_every_field(payments: SyntheticPayments) -> None:
    located = int(np.flatnonzero(~np.isnan(payments.latitude))[0])
    unlocated = int(np.flatnonzero(np.isnan(payments.latitude))[0])
    tx = payments.to_transaction_proto(located)
    assert tx.transaction_id == payments.transaction_id[located]
    assert tx.event_time.seconds == payments.event_time[located] and tx.event_time.nanos == 0
    assert tx.amount_minor == payments.amount_minor[located] and tx.currency == payments.currency[located]
    assert (tx.card.token, tx.card.bin, tx.card.last4) == (
        payments.card_token[located], payments.card_bin[located], payments.card_last4[located])
    assert tx.location.latitude == payments.latitude[located]
    assert tx.channel == payments.channel[located] and tx.entry_mode == payments.entry_mode[located]
    assert not payments.to_transaction_proto(unlocated).HasField("location")
    assert [t.transaction_id for t in payments.iter_transaction_protos(10, 13)] == \
        payments.transaction_id[10:13].tolist()


def test_take_keeps_a_subset(payments: SyntheticPayments) -> None:
    head = payments.take(slice(0, 100))
    assert len(head) == 100 and np.array_equal(head.event_time, payments.event_time[:100])


@pytest.mark.parametrize("change", [{"fraud_rate": 0.6}, {"n_transactions": 0}, {"days": 3},
                                    {"label_delay_days": (5.0, 1.0)}, {"scenarios": ScenarioMix(0, 0, 0, 0, 0, 0, 0)}])
def test_bad_configs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(CONFIG, **change)  # type: ignore[arg-type]

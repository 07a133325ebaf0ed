"""The synthetic payments generator: deterministic, sorted, labelled, every scenario present."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from trainer.payments import Payments
from trainer.synthetic import (
    DAY_S,
    STRUCTURING_LIMITS,
    FraudType,
    ScenarioMix,
    SyntheticConfig,
    generate_payments,
)

CONFIG = SyntheticConfig(n_transactions=20_000, seed=11, days=30)


@pytest.fixture(scope="module")
def payments() -> Payments:
    return generate_payments(CONFIG)


def test_same_seed_gives_identical_columns(payments: Payments) -> None:
    again = generate_payments(CONFIG)
    for field in dataclasses.fields(Payments):
        a, b = getattr(payments, field.name), getattr(again, field.name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), field.name
    assert payments.fingerprint() == again.fingerprint()


def test_another_seed_gives_other_payments(payments: Payments) -> None:
    other = generate_payments(dataclasses.replace(CONFIG, seed=12))
    assert other.fingerprint() != payments.fingerprint()
    assert not np.array_equal(other.amount_minor, payments.amount_minor)
    assert not set(other.card_token.tolist()) & set(payments.card_token.tolist())


def test_rows_are_sorted_by_time_within_the_period(payments: Payments) -> None:
    assert len(payments) == CONFIG.n_transactions
    assert np.all(np.diff(payments.event_time) >= 0)
    assert payments.event_time[0] >= CONFIG.start_time
    assert payments.event_time[-1] < CONFIG.start_time + (CONFIG.days + 1) * DAY_S
    assert len(np.unique(payments.transaction_id)) == len(payments)


def test_fraud_rate_and_every_scenario(payments: Payments) -> None:
    assert payments.fraud_rate == pytest.approx(CONFIG.fraud_rate, abs=1e-4)
    names, n_rows = np.unique(payments.scenario, return_counts=True)
    counts = dict(zip(names.tolist(), n_rows.tolist(), strict=True))
    shares = CONFIG.scenarios.shares()
    n_fraud = int(payments.is_fraud.sum())
    for kind in FraudType:
        if kind is not FraudType.NONE:
            assert counts[kind.name.lower()] == pytest.approx(shares[kind] * n_fraud, abs=1), kind.name
    assert np.array_equal(payments.is_fraud, payments.scenario != "")


def test_fraud_rate_is_configurable() -> None:
    few = generate_payments(dataclasses.replace(CONFIG, n_transactions=5_000, fraud_rate=0.005))
    assert few.fraud_rate == pytest.approx(0.005, abs=1e-4)
    only_testing = generate_payments(dataclasses.replace(
        CONFIG, n_transactions=5_000, scenarios=ScenarioMix(1, 0, 0, 0, 0, 0, 0, 0)))
    assert set(only_testing.scenario[only_testing.is_fraud].tolist()) == {"card_testing"}


def test_labels_arrive_after_the_payment_within_the_configured_delay(payments: Payments) -> None:
    fraud = payments.is_fraud
    delay = payments.label_time[fraud] - payments.event_time[fraud]
    lo, hi = CONFIG.label_delay_days
    assert np.all(delay >= lo * DAY_S) and np.all(delay <= hi * DAY_S)
    assert np.all(np.isinf(payments.label_time[~fraud]))
    assert np.all(payments.label_time >= payments.event_time)


def test_card_testing_is_bursts_of_small_amounts_on_one_card(payments: Payments) -> None:
    rows = np.flatnonzero(payments.scenario == "card_testing")
    unit = np.array([MINOR_UNIT[c] for c in payments.currency[rows].tolist()])
    assert np.all(payments.amount_minor[rows] * unit < 5.0)
    for i in rows[:200].tolist():  # each has a companion on the same card within minutes
        same_card = rows[payments.card_token[rows] == payments.card_token[i]]
        gaps = np.abs(payments.event_time[same_card] - payments.event_time[i])
        assert np.sort(gaps)[1] <= 10 * 60


@pytest.fixture(scope="module")
def structuring() -> Payments:
    return generate_payments(dataclasses.replace(CONFIG, scenarios=ScenarioMix(0, 0, 0, 0, 0, 0, 0, 1)))


def test_structuring_amounts_sit_just_under_the_limit(structuring: Payments) -> None:
    rows = structuring.scenario == "structuring"
    assert rows.sum() == round(CONFIG.n_transactions * CONFIG.fraud_rate)
    currency = structuring.currency.tolist()
    limit = np.array([STRUCTURING_LIMITS[c] / MINOR_UNIT[c] for c in currency])  # in minor units
    just_under = (structuring.amount_minor < limit) & (structuring.amount_minor >= 0.95 * limit)
    assert np.all(just_under[rows])
    assert just_under[~rows].mean() < 0.05  # legitimate amounts do not bunch there
    assert {"EUR", "GBP"} <= set(structuring.currency[rows].tolist())
    assert STRUCTURING_LIMITS["EUR"] == 30 and STRUCTURING_LIMITS["GBP"] == 25  # the SCA low-value exemption


def test_structuring_recurs_on_a_few_cards_and_shops_over_days(structuring: Payments) -> None:
    rows = np.flatnonzero(structuring.scenario == "structuring")
    _, card_of_row, n_per_card = np.unique(structuring.card_token[rows], return_inverse=True, return_counts=True)
    assert (n_per_card[card_of_row] >= 3).mean() > 0.9  # almost every payment has company on its card
    spans, gaps = [], []
    for k in np.flatnonzero(n_per_card >= 3).tolist():
        on_card = rows[card_of_row == k]
        assert len(set(structuring.merchant_id[on_card].tolist())) <= 3
        assert len(set(structuring.device_id[on_card].tolist())) == 1  # one fraudster
        spans.append(np.ptp(structuring.event_time[on_card]))
        gaps.append(np.median(np.diff(structuring.event_time[on_card])))
    assert max(spans) < 4 * DAY_S and np.median(spans) > DAY_S  # over days, not in a burst
    assert np.median(gaps) > 3600


def test_progress_hears_every_stage_and_reaches_the_total(payments: Payments) -> None:
    calls: list[tuple[str, int]] = []
    again = generate_payments(CONFIG, progress=lambda stage, rows: calls.append((stage, rows)))
    assert again.fingerprint() == payments.fingerprint()  # listening changes nothing
    scenarios = [kind.name.lower() for kind in FraudType if kind is not FraudType.NONE]
    assert list(dict.fromkeys(stage for stage, _ in calls)) == ["population", "legitimate", *scenarios, "columns"]
    assert all(rows >= 0 for _, rows in calls)
    done = {stage: sum(rows for s, rows in calls if s == stage) for stage, _ in calls}
    assert done["legitimate"] == int((~payments.is_fraud).sum())
    assert all(done[name] == int((payments.scenario == name).sum()) for name in scenarios)
    assert done["columns"] == len(payments)
    assert sum(done.values()) == 2 * CONFIG.n_transactions


def test_ids_have_their_formats(payments: Payments) -> None:
    n = len(payments)
    assert payments.transaction_id.tolist() == [f"tx_{CONFIG.seed:x}_{i}" for i in range(n)]
    octet = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    formats = {
        "card_token": r"tok_[0-9a-f]{16}", "customer_id": r"cus_[0-9a-f]{16}", "merchant_id": r"mer_[0-9a-f]{16}",
        "device_id": r"(dev_[0-9a-f]{16})?", "card_bin": r"4\d{5}|5[0-5]\d{4}", "card_last4": r"\d{4}",
        "ip_address": rf"({octet}\.{octet}\.{octet}\.{octet})?",
    }  # fmt: skip
    for name, pattern in formats.items():
        assert all(re.fullmatch(pattern, v) for v in set(getattr(payments, name).tolist())), name
    assert len(set(payments.card_token.tolist())) > 100 and len(set(payments.ip_address.tolist())) > 100


def test_customers_hold_one_or_two_cards(payments: Payments) -> None:
    legit = ~payments.is_fraud
    pairs = np.unique(np.stack([payments.customer_id[legit], payments.card_token[legit]]), axis=1)
    _, cards_per_customer = np.unique(pairs[0], return_counts=True)
    assert set(np.unique(cards_per_customer).tolist()) <= {1, 2}
    assert (cards_per_customer == 2).any()


def test_card_present_payments_carry_the_store_location_and_no_device(payments: Payments) -> None:
    present = payments.channel == pb.CHANNEL_CARD_PRESENT
    assert present.any() and (payments.channel == pb.CHANNEL_ECOMMERCE).any()
    assert not np.isnan(payments.latitude[present]).any()
    assert np.all(payments.device_id[present] == "")
    online = payments.channel == pb.CHANNEL_ECOMMERCE
    assert np.all(payments.device_id[online] != "") and np.all(payments.ip_address[online] != "")
    assert np.isnan(payments.latitude[online]).any()  # not every app shares a location


def test_columns_are_read_only(payments: Payments) -> None:
    with pytest.raises(ValueError, match="read-only"):
        payments.amount_minor[0] = 1


def test_proto_conversion_keeps_every_field(payments: Payments) -> None:
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


def test_take_keeps_a_subset(payments: Payments) -> None:
    head = payments.take(slice(0, 100))
    assert len(head) == 100 and np.array_equal(head.event_time, payments.event_time[:100])


@pytest.mark.parametrize("change", [{"fraud_rate": 0.6}, {"n_transactions": 0}, {"days": 3},
                                    {"label_delay_days": (5.0, 1.0)}, {"label_delay_days": (1.0, math.inf)},
                                    {"scenarios": ScenarioMix(0, 0, 0, 0, 0, 0, 0, 0)}])
def test_bad_configs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(CONFIG, **change)  # type: ignore[arg-type]

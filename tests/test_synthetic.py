"""The synthetic payments generator: deterministic, sorted, labelled, every scenario present, realistically hard."""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter, defaultdict

import numpy as np
import numpy.typing as npt
import pytest

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from trainer.payments import Payments
from trainer.synthetic import (
    DAY_S,
    STRUCTURING_LIMITS,
    FraudType,
    HardNegative,
    HardNegativeRates,
    ScenarioMix,
    SyntheticConfig,
    SyntheticPayments,
    generate_payments,
    generate_synthetic,
)

CONFIG = SyntheticConfig(n_transactions=20_000, seed=11, days=30)


def only(scenario: FraudType) -> ScenarioMix:
    """A mix of one scenario (by name: the mix grows a field with every new scenario)."""
    return ScenarioMix(**{f.name: float(f.name == scenario.name.lower()) for f in dataclasses.fields(ScenarioMix)})


@pytest.fixture(scope="module")
def synthetic() -> SyntheticPayments:
    return generate_synthetic(CONFIG)


@pytest.fixture(scope="module")
def payments(synthetic: SyntheticPayments) -> Payments:
    return synthetic.payments


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
        CONFIG, n_transactions=5_000, scenarios=only(FraudType.CARD_TESTING)))
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
    amount = payments.amount_minor[rows] * unit
    assert np.all(amount < 10.0) and (amount < 5.0).mean() > 0.5  # some stay just above the "small" line
    for i in rows[:200].tolist():  # each has a companion on the same card within minutes
        same_card = rows[payments.card_token[rows] == payments.card_token[i]]
        gaps = np.abs(payments.event_time[same_card] - payments.event_time[i])
        assert np.sort(gaps)[1] <= 10 * 60


@pytest.fixture(scope="module")
def structuring() -> Payments:
    return generate_payments(dataclasses.replace(CONFIG, scenarios=only(FraudType.STRUCTURING)))


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
                                    {"scenarios": ScenarioMix(0, 0, 0, 0, 0, 0, 0, 0, 0)},
                                    {"amount_spread": (1.0, 0.5)}, {"amount_spread": (-0.1, 0.5)}])
def test_bad_configs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(CONFIG, **change)  # type: ignore[arg-type]


def test_bad_hard_negative_rates_are_refused() -> None:
    with pytest.raises(ValidationError):
        HardNegativeRates(new_phone=1.5)
    with pytest.raises(ValidationError):
        HardNegativeRates(burst=-0.1)
    with pytest.raises(ValidationError):  # together, at most half the legitimate payments
        HardNegativeRates(big_ticket=0.2, burst=0.2, abroad_online=0.1, late_night=0.1)


# --- fraud that looks legitimate --------------------------------------------------------------


def _per_customer(payments: Payments, rows: npt.NDArray[np.bool_], column: str) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = defaultdict(set)
    for customer, value in zip(payments.customer_id[rows].tolist(), getattr(payments, column)[rows].tolist(),
                               strict=True):  # fmt: skip
        seen[customer].add(value)
    return seen


def _to_usual(payments: Payments, rows: npt.NDArray[np.int64], usual: npt.NDArray[np.bool_]) -> list[float]:
    """Each row's amount over the median of its customer's ``usual`` payments in the same currency (if any)."""
    out = []
    for i in rows.tolist():
        same = usual & (payments.customer_id == payments.customer_id[i]) & (payments.currency == payments.currency[i])
        if same.any():
            out.append(float(payments.amount_minor[i] / np.median(payments.amount_minor[same])))
    return out


def _per_customer_list(payments: Payments, rows: npt.NDArray[np.bool_]) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = defaultdict(list)
    for customer, country in zip(payments.customer_id[rows].tolist(), payments.merchant_country[rows].tolist(),
                                 strict=True):  # fmt: skip
        seen[customer].append(country)
    return seen


def test_friendly_fraud_uses_the_customers_own_card_device_ip_and_usual_merchants(payments: Payments) -> None:
    rows = np.flatnonzero(payments.scenario == "friendly_fraud")
    assert len(rows) == pytest.approx(CONFIG.scenarios.shares()[FraudType.FRIENDLY_FRAUD] * payments.is_fraud.sum(),
                                      abs=1)  # fmt: skip
    assert max(FraudType) == FraudType.FRIENDLY_FRAUD and dataclasses.fields(ScenarioMix)[-1].name == "friendly_fraud"
    legit = ~payments.is_fraud
    customers = payments.customer_id[rows].tolist()
    for column, at_least in (("card_token", 1.0), ("device_id", 0.8), ("ip_address", 0.8), ("merchant_id", 0.8)):
        own = _per_customer(payments, legit, column)
        given = [(c, v) for c, v in zip(customers, getattr(payments, column)[rows].tolist(), strict=True) if v]
        assert len(given) > len(rows) / 2 and np.mean([v in own[c] for c, v in given]) >= at_least, column
    # where the customer usually is, in the customer's usual channels
    home_lat = {c: np.nanmedian(payments.latitude[legit & (payments.customer_id == c)]) for c in set(customers)}
    near = [abs(payments.latitude[i] - home_lat[c]) < 3.0 for i, c in zip(rows.tolist(), customers, strict=True)
            if not np.isnan(payments.latitude[i])]  # fmt: skip
    assert np.mean(near) > 0.9
    assert set(payments.entry_mode[rows].tolist()) <= set(payments.entry_mode[legit].tolist())
    assert 0.7 < np.median(_to_usual(payments, rows, legit)) < 3.0  # the usual amount, or a bit more


@pytest.fixture(scope="module")
def much_fraud() -> Payments:
    return generate_payments(dataclasses.replace(CONFIG, n_transactions=10_000, fraud_rate=0.3))


def test_some_fraud_stays_quiet(much_fraud: Payments) -> None:
    payments = much_fraud
    testing = np.flatnonzero(payments.scenario == "card_testing")
    unit = np.array([MINOR_UNIT[c] for c in payments.currency[testing].tolist()])
    assert 0.1 < (payments.amount_minor[testing] * unit >= 5.0).mean() < 0.4  # just above the "small" line
    legit = ~payments.is_fraud
    present = legit & (payments.channel == pb.CHANNEL_CARD_PRESENT)
    home = {c: Counter(v).most_common(1)[0][0] for c, v in _per_customer_list(payments, present).items()}
    ato = np.flatnonzero(payments.scenario == "account_takeover")
    domestic = np.mean([payments.merchant_country[i] == home.get(payments.customer_id[i]) for i in ato.tolist()])
    assert 0.3 < domestic < 0.8  # half the account takers stay in the victim's country
    velocity = payments.scenario == "high_velocity"
    spans = [np.ptp(payments.event_time[velocity & (payments.card_token == card)])
             for card in set(payments.card_token[velocity].tolist())]  # fmt: skip
    assert np.mean(np.array(spans) > 3600) > 0.1  # some of it is spread over a couple of hours


# --- legitimate payments that look like fraud ---------------------------------------------------


def test_hard_negatives_come_at_their_configured_rates_and_are_legitimate(synthetic: SyntheticPayments) -> None:
    p, rates = synthetic.payments, CONFIG.hard_negatives
    assert synthetic.hard_negative.dtype == np.uint8 and not synthetic.hard_negative.flags.writeable
    assert np.all(synthetic.hard_negative[p.is_fraud] == 0)
    n_legit = int((~p.is_fraud).sum())
    for kind, share in rates.of_payments().items():
        rows = synthetic.rows_of(kind)
        assert rows.sum() == pytest.approx(share * n_legit, abs=1), kind.name
        assert not p.is_fraud[rows].any() and np.all(p.scenario[rows] == ""), kind.name
    phones = synthetic.rows_of(HardNegative.NEW_PHONE)
    changed = len(set(p.customer_id[phones].tolist()))
    assert changed / CONFIG.customers == pytest.approx(rates.new_phone, abs=0.05)
    assert not p.is_fraud[phones].any()


def test_hard_negatives_can_be_switched_off() -> None:
    none = HardNegativeRates(0.0, 0.0, 0.0, 0.0, 0.0)
    plain = generate_synthetic(dataclasses.replace(CONFIG, n_transactions=5_000, hard_negatives=none))
    assert not plain.hard_negative.any()
    assert plain.payments.fraud_rate == pytest.approx(CONFIG.fraud_rate, abs=1e-4)


def test_new_phones_are_new_then_kept(synthetic: SyntheticPayments) -> None:
    p = synthetic.payments
    phones = synthetic.rows_of(HardNegative.NEW_PHONE)
    kept = 0
    for customer in set(p.customer_id[phones].tolist()):
        mine = p.customer_id == customer
        on_phone = np.flatnonzero(phones & mine)
        assert len(set(p.device_id[on_phone].tolist())) == 1  # one new phone
        phone = p.device_id[on_phone[0]]
        assert phone not in set(p.device_id[np.flatnonzero(mine)[:np.flatnonzero(mine).tolist().index(on_phone[0])]]
                                .tolist())  # fmt: skip
        assert set(p.customer_id[p.device_id == phone].tolist()) == {customer}
        kept += len(on_phone) >= 2
    assert kept / len(set(p.customer_id[phones].tolist())) > 0.8
    first = [np.flatnonzero(phones & (p.customer_id == c))[0] for c in set(p.customer_id[phones].tolist())]
    assert (p.entry_mode[first] == pb.ENTRY_MODE_MANUAL).mean() > 0.8  # the card typed in again


def test_bursts_are_a_few_payments_within_minutes_on_one_card_at_one_merchant(synthetic: SyntheticPayments) -> None:
    p = synthetic.payments
    rows = np.flatnonzero(synthetic.rows_of(HardNegative.BURST))
    key = np.char.add(p.card_token[rows], p.merchant_id[rows])
    for k in np.unique(key).tolist():
        times = p.event_time[rows[key == k]]
        assert len(times) >= 2
        assert np.diff(np.sort(times)).min() <= 240
    sizes = np.unique(key, return_counts=True)[1]
    assert np.median(sizes) <= 5


def test_big_tickets_are_several_times_the_usual_at_high_value_merchants(synthetic: SyntheticPayments) -> None:
    p = synthetic.payments
    rows = np.flatnonzero(synthetic.rows_of(HardNegative.BIG_TICKET))
    ratio = _to_usual(p, rows, (synthetic.hard_negative == 0) & ~p.is_fraud)
    assert len(ratio) > 30 and np.median(ratio) > 4
    high_value = np.isin(p.mcc[rows], [5311, 5732, 5944, 5999, 4511])  # department, electronics, jewellery, ...
    assert high_value.mean() > 0.8


def test_abroad_online_payments_are_online_in_other_countries_some_through_shared_vpn_ips(
    synthetic: SyntheticPayments,
) -> None:
    p = synthetic.payments
    rows = synthetic.rows_of(HardNegative.ABROAD_ONLINE)
    assert not np.isin(p.channel[rows], [pb.CHANNEL_CARD_PRESENT, pb.CHANNEL_ATM]).any()
    legit = ~p.is_fraud & (synthetic.hard_negative == 0) & (p.channel == pb.CHANNEL_CARD_PRESENT)
    home = {c: Counter(v).most_common(1)[0][0] for c, v in _per_customer_list(p, legit).items()}
    abroad = [p.merchant_country[i] != home.get(p.customer_id[i], p.merchant_country[i])
              for i in np.flatnonzero(rows).tolist() if p.customer_id[i] in home]  # fmt: skip
    assert np.mean(abroad) > 0.95
    users = _per_customer(p, np.ones(len(p), np.bool_), "ip_address")
    customers_of_ip: Counter[str] = Counter(ip for ips in users.values() for ip in ips if ip)
    shared = np.array([customers_of_ip[ip] >= 3 for ip in p.ip_address[rows].tolist()])
    assert 0.3 < shared.mean() < 0.7  # through a VPN: an exit IP many customers share


def test_late_night_payments_are_between_midnight_and_five_local_time(synthetic: SyntheticPayments) -> None:
    p = synthetic.payments
    rows = np.flatnonzero(synthetic.rows_of(HardNegative.LATE_NIGHT))
    present = ~p.is_fraud & (p.channel == pb.CHANNEL_CARD_PRESENT)
    lon = {c: float(np.median(p.longitude[present & (p.customer_id == c)]))
           for c in set(p.customer_id[rows].tolist()) & set(p.customer_id[present].tolist())}  # fmt: skip
    hours = [((p.event_time[i] % DAY_S) / 3600 + round(lon[p.customer_id[i]] / 15)) % 24 for i in rows.tolist()
             if p.customer_id[i] in lon]  # fmt: skip
    assert np.mean(np.array(hours) < 5) > 0.85
    all_hours = ((p.event_time[~p.is_fraud] % DAY_S) // 3600).astype(int)
    assert len(set(all_hours.tolist())) == 24


# --- determinism of the additions ---------------------------------------------------------------


def test_hard_negatives_are_deterministic(synthetic: SyntheticPayments) -> None:
    again = generate_synthetic(CONFIG)
    assert np.array_equal(again.hard_negative, synthetic.hard_negative)
    assert again.payments.fingerprint() == synthetic.payments.fingerprint() == generate_payments(CONFIG).fingerprint()
    other = generate_synthetic(dataclasses.replace(CONFIG, seed=12))
    assert not np.array_equal(other.hard_negative, synthetic.hard_negative)


def test_hard_negatives_draw_from_streams_of_their_own(payments: Payments) -> None:
    """Switching the hard negatives off changes the legitimate payments, not the fraudsters' episodes."""
    plain = generate_payments(dataclasses.replace(CONFIG, hard_negatives=HardNegativeRates(0.0, 0.0, 0.0, 0.0, 0.0)))
    for name in ("card_testing", "high_velocity", "structuring", "known_bad_device"):
        a, b = payments.scenario == name, plain.scenario == name
        for column in ("event_time", "card_token", "merchant_id", "amount_minor", "device_id", "ip_address"):
            mine, theirs = getattr(payments, column)[a].tolist(), getattr(plain, column)[b].tolist()
            assert sorted(mine) == sorted(theirs), (name, column)

"""The feature replay: exactly the server's columns and features; labels only once they have arrived."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from fraudguard.security.pan import PanTokenizer
from scoring.features import EngineCapacity, FeatureEngine
from scoring.features.schema import INDEX
from scoring.serde import batch_from_proto
from trainer.payments import Payments
from trainer.replay import batch_from_payments, capacity_for, replay_features
from trainer.synthetic import FraudType, SyntheticConfig, generate_payments

MERCHANT_RATE = INDEX["merchant_fraud_rate"]
DEVICE_RATE = INDEX["device_fraud_rate"]
T0 = 1_750_000_000


@pytest.fixture(scope="module")
def payments() -> Payments:
    return generate_payments(SyntheticConfig(n_transactions=4_000, seed=5, days=14))


def hand_made(rows: list[dict[str, object]]) -> Payments:
    """Payments from a few rows; every field not given takes a plain default."""
    def column(name: str, default: object, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        values: npt.NDArray[Any] = np.array([r.get(name, default) for r in rows], dtype=dtype)
        return values

    n = len(rows)
    return Payments(
        transaction_id=np.array([f"t{i}" for i in range(n)]),
        event_time=column("time", T0, np.int64),
        amount_minor=column("amount_minor", 2500, np.int64),
        currency=column("currency", "EUR", np.str_),
        card_token=column("card", "card-a", np.str_),
        card_bin=column("bin", "411111", np.str_),
        card_last4=column("last4", "1111", np.str_),
        customer_id=column("customer", "cust-a", np.str_),
        merchant_id=column("merchant", "shop", np.str_),
        mcc=column("mcc", 5411, np.int32),
        merchant_country=column("country", "DE", np.str_),
        device_id=column("device", "", np.str_),
        ip_address=column("ip", "", np.str_),
        latitude=column("lat", math.nan, np.float64),
        longitude=column("lon", math.nan, np.float64),
        channel=column("channel", pb.CHANNEL_ECOMMERCE, np.int32),
        entry_mode=column("entry_mode", pb.ENTRY_MODE_MANUAL, np.int32),
        is_fraud=column("fraud", False, np.bool_),
        scenario=np.array(["account_takeover" if r.get("fraud") else "" for r in rows], np.str_),
        label_time=column("label_time", math.inf, np.float64),
    )


def test_batches_of_one_and_of_256_give_identical_features(payments: Payments) -> None:
    head = payments.take(slice(0, 1500))
    one = replay_features(head, batch_size=1)
    many = replay_features(head, batch_size=256)
    assert one.dtype == np.float32 and one.shape == (1500, len(INDEX))
    assert np.array_equal(one, many)


def test_replay_is_deterministic(payments: Payments) -> None:
    assert np.array_equal(replay_features(payments), replay_features(payments))


def test_a_label_is_invisible_until_it_arrives() -> None:
    label_at = T0 + 3600
    rows: list[dict[str, object]] = [
        {"time": T0, "card": "stolen", "device": "dev-x", "fraud": True, "label_time": label_at},
        {"time": T0 + 600, "card": "c1", "device": "dev-x"},  # before the label
        {"time": label_at, "card": "c2", "device": "dev-x"},  # at the instant it arrives: not yet
        {"time": label_at + 1, "card": "c3", "device": "dev-x"},  # after
        {"time": label_at + 7200, "card": "c4", "merchant": "elsewhere", "device": "dev-y"},
    ]
    x = replay_features(hand_made(rows))
    blind = replay_features(hand_made(rows), label_delay_s=math.inf)
    for col in (MERCHANT_RATE, DEVICE_RATE):
        assert np.array_equal(x[:3, col], blind[:3, col])  # the fraud itself and the two before arrival
        assert x[3, col] > blind[3, col]
    assert x[4, MERCHANT_RATE] == blind[4, MERCHANT_RATE]  # another merchant learns nothing


def test_label_delay_override() -> None:
    rows: list[dict[str, object]] = [
        {"time": T0, "fraud": True, "label_time": T0 + 10 * 86400},
        {"time": T0 + 120, "card": "other"},
    ]
    late = replay_features(hand_made(rows))
    early = replay_features(hand_made(rows), label_delay_s=60)
    assert early[1, MERCHANT_RATE] > late[1, MERCHANT_RATE]
    own = replay_features(hand_made(rows), label_delay_s=0)  # a payment never sees its own label
    assert own[0, MERCHANT_RATE] == late[0, MERCHANT_RATE]


def test_labels_raise_the_rates_of_compromised_merchants_and_bad_devices() -> None:
    p = generate_payments(SyntheticConfig(n_transactions=30_000, seed=3, days=40))
    x = replay_features(p)
    later = p.event_time > p.event_time[0] + 20 * 86400
    legit = later & ~p.is_fraud
    for kind, col in ((FraudType.COMPROMISED_MERCHANT, MERCHANT_RATE), (FraudType.KNOWN_BAD_DEVICE, DEVICE_RATE)):
        rows = later & (p.scenario == kind.name.lower())
        assert np.median(x[rows, col]) > 3 * np.median(x[legit, col]), kind.name


def test_columns_match_the_servers_decoding(payments: Payments) -> None:
    protos = list(payments.iter_transaction_protos(0, 500))
    now = float(payments.event_time[499]) + 1.0
    served, failures = batch_from_proto(protos, "transactions", now, PanTokenizer(bytes(32)))
    assert failures == [] and len(served) == 500
    ours = batch_from_payments(payments, 0, 500)
    assert ours.transaction_ids == served.transaction_ids
    for name in ("event_time", "amount", "latitude", "longitude"):
        assert np.array_equal(getattr(ours, name), getattr(served, name), equal_nan=True), name
    for name in ("card_key", "customer_key", "merchant_key", "device_key", "ip_key", "country_code", "mcc",
                 "channel", "entry_mode", "txn_key"):
        assert np.array_equal(getattr(ours, name), getattr(served, name)), name


def test_features_match_the_server_path_exactly(payments: Payments) -> None:
    n = 2000
    capacity = capacity_for(payments)
    tokenizer = PanTokenizer(bytes(32))
    engine = FeatureEngine(capacity)
    now = float(payments.event_time[-1]) + 1.0
    served = []
    for lo in range(0, n, 64):  # as a stream of 64-transaction messages would arrive
        message = list(payments.iter_transaction_protos(lo, min(lo + 64, n)))
        batch, failures = batch_from_proto(message, "transactions", now, tokenizer)
        assert failures == []
        served.append(engine.process(batch))
    replayed = replay_features(payments.take(slice(0, n)), capacity=capacity, label_delay_s=math.inf)
    assert np.array_equal(np.concatenate(served), replayed)


def test_capacity_has_room_for_every_entity(payments: Payments) -> None:
    cap = capacity_for(payments)
    assert cap.cards >= 4 * len(np.unique(payments.card_token))
    assert cap.entities >= 4 * len(np.unique(payments.merchant_id))
    engine_default = EngineCapacity()
    assert capacity_for(payments, headroom=1).cards < engine_default.cards


def test_bad_batch_size_is_refused(payments: Payments) -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        replay_features(payments, batch_size=0)

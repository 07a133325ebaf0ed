"""The feature engine: window semantics, defaults, batching, memory bounds, snapshots."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.features import FEATURE_NAMES, N_FEATURES, EngineCapacity, FeatureEngine, SnapshotError
from scoring.features.batch import TransactionBatch
from scoring.features.keys import country_code, entity_key

T0 = 1_750_000_000.0  # a Monday-ish epoch, seconds
F = {name: i for i, name in enumerate(FEATURE_NAMES)}
SMALL = EngineCapacity(cards=1024, entities=1024, recent_transactions=1024)


def tx_batch(rows: list[dict[str, object]]) -> TransactionBatch:
    """Rows with keys t, amount, card and optional customer, merchant, device, ip, country, lat, lon."""

    def col(name: str, default: object) -> list[Any]:
        return [r.get(name, default) for r in rows]

    def keys(name: str) -> list[int]:
        return [entity_key(str(v)) if v else 0 for v in col(name, "")]

    return TransactionBatch(
        transaction_ids=[f"tx-{i}-{r['t']}" for i, r in enumerate(rows)],
        event_time=col("t", T0),
        amount=col("amount", 10.0),
        card_key=keys("card"),
        customer_key=keys("customer"),
        merchant_key=keys("merchant"),
        device_key=keys("device"),
        ip_key=keys("ip"),
        country_code=[country_code(str(c)) for c in col("country", "")],
        mcc=col("mcc", 5411),
        channel=col("channel", 2),
        entry_mode=col("entry_mode", 1),
        latitude=col("lat", math.nan),
        longitude=col("lon", math.nan),
        txn_key=[entity_key(f"tx-{i}-{r['t']}") for i, r in enumerate(rows)],
    )


def run(engine: FeatureEngine, rows: list[dict[str, object]]) -> np.ndarray:
    return engine.process(tx_batch(rows))


def test_card_velocity_windows_are_exact() -> None:
    engine = FeatureEngine(SMALL)
    rows = [{"t": T0 + s, "amount": 10.0, "card": "c1"} for s in (0, 20, 50, 3000, 3700)]
    x = run(engine, rows)
    assert x[:, F["card_count_1m"]].tolist() == [1, 2, 3, 1, 1]
    assert x[:, F["card_count_1h"]].tolist() == [1, 2, 3, 4, 2]  # at 3700 s, only 3000 and itself
    assert x[:, F["card_count_24h"]].tolist() == [1, 2, 3, 4, 5]
    assert x[2, F["card_amount_1m"]] == pytest.approx(30.0)
    assert x[:, F["card_history_count"]].tolist() == [0, 1, 2, 3, 4]
    later = run(engine, [{"t": T0 + 8 * 86400, "card": "c1"}])
    assert later[0, F["card_count_24h"]] == 1 and later[0, F["card_count_7d"]] == 1


def test_amount_history_novelty_and_travel() -> None:
    engine = FeatureEngine(SMALL)
    home = {"card": "c2", "device": "d1", "country": "US", "merchant": "m1", "lat": 40.71, "lon": -74.0}
    x = run(engine, [{**home, "t": T0 + i * 3600, "amount": 20.0 + i % 3} for i in range(10)])
    assert x[0, F["card_new_device"]] == 1 and x[1:, F["card_new_device"]].sum() == 0
    assert x[0, F["card_seconds_since_last"]] == -1 and x[1, F["card_seconds_since_last"]] == 3600
    # ten minutes later in London, on a new device, for a large amount
    y = run(engine, [{**home, "t": T0 + 9 * 3600 + 600, "amount": 900.0, "device": "d2", "country": "GB",
                      "lat": 51.5, "lon": -0.12}])[0]
    assert y[F["card_new_device"]] == 1 and y[F["card_new_country"]] == 1
    assert y[F["geo_distance_km"]] == pytest.approx(5570, rel=0.01)
    assert y[F["impossible_travel"]] == 1
    assert y[F["card_amount_zscore"]] > 10 and y[F["card_amount_ratio"]] > 40


def test_missing_optional_fields_give_defined_defaults() -> None:
    x = run(FeatureEngine(SMALL), [{"t": T0, "card": "c3"}])[0]
    assert np.isfinite(x).all()
    assert x[F["has_location"]] == 0 and x[F["geo_distance_km"]] == -1 and x[F["impossible_travel"]] == 0
    assert x[F["has_device"]] == 0 and x[F["device_count_1h"]] == 0
    assert x[F["merchant_fraud_rate"]] == pytest.approx(0.01)  # the prior


def test_labels_only_count_once_applied() -> None:
    engine = FeatureEngine(SMALL)
    rows = [{"t": T0 + i, "card": f"c{i}", "merchant": "bad-shop"} for i in range(5)]
    before = run(engine, rows)[-1, F["merchant_fraud_rate"]]
    mkey = np.array([entity_key("bad-shop")] * 3, np.int64)
    applied = engine.apply_labels(mkey, np.zeros(3, np.int64), np.ones(3, bool), np.full(3, T0 + 10))
    assert applied == 3
    after = run(engine, [{"t": T0 + 20, "card": "c9", "merchant": "bad-shop"}])[0, F["merchant_fraud_rate"]]
    assert after > 5 * before
    unknown = engine.apply_labels(np.array([entity_key("nowhere")]), np.zeros(1, np.int64), np.ones(1, bool),
                                  np.array([T0]))
    assert unknown == 0 and engine.stats().labels_unknown == 1


def test_lookup_transaction_remembers_merchant_and_device() -> None:
    engine = FeatureEngine(SMALL)
    batch = tx_batch([{"t": T0, "card": "c1", "merchant": "m", "device": "d"}])
    engine.process(batch)
    assert engine.lookup_transaction(int(batch.txn_key[0])) == (entity_key("m"), entity_key("d"))
    assert engine.lookup_transaction(entity_key("never-seen")) is None


def _random_rows(seed: int, n: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    t = T0
    for _ in range(n):
        t += float(rng.exponential(120.0))
        row: dict[str, object] = {"t": t, "amount": float(rng.lognormal(3, 1)), "card": f"c{rng.integers(40)}"}
        if rng.random() < 0.7:
            row.update(device=f"d{rng.integers(30)}", ip=f"10.0.0.{rng.integers(30)}", customer=f"u{rng.integers(20)}")
        if rng.random() < 0.6:
            row.update(lat=float(rng.uniform(-60, 60)), lon=float(rng.uniform(-170, 170)))
        if rng.random() < 0.8:
            row.update(merchant=f"m{rng.integers(10)}", country=["US", "GB", "DE"][rng.integers(3)])
        rows.append(row)
    return rows


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 64))
def test_batches_equal_singles_and_never_nan(seed: int, size: int) -> None:
    rows = _random_rows(seed, 120)
    one_by_one, batched = FeatureEngine(SMALL), FeatureEngine(SMALL)
    singles = np.vstack([run(one_by_one, [r]) for r in rows])
    chunks = np.vstack([run(batched, rows[i : i + size]) for i in range(0, len(rows), size)])
    assert singles.shape == (120, N_FEATURES)
    assert np.isfinite(singles).all()
    np.testing.assert_array_equal(singles, chunks)


def test_memory_is_bounded_with_eviction() -> None:
    engine = FeatureEngine(EngineCapacity(cards=64, entities=64, recent_transactions=64))
    bytes_before = engine.stats().state_bytes
    run(engine, [{"t": T0 + i, "card": f"c{i}", "customer": f"u{i}"} for i in range(500)])
    stats = engine.stats()
    assert stats.state_bytes == bytes_before
    assert stats.cards_tracked <= 64 and stats.card_evictions >= 500 - 64
    assert stats.entity_evictions[0] >= 500 - 64


def test_snapshot_restore_gives_identical_features(tmp_path: Path) -> None:
    rows = _random_rows(1, 400)
    live = FeatureEngine(SMALL)
    run(live, rows[:250])
    path = tmp_path / "state" / "entities.npz"
    live.copy().save(path)
    restored = FeatureEngine.load(path)
    assert restored.capacity == live.capacity
    np.testing.assert_array_equal(run(live, rows[250:]), run(restored, rows[250:]))


def test_copy_is_independent() -> None:
    engine = FeatureEngine(SMALL)
    twin = engine.copy()
    run(engine, [{"t": T0, "card": "c1"}])
    assert engine.stats().cards_tracked == 1 and twin.stats().cards_tracked == 0


def test_unusable_snapshots_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a snapshot")
    with pytest.raises(SnapshotError, match="unreadable"):
        FeatureEngine.load(garbage)
    good = tmp_path / "good.npz"
    FeatureEngine(SMALL).save(good)
    data = dict(np.load(good))
    data["__schema__"] = np.frombuffer(b"other-schema", np.uint8)
    other = tmp_path / "other.npz"
    np.savez(other, **data)
    with pytest.raises(SnapshotError, match="feature schema"):
        FeatureEngine.load(other)
    assert not list(tmp_path.glob("*.tmp"))


def test_bytes_per_card_within_budget_and_as_documented() -> None:
    from scoring.features import BYTES_PER_CARD, BYTES_PER_ENTITY

    engine = FeatureEngine(EngineCapacity(cards=1024, entities=8, recent_transactions=8))
    small = FeatureEngine(EngineCapacity(cards=8, entities=8, recent_transactions=8))
    measured = (engine.stats().state_bytes - small.stats().state_bytes) / (1024 - 8)
    assert measured == BYTES_PER_CARD <= 2048
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"| card | **{BYTES_PER_CARD:,}** |" in readme
    assert f"| customer / device / IP / merchant | {BYTES_PER_ENTITY:,} |" in readme


# --- the fast kernels change no value -----------------------------------------------------------------------
# The kernels prefetch the state of later transactions of a batch while computing earlier ones, and
# take the tables packed in one buffer. None of it may change a feature or the state: these tests
# pin the exact bits, in any batch partition, where the interleaving is hardest (evictions in tiny
# tables, saturated rings, arrivals out of order, far jumps in time).

_LIBM_FEATURES = {"log_amount", "geo_distance_km", "geo_speed_kmh", "impossible_travel", "merchant_fraud_rate",
                  "device_fraud_rate"}  # fmt: skip


def _hard_stream(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(reals, ints) blocks: a few hot cards (rings of 64 saturate) among 120, few entities (sets and
    small tables overflow), bursts, 10% of arrivals up to 15 min late, some days early or late, gaps of
    two days, zero amounts, missing keys and locations."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(1, 2**62, 400, dtype=np.int64)
    gaps = np.where(rng.random(n) < 0.3, rng.exponential(0.5, n), rng.exponential(5.0, n))
    t = T0 + np.cumsum(np.where(rng.random(n) < 0.002, 2 * 86400.0, gaps))
    jitter = rng.random(n)
    t = np.where(jitter < 0.1, t - rng.uniform(0, 900, n), t)
    t = np.where(jitter > 0.995, t + rng.uniform(-9, 9, n) * 86400, t)
    amount = np.where(rng.random(n) < 0.05, 0.0, rng.lognormal(2.0, 1.5, n))
    located = rng.random(n) < 0.6
    lat = np.where(located, rng.uniform(-60, 60, n), np.nan)
    lon = np.where(located, rng.uniform(-170, 170, n), np.nan)

    def pick(lo: int, hi: int, missing: float) -> np.ndarray:
        chosen = keys[rng.integers(lo, hi, n)]
        return np.where(rng.random(n) < missing, 0, chosen)

    cards = np.where(rng.random(n) < 0.3, keys[rng.integers(0, 3, n)], keys[rng.integers(0, 120, n)])
    ints = np.array([cards, pick(120, 180, 0.2), pick(180, 220, 0.1), pick(220, 300, 0.4), pick(300, 400, 0.4),
                     rng.integers(0, 30, n), rng.integers(0, 9999, n), rng.integers(0, 5, n), rng.integers(0, 5, n),
                     rng.integers(1, 2**62, n, dtype=np.int64)], np.int64)  # fmt: skip
    return np.array([np.maximum(t, 1.0), amount, lat, lon]), ints


def _run_in_batches(engine: FeatureEngine, reals: np.ndarray, ints: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Features of the stream, fed in batches of ``sizes`` (cycled)."""
    out, start, k = [], 0, 0
    while start < reals.shape[1]:
        stop = min(start + sizes[k % len(sizes)], reals.shape[1])
        ids = tuple(f"t{i}" for i in range(start, stop))
        batch = TransactionBatch.packed(ids, reals[:, start:stop].copy(), ints[:, start:stop].copy())
        out.append(engine.process(batch))
        start, k = stop, k + 1
    return np.vstack(out)


def _same_state(a: FeatureEngine, b: FeatureEngine) -> bool:
    sa, sb = a.sparse_state(), b.sparse_state()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k].view(np.uint8), sb[k].view(np.uint8)) for k in sa)


@pytest.mark.parametrize("capacity", [EngineCapacity(8, 8, 8), EngineCapacity(64, 32, 64), SMALL])
def test_any_partition_gives_the_same_bits_and_state(capacity: EngineCapacity) -> None:
    reals, ints = _hard_stream(3, 1500)
    engines = [FeatureEngine(capacity) for _ in range(3)]
    partitions = ([1], [2, 9, 1, 64], [1500])
    runs = [_run_in_batches(e, reals, ints, sizes) for e, sizes in zip(engines, partitions, strict=True)]
    assert engines[0].stats().card_evictions > 0 or capacity == SMALL
    for other, engine in zip(runs[1:], engines[1:], strict=True):
        np.testing.assert_array_equal(runs[0].view(np.uint32), other.view(np.uint32))
        assert _same_state(engines[0], engine)


@pytest.mark.parametrize(
    ("capacity", "expected"),
    [(EngineCapacity(64, 32, 64), "bd20e4d1d9dd826c"), (EngineCapacity(1024, 1024, 1024), "af1aa740b7c29436")],
)
def test_features_are_pinned_to_the_reference_kernels(capacity: EngineCapacity, expected: str) -> None:
    """sha256 of the features of a hard stream, as computed by the plain (unpipelined) kernels of feature
    schema semantic version 1. Columns that go through libm (log, exp, trigonometry) are left out: another
    C library may round them differently. A change here is a change of meaning: bump the schema's version."""
    reals, ints = _hard_stream(11, 6000)
    x = _run_in_batches(FeatureEngine(capacity), reals, ints, [1, 7, 300])
    keep = [i for i, name in enumerate(FEATURE_NAMES) if name not in _LIBM_FEATURES]
    assert hashlib.sha256(np.ascontiguousarray(x[:, keep]).tobytes()).hexdigest()[:16] == expected

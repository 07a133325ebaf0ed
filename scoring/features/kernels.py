"""Numba kernels: read features for a batch of transactions, then fold each into the state.

One call per batch; the loop over transactions runs in machine code. Transactions are
processed in array order, each seeing the state left by the ones before it, so a batch
of n gives exactly the features of n calls of one. The same kernels serve the scoring
server and the trainer's replay (train/serve parity).

Feature semantics (see ``schema.py``): counts and amounts include the current
transaction; novelty, z-scores, time since last and geo compare with the state *before*
it; label-derived rates see only labels applied before the transaction.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from scoring.features import schema
from scoring.features.batch import (
    K_CARD,
    K_CHANNEL,
    K_COUNTRY,
    K_CUSTOMER,
    K_DEVICE,
    K_ENTRY,
    K_IP,
    K_MCC,
    K_MERCHANT,
    K_TXN,
    R_AMOUNT,
    R_LAT,
    R_LON,
    R_TIME,
)
from scoring.features.layout import (
    C7_N,
    C7_W,
    C24_N,
    C24_W,
    C_B7_C,
    C_B7_HEAD,
    C_B7_S,
    C_B24_C,
    C_B24_HEAD,
    C_B24_S,
    C_CTRY,
    C_CTRY_T,
    C_DEV,
    C_DEV_T,
    C_GEO_T,
    C_LAST,
    C_LAT,
    C_LON,
    C_M2,
    C_MEAN,
    C_MERCH,
    C_MERCH_T,
    C_N,
    C_RING_A,
    C_RING_HEAD,
    C_RING_T,
    C_W7_C,
    C_W24_C,
    CARD_SET,
    CTRY_SET,
    DEV_SET,
    E1_N,
    E1_W,
    E24_N,
    E24_W,
    E_B1_C,
    E_B1_HEAD,
    E_B1_S,
    E_B24_C,
    E_B24_HEAD,
    E_B24_S,
    E_CARD_T,
    E_CARDS,
    E_CUSTOMER,
    E_DECAY_T,
    E_DEVICE,
    E_FRAUD,
    E_IP,
    E_LAST,
    E_M2,
    E_MEAN,
    E_MERCHANT,
    E_N,
    E_TXD,
    E_W1_C,
    E_W24_C,
    FRAUD_DECAY_TAU,
    FRAUD_PRIOR_RATE,
    FRAUD_PRIOR_WEIGHT,
    IMPOSSIBLE_MIN_KM,
    IMPOSSIBLE_SPEED_KMH,
    MERCH_SET,
    MIN_TRAVEL_SECONDS,
    R_DEVICE,
    R_MERCHANT,
    RECENT_SET_WINDOW,
    RING,
    RING_ORDER_SLACK_S,
    S_CARD_EVICT,
    S_ENTITY_EVICT,
    S_LABELS_APPLIED,
    S_LABELS_UNKNOWN,
    S_RECENT_EVICT,
    SMALL_AMOUNT,
    WAYS,
)

_I = schema.INDEX
F_AMOUNT = _I["amount"]
F_LOG_AMOUNT = _I["log_amount"]
F_HOUR = _I["hour_of_day"]
F_DOW = _I["day_of_week"]
F_CHANNEL = _I["channel"]
F_ENTRY = _I["entry_mode"]
F_MCC = _I["mcc"]
F_CC_1M = _I["card_count_1m"]
F_CC_1H = _I["card_count_1h"]
F_CC_24H = _I["card_count_24h"]
F_CC_7D = _I["card_count_7d"]
F_CA_1M = _I["card_amount_1m"]
F_CA_1H = _I["card_amount_1h"]
F_CA_24H = _I["card_amount_24h"]
F_CA_7D = _I["card_amount_7d"]
F_C_Z = _I["card_amount_zscore"]
F_C_RATIO = _I["card_amount_ratio"]
F_C_HIST = _I["card_history_count"]
F_C_SINCE = _I["card_seconds_since_last"]
F_NEW_DEV = _I["card_new_device"]
F_NEW_CTRY = _I["card_new_country"]
F_NEW_MERCH = _I["card_new_merchant"]
F_C_DEVS = _I["card_distinct_devices"]
F_C_SMALL = _I["card_small_count_1h"]
F_GEO_KM = _I["geo_distance_km"]
F_GEO_KMH = _I["geo_speed_kmh"]
F_IMPOSSIBLE = _I["impossible_travel"]
F_HAS_LOC = _I["has_location"]
F_CU_1H = _I["customer_count_1h"]
F_CU_24H = _I["customer_count_24h"]
F_CU_A24H = _I["customer_amount_24h"]
F_CU_Z = _I["customer_amount_zscore"]
F_CU_CARDS = _I["customer_distinct_cards"]
F_DV_1H = _I["device_count_1h"]
F_DV_24H = _I["device_count_24h"]
F_DV_CARDS = _I["device_distinct_cards"]
F_IP_1H = _I["ip_count_1h"]
F_IP_24H = _I["ip_count_24h"]
F_IP_CARDS = _I["ip_distinct_cards"]
F_ME_1H = _I["merchant_count_1h"]
F_ME_24H = _I["merchant_count_24h"]
F_ME_Z = _I["merchant_amount_zscore"]
F_ME_FRAUD = _I["merchant_fraud_rate"]
F_DV_FRAUD = _I["device_fraud_rate"]
F_HAS_DEV = _I["has_device"]
F_HAS_IP = _I["has_ip"]

_ENTITY_ROW = (K_CUSTOMER, K_DEVICE, K_IP, K_MERCHANT)  # ints row of each entity type, in E_* order
_EARTH_KM = 6371.0088
_Z_CLIP = 50.0
_RATIO_CLIP = 1000.0


# --- tables -------------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _set_base(key: int, n_slots: int) -> int:
    # keys are already uniform 64-bit hashes; fold the high bits in anyway
    h = key ^ (key >> 29)
    return int(h & (n_slots // WAYS - 1)) * WAYS


@njit(cache=True, nogil=True)
def _find(keys: np.ndarray, key: int) -> int:
    """Slot of ``key`` or -1."""
    base = _set_base(key, keys.shape[0])
    for w in range(WAYS):
        if keys[base + w] == key:
            return base + w
    return -1


@njit(cache=True, nogil=True)
def _victim(keys: np.ndarray, clock: np.ndarray, clock_col: int, key: int) -> int:
    """An empty slot of ``key``'s set, else its least recently seen one."""
    base = _set_base(key, keys.shape[0])
    best = base
    for w in range(WAYS):
        s = base + w
        if keys[s] == 0:
            return s
        if clock[s, clock_col] < clock[best, clock_col]:
            best = s
    return best


@njit(cache=True, nogil=True)
def _claim(keys: np.ndarray, f64: np.ndarray, f32: np.ndarray, i64: np.ndarray, key: int) -> tuple[int, bool]:
    """Slot for ``key``, creating (and evicting) when absent. Returns (slot, evicted)."""
    s = _find(keys, key)
    if s >= 0:
        return s, False
    s = _victim(keys, f64, 0, key)
    evicted = keys[s] != 0
    keys[s] = key
    f64[s, :] = 0.0
    f32[s, :] = 0.0
    i64[s, :] = 0
    return s, evicted


# --- small pieces -------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _bucket_sum(vals: np.ndarray, col: int, nb: int, head: float, bid: float) -> float:
    """Sum of the buckets whose ids lie in (bid - nb, bid], given the newest is ``head``."""
    total = 0.0
    for k in range(nb):
        b = head - k
        if b <= bid - nb:
            break
        if b <= bid:
            total += vals[col + int(b % nb)]
    return total


@njit(cache=True, nogil=True)
def _window(
    f64row: np.ndarray,
    head_col: int,
    tot_col: int,
    f32row: np.ndarray,
    c_col: int,
    s_col: int,
    nb: int,
    width: float,
    t: float,
    amount: float,
    result: np.ndarray,
) -> None:
    """Count and amount of the window ending at ``t`` (before this transaction) into
    ``result[0:2]``, then fold the transaction in.

    ``f64row[tot_col]``/``[tot_col + 1]`` hold the totals of the live buckets, ids in
    ``(head - nb, head]``; buckets falling out of the window are subtracted as time advances.
    """
    bid = float(int(t / width))  # t > 0: truncation is floor
    head = f64row[head_col]
    if bid > head:
        if head == 0.0 or bid - head >= nb:
            for k in range(nb):
                f32row[c_col + k] = 0.0
                f32row[s_col + k] = 0.0
            f64row[tot_col] = 0.0
            f64row[tot_col + 1] = 0.0
        else:
            j = int(head) % nb
            for _ in range(int(bid - head)):
                j = j + 1 if j + 1 < nb else 0
                f64row[tot_col] -= f32row[c_col + j]
                f64row[tot_col + 1] -= f32row[s_col + j]
                f32row[c_col + j] = 0.0
                f32row[s_col + j] = 0.0
            if f64row[tot_col] <= 0.5:  # empty window: drop accumulated rounding
                f64row[tot_col] = 0.0
                f64row[tot_col + 1] = 0.0
        f64row[head_col] = bid
        head = bid
    if bid == head:
        result[0] = f64row[tot_col]
        result[1] = max(f64row[tot_col + 1], 0.0)
    else:  # out of order: older than the newest bucket
        result[0] = _bucket_sum(f32row, c_col, nb, head, bid)
        result[1] = _bucket_sum(f32row, s_col, nb, head, bid)
    if bid > head - nb:
        j = int(bid) % nb
        f32row[c_col + j] += 1.0
        f32row[s_col + j] += amount
        f64row[tot_col] += 1.0
        f64row[tot_col + 1] += np.float32(amount)


@njit(cache=True, nogil=True, inline="always")
def _zscore(n: float, mean: float, m2: float, x: float) -> float:
    if n < 2.0:
        return 0.0
    std = math.sqrt(m2 / (n - 1.0))
    floor = max(0.05 * abs(mean), 0.01)
    z = (x - mean) / max(std, floor)
    return min(max(z, -_Z_CLIP), _Z_CLIP)


@njit(cache=True, nogil=True, inline="always")
def _welford(row: np.ndarray, c_n: int, c_mean: int, c_m2: int, x: float) -> None:
    n = row[c_n] + 1.0
    d = x - row[c_mean]
    row[c_mean] += d / n
    row[c_m2] += d * (x - row[c_mean])
    row[c_n] = n


@njit(cache=True, nogil=True)
def _set_touch(
    keys_row: np.ndarray,
    k_col: int,
    times_row: np.ndarray,
    t_col: int,
    size: int,
    key: int,
    t: float,
) -> bool:
    """Record ``key`` as seen at ``t`` in a small LRU set; True when it was not there."""
    oldest = 0
    for j in range(size):
        if keys_row[k_col + j] == key:
            if t > times_row[t_col + j]:
                times_row[t_col + j] = t
            return False
        if keys_row[k_col + j] == 0:
            oldest = j
            break
        if times_row[t_col + j] < times_row[t_col + oldest]:
            oldest = j
    keys_row[k_col + oldest] = key
    times_row[t_col + oldest] = t
    return True


@njit(cache=True, nogil=True, inline="always")
def _set_recent(keys_row: np.ndarray, k_col: int, times_row: np.ndarray, t_col: int, size: int, t: float) -> int:
    n = 0
    for j in range(size):
        if keys_row[k_col + j] != 0 and times_row[t_col + j] > t - RECENT_SET_WINDOW:
            n += 1
    return n


@njit(cache=True, nogil=True, inline="always")
def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2.0) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2.0) ** 2
    return 2.0 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


@njit(cache=True, nogil=True, inline="always")
def _decay_to(row: np.ndarray, t: float) -> None:
    dt = t - row[E_DECAY_T]
    if dt > 0.0:
        f = math.exp(-dt / FRAUD_DECAY_TAU)
        row[E_FRAUD] *= f
        row[E_TXD] *= f
        row[E_DECAY_T] = t


@njit(cache=True, nogil=True, inline="always")
def _fraud_rate(row: np.ndarray, t: float) -> float:
    dt = t - row[E_DECAY_T]
    f = math.exp(-dt / FRAUD_DECAY_TAU) if dt > 0.0 else 1.0
    rate: float = (row[E_FRAUD] * f + FRAUD_PRIOR_WEIGHT * FRAUD_PRIOR_RATE) / (row[E_TXD] * f + FRAUD_PRIOR_WEIGHT)
    return rate


# --- the card -----------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _card(
    out: np.ndarray,
    i: int,
    f: np.ndarray,
    a: np.ndarray,
    ids: np.ndarray,
    t: float,
    amount: float,
    device: int,
    country: int,
    merchant: int,
    lat: float,
    lon: float,
    win: np.ndarray,
) -> None:
    seen = f[C_N] > 0.0
    # ring: exact 1 min / 1 h, small-amount count
    c1m = 1.0
    c1h = 1.0
    a1m = amount
    a1h = amount
    small = 1.0 if amount < SMALL_AMOUNT else 0.0
    # newest first; the ring is in arrival order, so stop once past the hour (plus slack
    # for transactions that arrive slightly out of order)
    head = int(f[C_RING_HEAD])
    for k in range(1, RING + 1):
        j = (head - k) % RING
        rt = f[C_RING_T + j]
        if rt == 0.0 or rt < t - 3600.0 - RING_ORDER_SLACK_S:
            break
        if rt > t or rt <= t - 3600.0:
            continue
        ra = a[C_RING_A + j]
        c1h += 1.0
        a1h += ra
        if ra < SMALL_AMOUNT:
            small += 1.0
        if rt > t - 60.0:
            c1m += 1.0
            a1m += ra
    out[i, F_CC_1M] = c1m
    out[i, F_CC_1H] = c1h
    out[i, F_CA_1M] = a1m
    out[i, F_CA_1H] = a1h
    out[i, F_C_SMALL] = small
    _window(f, C_B24_HEAD, C_W24_C, a, C_B24_C, C_B24_S, C24_N, C24_W, t, amount, win)
    out[i, F_CC_24H] = 1.0 + win[0]
    out[i, F_CA_24H] = amount + win[1]
    _window(f, C_B7_HEAD, C_W7_C, a, C_B7_C, C_B7_S, C7_N, C7_W, t, amount, win)
    out[i, F_CC_7D] = 1.0 + win[0]
    out[i, F_CA_7D] = amount + win[1]
    # history
    out[i, F_C_Z] = _zscore(f[C_N], f[C_MEAN], f[C_M2], amount)
    out[i, F_C_RATIO] = min(amount / max(f[C_MEAN], 0.01), _RATIO_CLIP) if seen else 1.0
    out[i, F_C_HIST] = f[C_N]
    out[i, F_C_SINCE] = max(t - f[C_LAST], 0.0) if seen else -1.0
    # geo
    has_loc = not (math.isnan(lat) or math.isnan(lon))
    out[i, F_HAS_LOC] = 1.0 if has_loc else 0.0
    km = -1.0
    kmh = -1.0
    impossible = 0.0
    if has_loc and f[C_GEO_T] != 0.0:
        km = _haversine_km(f[C_LAT], f[C_LON], lat, lon)
        kmh = km / (max(abs(t - f[C_GEO_T]), MIN_TRAVEL_SECONDS) / 3600.0)
        if kmh > IMPOSSIBLE_SPEED_KMH and km > IMPOSSIBLE_MIN_KM:
            impossible = 1.0
    out[i, F_GEO_KM] = km
    out[i, F_GEO_KMH] = kmh
    out[i, F_IMPOSSIBLE] = impossible
    # novelty (sets are updated here too)
    out[i, F_NEW_DEV] = 1.0 if device != 0 and _set_touch(ids, C_DEV, f, C_DEV_T, DEV_SET, device, t) else 0.0
    out[i, F_NEW_CTRY] = 1.0 if country != 0 and _set_touch(ids, C_CTRY, f, C_CTRY_T, CTRY_SET, country, t) else 0.0
    out[i, F_NEW_MERCH] = (
        1.0 if merchant != 0 and _set_touch(ids, C_MERCH, f, C_MERCH_T, MERCH_SET, merchant, t) else 0.0
    )
    out[i, F_C_DEVS] = _set_recent(ids, C_DEV, f, C_DEV_T, DEV_SET, t)
    # fold in
    f[C_RING_T + head] = t
    a[C_RING_A + head] = amount
    f[C_RING_HEAD] = (head + 1) % RING
    _welford(f, C_N, C_MEAN, C_M2, amount)
    if has_loc:
        f[C_LAT] = lat
        f[C_LON] = lon
        f[C_GEO_T] = t
    if t > f[C_LAST]:
        f[C_LAST] = t


# --- customers, devices, IPs, merchants ------------------------------------------------------


@njit(cache=True, nogil=True)
def _entity(
    f: np.ndarray,
    a: np.ndarray,
    ids: np.ndarray,
    t: float,
    amount: float,
    card: int,
    result: np.ndarray,
) -> None:
    """Read (count 1 h, count 24 h, amount 24 h, z-score, distinct cards, fraud rate) then fold in."""
    _window(f, E_B1_HEAD, E_W1_C, a, E_B1_C, E_B1_S, E1_N, E1_W, t, amount, result)
    result[0] += 1.0
    _window(f, E_B24_HEAD, E_W24_C, a, E_B24_C, E_B24_S, E24_N, E24_W, t, amount, result[1:3])
    result[1] += 1.0
    result[2] += amount
    result[3] = _zscore(f[E_N], f[E_MEAN], f[E_M2], amount)
    _set_touch(ids, E_CARDS, f, E_CARD_T, CARD_SET, card, t)
    result[4] = _set_recent(ids, E_CARDS, f, E_CARD_T, CARD_SET, t)
    if f[E_DECAY_T] == 0.0:
        f[E_DECAY_T] = t
    _decay_to(f, t)  # labels and transactions now both refer to t (or later, if out of order)
    result[5] = _fraud_rate(f, t)
    _welford(f, E_N, E_MEAN, E_M2, amount)
    f[E_TXD] += 1.0
    if t > f[E_LAST]:
        f[E_LAST] = t


@njit(cache=True, nogil=True)
def process_batch(
    reals: np.ndarray,
    ints: np.ndarray,
    card_keys: np.ndarray,
    card_f64: np.ndarray,
    card_f32: np.ndarray,
    card_i64: np.ndarray,
    ent_keys: np.ndarray,
    ent_f64: np.ndarray,
    ent_f32: np.ndarray,
    ent_i64: np.ndarray,
    recent_keys: np.ndarray,
    recent_vals: np.ndarray,
    recent_t: np.ndarray,
    stats: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write the features of each transaction into ``out`` (float32 [n, N_FEATURES]) and fold it in."""
    res = np.empty(6, dtype=np.float64)
    win = np.empty(2, dtype=np.float64)
    for i in range(reals.shape[1]):
        t = reals[R_TIME, i]
        amt = reals[R_AMOUNT, i]
        device = ints[K_DEVICE, i]
        merchant = ints[K_MERCHANT, i]
        out[i, F_AMOUNT] = amt
        out[i, F_LOG_AMOUNT] = math.log1p(amt)
        out[i, F_HOUR] = (t % 86400.0) / 3600.0
        out[i, F_DOW] = (math.floor(t / 86400.0) + 3) % 7
        out[i, F_CHANNEL] = ints[K_CHANNEL, i]
        out[i, F_ENTRY] = ints[K_ENTRY, i]
        out[i, F_MCC] = ints[K_MCC, i]
        out[i, F_HAS_DEV] = 1.0 if device != 0 else 0.0
        out[i, F_HAS_IP] = 1.0 if ints[K_IP, i] != 0 else 0.0

        card = ints[K_CARD, i]
        s, evicted = _claim(card_keys, card_f64, card_f32, card_i64, card)
        if evicted:
            stats[S_CARD_EVICT] += 1
        _card(
            out,
            i,
            card_f64[s],
            card_f32[s],
            card_i64[s],
            t,
            amt,
            device,
            ints[K_COUNTRY, i],
            merchant,
            reals[R_LAT, i],
            reals[R_LON, i],
            win,
        )

        for e in range(4):
            key = ints[_ENTITY_ROW[e], i]
            if key == 0:
                res[:] = 0.0
                res[5] = FRAUD_PRIOR_RATE
            else:
                s, evicted = _claim(ent_keys[e], ent_f64[e], ent_f32[e], ent_i64[e], key)
                if evicted:
                    stats[S_ENTITY_EVICT + e] += 1
                _entity(ent_f64[e, s], ent_f32[e, s], ent_i64[e, s], t, amt, card, res)
            if e == E_CUSTOMER:
                out[i, F_CU_1H] = res[0]
                out[i, F_CU_24H] = res[1]
                out[i, F_CU_A24H] = res[2]
                out[i, F_CU_Z] = res[3]
                out[i, F_CU_CARDS] = res[4]
            elif e == E_DEVICE:
                out[i, F_DV_1H] = res[0]
                out[i, F_DV_24H] = res[1]
                out[i, F_DV_CARDS] = res[4]
                out[i, F_DV_FRAUD] = res[5]
            elif e == E_IP:
                out[i, F_IP_1H] = res[0]
                out[i, F_IP_24H] = res[1]
                out[i, F_IP_CARDS] = res[4]
            else:
                out[i, F_ME_1H] = res[0]
                out[i, F_ME_24H] = res[1]
                out[i, F_ME_Z] = res[3]
                out[i, F_ME_FRAUD] = res[5]

        # remember merchant and device for ReportOutcome
        tk = ints[K_TXN, i]
        r = _find(recent_keys, tk)
        if r < 0:
            r = _victim(recent_keys, recent_t, 0, tk)
            if recent_keys[r] != 0:
                stats[S_RECENT_EVICT] += 1
            recent_keys[r] = tk
        recent_vals[r, R_MERCHANT] = merchant
        recent_vals[r, R_DEVICE] = device
        recent_t[r, 0] = t


@njit(cache=True, nogil=True)
def apply_labels(
    merchant_key: np.ndarray,
    device_key: np.ndarray,
    is_fraud: np.ndarray,
    known_time: np.ndarray,
    ent_keys: np.ndarray,
    ent_f64: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Fold outcomes (known at ``known_time``) into the merchants' and devices' fraud counters."""
    for i in range(merchant_key.shape[0]):
        applied = False
        for e in (E_MERCHANT, E_DEVICE):
            key = merchant_key[i] if e == E_MERCHANT else device_key[i]
            if key == 0:
                continue
            s = _find(ent_keys[e], key)
            if s < 0:
                continue
            applied = True
            if is_fraud[i]:
                row = ent_f64[e, s]
                _decay_to(row, known_time[i])
                dt = row[E_DECAY_T] - known_time[i]
                row[E_FRAUD] += math.exp(-dt / FRAUD_DECAY_TAU) if dt > 0.0 else 1.0
        stats[S_LABELS_APPLIED if applied else S_LABELS_UNKNOWN] += 1


@njit(cache=True, nogil=True)
def lookup_recent(recent_keys: np.ndarray, recent_vals: np.ndarray, txn_key: int) -> tuple[bool, int, int]:
    """(found, merchant key, device key) of a recently scored transaction."""
    r = _find(recent_keys, txn_key)
    if r < 0:
        return False, 0, 0
    return True, recent_vals[r, R_MERCHANT], recent_vals[r, R_DEVICE]

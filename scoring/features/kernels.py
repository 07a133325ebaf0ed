"""Numba kernels: read features for a batch of transactions, then fold each into the state.

One call per batch; the loop over transactions runs in machine code. Transactions are
processed in array order, each seeing the state left by the ones before it, so a batch
of n gives exactly the features of n calls of one. The same kernels serve the scoring
server and the trainer's replay (train/serve parity).

Feature semantics (see ``schema.py``): counts and amounts include the current
transaction; novelty, z-scores, time since last and geo compare with the state *before*
it; label-derived rates see only labels applied before the transaction.

Speed: a transaction touches ~60 cache lines of state spread over hundreds of MB, so the
batch loop is bound by memory latency, not arithmetic. ``process_batch`` runs a prefetch
pipeline ahead of the transaction it computes (key sets, then rows, then ring slots), so
the misses of several transactions overlap; it takes the state as one packed buffer (one
argument instead of twelve: the call's fixed cost is mostly per-argument), and the kernels
are compiled without reference counting (see ``_JIT_OPTIONS``). None of this changes a
value: features and state are bit-identical to a plain loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]  # numba.core.cgutils builds on it
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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
    CARD_F32,
    CARD_F64,
    CARD_I64,
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
    ENT_F32,
    ENT_F64,
    ENT_I64,
    ENTITY_TYPES,
    FRAUD_DECAY_TAU,
    FRAUD_PRIOR_RATE,
    FRAUD_PRIOR_WEIGHT,
    H_CARDS,
    H_ENTITIES,
    H_OFFSETS,
    H_RECENT,
    HEADER_BYTES,
    IMPOSSIBLE_MIN_KM,
    IMPOSSIBLE_SPEED_KMH,
    MERCH_SET,
    MIN_TRAVEL_SECONDS,
    N_STATS,
    R_DEVICE,
    R_MERCHANT,
    RECENT_I64,
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

_F = TypeVar("_F", bound=Callable[..., Any])
# No reference counting (numba's private ``_nrt`` option): these kernels never allocate, and every array
# they touch is owned by the caller for the whole call. A counted view costs an atomic add, and an atomic
# instruction waits for every earlier load to complete, cache misses included: with counting on, a third
# of the kernel's time went to the counts, and loads that could overlap did not.
_JIT_OPTIONS: dict[str, Any] = {"cache": True, "nogil": True, "_nrt": False}


def _kernel(fn: _F) -> _F:
    """``njit`` with this module's options."""
    return cast(_F, njit(**_JIT_OPTIONS)(fn))


def _inline_kernel(fn: _F) -> _F:
    """``njit`` with this module's options, inlined into its callers (numba IR level)."""
    return cast(_F, njit(inline="always", **_JIT_OPTIONS)(fn))


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

N_ENT = len(ENTITY_TYPES)
_ENTITY_ROW = (K_CUSTOMER, K_DEVICE, K_IP, K_MERCHANT)  # ints row of each entity type, in E_* order
# (count 1 h, count 24 h, amount 24 h, amount z-score, distinct cards, fraud rate) of one entity
EntityFeatures = tuple[float, float, float, float, float, float]
_NO_ENTITY: EntityFeatures = (0.0, 0.0, 0.0, 0.0, 0.0, FRAUD_PRIOR_RATE)
_EARTH_KM = 6371.0088
_Z_CLIP = 50.0
_RATIO_CLIP = 1000.0


# --- tables -------------------------------------------------------------------------------


@_inline_kernel
def _set_base(key: int, n_slots: int) -> int:
    # keys are already uniform 64-bit hashes; fold the high bits in anyway
    h = key ^ (key >> 29)
    return int(h & (n_slots // WAYS - 1)) * WAYS


@_inline_kernel
def _find(keys: np.ndarray, key: int) -> int:
    """Slot of ``key`` or -1."""
    base = _set_base(key, keys.shape[0])
    for w in range(WAYS):
        if keys[base + w] == key:
            return base + w
    return -1


@_inline_kernel
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


@_inline_kernel
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


# --- the packed state and prefetching --------------------------------------------------------

AHEAD_SETS = 6  # transactions ahead whose key sets are fetched
AHEAD_ROWS = 3  # ... whose rows are fetched (their key sets have arrived by then)
AHEAD_RING = 1  # ... whose card ring slots are fetched (their card row header has arrived)
_LINE = 64
_cgutils: Any = cgutils  # untyped


@intrinsic
def _prefetch_intrinsic(typingctx: Any, arr: types.Type, idx: types.Type) -> Any:
    """Hint the CPU to bring the cache line of ``arr[idx]`` (1-d) into L1; no fault, no wait, no effect on results."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(idx, types.Integer)):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = _cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i32 = ir.IntType(32)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        fnty = ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32])
        fn = _cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])  # read, keep in all levels, data cache
        return context.get_dummy_value()

    return types.void(arr, idx), codegen


_prefetch = cast(Callable[[np.ndarray, int], None], _prefetch_intrinsic)


@_inline_kernel
def _prefetch_span(arr: np.ndarray, lo: int, hi: int) -> None:
    """Prefetch every cache line holding ``arr[lo:hi]`` (1-d, contiguous)."""
    step = _LINE // arr.itemsize
    for k in range(lo, hi, step):
        _prefetch(arr, k)
    _prefetch(arr, hi - 1)


@_kernel
def _tables(state: np.ndarray) -> Any:
    """Views of the tables in the packed state buffer (see ``layout.STATE_REGIONS``)."""
    h = state[:HEADER_BYTES].view(np.int64)
    nc = h[H_CARDS]
    ne = h[H_ENTITIES]
    nr = h[H_RECENT]
    o = h[H_OFFSETS:]
    return (
        state[o[0] : o[0] + 8 * nc].view(np.int64),
        state[o[1] : o[1] + 8 * nc * CARD_F64].view(np.float64).reshape((nc, CARD_F64)),
        state[o[2] : o[2] + 4 * nc * CARD_F32].view(np.float32).reshape((nc, CARD_F32)),
        state[o[3] : o[3] + 8 * nc * CARD_I64].view(np.int64).reshape((nc, CARD_I64)),
        state[o[4] : o[4] + 8 * N_ENT * ne].view(np.int64).reshape((N_ENT, ne)),
        state[o[5] : o[5] + 8 * N_ENT * ne * ENT_F64].view(np.float64).reshape((N_ENT, ne, ENT_F64)),
        state[o[6] : o[6] + 4 * N_ENT * ne * ENT_F32].view(np.float32).reshape((N_ENT, ne, ENT_F32)),
        state[o[7] : o[7] + 8 * N_ENT * ne * ENT_I64].view(np.int64).reshape((N_ENT, ne, ENT_I64)),
        state[o[8] : o[8] + 8 * nr].view(np.int64),
        state[o[9] : o[9] + 8 * nr * RECENT_I64].view(np.int64).reshape((nr, RECENT_I64)),
        state[o[10] : o[10] + 8 * nr].view(np.float64).reshape((nr, 1)),
        state[o[11] : o[11] + 8 * N_STATS].view(np.int64),
    )


@_inline_kernel
def _prefetch_sets(
    ints: np.ndarray, j: int, card_keys: np.ndarray, ent_keys: np.ndarray, recent_keys: np.ndarray
) -> None:
    """Stage 1 for transaction ``j``: the key set (one line) of its card, entities and transaction id."""
    _prefetch(card_keys, _set_base(ints[K_CARD, j], card_keys.shape[0]))
    for e in range(N_ENT):
        key = ints[_ENTITY_ROW[e], j]
        if key != 0:
            _prefetch(ent_keys[e], _set_base(key, ent_keys.shape[1]))
    _prefetch(recent_keys, _set_base(ints[K_TXN, j], recent_keys.shape[0]))


@_inline_kernel
def _prefetch_clocks(keys: np.ndarray, f64: np.ndarray, key: int) -> None:
    """The LRU clocks a new ``key`` will compare to pick its slot."""
    base = _set_base(key, keys.shape[0])
    for w in range(WAYS):
        _prefetch(f64[base + w], 0)


@_inline_kernel
def _prefetch_rows(
    ints: np.ndarray,
    j: int,
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
) -> None:
    """Stage 2 for transaction ``j``: the state rows it will read (the card's ring excepted), or the LRU clocks
    of the sets where it will claim a slot."""
    key = ints[K_CARD, j]
    s = _find(card_keys, key)
    if s >= 0:
        _prefetch_span(card_f64[s], 0, C_RING_T)
        _prefetch_span(card_f64[s], C_DEV_T, CARD_F64)
        _prefetch_span(card_f32[s], C_B24_C, CARD_F32)
        _prefetch_span(card_i64[s], 0, CARD_I64)
    else:
        _prefetch_clocks(card_keys, card_f64, key)
    for e in range(N_ENT):
        key = ints[_ENTITY_ROW[e], j]
        if key != 0:
            s = _find(ent_keys[e], key)
            if s >= 0:
                _prefetch_span(ent_f64[e, s], 0, ENT_F64)
                _prefetch_span(ent_f32[e, s], 0, ENT_F32)
                _prefetch_span(ent_i64[e, s], 0, ENT_I64)
            else:
                _prefetch_clocks(ent_keys[e], ent_f64[e], key)
    key = ints[K_TXN, j]
    base = _set_base(key, recent_keys.shape[0])
    _prefetch(recent_t[base], 0)
    _prefetch(recent_vals[base], 0)
    _prefetch(recent_vals[base + WAYS - 1], 0)


@_inline_kernel
def _prefetch_new_row(keys: np.ndarray, f64: np.ndarray, f32: np.ndarray, i64: np.ndarray, key: int) -> None:
    """The whole row a new ``key`` will take (it is cleared then written)."""
    s = _victim(keys, f64, 0, key)
    _prefetch_span(f64[s], 0, f64.shape[1])
    _prefetch_span(f32[s], 0, f32.shape[1])
    _prefetch_span(i64[s], 0, i64.shape[1])


@_inline_kernel
def _prefetch_ring(
    ints: np.ndarray,
    j: int,
    card_keys: np.ndarray,
    card_f64: np.ndarray,
    card_f32: np.ndarray,
    card_i64: np.ndarray,
    ent_keys: np.ndarray,
    ent_f64: np.ndarray,
    ent_f32: np.ndarray,
    ent_i64: np.ndarray,
) -> None:
    """Stage 3 for transaction ``j``: the card ring's newest and next slots; the rows that new keys will take."""
    key = ints[K_CARD, j]
    s = _find(card_keys, key)
    if s >= 0:
        head = int(card_f64[s, C_RING_HEAD])
        prev = (head - 1) % RING
        _prefetch(card_f64[s], C_RING_T + prev)
        _prefetch(card_f64[s], C_RING_T + head)
        _prefetch(card_f32[s], C_RING_A + prev)
        _prefetch(card_f32[s], C_RING_A + head)
    else:
        _prefetch_new_row(card_keys, card_f64, card_f32, card_i64, key)
    for e in range(N_ENT):
        key = ints[_ENTITY_ROW[e], j]
        if key != 0 and _find(ent_keys[e], key) < 0:
            _prefetch_new_row(ent_keys[e], ent_f64[e], ent_f32[e], ent_i64[e], key)


# --- small pieces -------------------------------------------------------------------------


@_inline_kernel
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


@_inline_kernel
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
) -> tuple[float, float]:
    """Count and amount of the window ending at ``t`` (before this transaction), then fold the transaction in.

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
        count = f64row[tot_col]
        total = max(f64row[tot_col + 1], 0.0)
    else:  # out of order: older than the newest bucket
        count = _bucket_sum(f32row, c_col, nb, head, bid)
        total = _bucket_sum(f32row, s_col, nb, head, bid)
    if bid > head - nb:
        j = int(bid) % nb
        f32row[c_col + j] += 1.0
        f32row[s_col + j] += amount
        f64row[tot_col] += 1.0
        f64row[tot_col + 1] += np.float32(amount)
    return count, total


@_inline_kernel
def _zscore(n: float, mean: float, m2: float, x: float) -> float:
    if n < 2.0:
        return 0.0
    std = math.sqrt(m2 / (n - 1.0))
    floor = max(0.05 * abs(mean), 0.01)
    z = (x - mean) / max(std, floor)
    return min(max(z, -_Z_CLIP), _Z_CLIP)


@_inline_kernel
def _welford(row: np.ndarray, c_n: int, c_mean: int, c_m2: int, x: float) -> None:
    n = row[c_n] + 1.0
    d = x - row[c_mean]
    row[c_mean] += d / n
    row[c_m2] += d * (x - row[c_mean])
    row[c_n] = n


@_inline_kernel
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


@_inline_kernel
def _set_recent(keys_row: np.ndarray, k_col: int, times_row: np.ndarray, t_col: int, size: int, t: float) -> int:
    n = 0
    for j in range(size):
        if keys_row[k_col + j] != 0 and times_row[t_col + j] > t - RECENT_SET_WINDOW:
            n += 1
    return n


@_inline_kernel
def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1 = math.radians(lat1)
    p2 = math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2.0) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2.0) ** 2
    return 2.0 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


@_inline_kernel
def _decay_to(row: np.ndarray, t: float) -> None:
    dt = t - row[E_DECAY_T]
    if dt > 0.0:
        f = math.exp(-dt / FRAUD_DECAY_TAU)
        row[E_FRAUD] *= f
        row[E_TXD] *= f
        row[E_DECAY_T] = t


@_inline_kernel
def _fraud_rate(row: np.ndarray, t: float) -> float:
    dt = t - row[E_DECAY_T]
    f = math.exp(-dt / FRAUD_DECAY_TAU) if dt > 0.0 else 1.0
    rate: float = (row[E_FRAUD] * f + FRAUD_PRIOR_WEIGHT * FRAUD_PRIOR_RATE) / (row[E_TXD] * f + FRAUD_PRIOR_WEIGHT)
    return rate


# --- the card -----------------------------------------------------------------------------


@_inline_kernel
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
    count, total = _window(f, C_B24_HEAD, C_W24_C, a, C_B24_C, C_B24_S, C24_N, C24_W, t, amount)
    out[i, F_CC_24H] = 1.0 + count
    out[i, F_CA_24H] = amount + total
    count, total = _window(f, C_B7_HEAD, C_W7_C, a, C_B7_C, C_B7_S, C7_N, C7_W, t, amount)
    out[i, F_CC_7D] = 1.0 + count
    out[i, F_CA_7D] = amount + total
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


@_inline_kernel
def _entity(
    f: np.ndarray,
    a: np.ndarray,
    ids: np.ndarray,
    t: float,
    amount: float,
    card: int,
) -> EntityFeatures:
    """Read (count 1 h, count 24 h, amount 24 h, z-score, distinct cards, fraud rate) then fold in."""
    c1, _ = _window(f, E_B1_HEAD, E_W1_C, a, E_B1_C, E_B1_S, E1_N, E1_W, t, amount)
    c24, a24 = _window(f, E_B24_HEAD, E_W24_C, a, E_B24_C, E_B24_S, E24_N, E24_W, t, amount)
    z = _zscore(f[E_N], f[E_MEAN], f[E_M2], amount)
    _set_touch(ids, E_CARDS, f, E_CARD_T, CARD_SET, card, t)
    cards = float(_set_recent(ids, E_CARDS, f, E_CARD_T, CARD_SET, t))
    if f[E_DECAY_T] == 0.0:
        f[E_DECAY_T] = t
    _decay_to(f, t)  # labels and transactions now both refer to t (or later, if out of order)
    rate = _fraud_rate(f, t)
    _welford(f, E_N, E_MEAN, E_M2, amount)
    f[E_TXD] += 1.0
    if t > f[E_LAST]:
        f[E_LAST] = t
    return c1 + 1.0, c24 + 1.0, a24 + amount, z, cards, rate


@_inline_kernel
def _misc(out: np.ndarray, i: int, reals: np.ndarray, ints: np.ndarray) -> None:
    """The features that need no state."""
    t = reals[R_TIME, i]
    amt = reals[R_AMOUNT, i]
    out[i, F_AMOUNT] = amt
    out[i, F_LOG_AMOUNT] = math.log1p(amt)
    out[i, F_HOUR] = (t % 86400.0) / 3600.0
    out[i, F_DOW] = (math.floor(t / 86400.0) + 3) % 7
    out[i, F_CHANNEL] = ints[K_CHANNEL, i]
    out[i, F_ENTRY] = ints[K_ENTRY, i]
    out[i, F_MCC] = ints[K_MCC, i]
    out[i, F_HAS_DEV] = 1.0 if ints[K_DEVICE, i] != 0 else 0.0
    out[i, F_HAS_IP] = 1.0 if ints[K_IP, i] != 0 else 0.0


@_inline_kernel
def _entity_out(out: np.ndarray, i: int, e: int, res: EntityFeatures) -> None:
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


@_inline_kernel
def _remember(
    recent_keys: np.ndarray,
    recent_vals: np.ndarray,
    recent_t: np.ndarray,
    stats: np.ndarray,
    tk: int,
    merchant: int,
    device: int,
    t: float,
) -> None:
    """Remember merchant and device of transaction ``tk`` for ReportOutcome."""
    r = _find(recent_keys, tk)
    if r < 0:
        r = _victim(recent_keys, recent_t, 0, tk)
        if recent_keys[r] != 0:
            stats[S_RECENT_EVICT] += 1
        recent_keys[r] = tk
    recent_vals[r, R_MERCHANT] = merchant
    recent_vals[r, R_DEVICE] = device
    recent_t[r, 0] = t


@_kernel
def process_batch(reals: np.ndarray, ints: np.ndarray, state: np.ndarray, out: np.ndarray) -> None:
    """Write the features of each transaction into ``out`` (float32 [n, N_FEATURES]) and fold it in.

    ``state`` is the packed buffer (``layout.STATE_REGIONS``). While transaction ``i`` is
    processed, the cache lines of transactions ``i + 1 ..`` are already on their way (see
    ``_prefetch_sets``/``_prefetch_rows``/``_prefetch_ring``): a lookup that misses the cache
    costs one memory latency per lookahead step instead of one per dependent load.
    """
    (card_keys, card_f64, card_f32, card_i64, ent_keys, ent_f64, ent_f32, ent_i64,
     recent_keys, recent_vals, recent_t, stats) = _tables(state)  # fmt: skip
    n = reals.shape[1]
    for j in range(min(n, AHEAD_SETS)):
        _prefetch_sets(ints, j, card_keys, ent_keys, recent_keys)
    for j in range(min(n, AHEAD_ROWS)):
        _prefetch_rows(ints, j, card_keys, card_f64, card_f32, card_i64, ent_keys, ent_f64, ent_f32, ent_i64,
                       recent_keys, recent_vals, recent_t)  # fmt: skip
    for j in range(min(n, AHEAD_RING)):
        _prefetch_ring(ints, j, card_keys, card_f64, card_f32, card_i64, ent_keys, ent_f64, ent_f32, ent_i64)
    for i in range(n):
        if i + AHEAD_SETS < n:
            _prefetch_sets(ints, i + AHEAD_SETS, card_keys, ent_keys, recent_keys)
        if i + AHEAD_ROWS < n:
            _prefetch_rows(ints, i + AHEAD_ROWS, card_keys, card_f64, card_f32, card_i64, ent_keys, ent_f64, ent_f32,
                           ent_i64, recent_keys, recent_vals, recent_t)  # fmt: skip
        if i + AHEAD_RING < n:
            _prefetch_ring(ints, i + AHEAD_RING, card_keys, card_f64, card_f32, card_i64, ent_keys, ent_f64, ent_f32,
                           ent_i64)  # fmt: skip
        t = reals[R_TIME, i]
        amt = reals[R_AMOUNT, i]
        device = ints[K_DEVICE, i]
        merchant = ints[K_MERCHANT, i]
        _misc(out, i, reals, ints)

        card = ints[K_CARD, i]
        s, evicted = _claim(card_keys, card_f64, card_f32, card_i64, card)
        if evicted:
            stats[S_CARD_EVICT] += 1
        _card(out, i, card_f64[s], card_f32[s], card_i64[s], t, amt, device, ints[K_COUNTRY, i], merchant,
              reals[R_LAT, i], reals[R_LON, i])  # fmt: skip

        for e in range(4):
            key = ints[_ENTITY_ROW[e], i]
            if key == 0:
                res = _NO_ENTITY
            else:
                s, evicted = _claim(ent_keys[e], ent_f64[e], ent_f32[e], ent_i64[e], key)
                if evicted:
                    stats[S_ENTITY_EVICT + e] += 1
                res = _entity(ent_f64[e, s], ent_f32[e, s], ent_i64[e, s], t, amt, card)
            _entity_out(out, i, e, res)
        _remember(recent_keys, recent_vals, recent_t, stats, ints[K_TXN, i], merchant, device, t)


@_kernel
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


@_kernel
def lookup_recent(recent_keys: np.ndarray, recent_vals: np.ndarray, txn_key: int) -> tuple[bool, int, int]:
    """(found, merchant key, device key) of a recently scored transaction."""
    r = _find(recent_keys, txn_key)
    if r < 0:
        return False, 0, 0
    return True, recent_vals[r, R_MERCHANT], recent_vals[r, R_DEVICE]

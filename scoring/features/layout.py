"""Column layout of the entity-state tables.

Every entity type lives in a set-associative table (like a CPU cache): a key hashes to
a set of ``WAYS`` slots; a new key takes an empty slot of its set or evicts the one seen
least recently. Memory is fixed at start and bounded; lookups cost at most ``WAYS`` probes.

Each slot has a row in three arrays: ``f64`` (times and running statistics),
``f32`` (amounts and bucket counts), ``i64`` (small sets of related keys). The
constants below are the column offsets; they are module globals so Numba folds them.

Windows (say which are exact, README "Entity state"):
- card 1 min / 1 h: exact, from a ring of the card's last ``RING`` transactions
  (saturates above ``RING`` transactions per hour; transactions arriving more than
  ``RING_ORDER_SLACK_S`` behind newer ones may be missed);
- 24 h: 48 buckets of 30 min; 7 d: 28 buckets of 6 h (the oldest bucket drops whole);
- customer/device/IP/merchant 1 h: 12 buckets of 5 min; 24 h: 24 buckets of 1 h.
Bucketed windows keep a running total of their live buckets, so a read costs O(1); a
transaction older than the newest bucket (out of order) falls back to summing buckets.

All tables live in one buffer (``STATE_REGIONS``, in order, each 64-byte aligned, after a
header of ``HEADER_BYTES``): the kernels take that one array rather than a dozen, which
halves the fixed cost of a call, and a key set (8 keys of 8 bytes) fills exactly one cache line.
"""

from __future__ import annotations

WAYS = 8

# --- cards -------------------------------------------------------------------------------
RING = 64
RING_ORDER_SLACK_S = 300.0  # the ring scan tolerates this much out-of-order arrival
DEV_SET = 8
CTRY_SET = 8
MERCH_SET = 12
C24_N, C24_W = 48, 1800.0
C7_N, C7_W = 28, 21600.0

# f64 columns
C_LAST = 0  # time of the card's latest transaction (also the LRU clock)
C_N = 1  # Welford count
C_MEAN = 2
C_M2 = 3
C_LAT = 4  # last known location (valid when C_GEO_T != 0)
C_LON = 5
C_GEO_T = 6
C_RING_HEAD = 7  # next ring slot to write
C_B24_HEAD = 8  # id of the newest 24 h bucket
C_B7_HEAD = 9
C_W24_C = 10  # running totals of the live 24 h / 7 d buckets (O(1) window reads)
C_W24_S = 11
C_W7_C = 12
C_W7_S = 13
C_RING_T = 14  # RING ring times
C_DEV_T = C_RING_T + RING  # DEV_SET last-seen times of the device set
C_CTRY_T = C_DEV_T + DEV_SET
C_MERCH_T = C_CTRY_T + CTRY_SET
CARD_F64 = C_MERCH_T + MERCH_SET

# f32 columns
C_RING_A = 0  # RING ring amounts
C_B24_C = C_RING_A + RING
C_B24_S = C_B24_C + C24_N
C_B7_C = C_B24_S + C24_N
C_B7_S = C_B7_C + C7_N
CARD_F32 = C_B7_S + C7_N

# i64 columns
C_DEV = 0
C_CTRY = C_DEV + DEV_SET
C_MERCH = C_CTRY + CTRY_SET
CARD_I64 = C_MERCH + MERCH_SET

# --- customers, devices, IPs, merchants (one layout, four tables) -----------------------
ENTITY_TYPES = ("customer", "device", "ip", "merchant")
E_CUSTOMER, E_DEVICE, E_IP, E_MERCHANT = 0, 1, 2, 3
CARD_SET = 8
E1_N, E1_W = 12, 300.0
E24_N, E24_W = 24, 3600.0

E_LAST = 0
E_N = 1
E_MEAN = 2
E_M2 = 3
E_B1_HEAD = 4
E_B24_HEAD = 5
E_FRAUD = 6  # exponentially decayed count of fraud labels
E_TXD = 7  # exponentially decayed count of transactions
E_DECAY_T = 8  # time both decayed counters refer to
E_W1_C = 9  # running totals of the live 1 h / 24 h buckets
E_W1_S = 10
E_W24_C = 11
E_W24_S = 12
E_CARD_T = 13  # CARD_SET last-seen times of the card set
ENT_F64 = E_CARD_T + CARD_SET

E_B1_C = 0
E_B1_S = E_B1_C + E1_N
E_B24_C = E_B1_S + E1_N
E_B24_S = E_B24_C + E24_N
ENT_F32 = E_B24_S + E24_N

E_CARDS = 0
ENT_I64 = E_CARDS + CARD_SET

# --- recent transactions: txn key -> (merchant key, device key) for outcome look-ups -----
R_MERCHANT = 0
R_DEVICE = 1
RECENT_I64 = 2

# --- constants of the features -------------------------------------------------------------
SMALL_AMOUNT = 5.0  # card testing: payments under this, in major units
RECENT_SET_WINDOW = 7 * 86400.0  # "recently" for distinct-key counts
FRAUD_DECAY_TAU = 30 * 86400.0  # e-folding time of the label-derived counters
FRAUD_PRIOR_RATE = 0.01  # smoothing: rate = (fraud + A*prior) / (tx + A)
FRAUD_PRIOR_WEIGHT = 20.0
IMPOSSIBLE_SPEED_KMH = 900.0
IMPOSSIBLE_MIN_KM = 100.0
MIN_TRAVEL_SECONDS = 60.0

# --- counters in the stats array ---------------------------------------------------------
S_CARD_EVICT = 0
S_ENTITY_EVICT = 1  # + entity type index (0..3)
S_RECENT_EVICT = 5
S_LABELS_APPLIED = 6
S_LABELS_UNKNOWN = 7
N_STATS = 8

# --- the packed state buffer ----------------------------------------------------------------
# header words (int64): capacities, then the byte offset of each region in STATE_REGIONS order
H_CARDS = 0
H_ENTITIES = 1
H_RECENT = 2
H_OFFSETS = 3
STATE_REGIONS = (
    "card_keys",
    "card_f64",
    "card_f32",
    "card_i64",
    "ent_keys",
    "ent_f64",
    "ent_f32",
    "ent_i64",
    "recent_keys",
    "recent_vals",
    "recent_t",
    "stats",
)
HEADER_BYTES = 128  # >= 8 * (H_OFFSETS + len(STATE_REGIONS)), a multiple of the alignment
REGION_ALIGN = 64  # a cache line

"""A deterministic synthetic payments generator with labelled fraud scenarios, made realistically hard.

Everything is vectorised NumPy: a population (customers with home locations and spending
profiles, their cards, devices and IPs; merchants with a category, a country and a
location) is drawn once, then legitimate payments (daily and weekly seasonality, some
travel) and fraud episodes of nine kinds are drawn as whole columns. The same seed gives
the same columns, byte for byte; on two cores a million rows take a few seconds and five
million well under a minute, at a peak of about 0.7 KB of memory per row (most of it the id
strings). ``generate_payments`` reports its stages to an optional ``Progress`` callback;
``generate_synthetic`` also says which legitimate rows were drawn to look like fraud.

Real fraud is not easy to find, and a generator whose fraud is (test AUC 0.9999) makes every
evaluation number meaningless. So, as in real card data:

- legitimate behaviour looks like fraud (``HardNegative``, shares in ``HardNegativeRates``):
  customers change phone (a new device mid-period, then kept), buy something big now and then
  (several times their usual, at a high-value merchant), pay in quick bursts (split tenders,
  top-ups, renewals: 2-5 payments within minutes at one merchant), shop online abroad (half of
  it through a VPN whose exit IPs many customers share) and pay late at night; and how much a
  customer's amounts vary is the customer's own (``SyntheticConfig.amount_spread``), so an
  amount's z-score is a noisy signal;
- fraud looks legitimate: friendly fraud (the cardholders dispute their own genuine-looking
  purchases: own card, device, IP and location, usual merchants, usual amounts or a bit more)
  is all but invisible, as it is in reality; some account takeovers stay in the victim's
  country, some card testing uses amounts just above the 5.00 "small" line, and some
  high-velocity fraud is spread over a couple of hours.

Each scenario keeps its signature, so review recall spreads out: card testing and impossible
travel are still caught, friendly fraud mostly is not.

Every fraud row gets a label arrival time (the chargeback delay, drawn uniformly from
``SyntheticConfig.label_delay_days``): the replay only lets the label-derived features see
it from then on.

Randomness comes in streams (``numpy.random.SeedSequence`` children): one each for the
population, the legitimate payments, the fraudsters' tools, the columns, every fraud scenario
(by its ``FraudType`` value) and, from a second root, the amount spread and every kind of hard
negative. A new scenario or kind gets a new stream, so the others keep theirs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from fraudguard.currencies import MINOR_UNIT
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from trainer.payments import Payments

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
B = npt.NDArray[np.bool_]
S = npt.NDArray[np.str_]

DAY_S = 86_400
_NO = -1  # "no device / no IP" in the index columns
_NEVER = np.iinfo(np.int64).max


class FraudType(IntEnum):
    """The scenario a row belongs to; ``NONE`` is a legitimate payment."""

    NONE = 0
    CARD_TESTING = 1  # bursts of small amounts on one card within minutes (some just above the small line)
    HIGH_VELOCITY = 2  # a stolen card used many times within the hour (or spread over a couple of hours)
    AMOUNT_SPIKE = 3  # far above the card's own history
    ACCOUNT_TAKEOVER = 4  # new device, far location (or the victim's own country), high amount
    IMPOSSIBLE_TRAVEL = 5  # a cloned card used far away minutes after the real one
    COMPROMISED_MERCHANT = 6  # a merchant where stolen cards are cashed out
    KNOWN_BAD_DEVICE = 7  # a fraudster's device reused across many cards
    STRUCTURING = 8  # many payments just under a step-up limit, on a few stolen cards, over days
    FRIENDLY_FRAUD = 9  # first-party misuse: cardholders dispute their own genuine-looking purchases


@dataclass(frozen=True, slots=True)
class ScenarioMix:
    """Relative share of fraud rows per scenario (normalised; zero switches a scenario off).

    Friendly fraud is 10-30 % of chargebacks in card data; 12 % by default.
    """

    card_testing: float = 0.20
    high_velocity: float = 0.12
    amount_spike: float = 0.08
    account_takeover: float = 0.14
    impossible_travel: float = 0.08
    compromised_merchant: float = 0.10
    known_bad_device: float = 0.09
    structuring: float = 0.07
    friendly_fraud: float = 0.12

    def shares(self) -> dict[FraudType, float]:
        raw = {FraudType[f.name.upper()]: float(getattr(self, f.name)) for f in fields(self)}
        if any(v < 0 or not math.isfinite(v) for v in raw.values()) or sum(raw.values()) <= 0:
            raise ValidationError("scenarios", f"shares must be finite, >= 0 and not all 0, got {raw}")
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}


class HardNegative(IntFlag):
    """Legitimate behaviour drawn to look like fraud; a row may be more than one (a burst on a new phone)."""

    NONE = 0
    NEW_PHONE = 1  # a new phone mid-period, kept from then on; its first session: set-up payments, card keyed in
    BIG_TICKET = 2  # 3-15 times the customer's usual amount, at a high-value store or online shop
    BURST = 4  # 2-5 payments within minutes on one card at one merchant: split tender, top-ups, renewals
    ABROAD_ONLINE = 8  # online, at a shop in another country; half through a VPN exit IP shared by many
    LATE_NIGHT = 16  # between midnight and 5 am, the customer's local time


@dataclass(frozen=True, slots=True)
class HardNegativeRates:
    """How much legitimate behaviour looks like fraud (zero switches a kind off).

    ``new_phone`` is a share of customers: each changes phone once, at a time uniform in the
    middle 80 % of the period. From then on the new phone replaces the customer's first device
    (a second device, and payments before the change, are untouched); the change starts with a
    set-up session of 1-4 online payments minutes apart (at most a twentieth of the legitimate
    payments in all), the card typed in again. The others are shares of the legitimate payments,
    drawn as payments of their own (of a burst, the first payment is an ordinary one and the rest
    are added); together they may take at most half of them.
    """

    new_phone: float = 0.15
    big_ticket: float = 0.015
    burst: float = 0.05
    abroad_online: float = 0.04
    late_night: float = 0.03

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not 0.0 <= value <= 1.0:
                raise ValidationError(f"hard_negatives.{f.name}", f"must be in [0, 1], got {value}")
        if self.big_ticket + self.burst + self.abroad_online + self.late_night > 0.5:
            raise ValidationError("hard_negatives", "the shares of payments (all but new_phone) must add up to "
                                  f"at most 0.5, got {self}")  # fmt: skip

    def of_payments(self) -> dict[HardNegative, float]:
        """The kinds drawn as payments of their own, with their shares of the legitimate payments."""
        return {HardNegative.BIG_TICKET: self.big_ticket, HardNegative.BURST: self.burst,
                HardNegative.ABROAD_ONLINE: self.abroad_online, HardNegative.LATE_NIGHT: self.late_night}  # fmt: skip


@dataclass(frozen=True, slots=True)
class SyntheticConfig:
    """What to generate. Population sizes default to sizes that give each card a history."""

    n_transactions: int = 100_000
    seed: int = 7
    start_time: int = 1_704_067_200  # 2024-01-01T00:00:00Z
    days: int = 60
    n_customers: int | None = None  # default: n_transactions // 40
    n_merchants: int | None = None  # default: n_transactions // 250
    fraud_rate: float = 0.02  # share of rows that are fraud
    # days from a fraud payment to its label (the chargeback), uniform in [min, max] per fraud row
    label_delay_days: tuple[float, float] = (1.0, 30.0)
    travel_rate: float = 0.05  # share of customers who take one trip abroad
    scenarios: ScenarioMix = ScenarioMix()
    hard_negatives: HardNegativeRates = HardNegativeRates()
    # per customer, the standard deviation of log amounts (within a merchant category), uniform in [min, max]
    amount_spread: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        if self.n_transactions < 1:
            raise ValidationError("n_transactions", f"must be at least 1, got {self.n_transactions}")
        if self.days < 7:
            raise ValidationError("days", f"must be at least 7, got {self.days}")
        if not 0.0 <= self.fraud_rate < 0.5:
            raise ValidationError("fraud_rate", f"must be in [0, 0.5), got {self.fraud_rate}")
        lo, hi = self.label_delay_days
        if not 0.0 <= lo <= hi < math.inf:
            raise ValidationError("label_delay_days", f"need 0 <= min <= max < inf, got {self.label_delay_days}")
        if not 0.0 <= self.travel_rate <= 1.0:
            raise ValidationError("travel_rate", f"must be in [0, 1], got {self.travel_rate}")
        lo, hi = self.amount_spread
        if not 0.0 <= lo <= hi <= 3.0:
            raise ValidationError("amount_spread", f"need 0 <= min <= max <= 3, got {self.amount_spread}")
        self.scenarios.shares()

    @property
    def customers(self) -> int:
        return self.n_customers or max(50, self.n_transactions // 40)

    @property
    def merchants(self) -> int:
        return self.n_merchants or max(2 * len(_CITIES), self.n_transactions // 250)


Progress = Callable[[str, int], None]
"""Hears how generation goes: ``(stage, rows)`` when a stage starts (``rows`` 0) and as it finishes work.

The stages are ``population``, ``legitimate`` (hard negatives included), one per fraud scenario with
rows (named as in the ``scenario`` column) and ``columns``. The rows reported add up to
``2 * n_transactions``, each payment counting once when drawn and once when written into the columns:
a CLI can hand them to ``tqdm.update`` with that total.
"""


@dataclass(frozen=True, slots=True, eq=False)
class SyntheticPayments:
    """Generated payments and, per row, which hard negatives it is (``HardNegative`` bits; 0 for the rest)."""

    payments: Payments
    hard_negative: U8  # read-only; always 0 on fraud rows

    def __post_init__(self) -> None:
        if self.hard_negative.shape != (len(self.payments),):
            raise ValidationError("hard_negative", f"has shape {self.hard_negative.shape}, expected "
                                  f"({len(self.payments)},)")  # fmt: skip
        self.hard_negative.setflags(write=False)

    def rows_of(self, kind: HardNegative) -> B:
        """The rows that are (at least) ``kind``."""
        return np.asarray((self.hard_negative & np.uint8(kind)) != 0, np.bool_)


def generate_payments(config: SyntheticConfig | None = None, progress: Progress | None = None) -> Payments:
    """Draw the population, the legitimate payments and the fraud episodes; sort by time."""
    return generate_synthetic(config, progress).payments


def generate_synthetic(config: SyntheticConfig | None = None, progress: Progress | None = None) -> SyntheticPayments:
    """``generate_payments``, also saying which legitimate rows were drawn to look like fraud."""
    cfg = config or SyntheticConfig()
    report = progress or _silent
    streams = np.random.SeedSequence([cfg.seed, 0x5EED]).spawn(4 + len(FraudType))
    rng = [np.random.default_rng(s) for s in streams]
    # a second root, so that a new fraud scenario leaves these alone: 0 the amount spread, then one per kind
    alike = [np.random.default_rng(s) for s in np.random.SeedSequence([cfg.seed, 0x4A2D]).spawn(1 + len(_KINDS))]
    report("population", 0)
    pop = _draw_population(rng[0], cfg, alike)
    rows = _draw_rows(rng, alike, pop, cfg, report)
    payments = _to_columns(rows, pop, cfg, rng[3], report)
    return SyntheticPayments(payments, rows.hard_negative.astype(np.uint8))


def _silent(stage: str, rows: int) -> None:
    pass


_KINDS: tuple[HardNegative, ...] = tuple(HardNegative)  # single bits, in value order: stream 1 + position


def _stream(alike: list[np.random.Generator], kind: HardNegative) -> np.random.Generator:
    return alike[1 + _KINDS.index(kind)]


def _draw_rows(rng: list[np.random.Generator], alike: list[np.random.Generator], pop: _Population,
               cfg: SyntheticConfig, report: Progress) -> _Rows:  # fmt: skip
    """Legitimate and fraud rows in time order (the unsorted parts are freed on return)."""
    targets = _split_rows(round(cfg.n_transactions * cfg.fraud_rate), cfg.scenarios.shares())
    n_legit = cfg.n_transactions - sum(targets.values())
    report("legitimate", 0)
    legit = _draw_all_legit(rng[1], alike, pop, cfg, n_legit)
    report("legitimate", n_legit)
    ctx = _FraudContext(pop, cfg, legit, _FraudTools.draw(rng[2], pop, cfg, targets))
    parts = [legit]
    for k, kind in enumerate(FraudType):  # stream 4 + k: a new scenario leaves the others' draws alone
        if kind is not FraudType.NONE and targets[kind] > 0:
            report(kind.name.lower(), 0)
            parts.append(_SCENARIOS[kind](rng[4 + k], ctx, targets[kind]))
            report(kind.name.lower(), targets[kind])
    return _with_new_phones(_Rows.concat(parts).sorted_by_time(), pop)


# --- the world ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _City:
    name: str
    country: str
    currency: str
    lat: float
    lon: float
    home_weight: float  # where customers and merchants are
    fraud_weight: float  # where fraudsters appear to be


_CITIES: tuple[_City, ...] = (
    _City("New York", "US", "USD", 40.71, -74.01, 10, 1),
    _City("Los Angeles", "US", "USD", 34.05, -118.24, 7, 1),
    _City("Chicago", "US", "USD", 41.88, -87.63, 5, 0.5),
    _City("Toronto", "CA", "CAD", 43.65, -79.38, 4, 0.5),
    _City("London", "GB", "GBP", 51.51, -0.13, 8, 1),
    _City("Manchester", "GB", "GBP", 53.48, -2.24, 3, 0.5),
    _City("Paris", "FR", "EUR", 48.86, 2.35, 6, 0.5),
    _City("Berlin", "DE", "EUR", 52.52, 13.40, 6, 0.5),
    _City("Madrid", "ES", "EUR", 40.42, -3.70, 4, 0.5),
    _City("Amsterdam", "NL", "EUR", 52.37, 4.90, 3, 0.5),
    _City("Stockholm", "SE", "SEK", 59.33, 18.07, 2, 0.3),
    _City("Tokyo", "JP", "JPY", 35.68, 139.69, 3, 0.5),
    _City("Sydney", "AU", "AUD", -33.87, 151.21, 3, 0.5),
    _City("Singapore", "SG", "SGD", 1.35, 103.82, 2, 1),
    _City("São Paulo", "BR", "BRL", -23.55, -46.63, 1, 3),
    _City("Lagos", "NG", "NGN", 6.52, 3.38, 0.2, 4),
    _City("Bucharest", "RO", "RON", 44.43, 26.10, 0.5, 4),
    _City("Ho Chi Minh City", "VN", "VND", 10.82, 106.63, 0.3, 3),
)
# local currency units per US dollar (rough, fixed: the generator needs plausible, not current)
_FX = {"USD": 1.0, "CAD": 1.36, "GBP": 0.79, "EUR": 0.92, "SEK": 10.5, "JPY": 150.0, "AUD": 1.52,
       "SGD": 1.34, "BRL": 5.0, "NGN": 1500.0, "RON": 4.6, "VND": 24_500.0}  # fmt: skip
# Structuring stays just under the amount up to which an online payment may skip strong customer
# authentication (the 3-D Secure challenge), in the merchant's currency, major units. In the EU that
# is the low-value exemption, EUR 30 (Commission Delegated Regulation (EU) 2018/389, Art. 16), in the
# UK GBP 25 (the FCA's UK SCA-RTS, Art. 16); SEK and RON: EUR 30 in national currency, rounded down.
# Elsewhere no such rule exists: a round amount worth about USD 30 stands in for the issuer's or
# merchant's own review limit. The exemption also ends after five payments in a row (or EUR 100)
# without authentication: one more reason for a fraudster to spread the payments over a few cards.
STRUCTURING_LIMITS: Mapping[str, int] = MappingProxyType({
    "EUR": 30, "GBP": 25, "SEK": 300, "RON": 150,
    "USD": 30, "CAD": 40, "JPY": 5_000, "AUD": 50, "SGD": 40, "BRL": 150, "NGN": 50_000, "VND": 800_000,
})  # fmt: skip
_CITY_LAT = np.array([c.lat for c in _CITIES])
_CITY_LON = np.array([c.lon for c in _CITIES])
_CITY_FX = np.array([_FX[c.currency] for c in _CITIES])
_CITY_MINOR_UNIT = np.array([MINOR_UNIT[c.currency] for c in _CITIES])
_CITY_LIMIT_MINOR = np.array([round(STRUCTURING_LIMITS[c.currency] / MINOR_UNIT[c.currency]) for c in _CITIES])
_CITY_HOME_W = np.array([c.home_weight for c in _CITIES])
_CITY_FRAUD_W = np.array([c.fraud_weight for c in _CITIES])
_CITY_COUNTRY = np.array([c.country for c in _CITIES])
# [home city, city]: where a customer of the home city shops abroad (by size, other countries only)
_FOREIGN_W = np.where(_CITY_COUNTRY[:, None] != _CITY_COUNTRY[None, :], _CITY_HOME_W[None, :], 0.0)


@dataclass(frozen=True, slots=True)
class _Category:
    mcc: int
    amount_factor: float  # times the customer's typical amount
    online: bool
    weight: float
    high_value: bool = False


_CATEGORIES: tuple[_Category, ...] = (
    _Category(5411, 0.8, False, 20),  # grocery
    _Category(5812, 0.9, False, 12),  # restaurants
    _Category(5814, 0.3, False, 10),  # fast food
    _Category(5541, 1.0, False, 8),  # fuel
    _Category(5912, 0.6, False, 5),  # pharmacy
    _Category(5311, 1.5, False, 5, True),  # department store
    _Category(5732, 3.0, False, 3, True),  # electronics
    _Category(5944, 5.0, False, 1, True),  # jewellery
    _Category(6011, 2.0, False, 3),  # ATM
    _Category(7011, 4.0, False, 2),  # hotel
    _Category(5999, 1.2, True, 8, True),  # online retail
    _Category(5816, 0.4, True, 5),  # digital goods
    _Category(4121, 0.6, True, 5),  # rides
    _Category(4899, 0.3, True, 4),  # streaming
    _Category(4814, 1.0, True, 3),  # telecom
    _Category(4511, 6.0, True, 2, True),  # airline
)
_CAT_MCC = np.array([c.mcc for c in _CATEGORIES], np.int32)
_CAT_FACTOR = np.array([c.amount_factor for c in _CATEGORIES])
_CAT_ONLINE = np.array([c.online for c in _CATEGORIES])
_CAT_WEIGHT = np.array([c.weight for c in _CATEGORIES])
_CAT_HIGH = np.array([c.high_value for c in _CATEGORIES])
_ATM = _CAT_MCC == 6011

# local hour of day -> relative activity (quiet nights, lunch and evening peaks)
_HOURLY = np.array([0.15, 0.08, 0.05, 0.04, 0.05, 0.1, 0.3, 0.6, 0.9, 1.0, 1.1, 1.3,
                    1.5, 1.3, 1.1, 1.1, 1.2, 1.4, 1.6, 1.5, 1.2, 0.9, 0.6, 0.3])  # fmt: skip
_NIGHT = np.where(np.arange(24) < 5, 1.0, 0.0)  # the late-night hard negatives: midnight to 5 am
# Monday .. Sunday
_WEEKLY = np.array([0.95, 0.95, 1.0, 1.0, 1.1, 1.2, 0.85])


@dataclass(frozen=True, slots=True)
class _Groups:
    """Members grouped by an integer (a city), each drawn with its weight within its group."""

    members: I64  # sorted by group
    cum: F64  # cumulative weight along ``members``
    first: I64  # per group: position of its first member
    last: I64
    start: F64  # per group: cumulative weight before its first member
    total: F64

    @classmethod
    def build(cls, group: I64, weight: F64, n_groups: int) -> _Groups:
        order = np.argsort(group, kind="stable")
        sorted_group = group[order]
        w = weight[order]
        cum = np.cumsum(w)
        first = np.searchsorted(sorted_group, np.arange(n_groups), side="left")
        last = np.searchsorted(sorted_group, np.arange(n_groups), side="right") - 1
        before = np.concatenate([[0.0], cum])
        total = before[last + 1] - before[first]
        return cls(order.astype(np.int64), cum, first, last, before[first], total)

    def draw(self, rng: np.random.Generator, group: I64) -> I64:
        """One member per entry of ``group``; an empty group draws from all members."""
        u = rng.random(len(group))
        empty = self.total[group] <= 0
        target = np.where(empty, u * self.cum[-1], self.start[group] + u * self.total[group])
        pos = np.searchsorted(self.cum, target, side="right")
        lo = np.where(empty, 0, self.first[group])
        hi = np.where(empty, len(self.members) - 1, self.last[group])
        return self.members[np.clip(pos, lo, hi)]


@dataclass(frozen=True, slots=True)
class _Population:
    # customers
    home_city: I64
    home_lat: F64
    home_lon: F64
    activity: F64  # relative payment rate
    typical_usd: F64  # typical payment, US dollars
    amount_sigma: F64  # standard deviation of the customer's log amounts (within a category)
    online_share: F64
    first_card: I64  # cards of customer c: first_card[c] .. first_card[c] + n_cards[c] - 1
    n_cards: I64
    first_device: I64
    n_devices: I64
    first_ip: I64
    n_ips: I64
    fav_store: I64  # [customers, 6] favourite physical merchants
    fav_online: I64  # [customers, 3] favourite online merchants
    trip_city: I64  # -1: no trip
    trip_start: I64
    trip_end: I64
    phone_change: I64  # when the customer's first device is replaced by a new phone; _NEVER: not
    # cards
    card_owner: I64
    # merchants
    m_city: I64
    m_cat: I64
    m_lat: F64
    m_lon: F64
    m_weight: F64
    stores: _Groups  # physical merchants by city
    online: _Groups  # online merchants by city
    high_value_stores: _Groups
    high_value_online: _Groups
    n_devices_total: int  # devices of customers; fraud devices are numbered after them
    n_ips_total: int

    def new_phone(self, customer: I64) -> I64:
        """The device that replaces ``customer``'s first one at ``phone_change``."""
        return self.n_devices_total + 8 * (1 << 40) + customer  # a block of ids of its own, as ``_fresh_ids``

    def vpn_ips(self) -> I64:
        """Exit IPs of VPN services: few, and each shared by many customers."""
        return self.n_ips_total + 3 * (1 << 40) + np.arange(max(5, len(self.home_city) // 200), dtype=np.int64)


def _draw_cities(rng: np.random.Generator, weights: F64) -> I64:
    """One city per row of ``weights`` ([n, cities]), drawn with that row's weights."""
    u = rng.random(len(weights))[:, None] * weights.sum(axis=1, keepdims=True)
    city: I64 = np.minimum(np.argmax(np.cumsum(weights, axis=1) > u, axis=1), len(_CITIES) - 1).astype(np.int64)
    return city


def _weighted(rng: np.random.Generator, weights: F64, n: int) -> I64:
    cum = np.cumsum(weights)
    drawn: I64 = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
    return np.minimum(drawn, len(weights) - 1).astype(np.int64)


def _jitter(rng: np.random.Generator, lat: F64, lon: F64, degrees: float) -> tuple[F64, F64]:
    n = len(lat)
    return (np.clip(lat + rng.uniform(-degrees, degrees, n), -89.9, 89.9),
            (lon + rng.uniform(-degrees, degrees, n) + 180.0) % 360.0 - 180.0)  # fmt: skip


def _counts_to_first(counts: I64) -> I64:
    return (np.cumsum(counts) - counts).astype(np.int64)


def _draw_population(rng: np.random.Generator, cfg: SyntheticConfig, alike: list[np.random.Generator]) -> _Population:
    """Customers, cards and merchants from ``rng``; the amount spread and new phones from their ``alike`` streams."""
    n_c, n_m, n_city = cfg.customers, cfg.merchants, len(_CITIES)
    home = _weighted(rng, _CITY_HOME_W, n_c)
    home_lat, home_lon = _jitter(rng, _CITY_LAT[home], _CITY_LON[home], 0.15)
    n_cards = 1 + (rng.random(n_c) < 0.35).astype(np.int64)
    n_devices = 1 + (rng.random(n_c) < 0.5).astype(np.int64)
    n_ips = 1 + (rng.random(n_c) < 0.4).astype(np.int64)
    # merchants: every city gets one store and one online shop first, the rest by weight
    m_city = np.concatenate([np.repeat(np.arange(n_city), 2), _weighted(rng, _CITY_HOME_W, max(0, n_m - 2 * n_city))])
    m_city = m_city[:n_m]
    m_cat = _weighted(rng, _CAT_WEIGHT, n_m)
    online_cats, store_cats = np.flatnonzero(_CAT_ONLINE), np.flatnonzero(~_CAT_ONLINE)
    seeded = min(n_m, 2 * n_city)
    m_cat[:seeded:2] = store_cats[rng.integers(0, len(store_cats), (seeded + 1) // 2)]
    m_cat[1:seeded:2] = online_cats[rng.integers(0, len(online_cats), seeded // 2)]
    m_lat, m_lon = _jitter(rng, _CITY_LAT[m_city], _CITY_LON[m_city], 0.12)
    m_weight = rng.pareto(1.2, n_m) + 0.2  # a few very popular merchants
    is_online = _CAT_ONLINE[m_cat]
    stores = _Groups.build(m_city, np.where(is_online, 0.0, m_weight), n_city)
    online = _Groups.build(m_city, np.where(is_online, m_weight, 0.0), n_city)
    high = _Groups.build(m_city, np.where(~is_online & _CAT_HIGH[m_cat], m_weight, 0.0), n_city)
    high_online = _Groups.build(m_city, np.where(is_online & _CAT_HIGH[m_cat], m_weight, 0.0), n_city)
    trip_city, trip_start, trip_end = _draw_trips(rng, cfg, home)
    sigma = alike[0].uniform(*cfg.amount_spread, n_c)
    phones = _stream(alike, HardNegative.NEW_PHONE)
    span = cfg.days * DAY_S
    changes = phones.random(n_c) < cfg.hard_negatives.new_phone
    change_at = cfg.start_time + phones.integers(span // 10, span - span // 10, n_c)
    return _Population(
        home_city=home, home_lat=home_lat, home_lon=home_lon,
        activity=rng.gamma(1.5, 1.0, n_c), typical_usd=rng.lognormal(math.log(35.0), 0.5, n_c),
        online_share=rng.beta(2.0, 5.0, n_c), amount_sigma=sigma,
        first_card=_counts_to_first(n_cards), n_cards=n_cards,
        first_device=_counts_to_first(n_devices), n_devices=n_devices,
        first_ip=_counts_to_first(n_ips), n_ips=n_ips,
        fav_store=stores.draw(rng, np.repeat(home, 6)).reshape(n_c, 6),
        fav_online=online.draw(rng, np.repeat(home, 3)).reshape(n_c, 3),
        trip_city=trip_city, trip_start=trip_start, trip_end=trip_end,
        phone_change=np.where(changes, change_at, _NEVER).astype(np.int64),
        card_owner=np.repeat(np.arange(n_c), n_cards),
        m_city=m_city, m_cat=m_cat, m_lat=m_lat, m_lon=m_lon, m_weight=m_weight,
        stores=stores, online=online, high_value_stores=high, high_value_online=high_online,
        n_devices_total=int(n_devices.sum()), n_ips_total=int(n_ips.sum()),
    )  # fmt: skip


def _draw_trips(rng: np.random.Generator, cfg: SyntheticConfig, home: I64) -> tuple[I64, I64, I64]:
    n_c = len(home)
    travels = rng.random(n_c) < cfg.travel_rate
    dest = (home + rng.integers(1, len(_CITIES), n_c)) % len(_CITIES)
    span = cfg.days * DAY_S
    start = cfg.start_time + rng.integers(DAY_S, max(2 * DAY_S, span - 8 * DAY_S), n_c)
    end = start + rng.integers(2 * DAY_S, 8 * DAY_S, n_c)
    return np.where(travels, dest, -1), start, end


# --- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rows:
    """Payments as integer references into the population, before ids become strings."""

    time: I64
    card: I64
    merchant: I64
    amount_usd: F64
    device: I64  # -1: none
    ip: I64  # -1: none
    lat: F64
    lon: F64
    channel: I64
    entry_mode: I64
    fraud_type: I64
    hard_negative: I64  # HardNegative bits; 0 on fraud rows

    def __len__(self) -> int:
        return len(self.time)

    @classmethod
    def concat(cls, parts: list[_Rows]) -> _Rows:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def sorted_by_time(self) -> _Rows:
        order = np.argsort(self.time, kind="stable")
        return self.take(order)

    def take(self, rows: I64) -> _Rows:
        return _Rows(*(getattr(self, f.name)[rows] for f in fields(_Rows)))


def _day_second(rng: np.random.Generator, cfg: SyntheticConfig, n: int, utc_offset_h: F64,
                hourly: F64 = _HOURLY) -> I64:  # fmt: skip
    """Times with weekly and (local, ``hourly``) daily seasonality, inside the configured period."""
    first_weekday = (cfg.start_time // DAY_S + 3) % 7
    day_w = _WEEKLY[(np.arange(cfg.days) + first_weekday) % 7]
    day = _weighted(rng, day_w, n)
    local_hour = _weighted(rng, hourly, n) + rng.random(n)
    offset = day * DAY_S + np.floor((local_hour - utc_offset_h) * 3600.0).astype(np.int64)
    return cfg.start_time + offset % (cfg.days * DAY_S)


def _card_present_entry(rng: np.random.Generator, n: int) -> I64:
    modes = np.array([pb.ENTRY_MODE_CONTACTLESS, pb.ENTRY_MODE_CHIP, pb.ENTRY_MODE_WALLET, pb.ENTRY_MODE_MAGSTRIPE])
    return modes[_weighted(rng, np.array([0.5, 0.4, 0.08, 0.02]), n)].astype(np.int64)


def _online_channel(rng: np.random.Generator, n: int) -> tuple[I64, I64]:
    pick = _weighted(rng, np.array([0.7, 0.2, 0.1]), n)
    channel = np.array([pb.CHANNEL_ECOMMERCE, pb.CHANNEL_IN_APP, pb.CHANNEL_RECURRING])[pick]
    ecommerce_entry = np.where(rng.random(n) < 0.6, pb.ENTRY_MODE_CARD_ON_FILE, pb.ENTRY_MODE_MANUAL)
    entry = np.select([pick == 0, pick == 1], [ecommerce_entry, pb.ENTRY_MODE_WALLET], pb.ENTRY_MODE_CARD_ON_FILE)
    return channel.astype(np.int64), entry.astype(np.int64)


@dataclass(frozen=True, slots=True)
class _Whereabouts:
    """Where customers are when they pay."""

    time: I64  # moved past the flights
    away: B  # on their trip
    city: I64
    lat: F64
    lon: F64


def _whereabouts(rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig, cust: I64,
                 time: I64) -> _Whereabouts:  # fmt: skip
    """At home or in the trip's city; nothing during the flights out and back (those times move past them)."""
    has_trip = pop.trip_city[cust] >= 0
    start, end = pop.trip_start[cust], pop.trip_end[cust]
    flying = has_trip & (((time >= start) & (time < start + 10 * 3600)) | ((time >= end) & (time < end + 10 * 3600)))
    time = np.where(flying, np.minimum(time + 10 * 3600, cfg.start_time + cfg.days * DAY_S - 1), time)
    away = has_trip & (time >= start) & (time < end)
    city = np.where(away, pop.trip_city[cust], pop.home_city[cust])
    lat, lon = _jitter(rng, np.where(away, _CITY_LAT[city], pop.home_lat[cust]),
                       np.where(away, _CITY_LON[city], pop.home_lon[cust]), 0.05)  # fmt: skip
    return _Whereabouts(time, away, city, lat, lon)


def _usual_times(rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig, cust: I64,
                  hourly: F64 = _HOURLY) -> _Whereabouts:  # fmt: skip
    """Seasonal times for ``cust`` (their local ``hourly`` profile) and where they are then."""
    return _whereabouts(rng, pop, cfg, cust, _day_second(rng, cfg, len(cust), np.round(pop.home_lon[cust] / 15.0),
                                                         hourly))  # fmt: skip


def _payments_by(rng: np.random.Generator, pop: _Population, cust: I64, where: _Whereabouts, merchant: I64,
                 amount_usd: F64) -> _Rows:  # fmt: skip
    """Customers' own payments (own cards, devices and IPs) at ``merchant``; channel and entry mode follow its
    category. Online, the payer's location comes half the time (when the app shares it); in a store, the store's."""
    n = len(cust)
    cat = pop.m_cat[merchant]
    online = _CAT_ONLINE[cat]
    card = pop.first_card[cust] + ((pop.n_cards[cust] == 2) & (rng.random(n) < 0.25))
    o_channel, o_entry = _online_channel(rng, n)
    channel = np.where(online, o_channel, np.where(_ATM[cat], pb.CHANNEL_ATM, pb.CHANNEL_CARD_PRESENT))
    entry = np.where(online, o_entry, np.where(_ATM[cat], pb.ENTRY_MODE_CHIP, _card_present_entry(rng, n)))
    own_device = pop.first_device[cust] + ((pop.n_devices[cust] == 2) & (rng.random(n) < 0.4))
    own_ip = pop.first_ip[cust] + ((pop.n_ips[cust] == 2) & (rng.random(n) < 0.4))
    located = ~online | (rng.random(n) < 0.5)
    lat = np.where(located, np.where(online, where.lat, pop.m_lat[merchant]), np.nan)
    lon = np.where(located, np.where(online, where.lon, pop.m_lon[merchant]), np.nan)
    return _Rows(where.time, card, merchant, amount_usd, np.where(online, own_device, _NO),
                 np.where(online, own_ip, _NO), lat, lon, channel.astype(np.int64), entry.astype(np.int64),
                 np.zeros(n, np.int64), np.zeros(n, np.int64))  # fmt: skip


def _usual_amounts(rng: np.random.Generator, pop: _Population, cust: I64, merchant: I64) -> F64:
    """What ``cust`` usually pays at a merchant of this category: their typical amount, spread their own way."""
    factor = pop.typical_usd[cust] * _CAT_FACTOR[pop.m_cat[merchant]]
    return np.asarray(factor * rng.lognormal(0.0, pop.amount_sigma[cust]), np.float64)


def _draw_legit(rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig, n: int,
                hourly: F64 = _HOURLY) -> _Rows:  # fmt: skip
    cust = _weighted(rng, pop.activity, n)
    where = _usual_times(rng, pop, cfg, cust, hourly)
    online = rng.random(n) < pop.online_share[cust]
    store = np.where(~where.away & (rng.random(n) < 0.7), pop.fav_store[cust, rng.integers(0, 6, n)],
                     pop.stores.draw(rng, where.city))  # fmt: skip
    shop = np.where(rng.random(n) < 0.6, pop.fav_online[cust, rng.integers(0, 3, n)],
                    pop.online.draw(rng, np.where(rng.random(n) < 0.8, pop.home_city[cust], where.city)))  # fmt: skip
    merchant = np.where(online, shop, store)  # a favourite store may be online where the city's group was empty
    amount = _usual_amounts(rng, pop, cust, merchant)
    amount = np.where(rng.random(n) < 0.01, amount * rng.uniform(4.0, 20.0, n), amount)  # the odd big purchase
    return _with_one_off_devices(rng, _payments_by(rng, pop, cust, where, merchant, amount), pop, cust, where.away)


def _with_one_off_devices(rng: np.random.Generator, rows: _Rows, pop: _Population, cust: I64, away: B) -> _Rows:
    """A few online payments from a borrowed or new device, and from the hotel's network when abroad."""
    n = len(rows)
    online = rows.device != _NO
    fresh_dev = online & (rng.random(n) < 0.03)
    device = rows.device.copy()
    device[fresh_dev] = _fresh_ids(pop.n_devices_total, int(np.count_nonzero(fresh_dev)), salt=1)
    roaming = online & away
    ip = np.where(roaming, pop.n_ips_total + (1 << 40) + cust, rows.ip)
    return dataclasses.replace(rows, device=device, ip=ip)


def _fresh_ids(base: int, n: int, salt: int) -> I64:
    """Ids that belong to nobody else: numbered past the population, in a block per ``salt``."""
    return base + salt * (1 << 40) + np.arange(n, dtype=np.int64)


# --- legitimate payments that look like fraud -----------------------------------------------


def _draw_all_legit(rng: np.random.Generator, alike: list[np.random.Generator], pop: _Population,
                    cfg: SyntheticConfig, n: int) -> _Rows:  # fmt: skip
    """``n`` legitimate payments: ordinary ones from ``rng`` and the hard negatives, each kind from its stream.

    Of new phones, only the first sessions are drawn here: the phones replace devices in all rows later
    (``_with_new_phones``).
    """
    count = {kind: round(share * n) for kind, share in cfg.hard_negatives.of_payments().items()}
    setups = _phone_setups(_stream(alike, HardNegative.NEW_PHONE), pop, cfg, limit=n // 20)
    burst_rng = _stream(alike, HardNegative.BURST)
    bursts = _Bursts.plan(burst_rng, count.pop(HardNegative.BURST))
    n_base = n - sum(count.values()) - len(setups) - bursts.n_added
    if n_base < bursts.n_bursts:  # too few payments to go round: no bursts
        bursts = _Bursts.plan(burst_rng, 0)
        n_base = n - sum(count.values()) - len(setups)
    base, followers = bursts.draw(burst_rng, _draw_legit(rng, pop, cfg, n_base))
    kinds = {HardNegative.BIG_TICKET: _big_ticket, HardNegative.ABROAD_ONLINE: _abroad_online,
             HardNegative.LATE_NIGHT: _late_night}  # fmt: skip
    drawn = [_marked(draw(_stream(alike, kind), pop, cfg, count[kind]), kind) for kind, draw in kinds.items()]
    return _Rows.concat([base, followers, _marked(setups, HardNegative.NEW_PHONE), *drawn])


def _marked(rows: _Rows, kind: HardNegative) -> _Rows:
    return dataclasses.replace(rows, hard_negative=rows.hard_negative | int(kind))


@dataclass(frozen=True, slots=True)
class _Bursts:
    """Bursts of 2-5 payments: each an ordinary payment (its leader) and the ones added after it within minutes."""

    rows: _Episodes  # every row of every burst, leaders included

    @classmethod
    def plan(cls, rng: np.random.Generator, n_rows: int) -> _Bursts:
        ep = _Episodes.draw(rng, n_rows, 2, 5)
        if n_rows and ep.position[-1] == 0:  # a leader alone at the end is no burst
            ep = _Episodes(ep.episode[:-1], ep.position[:-1], ep.n_episodes)
        return cls(ep)

    @property
    def n_bursts(self) -> int:
        return int(self.rows.episode[-1]) + 1 if len(self.rows.episode) else 0

    @property
    def n_added(self) -> int:
        return len(self.rows.episode) - self.n_bursts

    def draw(self, rng: np.random.Generator, base: _Rows) -> tuple[_Rows, _Rows]:
        """``base`` with random leaders marked, and the payments that follow them: same card, merchant, device,
        IP and place, 10 s to 4 min apart; the same amount again (renewals, top-ups) or a share of it (a split
        tender)."""
        ep, n = self.rows, len(self.rows.episode)
        leader = rng.choice(len(base), self.n_bursts, replace=False).astype(np.int64)
        since = ep.offsets(rng.uniform(10.0, 240.0, n))
        same = rng.random(self.n_bursts)[ep.episode] < 0.4
        share = np.where(same, 1.0, rng.uniform(0.3, 1.2, n))
        follow = ep.position > 0
        row_leader = leader[ep.episode[follow]]
        added = base.take(row_leader)
        added = dataclasses.replace(added, time=added.time + since[follow],
                                    amount_usd=added.amount_usd * share[follow],
                                    hard_negative=np.full(len(added), int(HardNegative.BURST), np.int64))  # fmt: skip
        hard = base.hard_negative.copy()
        hard[leader] |= int(HardNegative.BURST)
        return dataclasses.replace(base, hard_negative=hard), added


def _phone_setups(rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig, limit: int) -> _Rows:
    """The first session on each new phone, within 6 hours of the change: 1-4 online payments 20 s to 5 min apart
    (apps and subscriptions set up again: at a favourite online shop or another of the home city, usual amounts;
    in half the sessions the first is a card check of at most 1.00, as when a card is added to a wallet). At most
    ``limit`` rows, from the first customers on."""
    changers = np.flatnonzero(pop.phone_change != _NEVER)
    lengths = rng.integers(1, 5, len(changers))
    fits = np.cumsum(lengths) <= limit
    changers, lengths = changers[fits], lengths[fits]
    episode = np.repeat(np.arange(len(changers)), lengths)
    ep = _Episodes(episode, np.arange(len(episode)) - _counts_to_first(lengths)[episode], len(changers))
    cust, n = changers[episode], len(episode)
    start = pop.phone_change[changers] + rng.integers(0, 6 * 3600, len(changers))
    time = np.minimum(start[episode] + ep.offsets(rng.uniform(20.0, 300.0, n)), cfg.start_time + cfg.days * DAY_S - 1)
    where = _whereabouts(rng, pop, cfg, cust, time)
    merchant = np.where(rng.random(n) < 0.5, pop.fav_online[cust, rng.integers(0, 3, n)],
                        pop.online.draw(rng, pop.home_city[cust]))  # fmt: skip
    amount = _usual_amounts(rng, pop, cust, merchant)
    check = (rng.random(len(changers)) < 0.5)[episode] & (ep.position == 0)
    amount = np.where(check, rng.uniform(0.01, 1.0, n), amount)
    rows = _payments_by(rng, pop, cust, where, merchant, amount)
    return dataclasses.replace(rows, device=np.where(rows.device != _NO, pop.new_phone(cust), _NO))


def _big_ticket(rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig, n: int) -> _Rows:
    """Rare big purchases, 3-15 times the customer's usual: at a high-value store where the customer is, or (a
    third of them, and where the city has no such store) at a high-value online shop of the home city (of
    anywhere, if it has none)."""
    cust = _weighted(rng, pop.activity, n)
    where = _usual_times(rng, pop, cfg, cust)
    store = pop.high_value_stores.draw(rng, where.city)
    shop = pop.high_value_online.draw(rng, pop.home_city[cust])
    merchant = np.where((rng.random(n) < 1 / 3) | (pop.m_city[store] != where.city), shop, store)
    return _payments_by(rng, pop, cust, where, merchant, pop.typical_usd[cust] * rng.uniform(3.0, 15.0, n))


def _abroad_online(rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig, n: int) -> _Rows:
    """Usual amounts at online shops in other countries; half of them through a VPN, whose exit IPs are shared."""
    cust = _weighted(rng, pop.activity, n)
    where = _usual_times(rng, pop, cfg, cust)
    merchant = pop.online.draw(rng, _draw_cities(rng, _FOREIGN_W[pop.home_city[cust]]))
    rows = _payments_by(rng, pop, cust, where, merchant, _usual_amounts(rng, pop, cust, merchant))
    vpn = pop.vpn_ips()
    via_vpn = (rows.ip != _NO) & (rng.random(n) < 0.5)
    return dataclasses.replace(rows, ip=np.where(via_vpn, vpn[rng.integers(0, len(vpn), n)], rows.ip))


def _late_night(rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig, n: int) -> _Rows:
    """Ordinary payments, between midnight and 5 am local time."""
    return _draw_legit(rng, pop, cfg, n, _NIGHT)


def _with_new_phones(rows: _Rows, pop: _Population) -> _Rows:
    """From its customer's ``phone_change`` on, the first device becomes the new phone (in fraud rows too: only
    friendly fraud uses the customer's own device). On the new phone the card is typed in again: the first
    payment there (but a renewal) is keyed in. ``rows`` are in time order."""
    cust = pop.card_owner[rows.card]
    phone = pop.new_phone(cust)
    changed = (rows.device == pop.first_device[cust]) & (rows.time >= pop.phone_change[cust])
    device = np.where(changed, phone, rows.device)
    on_new = np.flatnonzero(device == phone)
    first = on_new[np.unique(cust[on_new], return_index=True)[1]]
    first = first[rows.channel[first] != pb.CHANNEL_RECURRING]
    entry = rows.entry_mode.copy()
    entry[first] = pb.ENTRY_MODE_MANUAL
    hard = rows.hard_negative.copy()
    hard[on_new] |= np.where(rows.fraud_type[on_new] == FraudType.NONE, int(HardNegative.NEW_PHONE), 0)
    return dataclasses.replace(rows, device=device, entry_mode=entry, hard_negative=hard)


# --- fraud ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FraudTools:
    """What fraudsters share across episodes: devices, IPs, compromised merchants."""

    pool_devices: I64  # reused by card testers and account takers
    bad_devices: I64  # the known-bad devices of their scenario
    ips: I64
    compromised: I64  # merchant indices

    @classmethod
    def draw(cls, rng: np.random.Generator, pop: _Population, cfg: SyntheticConfig,
             targets: dict[FraudType, int]) -> _FraudTools:  # fmt: skip
        n_fraud = max(1, sum(targets.values()))
        base = pop.n_devices_total + 2 * (1 << 40)
        pool = base + np.arange(max(10, n_fraud // 40))
        bad = base + len(pool) + np.arange(max(3, targets[FraudType.KNOWN_BAD_DEVICE] // 25))
        ips = pop.n_ips_total + 2 * (1 << 40) + np.arange(max(10, n_fraud // 15))
        online_merchants = np.flatnonzero(_CAT_ONLINE[pop.m_cat])
        k = max(2, cfg.merchants // 100)
        compromised = rng.choice(online_merchants, size=min(k, len(online_merchants)), replace=False)
        return cls(pool, bad, ips, np.sort(compromised).astype(np.int64))


@dataclass(frozen=True, slots=True)
class _FraudContext:
    pop: _Population
    cfg: SyntheticConfig
    legit: _Rows
    tools: _FraudTools

    def victims(self, rng: np.random.Generator, n: int) -> I64:
        return rng.integers(0, len(self.pop.card_owner), n).astype(np.int64)

    def times(self, rng: np.random.Generator, n: int) -> I64:
        span = self.cfg.days * DAY_S
        return self.cfg.start_time + rng.integers(2 * DAY_S, span - 3600, n).astype(np.int64)

    def fraud_places(self, rng: np.random.Generator, n: int) -> tuple[F64, F64, I64]:
        city = _weighted(rng, _CITY_FRAUD_W, n)
        lat, lon = _jitter(rng, _CITY_LAT[city], _CITY_LON[city], 0.2)
        return lat, lon, city

    def online_merchants(self, rng: np.random.Generator, n: int, *, high_value: bool = False,
                         cheap_currency: bool = False) -> I64:  # fmt: skip
        """Online merchants, uniformly; optionally only high-value shops or those whose currency unit is
        worth at least half a dollar (so that "small" means under 5.00)."""
        cat = self.pop.m_cat
        ok = _CAT_ONLINE[cat]
        if high_value:
            ok = ok & _CAT_HIGH[cat]
        if cheap_currency:
            ok = ok & (_CITY_FX[self.pop.m_city] < 2.0)
        chosen = np.flatnonzero(ok)
        if len(chosen) == 0:
            chosen = np.flatnonzero(_CAT_ONLINE[cat])
        return chosen[rng.integers(0, len(chosen), n)].astype(np.int64)

    def shops_for(self, rng: np.random.Generator, card: I64) -> I64:
        """Online merchants for fraud on ``card``: half in the card holder's country (as fraudsters do to
        look domestic), half anywhere."""
        domestic = self.pop.online.draw(rng, self.pop.home_city[self.pop.card_owner[card]])
        return np.where(rng.random(len(card)) < 0.5, domestic, self.online_merchants(rng, len(card)))

    def typical(self, card: I64) -> F64:
        return self.pop.typical_usd[self.pop.card_owner[card]]


@dataclass(frozen=True, slots=True)
class _Episodes:
    """Rows grouped into episodes: which episode each row is in, and its position there."""

    episode: I64
    position: I64
    n_episodes: int

    @classmethod
    def draw(cls, rng: np.random.Generator, n_rows: int, min_len: int, max_len: int) -> _Episodes:
        n_ep = -(-n_rows // min_len)
        lengths = rng.integers(min_len, max_len + 1, n_ep)
        episode = np.repeat(np.arange(n_ep), lengths)[:n_rows]
        first = _counts_to_first(lengths)
        return cls(episode, np.arange(n_rows) - first[episode], n_ep)

    def offsets(self, gaps: F64) -> I64:
        """Seconds since the episode's first row, from the gap before each row (ignored for the first)."""
        g = np.where(self.position == 0, 0.0, gaps)
        cum = np.cumsum(g)
        since_first: F64 = cum - cum[np.flatnonzero(self.position == 0)][self.episode]
        return np.floor(since_first).astype(np.int64)


def _fraud_rows(kind: FraudType, **cols: npt.NDArray[np.generic]) -> _Rows:
    n = len(cols["time"])
    return _Rows(fraud_type=np.full(n, int(kind), np.int64), hard_negative=np.zeros(n, np.int64),
                 **cols)  # type: ignore[arg-type]  # fmt: skip


def _online_fraud(rng: np.random.Generator, n: int, located: float, lat: F64, lon: F64) -> tuple[F64, F64]:
    keep = rng.random(n) < located
    return np.where(keep, lat, np.nan), np.where(keep, lon, np.nan)


def _card_testing(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    """6-20 payments on one card within minutes, at one online shop: amounts under 5.00 (a quarter of the testers
    stay just above that line, at 5.00-9.99, where a "small payments" count does not see them)."""
    ep = _Episodes.draw(rng, n, 6, 20)
    e = ep.episode
    card, t0 = ctx.victims(rng, ep.n_episodes)[e], ctx.times(rng, ep.n_episodes)[e]
    time = t0 + ep.offsets(rng.exponential(20.0, n) + 1.0)
    merchant = ctx.online_merchants(rng, ep.n_episodes, cheap_currency=True)[e]
    amount = rng.uniform(0.5, 4.99, n) / _CITY_FX[ctx.pop.m_city[merchant]]
    pool = ctx.tools.pool_devices
    dev_ep = np.where(rng.random(ep.n_episodes) < 0.5, pool[rng.integers(0, len(pool), ep.n_episodes)],
                      _fresh_ids(ctx.pop.n_devices_total, ep.n_episodes, salt=3))  # fmt: skip
    ip = ctx.tools.ips[rng.integers(0, len(ctx.tools.ips), ep.n_episodes)][e]
    f_lat, f_lon, _ = ctx.fraud_places(rng, ep.n_episodes)
    lat, lon = _online_fraud(rng, n, 0.3, f_lat[e], f_lon[e])
    above = rng.random(ep.n_episodes)[e] < 0.25
    amount = np.where(above, rng.uniform(5.0, 9.99, n) / _CITY_FX[ctx.pop.m_city[merchant]], amount)
    return _fraud_rows(FraudType.CARD_TESTING, time=time, card=card, merchant=merchant, amount_usd=amount,
                       device=dev_ep[e], ip=ip, lat=lat, lon=lon, channel=np.full(n, pb.CHANNEL_ECOMMERCE),
                       entry_mode=np.full(n, pb.ENTRY_MODE_MANUAL))  # fmt: skip


def _high_velocity(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    """4-10 payments on a stolen card from a new device, minutes apart (two in five of the fraudsters wait 2-40
    minutes or so between them, spreading the episode over a couple of hours)."""
    ep = _Episodes.draw(rng, n, 4, 10)
    e = ep.episode
    card, t0 = ctx.victims(rng, ep.n_episodes)[e], ctx.times(rng, ep.n_episodes)[e]
    time = t0 + ep.offsets(rng.exponential(240.0, n) + 20.0)
    amount = ctx.typical(card) * rng.uniform(1.0, 3.5, n)
    device = _fresh_ids(ctx.pop.n_devices_total, ep.n_episodes, salt=4)[e]
    ip = ctx.tools.ips[rng.integers(0, len(ctx.tools.ips), ep.n_episodes)][e]
    f_lat, f_lon, _ = ctx.fraud_places(rng, ep.n_episodes)
    lat, lon = _online_fraud(rng, n, 0.4, f_lat[e], f_lon[e])
    channel = np.where(rng.random(n) < 0.7, pb.CHANNEL_ECOMMERCE, pb.CHANNEL_IN_APP)
    entry = np.where(channel == pb.CHANNEL_IN_APP, pb.ENTRY_MODE_WALLET, pb.ENTRY_MODE_MANUAL)
    merchant = ctx.shops_for(rng, card)
    slow = rng.random(ep.n_episodes)[e] < 0.4
    time = np.where(slow, t0 + ep.offsets(rng.exponential(900.0, n) + 120.0), time)
    return _fraud_rows(FraudType.HIGH_VELOCITY, time=time, card=card, merchant=merchant, amount_usd=amount,
                       device=device, ip=ip, lat=lat, lon=lon, channel=channel, entry_mode=entry)  # fmt: skip


def _amount_spike(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    ep = _Episodes.draw(rng, n, 1, 2)
    e = ep.episode
    card, t0 = ctx.victims(rng, ep.n_episodes)[e], ctx.times(rng, ep.n_episodes)[e]
    time = t0 + ep.offsets(rng.uniform(120.0, 1800.0, n))
    merchant = ctx.pop.high_value_stores.draw(rng, ctx.pop.home_city[ctx.pop.card_owner[card]])
    amount = ctx.typical(card) * rng.uniform(5.0, 30.0, n)
    return _fraud_rows(FraudType.AMOUNT_SPIKE, time=time, card=card, merchant=merchant, amount_usd=amount,
                       device=np.full(n, _NO), ip=np.full(n, _NO), lat=ctx.pop.m_lat[merchant],
                       lon=ctx.pop.m_lon[merchant], channel=np.full(n, pb.CHANNEL_CARD_PRESENT),
                       entry_mode=_card_present_entry(rng, n))  # fmt: skip


def _account_takeover(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    """1-3 high payments at high-value online shops from a new (or a fraudster's) device and IP, far away; but
    half the fraudsters stay in the victim's country (shops and location there), half come through a residential
    proxy (an IP nobody else uses) rather than the fraudsters' shared ones, and half take their time (5 minutes to
    2 hours between payments)."""
    ep = _Episodes.draw(rng, n, 1, 3)
    e = ep.episode
    card, t0 = ctx.victims(rng, ep.n_episodes)[e], ctx.times(rng, ep.n_episodes)[e]
    time = t0 + ep.offsets(rng.uniform(60.0, 1200.0, n))
    merchant = ctx.online_merchants(rng, n, high_value=True)
    amount = ctx.typical(card) * rng.uniform(1.0, 12.0, n)
    pool = ctx.tools.pool_devices
    device = np.where(rng.random(ep.n_episodes) < 0.3, pool[rng.integers(0, len(pool), ep.n_episodes)],
                      _fresh_ids(ctx.pop.n_devices_total, ep.n_episodes, salt=5))[e]  # fmt: skip
    ip = ctx.tools.ips[rng.integers(0, len(ctx.tools.ips), ep.n_episodes)][e]
    f_lat, f_lon, _ = ctx.fraud_places(rng, ep.n_episodes)
    lat, lon = _online_fraud(rng, n, 0.7, f_lat[e], f_lon[e])
    domestic = rng.random(ep.n_episodes)[e] < 0.5
    home = ctx.pop.home_city[ctx.pop.card_owner[card]]
    merchant = np.where(domestic, ctx.pop.online.draw(rng, home), merchant)
    h_lat, h_lon = _jitter(rng, _CITY_LAT[home], _CITY_LON[home], 0.3)
    lat, lon = np.where(domestic & ~np.isnan(lat), h_lat, lat), np.where(domestic & ~np.isnan(lon), h_lon, lon)
    proxy = rng.random(ep.n_episodes) < 0.5
    ip = np.where(proxy[e], _fresh_ids(ctx.pop.n_ips_total, ep.n_episodes, salt=4)[e], ip)
    patient = rng.random(ep.n_episodes)[e] < 0.5
    time = np.where(patient, t0 + ep.offsets(rng.uniform(300.0, 7200.0, n)), time)
    return _fraud_rows(FraudType.ACCOUNT_TAKEOVER, time=time, card=card, merchant=merchant, amount_usd=amount,
                       device=device, ip=ip, lat=lat, lon=lon, channel=np.full(n, pb.CHANNEL_ECOMMERCE),
                       entry_mode=np.full(n, pb.ENTRY_MODE_CARD_ON_FILE))  # fmt: skip


def _impossible_travel(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    """A clone used (1-3 times) in a far city minutes after the genuine card paid in a store; each use after the
    first follows the genuine card's next store payment, where it has one (the cardholder goes on shopping at
    home), so that it too is impossible travel."""
    ep = _Episodes.draw(rng, n, 1, 3)
    e = ep.episode
    legit = ctx.legit
    anchors = np.flatnonzero(legit.channel == pb.CHANNEL_CARD_PRESENT)
    if len(anchors) == 0:
        anchors = np.arange(len(legit))
    anchor = anchors[rng.integers(0, len(anchors), ep.n_episodes)]
    a_lat = np.nan_to_num(legit.lat[anchor], nan=0.0)
    a_lon = np.nan_to_num(legit.lon[anchor], nan=0.0)
    far = _haversine_km(a_lat[:, None], a_lon[:, None], _CITY_LAT[None, :], _CITY_LON[None, :]) > 1500.0
    city = _draw_cities(rng, np.where(far, _CITY_HOME_W[None, :] + _CITY_FRAUD_W[None, :], 0.0))
    t0 = legit.time[anchor] + rng.integers(600, _too_soon_s(a_lat, a_lon, city))
    time = t0[e] + ep.offsets(rng.uniform(120.0, 1500.0, n))
    merchant = ctx.pop.stores.draw(rng, city[e].astype(np.int64))
    card = legit.card[anchor][e]
    entry = np.where(rng.random(n) < 0.7, pb.ENTRY_MODE_MAGSTRIPE, pb.ENTRY_MODE_CHIP)
    genuine = _next_genuine(legit, anchors, anchor, len(ctx.pop.card_owner), ep)
    follows = (ep.position > 0) & (genuine != anchor[e])
    g_lat, g_lon = np.nan_to_num(legit.lat[genuine], nan=0.0), np.nan_to_num(legit.lon[genuine], nan=0.0)
    time = np.where(follows, legit.time[genuine] + rng.integers(600, _too_soon_s(g_lat, g_lon, city[e])), time)
    return _fraud_rows(FraudType.IMPOSSIBLE_TRAVEL, time=time, card=card, merchant=merchant,
                       amount_usd=ctx.typical(card) * rng.uniform(1.0, 6.0, n), device=np.full(n, _NO),
                       ip=np.full(n, _NO), lat=ctx.pop.m_lat[merchant], lon=ctx.pop.m_lon[merchant],
                       channel=np.full(n, pb.CHANNEL_CARD_PRESENT), entry_mode=entry)  # fmt: skip


def _too_soon_s(lat: F64, lon: F64, city: I64) -> I64:
    """Up to 2 hours, but too soon to get from (lat, lon) to ``city`` even at 1000 km/h (so, impossible travel)."""
    km = _haversine_km(lat, lon, _CITY_LAT[city], _CITY_LON[city])
    return np.clip(km * 3.6, 601, 7200).astype(np.int64)


def _next_genuine(legit: _Rows, anchors: I64, anchor: I64, n_cards: int, ep: _Episodes) -> I64:
    """Per row of ``ep``: the ``position``-th payment among ``anchors`` on its anchor's card from the anchor on (in
    time order), or the anchor itself when the card has no more."""
    of_episodes = np.zeros(n_cards, np.bool_)
    of_episodes[legit.card[anchor]] = True
    pool = anchors[of_episodes[legit.card[anchors]]]
    key = (legit.card[pool] << 32) + legit.time[pool]  # card, then time: seconds since 1970 fit in 32 bits
    order = np.argsort(key, kind="stable")
    pool, key = pool[order], key[order]
    at = np.searchsorted(key, (legit.card[anchor] << 32) + legit.time[anchor])[ep.episode]
    later = pool[np.minimum(at + ep.position, len(pool) - 1)]
    return np.where(legit.card[later] == legit.card[anchor][ep.episode], later, anchor[ep.episode])


def _compromised_merchant(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    """Stolen cards cashed out at a few online merchants, from fraudsters' devices and IPs (half of them through
    residential proxies, IPs nobody else uses), keyed in or, a third of the time, stored on a fresh account."""
    card = ctx.victims(rng, n)
    merchant = ctx.tools.compromised[rng.integers(0, len(ctx.tools.compromised), n)]
    pool = ctx.tools.pool_devices
    device = np.where(rng.random(n) < 0.5, pool[rng.integers(0, len(pool), n)],
                      _fresh_ids(ctx.pop.n_devices_total, n, salt=6))  # fmt: skip
    f_lat, f_lon, _ = ctx.fraud_places(rng, n)
    lat, lon = _online_fraud(rng, n, 0.3, f_lat, f_lon)
    time, amount = ctx.times(rng, n), ctx.typical(card) * rng.uniform(0.5, 2.5, n)
    ip = ctx.tools.ips[rng.integers(0, len(ctx.tools.ips), n)]
    ip = np.where(rng.random(n) < 0.5, _fresh_ids(ctx.pop.n_ips_total, n, salt=5), ip)
    entry = np.where(rng.random(n) < 1 / 3, pb.ENTRY_MODE_CARD_ON_FILE, pb.ENTRY_MODE_MANUAL)
    return _fraud_rows(FraudType.COMPROMISED_MERCHANT, time=time, card=card, merchant=merchant, amount_usd=amount,
                       device=device, ip=ip, lat=lat, lon=lon, channel=np.full(n, pb.CHANNEL_ECOMMERCE),
                       entry_mode=entry)  # fmt: skip


def _known_bad_device(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    card = ctx.victims(rng, n)
    bad = ctx.tools.bad_devices
    f_lat, f_lon, _ = ctx.fraud_places(rng, n)
    lat, lon = _online_fraud(rng, n, 0.3, f_lat, f_lon)
    return _fraud_rows(FraudType.KNOWN_BAD_DEVICE, time=ctx.times(rng, n), card=card,
                       merchant=ctx.shops_for(rng, card), amount_usd=ctx.typical(card) * rng.uniform(0.8, 3.0, n),
                       device=bad[rng.integers(0, len(bad), n)],
                       ip=ctx.tools.ips[rng.integers(0, len(ctx.tools.ips), n)], lat=lat, lon=lon,
                       channel=np.full(n, pb.CHANNEL_ECOMMERCE),
                       entry_mode=np.full(n, pb.ENTRY_MODE_MANUAL))  # fmt: skip


def _structuring(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    """A fraudster pays online with one to three stolen cards at one to three shops, 8-24 times over two
    to four days, each amount 1 minor unit to 5 % under the shop's ``STRUCTURING_LIMITS``: each payment
    alone is an ordinary small purchase; together, amounts pile up just under a round number, again and
    again on the same cards and shops."""
    ep = _Episodes.draw(rng, n, 8, 24)
    e, n_ep = ep.episode, ep.n_episodes
    n_cards, n_shops = rng.integers(1, 4, n_ep), rng.integers(1, 4, n_ep)
    population = len(ctx.pop.card_owner)  # each fraudster has cards of their own, while there are enough
    cards = rng.choice(population, (n_ep, 3), replace=population < 3 * n_ep).astype(np.int64)
    card = cards[e, rng.integers(0, n_cards[e])]
    merchant = ctx.online_merchants(rng, 3 * n_ep).reshape(n_ep, 3)[e, rng.integers(0, n_shops[e])]
    spread = rng.integers(2 * DAY_S, 4 * DAY_S, n_ep)
    t0 = ctx.cfg.start_time + rng.integers(2 * DAY_S, ctx.cfg.days * DAY_S - 3600 - spread)
    offset = rng.integers(0, spread[e])
    time = t0[e] + offset[np.lexsort((offset, e))]  # in time order within each episode
    city = ctx.pop.m_city[merchant]
    limit = _CITY_LIMIT_MINOR[city]
    amount = (limit - rng.integers(1, limit // 20 + 1)) * _CITY_MINOR_UNIT[city] / _CITY_FX[city]
    pool = ctx.tools.pool_devices
    device = np.where(rng.random(n_ep) < 0.5, pool[rng.integers(0, len(pool), n_ep)],
                      _fresh_ids(ctx.pop.n_devices_total, n_ep, salt=7))[e]  # fmt: skip
    ip = ctx.tools.ips[rng.integers(0, len(ctx.tools.ips), n_ep)][e]
    f_lat, f_lon, _ = ctx.fraud_places(rng, n_ep)
    lat, lon = _online_fraud(rng, n, 0.3, f_lat[e], f_lon[e])
    return _fraud_rows(FraudType.STRUCTURING, time=time, card=card, merchant=merchant, amount_usd=amount,
                       device=device, ip=ip, lat=lat, lon=lon, channel=np.full(n, pb.CHANNEL_ECOMMERCE),
                       entry_mode=np.full(n, pb.ENTRY_MODE_MANUAL))  # fmt: skip


def _friendly_fraud(rng: np.random.Generator, ctx: _FraudContext, n: int) -> _Rows:
    """First-party misuse: cardholders dispute one to three of their own purchases (some are serial disputers),
    made when and as they usually pay: own card, device and IP, where they are, at a favourite shop (online three
    times in four, as most such disputes are), the usual amount for it or a bit more (up to 2.5 times). Active
    customers, who have a history."""
    ep = _Episodes.draw(rng, n, 1, 3)
    pop = ctx.pop
    cust = _weighted(rng, pop.activity, ep.n_episodes)[ep.episode]
    where = _usual_times(rng, pop, ctx.cfg, cust)
    online = where.away | (rng.random(n) < 0.75)  # away from home, the favourite stores are out of reach
    merchant = np.where(online, pop.fav_online[cust, rng.integers(0, 3, n)], pop.fav_store[cust, rng.integers(0, 6, n)])
    amount = _usual_amounts(rng, pop, cust, merchant) * rng.uniform(1.0, 2.5, n)
    rows = _payments_by(rng, pop, cust, where, merchant, amount)
    return dataclasses.replace(rows, fraud_type=np.full(n, int(FraudType.FRIENDLY_FRAUD), np.int64))


_SCENARIOS = {
    FraudType.CARD_TESTING: _card_testing,
    FraudType.HIGH_VELOCITY: _high_velocity,
    FraudType.AMOUNT_SPIKE: _amount_spike,
    FraudType.ACCOUNT_TAKEOVER: _account_takeover,
    FraudType.IMPOSSIBLE_TRAVEL: _impossible_travel,
    FraudType.COMPROMISED_MERCHANT: _compromised_merchant,
    FraudType.KNOWN_BAD_DEVICE: _known_bad_device,
    FraudType.STRUCTURING: _structuring,
    FraudType.FRIENDLY_FRAUD: _friendly_fraud,
}


def _split_rows(n_fraud: int, shares: dict[FraudType, float]) -> dict[FraudType, int]:
    """Fraud rows per scenario, summing exactly to ``n_fraud`` (largest remainders)."""
    raw = {k: n_fraud * v for k, v in shares.items()}
    counts = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], int(k)))[: n_fraud - sum(counts.values())]:
        counts[k] += 1
    counts[FraudType.NONE] = 0
    return counts


def _haversine_km(lat1: F64, lon1: F64, lat2: F64, lon2: F64) -> F64:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return np.asarray(2.0 * 6371.0088 * np.arcsin(np.minimum(1.0, np.sqrt(a))), np.float64)


# --- columns --------------------------------------------------------------------------------


def _mix64(index: I64, seed: int, kind: int) -> npt.NDArray[np.uint64]:
    """A bijective 64-bit mix (splitmix64's finaliser) of ``index`` salted by seed and kind."""
    x = index.astype(np.uint64) + np.uint64(((seed * 0x9E3779B1 + kind * 0x85EBCA77) & 0xFFFFFF) << 40)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_Renderer = Callable[[I64, int, int], S]
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)


def _ascii(chars: npt.NDArray[np.uint8]) -> S:
    """Rows of ASCII codes, NUL-padded on the right, as strings: NumPy keeps a string as one UCS-4 code per
    character, so the rows widened to 32 bits are the strings (far faster than formatting each, or ``astype``)."""
    n, width = chars.shape
    return chars.astype("<u4").view(f"<U{width}").reshape(n)


def _with_prefix(prefix: str, body: npt.NDArray[np.uint8]) -> S:
    head = np.broadcast_to(np.frombuffer(prefix.encode("ascii"), np.uint8), (len(body), len(prefix)))
    return _ascii(np.concatenate([head, body], axis=1))


def _digits(values: I64, width: int) -> npt.NDArray[np.uint8]:
    """Non-negative integers below ``10**width`` as rows of ``width`` ASCII digits, zero-padded."""
    chars = np.empty((len(values), width), np.uint8)
    rest = values.astype(np.int64)
    for j in range(width - 1, -1, -1):
        chars[:, j] = 48 + rest % 10
        rest //= 10
    return chars


def _serial_ids(prefix: str, n: int) -> S:
    """``prefix`` followed by 0, 1, … n - 1 in decimal, written one decade (same number of digits) at a time."""
    width = len(str(max(n - 1, 0)))
    chars = np.zeros((n, width), np.uint8)
    for d in range(1, width + 1):
        lo, hi = (0 if d == 1 else 10 ** (d - 1)), min(n, 10**d)
        chars[lo:hi, :d] = _digits(np.arange(lo, hi), d)
    return _with_prefix(prefix, chars)


def _hex_ids(prefix: str) -> _Renderer:
    def render(index: I64, seed: int, kind: int) -> S:
        nibbles = (_mix64(index, seed, kind)[:, None] >> np.arange(60, -4, -4, dtype=np.uint64)) & np.uint64(15)
        return _with_prefix(prefix, _HEX_DIGITS[nibbles])

    return render


def _ipv4(index: I64, seed: int, kind: int) -> S:
    raw = (_mix64(index, seed, kind) >> np.uint64(32)).astype(np.int64)
    octets = [11 + (raw >> 24) % 212, (raw >> 16) & 255, (raw >> 8) & 255, 1 + (raw & 255) % 254]
    return np.array(["{}.{}.{}.{}".format(*o) for o in zip(*(p.tolist() for p in octets), strict=True)],
                    dtype=np.str_)  # fmt: skip


def _render(index: I64, render: _Renderer, seed: int, kind: int, dense: int) -> S:
    """Strings for integer references; -1 becomes ''.

    References below ``dense`` (the population's own cards, customers, merchants, devices, IPs) are
    looked up in a table rendered for all of them; the few past it (one-off devices, fraudsters'
    devices and IPs) are each rendered once. Neither sorts all the rows, as ``np.unique`` would.
    """
    sparse = index >= dense
    extra, inverse = np.unique(index[sparse], return_inverse=True)
    # the table's last entry is '', where -1 points
    table = np.concatenate([render(np.arange(dense), seed, kind), render(extra, seed, kind), np.array([""])])
    position = index.copy()
    position[sparse] = dense + inverse
    return np.asarray(table[position], dtype=np.str_)


_SCENARIO_NAMES = np.array(["" if k is FraudType.NONE else k.name.lower() for k in FraudType], dtype=np.str_)


@dataclass(slots=True)
class _Ticks:
    """``rows`` of progress reported over ``steps`` calls, adding up exactly."""

    report: Progress
    stage: str
    rows: int
    steps: int
    done: int = 0

    def __call__(self) -> None:
        self.done += 1
        self.report(self.stage, self.rows * self.done // self.steps - self.rows * (self.done - 1) // self.steps)


def _to_columns(r: _Rows, pop: _Population, cfg: SyntheticConfig, rng: np.random.Generator,
                report: Progress) -> Payments:  # fmt: skip
    """The sorted rows as the payments table: amounts in the merchant's currency, ids as strings."""
    n, seed, n_cards = len(r), cfg.seed, len(pop.card_owner)
    report("columns", 0)
    tick = _Ticks(report, "columns", n, steps=7)
    city = pop.m_city[r.merchant]
    amount_minor = np.maximum(1, np.round(r.amount_usd * _CITY_FX[city] / _CITY_MINOR_UNIT[city])).astype(np.int64)
    is_fraud = r.fraud_type != FraudType.NONE
    lo, hi = cfg.label_delay_days
    delay = np.round(rng.uniform(lo, hi, n) * DAY_S)
    label_time = np.where(is_fraud, r.time + delay, np.inf)
    card_rng = np.random.default_rng([seed, 0xCA2D])
    bins = _ascii(_digits(card_rng.integers(400_000, 560_000, n_cards), 6))
    last4 = _ascii(_digits(card_rng.integers(0, 10_000, n_cards), 4))
    tick()
    transaction_id = _serial_ids(f"tx_{seed:x}_", n)
    tick()
    card_token = _render(r.card, _hex_ids("tok_"), seed, 1, n_cards)
    tick()
    customer_id = _render(pop.card_owner[r.card], _hex_ids("cus_"), seed, 2, len(pop.home_city))
    tick()
    merchant_id = _render(r.merchant, _hex_ids("mer_"), seed, 3, len(pop.m_city))
    tick()
    device_id = _render(r.device, _hex_ids("dev_"), seed, 4, pop.n_devices_total)
    tick()
    ip_address = _render(r.ip, _ipv4, seed, 5, pop.n_ips_total)
    tick()
    return Payments(
        transaction_id=transaction_id,
        event_time=np.asarray(r.time, np.int64),
        amount_minor=amount_minor,
        currency=np.array([c.currency for c in _CITIES], dtype=np.str_)[city],
        card_token=card_token,
        card_bin=bins[r.card],
        card_last4=last4[r.card],
        customer_id=customer_id,
        merchant_id=merchant_id,
        mcc=_CAT_MCC[pop.m_cat[r.merchant]].astype(np.int32),
        merchant_country=np.array([c.country for c in _CITIES], dtype=np.str_)[city],
        device_id=device_id,
        ip_address=ip_address,
        latitude=np.asarray(r.lat, np.float64),
        longitude=np.asarray(r.lon, np.float64),
        channel=r.channel.astype(np.int32),
        entry_mode=r.entry_mode.astype(np.int32),
        is_fraud=is_fraud,
        scenario=_SCENARIO_NAMES[r.fraud_type],
        label_time=np.asarray(label_time, np.float64),
    )

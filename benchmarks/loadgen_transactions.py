"""Realistic, varied transactions for the load generator, built before the timed phase.

Two sources. ``synthetic_transactions`` takes ``trainer.synthetic``'s payments (the
distribution the demo model was trained on, fraud episodes included), moved in time to
end just before now and given ids of our own, so decisions come out in realistic
proportions. ``TransactionFactory`` is a small generator of its own, independent of the
trainer: a fixed population (cards with a home country, customer, device and IP; merchants with a
category, country and currency) is drawn from ``seed``; each process then samples its
own stream of payments from it with ``stream_seed``, so processes share cards the way
real traffic does but never share transaction ids. Card activity is skewed (some cards
pay often, most rarely), about one payment in a hundred looks like card testing or a
stolen card (new device, foreign merchant, high amount), and the optional fields
(device, IP, location, BIN) are sometimes absent, as they are in real requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fraudguard.currencies import MINOR_UNIT
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from trainer.synthetic import SyntheticConfig, generate_payments

# country: (currency, latitude, longitude, share of cards)
_COUNTRIES: dict[str, tuple[str, float, float, float]] = {
    "US": ("USD", 39.8, -98.6, 0.34), "GB": ("GBP", 52.4, -1.5, 0.12), "DE": ("EUR", 51.2, 10.4, 0.10),
    "FR": ("EUR", 46.6, 2.4, 0.08), "NL": ("EUR", 52.1, 5.3, 0.04), "ES": ("EUR", 40.4, -3.7, 0.05),
    "IT": ("EUR", 42.8, 12.6, 0.05), "CA": ("CAD", 56.1, -106.3, 0.05), "AU": ("AUD", -25.3, 133.8, 0.04),
    "BR": ("BRL", -14.2, -51.9, 0.04), "JP": ("JPY", 36.2, 138.3, 0.04), "IN": ("INR", 20.6, 79.0, 0.03),
    "SE": ("SEK", 60.1, 18.6, 0.02),
}
# merchant category code: (median amount in major units, weight)
_MCCS: dict[int, tuple[float, float]] = {
    5411: (45.0, 0.20), 5812: (30.0, 0.14), 5814: (9.0, 0.10), 5541: (50.0, 0.08), 5999: (35.0, 0.07),
    5311: (70.0, 0.06), 5691: (85.0, 0.05), 5732: (240.0, 0.04), 5912: (20.0, 0.05), 4111: (3.0, 0.06),
    4121: (18.0, 0.04), 7011: (180.0, 0.03), 4511: (320.0, 0.02), 4829: (400.0, 0.01), 6011: (120.0, 0.02),
    7995: (60.0, 0.01), 5967: (25.0, 0.01), 4900: (110.0, 0.01),
}
_BINS = ("411111", "424242", "453201", "491761", "510510", "522222", "555555", "601100", "371449", "35301113")
# (channel, entry mode, weight); ATM is tied to MCC 6011 below
_PRESENTMENTS = (
    (transaction_pb2.CHANNEL_CARD_PRESENT, transaction_pb2.ENTRY_MODE_CONTACTLESS, 0.30),
    (transaction_pb2.CHANNEL_CARD_PRESENT, transaction_pb2.ENTRY_MODE_CHIP, 0.20),
    (transaction_pb2.CHANNEL_CARD_PRESENT, transaction_pb2.ENTRY_MODE_MAGSTRIPE, 0.02),
    (transaction_pb2.CHANNEL_ECOMMERCE, transaction_pb2.ENTRY_MODE_CARD_ON_FILE, 0.18),
    (transaction_pb2.CHANNEL_ECOMMERCE, transaction_pb2.ENTRY_MODE_MANUAL, 0.10),
    (transaction_pb2.CHANNEL_ECOMMERCE, transaction_pb2.ENTRY_MODE_WALLET, 0.06),
    (transaction_pb2.CHANNEL_IN_APP, transaction_pb2.ENTRY_MODE_WALLET, 0.08),
    (transaction_pb2.CHANNEL_RECURRING, transaction_pb2.ENTRY_MODE_CARD_ON_FILE, 0.05),
    (transaction_pb2.CHANNEL_MOTO, transaction_pb2.ENTRY_MODE_MANUAL, 0.01),
)
_SUSPICIOUS_SHARE = 0.01
# synthetic source: payments per customer in a pool (the trainer's default, 40, makes few cards)
_PAYMENTS_PER_CUSTOMER = 4
_SYNTHETIC_DAYS = 7


@dataclass(frozen=True, slots=True)
class PopulationSize:
    """How many distinct entities the generated traffic draws from."""

    cards: int = 100_000
    merchants: int = 20_000


def _weights(values: list[float]) -> npt.NDArray[np.float64]:
    w = np.asarray(values, np.float64)
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


class TransactionFactory:
    """Draws payments from one fixed population; ``build`` is deterministic in its seeds."""

    def __init__(self, seed: int, size: PopulationSize | None = None) -> None:
        size = size or PopulationSize()
        rng = np.random.default_rng(seed)
        countries = list(_COUNTRIES)
        self._countries = countries
        self._card_country = rng.choice(len(countries), size.cards, p=_weights([v[3] for v in _COUNTRIES.values()]))
        # skewed activity: some cards pay many times a day, most rarely
        self._card_weight = _weights(list(rng.lognormal(0.0, 1.2, size.cards)))
        self._card_bin = rng.integers(0, len(_BINS), size.cards)
        self._card_last4 = rng.integers(0, 10_000, size.cards)
        self._card_customer = np.where(rng.random(size.cards) < 0.85, np.arange(size.cards),
                                       rng.integers(0, size.cards, size.cards))
        self._card_home = np.stack([
            np.array([_COUNTRIES[countries[c]][1] for c in self._card_country]) + rng.normal(0, 2.0, size.cards),
            np.array([_COUNTRIES[countries[c]][2] for c in self._card_country]) + rng.normal(0, 3.0, size.cards),
        ], axis=1)
        self._card_ip = rng.integers(1 << 24, 223 << 24, size.cards)
        mccs = list(_MCCS)
        self._mccs = mccs
        self._merchant_mcc = rng.choice(len(mccs), size.merchants, p=_weights([v[1] for v in _MCCS.values()]))
        self._merchant_country = rng.choice(len(countries), size.merchants,
                                            p=_weights([v[3] for v in _COUNTRIES.values()]))
        self._merchants_by_country = [np.flatnonzero(self._merchant_country == c) for c in range(len(countries))]

    def build(self, count: int, stream_seed: int, id_prefix: str, now: float | None = None,
              span_s: float = 3600.0) -> list[transaction_pb2.Transaction]:
        """``count`` payments with event times spread over the ``span_s`` seconds before ``now``."""
        rng = np.random.default_rng(stream_seed)
        now = time.time() if now is None else now
        cards = rng.choice(len(self._card_weight), count, p=self._card_weight)
        suspicious = rng.random(count) < _SUSPICIOUS_SHARE
        presentment = rng.choice(len(_PRESENTMENTS), count, p=_weights([p[2] for p in _PRESENTMENTS]))
        times = np.sort(now - span_s + rng.random(count) * (span_s - 1.0))
        home = self._card_country[cards]
        abroad = suspicious | (rng.random(count) < 0.04)
        merchant_country = np.where(abroad, rng.integers(0, len(self._countries), count), home)
        merchants = np.array([
            pool[rng.integers(0, len(pool))] if len(pool) else 0
            for pool in (self._merchants_by_country[c] for c in merchant_country)
        ], np.int64)
        noise = rng.lognormal(0.0, 0.8, count) * np.where(suspicious, rng.uniform(4.0, 20.0, count), 1.0)
        optional = rng.random((count, 4))  # device, ip, location, bin present?
        out = []
        for i in range(count):
            out.append(self._transaction(
                i, id_prefix, float(times[i]), int(cards[i]), int(merchants[i]), int(merchant_country[i]),
                int(presentment[i]), float(noise[i]), bool(suspicious[i]), optional[i], rng,
            ))
        return out

    def _transaction(self, i: int, id_prefix: str, t: float, card: int, merchant: int, country_index: int,
                     presentment: int, noise: float, suspicious: bool, optional: npt.NDArray[np.float64],
                     rng: np.random.Generator) -> transaction_pb2.Transaction:
        country = self._countries[country_index]
        currency = _COUNTRIES[country][0]
        mcc = self._mccs[self._merchant_mcc[merchant]]
        channel, entry_mode, _ = _PRESENTMENTS[presentment]
        if mcc == 6011:
            channel, entry_mode = transaction_pb2.CHANNEL_ATM, transaction_pb2.ENTRY_MODE_CHIP
        online = channel not in (transaction_pb2.CHANNEL_CARD_PRESENT, transaction_pb2.CHANNEL_ATM)
        amount_major = _MCCS[mcc][0] * noise
        tx = transaction_pb2.Transaction(
            transaction_id=f"{id_prefix}-{i:08d}",
            amount_minor=round(amount_major / MINOR_UNIT[currency]),
            currency=currency,
            customer_id=f"cus_{self._card_customer[card]:07d}",
            merchant_id=f"mer_{merchant:06d}",
            mcc=mcc,
            merchant_country=country,
            channel=channel,
            entry_mode=entry_mode,
        )
        tx.event_time.FromNanoseconds(int(t * 1e9))
        tx.card.token = f"tok_{card:08x}"
        tx.card.last4 = f"{self._card_last4[card]:04d}"
        if optional[3] < 0.9:
            tx.card.bin = _BINS[self._card_bin[card]]
        if online and optional[0] < 0.9:
            tx.device_id = f"dev_{rng.integers(0, 1 << 40):010x}" if suspicious else f"dev_{card:08x}"
        if online and optional[1] < 0.95:
            tx.ip_address = _ip_text(int(rng.integers(1 << 24, 223 << 24)) if suspicious else int(self._card_ip[card]),
                                     six=optional[1] < 0.1)
        if optional[2] < 0.7:
            lat, lon = self._card_home[card] if not suspicious else (_COUNTRIES[country][1], _COUNTRIES[country][2])
            tx.location.latitude = float(np.clip(lat, -90.0, 90.0))
            tx.location.longitude = float(np.clip(lon, -180.0, 180.0))
        return tx


def synthetic_transactions(count: int, seed: int, id_prefix: str,
                           now: float | None = None) -> list[transaction_pb2.Transaction]:
    """``count`` of ``trainer.synthetic``'s payments over the last week, the newest a minute before ``now``."""
    config = SyntheticConfig(n_transactions=count, seed=seed, days=_SYNTHETIC_DAYS,
                             n_customers=max(50, count // _PAYMENTS_PER_CUSTOMER))
    payments = generate_payments(config)
    now = time.time() if now is None else now
    shift = int(now) - 60 - int(payments.event_time.max())
    out = []
    for i, tx in enumerate(payments.iter_transaction_protos()):
        tx.transaction_id = f"{id_prefix}-{i:08d}"
        tx.event_time.seconds += shift
        out.append(tx)
    return out


def _ip_text(value: int, six: bool) -> str:
    if six:
        return f"2001:db8:{(value >> 16) & 0xFFFF:x}:{value & 0xFFFF:x}::1"
    return ".".join(str((value >> shift) & 0xFF) for shift in (24, 16, 8, 0))


def serialized_requests(transactions: list[transaction_pb2.Transaction], rpc: str, batch_size: int) -> list[bytes]:
    """Wire bytes of each request message: ``ScoreRequest`` for ``score``, else ``batch_size`` per message.

    Serialising once, before the timed phase, keeps protobuf encoding out of the client's hot loop.
    """
    if rpc == "score":
        return [scoring_pb2.ScoreRequest(transaction=tx).SerializeToString() for tx in transactions]
    message = scoring_pb2.ScoreStreamRequest if rpc == "stream" else scoring_pb2.ScoreBatchRequest
    return [
        message(transactions=transactions[i:i + batch_size]).SerializeToString()
        for i in range(0, len(transactions) - batch_size + 1, batch_size)
    ]

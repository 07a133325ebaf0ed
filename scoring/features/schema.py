"""The feature vector: names, order and meaning. The model bundle must match it exactly.

Bumping anything here (a name, the order, a meaning) changes ``SCHEMA_VERSION``'s
fingerprint, and the scorer refuses bundles trained on another schema.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FeatureDef:
    name: str
    description: str
    # How an analyst reads a high value, for reason texts: "{value}" is replaced.
    reason: str


FEATURES: tuple[FeatureDef, ...] = (
    FeatureDef("amount", "amount in major currency units", "amount {value:,.2f}"),
    FeatureDef("log_amount", "log1p of amount", "amount {value:.2f} (log)"),
    FeatureDef("hour_of_day", "UTC hour of the event, fractional", "at {value:.1f}h UTC"),
    FeatureDef("day_of_week", "0 = Monday .. 6 = Sunday (UTC)", "on weekday {value:.0f}"),
    FeatureDef("channel", "Channel enum value", "channel {value:.0f}"),
    FeatureDef("entry_mode", "EntryMode enum value", "entry mode {value:.0f}"),
    FeatureDef("mcc", "merchant category code", "merchant category {value:.0f}"),
    FeatureDef(
        "card_count_1m",
        "card's transactions in the last minute (exact)",
        "{value:.0f} payments on this card in 1 minute",
    ),
    FeatureDef(
        "card_count_1h",
        "card's transactions in the last hour (exact up to 64)",
        "{value:.0f} payments on this card in 1 hour",
    ),
    FeatureDef(
        "card_count_24h",
        "card's transactions in the last 24 h (30-min buckets)",
        "{value:.0f} payments on this card in 24 hours",
    ),
    FeatureDef(
        "card_count_7d",
        "card's transactions in the last 7 days (6-h buckets)",
        "{value:.0f} payments on this card in 7 days",
    ),
    FeatureDef("card_amount_1m", "card's spend in the last minute", "{value:,.2f} spent on this card in 1 minute"),
    FeatureDef("card_amount_1h", "card's spend in the last hour", "{value:,.2f} spent on this card in 1 hour"),
    FeatureDef("card_amount_24h", "card's spend in the last 24 h", "{value:,.2f} spent on this card in 24 hours"),
    FeatureDef("card_amount_7d", "card's spend in the last 7 days", "{value:,.2f} spent on this card in 7 days"),
    FeatureDef(
        "card_amount_zscore",
        "amount against the card's own history (z-score, 0 when < 2 prior)",
        "amount is {value:.1f} standard deviations from this card's usual",
    ),
    FeatureDef(
        "card_amount_ratio",
        "amount / the card's mean amount (1 when no history)",
        "amount is {value:.1f}x this card's average",
    ),
    FeatureDef(
        "card_history_count",
        "card's transactions seen before this one (all time, tracked)",
        "card seen {value:.0f} times before",
    ),
    FeatureDef(
        "card_seconds_since_last",
        "seconds since the card's previous transaction (-1: first)",
        "{value:,.0f} s since this card's last payment",
    ),
    FeatureDef(
        "card_new_device", "1 if this card has not been seen with this device", "first use of this card on this device"
    ),
    FeatureDef(
        "card_new_country",
        "1 if this card has not been used in this merchant country",
        "first use of this card in this country",
    ),
    FeatureDef(
        "card_new_merchant",
        "1 if this card has not paid this merchant before",
        "first payment of this card at this merchant",
    ),
    FeatureDef(
        "card_distinct_devices",
        "distinct devices recently seen with this card (up to 8)",
        "{value:.0f} devices used with this card",
    ),
    FeatureDef(
        "card_small_count_1h",
        "card's payments under 5.00 in the last hour (card testing)",
        "{value:.0f} small payments on this card in 1 hour",
    ),
    FeatureDef(
        "geo_distance_km",
        "distance from the card's previous located payment (km)",
        "{value:,.0f} km from this card's previous payment",
    ),
    FeatureDef("geo_speed_kmh", "implied travel speed since then (km/h)", "implied travel speed {value:,.0f} km/h"),
    FeatureDef(
        "impossible_travel",
        "1 if the speed exceeds 900 km/h over more than 100 km",
        "impossible travel since the previous payment",
    ),
    FeatureDef("has_location", "1 if the transaction carries a location", "location given"),
    FeatureDef(
        "customer_count_1h",
        "customer's transactions in the last hour (5-min buckets)",
        "{value:.0f} payments by this customer in 1 hour",
    ),
    FeatureDef(
        "customer_count_24h",
        "customer's transactions in the last 24 h",
        "{value:.0f} payments by this customer in 24 hours",
    ),
    FeatureDef(
        "customer_amount_24h", "customer's spend in the last 24 h", "{value:,.2f} spent by this customer in 24 hours"
    ),
    FeatureDef(
        "customer_amount_zscore",
        "amount against the customer's own history",
        "amount is {value:.1f} standard deviations from this customer's usual",
    ),
    FeatureDef(
        "customer_distinct_cards",
        "distinct cards recently used by this customer (up to 8)",
        "{value:.0f} cards used by this customer",
    ),
    FeatureDef(
        "device_count_1h", "device's transactions in the last hour", "{value:.0f} payments from this device in 1 hour"
    ),
    FeatureDef(
        "device_count_24h",
        "device's transactions in the last 24 h",
        "{value:.0f} payments from this device in 24 hours",
    ),
    FeatureDef(
        "device_distinct_cards",
        "distinct cards recently used on this device (up to 8)",
        "{value:.0f} cards used on this device",
    ),
    FeatureDef("ip_count_1h", "IP's transactions in the last hour", "{value:.0f} payments from this IP in 1 hour"),
    FeatureDef("ip_count_24h", "IP's transactions in the last 24 h", "{value:.0f} payments from this IP in 24 hours"),
    FeatureDef(
        "ip_distinct_cards",
        "distinct cards recently used from this IP (up to 8)",
        "{value:.0f} cards used from this IP",
    ),
    FeatureDef(
        "merchant_count_1h",
        "merchant's transactions in the last hour",
        "{value:.0f} payments at this merchant in 1 hour",
    ),
    FeatureDef(
        "merchant_count_24h",
        "merchant's transactions in the last 24 h",
        "{value:.0f} payments at this merchant in 24 hours",
    ),
    FeatureDef(
        "merchant_amount_zscore",
        "amount against the merchant's history",
        "amount is {value:.1f} standard deviations from this merchant's usual",
    ),
    FeatureDef(
        "merchant_fraud_rate",
        "merchant's recent fraud rate from known labels (30-day decay, smoothed)",
        "merchant's recent fraud rate {value:.1%}",
    ),
    FeatureDef(
        "device_fraud_rate",
        "device's recent fraud rate from known labels (30-day decay, smoothed)",
        "device's recent fraud rate {value:.1%}",
    ),
    FeatureDef("has_device", "1 if a device id was given", "device id given"),
    FeatureDef("has_ip", "1 if an IP address was given", "IP address given"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
N_FEATURES = len(FEATURES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Fingerprint of names and order (and of the kernels' semantic version, bumped by hand
# whenever a feature's meaning changes without its name changing).
_SEMANTIC_VERSION = "1"
SCHEMA_VERSION = hashlib.sha256(("\n".join(FEATURE_NAMES) + "\n" + _SEMANTIC_VERSION).encode()).hexdigest()[:16]

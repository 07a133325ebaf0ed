"""What a rule can read: the transaction's columns, every feature and the model score.

Field names (each is one column; aliases in brackets read the same column):

Transaction (``scoring.features.batch.TransactionBatch``):
    ``amount`` — number, major currency units (12.50 for $12.50; the feature ``amount`` is the same value)
    ``event_time`` — number, epoch seconds UTC
    ``latitude`` [``location.latitude``], ``longitude`` [``location.longitude``] — numbers, NaN when absent
      (every comparison with NaN is false, ``!=`` true)
    ``mcc`` [``merchant.mcc``] — number, merchant category code
    ``channel`` — a channel: ``"card_present" "ecommerce" "moto" "in_app" "recurring" "atm" "unspecified"``
    ``entry_mode`` — an entry mode: ``"chip" "contactless" "magstripe" "manual" "card_on_file" "wallet" "unspecified"``
    ``merchant_country`` [``merchant.country``] — a country, ISO-3166 alpha-2 (``"DE"``)
    ``card.token`` [``card_token``], ``customer.id`` [``customer_id``], ``merchant.id`` [``merchant_id``],
    ``device.id`` [``device_id``], ``ip.address`` [``ip_address``], ``transaction.id`` [``transaction_id``]
      — ids, compared through their 64-bit ``entity_key`` (``card.token == "tok_123"``, ``ip.address in @bad_ips``)
Model: ``score`` — number, the model's fraud probability.
Features (``scoring.features.schema.FEATURES``): every feature by its name (``card_count_1h``) and as
``feature.<name>``; the velocity features ``<entity>_<count|amount>_<window>`` also as
``velocity.<entity>.<count|amount>_<window>`` (``velocity.card.count_1h``). Where a feature shares its
name with a transaction field (``amount``, ``channel``, ``entry_mode``, ``mcc``), the bare name is the
transaction field and ``feature.<name>`` the feature.

Not (yet) columns of the batch, so unknown fields: ``currency``, ``card.country``, ``card.bin``,
``ip.country``, ``email``, ``billing_country``, ``shipping_country``.

String literals become codes once, at compile time: countries by ``keys.country_code``, channels and
entry modes by their fraud.v1 enum values, ids by ``keys.entity_key``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from enum import Enum

from fraudguard.proto.fraud.v1 import transaction_pb2
from scoring.features import batch as b
from scoring.features.keys import country_code, entity_key
from scoring.features.schema import FEATURES


class Type(Enum):
    NUMBER = "a number"
    BOOL = "true/false"
    STRING = "a string"  # literals only, until coded against a field
    COUNTRY = "a country"
    CHANNEL = "a channel"
    ENTRY_MODE = "an entry mode"
    KEY = "an id"


CODED = frozenset({Type.COUNTRY, Type.CHANNEL, Type.ENTRY_MODE, Type.KEY})


class Source(Enum):
    REAL = "reals"  # TransactionBatch.reals row
    INT = "ints"  # TransactionBatch.ints row
    FEATURE = "features"  # column of the feature matrix
    SCORE = "scores"


@dataclass(frozen=True, slots=True)
class FieldDef:
    name: str  # canonical name
    type: Type
    source: Source
    index: int  # row or column in its source (0 for the score)
    description: str


def _enum_codes(enum: object, prefix: str) -> dict[str, int]:
    items: list[tuple[str, int]] = enum.items()  # type: ignore[attr-defined]  # protobuf EnumTypeWrapper
    return {name.removeprefix(prefix).lower(): int(value) for name, value in items}


CHANNELS: dict[str, int] = _enum_codes(transaction_pb2.Channel, "CHANNEL_")
ENTRY_MODES: dict[str, int] = _enum_codes(transaction_pb2.EntryMode, "ENTRY_MODE_")

_TRANSACTION: tuple[tuple[tuple[str, ...], Type, Source, int, str], ...] = (
    (("amount",), Type.NUMBER, Source.REAL, b.R_AMOUNT, "amount in major currency units"),
    (("event_time",), Type.NUMBER, Source.REAL, b.R_TIME, "event time, epoch seconds UTC"),
    (("latitude", "location.latitude"), Type.NUMBER, Source.REAL, b.R_LAT, "payer latitude (NaN when unknown)"),
    (("longitude", "location.longitude"), Type.NUMBER, Source.REAL, b.R_LON, "payer longitude (NaN when unknown)"),
    (("mcc", "merchant.mcc"), Type.NUMBER, Source.INT, b.K_MCC, "merchant category code"),
    (("channel",), Type.CHANNEL, Source.INT, b.K_CHANNEL, "channel"),
    (("entry_mode",), Type.ENTRY_MODE, Source.INT, b.K_ENTRY, "entry mode"),
    (("merchant_country", "merchant.country"), Type.COUNTRY, Source.INT, b.K_COUNTRY, "merchant country"),
    (("card.token", "card_token"), Type.KEY, Source.INT, b.K_CARD, "card token"),
    (("customer.id", "customer_id"), Type.KEY, Source.INT, b.K_CUSTOMER, "customer id"),
    (("merchant.id", "merchant_id"), Type.KEY, Source.INT, b.K_MERCHANT, "merchant id"),
    (("device.id", "device_id"), Type.KEY, Source.INT, b.K_DEVICE, "device id"),
    (("ip.address", "ip_address"), Type.KEY, Source.INT, b.K_IP, "payer IP address"),
    (("transaction.id", "transaction_id"), Type.KEY, Source.INT, b.K_TXN, "transaction id"),
    (("score",), Type.NUMBER, Source.SCORE, 0, "the model's fraud probability"),
)

_VELOCITY = re.compile(r"(card|customer|device|ip|merchant)_((?:count|amount)_(?:1m|1h|24h|7d))")


def _build() -> dict[str, FieldDef]:
    table: dict[str, FieldDef] = {}
    for column, feature in enumerate(FEATURES):
        definition = FieldDef(feature.name, Type.NUMBER, Source.FEATURE, column, feature.description)
        table[feature.name] = table[f"feature.{feature.name}"] = definition
        m = _VELOCITY.fullmatch(feature.name)
        if m:
            table[f"velocity.{m.group(1)}.{m.group(2)}"] = definition
    for names, type_, source, index, description in _TRANSACTION:
        definition = FieldDef(names[0], type_, source, index, description)
        for name in names:
            table[name] = definition  # a transaction field wins over a feature of the same name
    return table


FIELDS: dict[str, FieldDef] = _build()


def lookup(path: str) -> FieldDef | None:
    return FIELDS.get(path)


def suggestion(path: str) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else ``""``."""
    close = difflib.get_close_matches(path, list(FIELDS), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


_ALPHA2 = re.compile(r"[A-Z]{2}")


def encode(kind: Type, value: str) -> int:
    """The code of string ``value`` as a field of type ``kind`` holds it; ``ValueError`` explains a bad one."""
    if kind is Type.COUNTRY:
        if not _ALPHA2.fullmatch(value):
            raise ValueError(f'"{value[:20]}" is not a country: use an ISO-3166 alpha-2 code in capitals, such as "DE"')
        return country_code(value)
    if kind is Type.CHANNEL or kind is Type.ENTRY_MODE:
        table = CHANNELS if kind is Type.CHANNEL else ENTRY_MODES
        if value not in table:
            raise ValueError(f'"{value[:20]}" is not {kind.value}: one of {", ".join(table)}')
        return table[value]
    if kind is Type.KEY:
        if not value:
            raise ValueError("an empty id matches nothing: ids are never empty")
        return entity_key(value)
    raise ValueError(f"cannot compare a string with {kind.value}")

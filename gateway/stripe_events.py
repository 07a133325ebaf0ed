"""Stripe webhook events → what fraudguard does with them: score a payment, report a label, or ignore the event.

Pure functions over an event whose signature the caller has verified and whose body it has JSON-decoded (API
version 2024+ shapes). No I/O and no clock: pass ``now`` (epoch seconds) to refuse times the scorer would refuse
as lying in the future.

Event types
-----------
======================================  ===============================================================
``payment_intent.created``              ``ScorePayment`` of the PaymentIntent
``payment_intent.requires_action``      ``ScorePayment`` of the PaymentIntent
``payment_intent.processing``           ``ScorePayment`` of the PaymentIntent
``payment_intent.succeeded``            ``ScorePayment`` of the PaymentIntent
``charge.succeeded``                    ``ScorePayment`` of the Charge
``charge.pending``                      ``ScorePayment`` of the Charge
``charge.captured``                     ``Ignore("already_scored")``: the capture of an authorization that
                                        ``charge.succeeded`` reported already (scoring twice would count the
                                        payment twice in every velocity feature)
``charge.dispute.created``              ``ReportOutcome(OUTCOME_CHARGEBACK)`` when ``reason`` is ``fraudulent``
                                        or ``unrecognized``; other reasons (``product_not_received``,
                                        ``duplicate``, ...) are not fraud: ``Ignore("dispute_not_fraud")``
``radar.early_fraud_warning.created``   ``ReportOutcome(OUTCOME_FRAUD)``
anything else                           ``Ignore("unhandled_type")``
======================================  ===============================================================

The handled types also require ``data.object.object`` to name the matching kind of object (``payment_intent``,
``charge``, ``dispute``, ``radar.early_fraud_warning``).

Transaction fields (``data.object`` is a PaymentIntent or a Charge)
-------------------------------------------------------------------
==================  ================================================================================================
``transaction_id``  PaymentIntent: its ``id``. Charge: its ``payment_intent`` (id, or an expanded object's ``id``)
                    when set, else its own ``id`` (``ch_…``). A payment's intent, its charge, and later its dispute
                    or early fraud warning all name the same transaction.
``event_time``      the object's ``created`` (unix seconds)
``amount_minor``    ``amount``, rescaled from Stripe's minor units to ISO-4217's where they differ (ISK: Stripe
                    counts hundredths; MGA: Stripe counts whole ariary)
``currency``        ``currency`` in upper case; must be in ``fraudguard.currencies``
``customer_id``     ``customer`` (id or expanded object's ``id``); empty when null
``merchant_id``     the event's ``account`` (Connect), else ``default_merchant_id``
``card``            see below; no card at all → ``Ignore("no_card")``
``channel``         ``card_present``/``interac_present`` → CARD_PRESENT; ``card`` with ``moto: true`` → MOTO;
                    other cards → ECOMMERCE
``entry_mode``      wallet (``<type>.wallet`` not null) → WALLET; else for card present, from ``read_method``:
                    ``contact_emv`` → CHIP, ``contactless_emv``/``contactless_magstripe_mode`` → CONTACTLESS,
                    ``magnetic_stripe_track2``/``magnetic_stripe_fallback`` → MAGSTRIPE; MOTO → MANUAL; else UNSPECIFIED
``ip_address``      ``metadata.ip``, else ``ip_address``, else ``client_ip``: the first that parses as an address
``device_id``       ``metadata.device_id``
``location``        ``metadata.latitude`` and ``metadata.longitude``, when both parse and lie in range
``card.country``    the card's ``country`` (the issuing bank's, from the BIN), when an alpha-2 code
``billing_country`` Charge: ``billing_details.address.country``; PaymentIntent: its expanded ``latest_charge``'s
``shipping_country`` ``shipping.address.country``
``email``           ``billing_details.email``, else ``receipt_email`` (personal: the scorer stores it sealed)
==================  ================================================================================================

``mcc`` and ``merchant_country`` stay unset: Stripe sends neither with a payment (they belong to the Account).

The card, from the first of these that holds one, reading ``type`` and the sub-object of that name
(``card``, ``card_present`` or ``interac_present``; any other type is not a card):

- Charge: ``payment_method_details``; token = the card's ``fingerprint``, else the charge's ``payment_method``.
- PaymentIntent: ``latest_charge`` when expanded (as a Charge); then ``payment_method`` when expanded (a
  PaymentMethod: token = ``card.fingerprint``, else its ``id``); then ``payment_method`` as an id, taken as the
  token when ``payment_method_types`` lists a card type or is absent (CARD_PRESENT when it lists only present
  types).

``last4`` = ``last4``; ``bin`` = ``iin`` when it is 6–8 digits (else left empty).

Labels (``data.object`` is a Dispute or an EarlyFraudWarning): ``transaction_id`` = its ``payment_intent``, else
its ``charge``'s (an expanded charge: its ``payment_intent``, else its ``id``); ``reported_at`` = its ``created``;
``merchant_id`` as above (the scorer falls back on it once it no longer remembers the transaction).

Errors
------
Whatever is not a Stripe event of this shape raises ``StripeEventError``, and nothing else does: ``field`` is the
JSON path (``data.object.amount``), and messages never quote a value. Every ``ScorePayment`` passes the scorer's
checks (``scoring.serde``: printable ids of at most 128 characters, 0 ≤ amount ≤ 10**15, known currency, 4-digit
last4, times from 2000-01-01, and with ``now`` given, up to one day after it). The metadata fields are the
merchant's free text, so they are best effort: an unusable value is left out, never an error. No field ever
receives a value holding a 13–19 digit Luhn-valid number (a card number): such metadata values are dropped, such
Stripe fields refused.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeAlias

from google.protobuf.timestamp_pb2 import Timestamp

from fraudguard.currencies import EXPONENTS
from fraudguard.errors import ValidationError
from fraudguard.proto.fraud.v1 import scoring_pb2, transaction_pb2
from fraudguard.redaction import luhn_valid

__all__ = ["Ignore", "ReportOutcome", "ScorePayment", "StripeAction", "StripeEventError", "interpret"]

# the scorer's limits (scoring.serde; tests/test_stripe_events.py checks they agree)
MAX_ID_LEN = 128
MAX_AMOUNT_MINOR = 10**15
MIN_TIME = 946_684_800  # 2000-01-01T00:00:00Z
MAX_FUTURE_SKEW_S = 86_400
_MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second a datetime holds

# Stripe's minor-unit exponent where it differs from ISO-4217's (docs.stripe.com/currencies: zero-decimal
# currencies and special cases)
_STRIPE_EXPONENT = {"ISK": 2, "MGA": 0}

_SCORED = {
    "payment_intent.created": "payment_intent",
    "payment_intent.requires_action": "payment_intent",
    "payment_intent.processing": "payment_intent",
    "payment_intent.succeeded": "payment_intent",
    "charge.succeeded": "charge",
    "charge.pending": "charge",
}
_LABELS = {
    "charge.dispute.created": ("dispute", scoring_pb2.OUTCOME_CHARGEBACK),
    "radar.early_fraud_warning.created": ("radar.early_fraud_warning", scoring_pb2.OUTCOME_FRAUD),
}
_ALREADY_SCORED = {"charge.captured": "charge"}
# the dispute reasons that say the cardholder did not make the payment; the others (product not received,
# duplicate, subscription cancelled, ...) are about the goods or the merchant, and a label of fraud would teach
# the model something false
FRAUD_DISPUTE_REASONS = frozenset({"fraudulent", "unrecognized"})

_PRESENT_TYPES = frozenset({"card_present", "interac_present"})
_CARD_TYPES = _PRESENT_TYPES | {"card"}
_READ_METHODS = {
    "contact_emv": transaction_pb2.ENTRY_MODE_CHIP,
    "contactless_emv": transaction_pb2.ENTRY_MODE_CONTACTLESS,
    "contactless_magstripe_mode": transaction_pb2.ENTRY_MODE_CONTACTLESS,
    "magnetic_stripe_track2": transaction_pb2.ENTRY_MODE_MAGSTRIPE,
    "magnetic_stripe_fallback": transaction_pb2.ENTRY_MODE_MAGSTRIPE,
}
_IP_KEYS = ("ip", "ip_address", "client_ip")
_IP = re.compile(r"[0-9A-Fa-f:.]{2,45}")  # what scoring.serde accepts
_DIGITS = re.compile(r"[0-9]+")
_COUNTRY = re.compile(r"[A-Z]{2}")
MAX_EMAIL_CHARS = 254
_PAN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")  # as fraudguard.redaction finds them
_SEPARATORS = re.compile(r"[ -]")
_MAX_NUMBER_TEXT = 32
_DATA = "data.object"


class StripeEventError(ValidationError):
    """The body is not a Stripe event of a handled shape. ``field`` is the JSON path in the event
    (``data.object.amount``); the message says what is wrong without quoting the value."""


@dataclass(frozen=True, slots=True)
class ScorePayment:
    """Score this payment."""

    transaction: transaction_pb2.Transaction


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """A label for the feedback loop. ``merchant_id`` is the merchant the payment was scored under, for the
    scorer's fallback once it no longer remembers the transaction (``ReportOutcomeRequest.merchant_id``)."""

    transaction_id: str
    outcome: int  # scoring_pb2.OUTCOME_FRAUD or OUTCOME_CHARGEBACK
    reported_at: datetime  # aware, UTC
    merchant_id: str = ""


@dataclass(frozen=True, slots=True)
class Ignore:
    """Acknowledged, nothing to do; ``reason`` is a short label to count: ``unhandled_type``, ``no_card``,
    ``already_scored``."""

    reason: str


StripeAction: TypeAlias = ScorePayment | ReportOutcome | Ignore


class _Card(NamedTuple):
    token: str
    last4: str
    bin: str
    channel: transaction_pb2.Channel
    entry_mode: transaction_pb2.EntryMode
    country: str = ""  # the issuing bank's, from the BIN


def interpret(
    event: Mapping[str, Any], *, default_merchant_id: str = "stripe", now: float | None = None
) -> StripeAction:
    """What to do with a verified Stripe event (see the module docstring); ``StripeEventError`` when it is not one.

    ``default_merchant_id`` names the merchant when the event has no ``account`` (not a Connect event); a value the
    scorer would refuse raises ``ValueError``. ``now``: when given, times later than one day after it are refused
    as the scorer refuses them."""
    if not _usable_id(default_merchant_id):
        raise ValueError(f"default_merchant_id must be 1-{MAX_ID_LEN} printable characters")
    ev = _mapping(event, "event")
    if ev.get("object") != "event":
        raise StripeEventError("object", 'must be "event"')
    if not _id(ev.get("id"), "id").startswith("evt_"):
        raise StripeEventError("id", 'must start with "evt_"')
    kind = _id(ev.get("type"), "type")
    _time(ev.get("created"), "created", None)
    obj = _mapping(_mapping(ev.get("data"), "data").get("object"), _DATA)
    merchant = _optional_id(ev.get("account"), "account") or default_merchant_id
    if kind in _SCORED:
        return _score(_of_kind(obj, _SCORED[kind]), merchant, now)
    if kind in _LABELS:
        object_kind, outcome = _LABELS[kind]
        labelled = _of_kind(obj, object_kind)
        if object_kind == "dispute" and _optional_text(labelled.get("reason"), f"{_DATA}.reason") \
                not in FRAUD_DISPUTE_REASONS:
            _label(labelled, outcome, merchant, now)  # still checked: a malformed dispute is an error either way
            return Ignore("dispute_not_fraud")
        return _label(labelled, outcome, merchant, now)
    if kind in _ALREADY_SCORED:
        _of_kind(obj, _ALREADY_SCORED[kind])
        return Ignore("already_scored")
    return Ignore("unhandled_type")


def _score(obj: Mapping[str, object], merchant: str, now: float | None) -> ScorePayment | Ignore:
    is_charge = obj.get("object") == "charge"
    own_id = _id(obj.get("id"), f"{_DATA}.id")
    tx_id = (_ref(obj.get("payment_intent"), f"{_DATA}.payment_intent") if is_charge else None) or own_id
    currency = _currency(obj.get("currency"), f"{_DATA}.currency")
    amount = _amount(obj.get("amount"), currency, f"{_DATA}.amount")
    created = _time(obj.get("created"), f"{_DATA}.created", now)
    customer = _ref(obj.get("customer"), f"{_DATA}.customer") or ""
    metadata = _optional_mapping(obj.get("metadata"), f"{_DATA}.metadata") or {}
    card = _charge_card(obj, _DATA) if is_charge else _intent_card(obj, _DATA)
    if card is None:
        return Ignore("no_card")
    billing = _billing_details(obj)
    tx = transaction_pb2.Transaction(
        transaction_id=tx_id, event_time=Timestamp(seconds=created), amount_minor=amount, currency=currency,
        card=transaction_pb2.Card(token=card.token, bin=card.bin, last4=card.last4, country=card.country),
        customer_id=customer, merchant_id=merchant, device_id=_device(metadata), ip_address=_ip(metadata),
        channel=card.channel, entry_mode=card.entry_mode,
        billing_country=_country(_dig(billing, "address", "country")),
        shipping_country=_country(_dig(obj.get("shipping"), "address", "country")),
        email=_email(_dig(billing, "email")) or _email(obj.get("receipt_email")),
    )  # fmt: skip
    location = _location(metadata)
    if location is not None:
        tx.location.latitude, tx.location.longitude = location
    return ScorePayment(tx)


def _label(obj: Mapping[str, object], outcome: int, merchant: str, now: float | None) -> ReportOutcome:
    _id(obj.get("id"), f"{_DATA}.id")
    tx_id = _ref(obj.get("payment_intent"), f"{_DATA}.payment_intent")
    if tx_id is None:
        charge = obj.get("charge")
        if isinstance(charge, Mapping):
            path = f"{_DATA}.charge"
            tx_id = _ref(charge.get("payment_intent"), f"{path}.payment_intent") or _id(charge.get("id"), f"{path}.id")
        else:
            tx_id = _ref(charge, f"{_DATA}.charge")
    if tx_id is None:
        raise StripeEventError(f"{_DATA}.charge", "required when payment_intent is null")
    created = _time(obj.get("created"), f"{_DATA}.created", now)
    return ReportOutcome(tx_id, outcome, datetime.fromtimestamp(created, UTC), merchant)


# ---- cards


def _charge_card(charge: Mapping[str, object], path: str) -> _Card | None:
    details = _optional_mapping(charge.get("payment_method_details"), f"{path}.payment_method_details")
    payment_method = _optional_id(charge.get("payment_method"), f"{path}.payment_method")
    if details is None:
        return None
    return _card(details, payment_method, f"{path}.payment_method_details")


def _intent_card(intent: Mapping[str, object], path: str) -> _Card | None:
    latest = intent.get("latest_charge")
    if isinstance(latest, Mapping):
        card = _charge_card(latest, f"{path}.latest_charge")
        if card is not None:
            return card
    else:
        _ref(latest, f"{path}.latest_charge")
    method = intent.get("payment_method")
    if isinstance(method, Mapping):
        return _card(method, _id(method.get("id"), f"{path}.payment_method.id"), f"{path}.payment_method")
    method_id = _optional_id(method, f"{path}.payment_method")
    types = _texts(intent.get("payment_method_types"), f"{path}.payment_method_types")
    if method_id is None or (types and not types & _CARD_TYPES):
        return None
    present = bool(types) and "card" not in types
    channel = transaction_pb2.CHANNEL_CARD_PRESENT if present else transaction_pb2.CHANNEL_ECOMMERCE
    return _Card(method_id, "", "", channel, transaction_pb2.ENTRY_MODE_UNSPECIFIED)


def _card(details: Mapping[str, object], fallback_token: str | None, path: str) -> _Card | None:
    """The card of a Charge's ``payment_method_details`` or of a PaymentMethod (both: ``type`` and a sub-object
    named after it); None when it is no card."""
    kind = _text(details.get("type"), f"{path}.type")
    if kind not in _CARD_TYPES:
        return None
    path = f"{path}.{kind}"
    card = _optional_mapping(details.get(kind), path) or {}
    token = _optional_id(card.get("fingerprint"), f"{path}.fingerprint") or fallback_token
    if token is None:
        return None
    last4 = _optional_text(card.get("last4"), f"{path}.last4") or ""
    if last4 and not (len(last4) == 4 and _DIGITS.fullmatch(last4)):
        raise StripeEventError(f"{path}.last4", "must be 4 digits")
    iin = _optional_text(card.get("iin"), f"{path}.iin") or ""
    bin_ = iin if 6 <= len(iin) <= 8 and _DIGITS.fullmatch(iin) else ""
    wallet = _optional_mapping(card.get("wallet"), f"{path}.wallet") is not None
    channel, entry_mode = _presentation(card, kind, path)
    return _Card(token, last4, bin_, channel, transaction_pb2.ENTRY_MODE_WALLET if wallet else entry_mode,
                 _country(card.get("country")))


def _presentation(
    card: Mapping[str, object], kind: str, path: str
) -> tuple[transaction_pb2.Channel, transaction_pb2.EntryMode]:
    if kind in _PRESENT_TYPES:
        method = _optional_text(card.get("read_method"), f"{path}.read_method")
        mode = _READ_METHODS.get(method or "", transaction_pb2.ENTRY_MODE_UNSPECIFIED)
        return transaction_pb2.CHANNEL_CARD_PRESENT, mode
    moto = card.get("moto")
    if moto is not None and not isinstance(moto, bool):
        raise StripeEventError(f"{path}.moto", f"must be a boolean, got {_json_type(moto)}")
    if moto:
        return transaction_pb2.CHANNEL_MOTO, transaction_pb2.ENTRY_MODE_MANUAL
    return transaction_pb2.CHANNEL_ECOMMERCE, transaction_pb2.ENTRY_MODE_UNSPECIFIED


# ---- addresses and e-mail: best effort (a value the scorer would refuse is left out, never an error)


def _billing_details(obj: Mapping[str, object]) -> object:
    """A Charge's ``billing_details``; a PaymentIntent's come from its expanded ``latest_charge``, if any."""
    if obj.get("object") == "charge":
        return obj.get("billing_details")
    return _dig(obj.get("latest_charge"), "billing_details")


def _dig(value: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _country(value: object) -> str:
    """An ISO-3166-1 alpha-2 code (Stripe's are upper case), else empty."""
    return value if isinstance(value, str) and _COUNTRY.fullmatch(value) else ""


def _email(value: object) -> str:
    """An e-mail address the scorer accepts (at most 254 printable characters, one ``@``), else empty."""
    if not isinstance(value, str) or not 3 <= len(value) <= MAX_EMAIL_CHARS or not value.isprintable():
        return ""
    if value.count("@") != 1 or value.startswith("@") or value.endswith("@") or _holds_pan(value):
        return ""
    return value


# ---- metadata: the merchant's free text, best effort


def _ip(metadata: Mapping[str, object]) -> str:
    for key in _IP_KEYS:
        value = metadata.get(key)
        if not isinstance(value, str) or len(value) > 64:
            continue
        try:
            text = str(ipaddress.ip_address(value.strip()))
        except ValueError:
            continue
        if _IP.fullmatch(text):  # an IPv6 zone (fe80::1%eth0) does not
            return text
    return ""


def _device(metadata: Mapping[str, object]) -> str:
    value = metadata.get("device_id")
    return value if isinstance(value, str) and _usable_id(value) else ""


def _location(metadata: Mapping[str, object]) -> tuple[float, float] | None:
    latitude = _coordinate(metadata.get("latitude"), 90.0)
    longitude = _coordinate(metadata.get("longitude"), 180.0)
    return None if latitude is None or longitude is None else (latitude, longitude)


def _coordinate(value: object, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, str) and len(value) > _MAX_NUMBER_TEXT:
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and -limit <= number <= limit else None


# ---- readers: each returns the value if it has the shape asked for, else raises StripeEventError naming path


def _mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise StripeEventError(path, f"must be an object, got {_json_type(value)}")
    return value


def _optional_mapping(value: object, path: str) -> Mapping[str, object] | None:
    return None if value is None else _mapping(value, path)


def _of_kind(obj: Mapping[str, object], kind: str) -> Mapping[str, object]:
    if obj.get("object") != kind:
        raise StripeEventError(f"{_DATA}.object", f'must be "{kind}" for this event type')
    return obj


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise StripeEventError(path, f"must be a string, got {_json_type(value)}")
    return value


def _optional_text(value: object, path: str) -> str | None:
    return None if value is None else _text(value, path)


def _texts(value: object, path: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise StripeEventError(path, f"must be an array, got {_json_type(value)}")
    return frozenset(_text(item, f"{path}[{i}]") for i, item in enumerate(value))


def _id(value: object, path: str) -> str:
    text = _text(value, path)
    if not text:
        raise StripeEventError(path, "must not be empty")
    if len(text) > MAX_ID_LEN:
        raise StripeEventError(path, f"at most {MAX_ID_LEN} characters, got {len(text)}")
    if not text.isprintable():
        raise StripeEventError(path, "must be printable characters only")
    if _holds_pan(text):
        raise StripeEventError(path, "holds what looks like a card number")
    return text


def _optional_id(value: object, path: str) -> str | None:
    return None if value is None or value == "" else _id(value, path)


def _ref(value: object, path: str) -> str | None:
    """An expandable field: null, an id, or the expanded object (its ``id``)."""
    if isinstance(value, Mapping):
        return _id(value.get("id"), f"{path}.id")
    return _optional_id(value, path)


def _usable_id(text: str) -> bool:
    return 0 < len(text) <= MAX_ID_LEN and text.isprintable() and not text.isspace() and not _holds_pan(text)


def _holds_pan(text: str) -> bool:
    return any(luhn_valid(_SEPARATORS.sub("", run)) for run in _PAN.findall(text))


def _integer(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StripeEventError(path, f"must be an integer, got {_json_type(value)}")
    if not low <= value <= high:
        raise StripeEventError(path, f"must be between {low} and {high}")
    return value


def _time(value: object, path: str, now: float | None) -> int:
    seconds = _integer(value, path, MIN_TIME, _MAX_TIME)
    if now is not None and seconds > now + MAX_FUTURE_SKEW_S:
        raise StripeEventError(path, "must not lie more than one day in the future")
    return seconds


def _currency(value: object, path: str) -> str:
    text = _text(value, path)
    code = text.upper()
    if not (len(text) == 3 and text.isascii() and code in EXPONENTS):
        raise StripeEventError(path, "not a known ISO-4217 currency code")
    return code


def _amount(value: object, currency: str, path: str) -> int:
    """Stripe's amount in ISO-4217 minor units of ``currency``."""
    amount = _integer(value, path, 0, MAX_AMOUNT_MINOR)
    shift = EXPONENTS[currency] - _STRIPE_EXPONENT.get(currency, EXPONENTS[currency])
    if shift < 0:
        step = 10**-shift
        amount = (amount + step // 2) // step
    elif shift > 0:
        amount *= 10**shift
        if amount > MAX_AMOUNT_MINOR:
            raise StripeEventError(path, f"must be at most {MAX_AMOUNT_MINOR} in ISO-4217 minor units")
    return amount


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object" if isinstance(value, Mapping) else f"a {type(value).__name__}"

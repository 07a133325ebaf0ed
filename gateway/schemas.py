"""The JSON bodies of the REST API, as pydantic models: they make the OpenAPI document and check types and ranges.

The shapes mirror the protobuf messages of ``fraud.v1`` (``{"transaction": {...}}`` for a score, ``{"transactions":
[...]}`` for a batch), so a field named in an error (``transactions[3].amount_minor``) is the same path in the JSON
as in the gRPC contract. Enums are lower-case words (``"ecommerce"``, ``"block"``, ``"chargeback"``). What only the
scorer can judge (a known currency, a Luhn-valid PAN, an event time not far in the future) it judges, and its
error comes back naming the field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from fraudguard.currencies import MINOR_UNIT

MAX_ID_CHARS = 128
MAX_BATCH = 4096
MAX_AMOUNT_MINOR = 10**15  # the scorer's bound: a quadrillion cents is more than any payment

# the ISO-4217 codes the scorer knows (it converts amounts to major units with their minor-unit exponents)
if TYPE_CHECKING:
    Currency = str
else:
    Currency = Annotated[Literal[tuple(sorted(MINOR_UNIT))], Field(description="ISO-4217 code, e.g. EUR")]

Channel = Literal["unspecified", "card_present", "ecommerce", "moto", "in_app", "recurring", "atm"]
EntryMode = Literal["unspecified", "chip", "contactless", "magstripe", "manual", "card_on_file", "wallet"]
ActionName = Literal["allow", "challenge", "review", "block"]
OutcomeName = Literal["fraud", "legitimate", "chargeback"]

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[\x20-\x7e]+$")]
CountryCode = Annotated[str, Field(pattern=r"^([A-Z]{2})?$", description="ISO-3166-1 alpha-2, e.g. DE")]
OptionalId = Annotated[str, Field(max_length=MAX_ID_CHARS, pattern=r"^[\x20-\x7e]*$")]


def _utc_since_2000(value: datetime) -> datetime:
    """The time in UTC; refused when before 2000 (the scorer's earliest) or not representable in UTC."""
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("not a representable time") from None
    if utc < _EARLIEST:
        raise ValueError("must not lie before 2000-01-01T00:00:00Z")
    return utc


_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
Time = Annotated[AwareDatetime, AfterValidator(_utc_since_2000)]


def _printable(value: str) -> str:
    """Printable text (no control characters, no lone surrogates: neither protobuf nor PostgreSQL takes them)."""
    if not value.isprintable() or not _encodes(value):
        raise ValueError("must be printable characters only")
    return value


def _note_text(value: str) -> str:
    """Like :func:`_printable`, but lines and tabs are allowed."""
    _printable(value.replace("\n", " ").replace("\t", " "))
    return value


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Printable = Annotated[str, AfterValidator(_printable)]


class _Strict(BaseModel):
    """Unknown fields are refused (a misspelt field must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class Card(_Strict):
    """The card: send ``token`` (your stable card token) or ``pan``; a PAN is tokenized by the scorer and dropped."""

    token: OptionalId = ""
    bin: Annotated[str, Field(pattern=r"^([0-9]{6,8})?$")] = ""
    last4: Annotated[str, Field(pattern=r"^([0-9]{4})?$")] = ""
    pan: Annotated[str, Field(max_length=19, pattern=r"^[0-9]*$", description="12-19 digits, Luhn-valid")] = ""
    country: CountryCode = Field(default="", description="ISO-3166-1 alpha-2 of the issuing bank (from the BIN)")


class GeoPoint(_Strict):
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]


class Transaction(_Strict):
    """One payment to score (``fraud.v1.Transaction``)."""

    transaction_id: Id
    event_time: Time = Field(description="when the payment happened, RFC 3339 with a time zone, after 2000")
    amount_minor: Annotated[int, Field(ge=0, le=MAX_AMOUNT_MINOR, description="amount in minor units of currency")]
    currency: Currency
    card: Card
    customer_id: OptionalId = ""
    merchant_id: OptionalId = ""
    mcc: Annotated[int, Field(ge=0, le=9999)] = 0
    merchant_country: CountryCode = ""
    device_id: OptionalId = ""
    ip_address: Annotated[Printable, Field(max_length=45, description="IPv4 or IPv6, textual")] = ""
    location: GeoPoint | None = None
    channel: Channel = "unspecified"
    entry_mode: EntryMode = "unspecified"
    billing_country: CountryCode = ""
    shipping_country: CountryCode = ""
    email: Annotated[Printable, Field(max_length=254, description="the payer's e-mail; stored only encrypted")] = ""


class ScoreRequest(_Strict):
    transaction: Transaction


class ScoreBatchRequest(_Strict):
    transactions: Annotated[list[Transaction], Field(min_length=1, max_length=MAX_BATCH)]


class Reason(BaseModel):
    feature: str
    value: float | None
    contribution: float | None = Field(description="contribution to the model's log-odds (positive raises risk)")
    text: str


class RuleHit(BaseModel):
    rule_id: str
    action: ActionName
    description: str


class StoredRuleHit(BaseModel):
    rule_id: str
    action: ActionName


class Decision(BaseModel):
    transaction_id: str
    score: float | None = Field(description="fraud probability in [0, 1]; null when the model gave no number")
    action: ActionName
    reasons: list[Reason]
    rule_hits: list[RuleHit]
    model_version: str
    rule_set_version: str
    server_time_us: float


class ScoreResponse(BaseModel):
    decision: Decision


class ItemError(BaseModel):
    code: int = Field(description="the gRPC status code this error would carry alone (3 = INVALID_ARGUMENT)")
    field: str = Field(description="the offending field, e.g. transactions[3].amount_minor")
    message: str


class ScoreResult(BaseModel):
    """Exactly one of ``decision`` and ``error``."""

    transaction_id: str
    decision: Decision | None = None
    error: ItemError | None = None


class ScoreBatchResponse(BaseModel):
    results: list[ScoreResult]


class OutcomeRequest(_Strict):
    """What happened to a scored transaction, learned later; feeds training and the label-derived features."""

    transaction_id: Id
    outcome: OutcomeName
    reported_at: Time | None = Field(default=None, description="when it happened (default: now)")
    merchant_id: OptionalId = Field(default="", description="used when the scorer no longer remembers the payment")
    device_id: OptionalId = ""
    note: Annotated[str, Field(max_length=500), AfterValidator(_note_text)] = ""


class OutcomeResponse(BaseModel):
    transaction_id: str
    outcome: OutcomeName
    source: str
    reported_at: datetime
    stored: bool = Field(description="false when this very report was stored before (a retry)")
    applied: bool | None = Field(
        description="whether the scorer applied it to its label-derived features (null: scorer not reachable)")


class Label(BaseModel):
    outcome: OutcomeName
    source: str
    reported_at: datetime
    known_at: datetime


class CardOut(BaseModel):
    token: str
    bin: str | None
    last4: str | None


class StoredDecision(BaseModel):
    """A recorded decision with what it was made from (personal fields stay sealed in the database)."""

    transaction_id: str
    event_time: datetime
    decided_at: datetime
    recorded_at: datetime
    amount_minor: int
    currency: str
    card: CardOut
    customer_id: str | None
    merchant_id: str
    mcc: int | None
    merchant_country: str | None
    channel: Channel
    entry_mode: EntryMode
    score: float | None
    action: ActionName
    reasons: list[Reason]
    rule_hits: list[StoredRuleHit]
    model_version: str
    rule_versions: dict[str, str] = Field(description='the versions that decided, e.g. {"rule_set": "..."}')
    features: dict[str, float | None]
    server_time_us: float
    labels: list[Label]


class ActionThreshold(BaseModel):
    action: ActionName
    min_score: float


class FeatureSpec(BaseModel):
    index: int
    name: str
    dtype: str
    description: str


class ModelInfo(BaseModel):
    model_version: str
    features: list[FeatureSpec]
    thresholds: list[ActionThreshold]
    loaded_at: datetime | None
    created_at: datetime | None
    training_data_fingerprint: str
    metrics: dict[str, float | None]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class WebhookReceipt(BaseModel):
    received: bool
    duplicate: bool = Field(description="true when this event id was received before: acknowledged, not redone")


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = Field(default=None, description="the offending field, when one is to blame")
    errors: list[dict[str, str]] | None = Field(default=None, description="every offending field, when several")
    request_id: str | None = None

"""Parsing a whole table: every mapped field of every data row, vectorised, into Payments columns and problems.

Times, amounts and cards have modules of their own; the other fields are parsed here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudguard.currencies import EXPONENTS
from fraudguard.proto.fraud.v1 import transaction_pb2 as pb
from trainer.files.arrays import F64, I64, B, _np
from trainer.files.mapping import MAX_ID_CHARS
from trainer.files.parse_amounts import _amounts, _check_amount, _numbers
from trainer.files.parse_cards import _cards, _check_card, _pan_key
from trainer.files.parse_shared import (
    _digits,
    _given,
    _letters,
    _lookup,
    _Parsed,
    _Problem,
    _text,
    _too_long,
)
from trainer.files.parse_times import _check_time, _times
from trainer.files.raw import _Raw
from trainer.files.results import AmountUnit, ImportOptions


def _enum_names(items: Iterable[tuple[str, int]], prefix: str) -> dict[str, int]:
    """Accepted spellings of an enum: full and short names (any case, matched lower-case) and numbers."""
    table: dict[str, int] = {}
    for name, value in items:
        table[name.lower()] = value
        table[name.lower().removeprefix(prefix)] = value
        table[str(value)] = value
    return table


_CHANNELS = _enum_names(pb.Channel.items(), "channel_")
_ENTRY_MODES = _enum_names(pb.EntryMode.items(), "entry_mode_")
_LABELS = {word: 1 for word in ("true", "1", "yes", "fraud", "chargeback")} | {
    word: 0 for word in ("false", "0", "no", "legit", "legitimate")
}


def _coordinate(values: pa.Array | None, name: str, limit: float, n: int) -> tuple[F64, B, list[_Problem]]:
    """Degrees per row (NaN: not given), whether given, and the problems (not a number, out of range)."""
    if values is None:
        return np.full(n, np.nan), np.zeros(n, np.bool_), []
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        x = np.asarray(_np(pc.fill_null(pc.cast(values, pa.float64()), np.nan)), np.float64)
        given = ~np.isnan(x)
        bad = np.zeros(len(x), np.bool_)
    else:
        text = _text(values, name)
        given = _given(text)
        x, number = _numbers(text)
        bad = given & ~number
    outside = given & ~bad & ~(np.abs(x) <= limit)
    problems = [_Problem(name, "not a number", bad), _Problem(name, f"outside [-{limit:g}, {limit:g}]", outside)]
    return x, given, problems


def _parse(raw: _Raw, resolved: Mapping[str, str], options: ImportOptions) -> _Parsed:
    """Parse every mapped field of every data row, vectorised; unmapped optional fields take their defaults."""
    n = raw.table.num_rows
    parsed = _Parsed({}, [], [])

    def column(name: str) -> pa.Array | None:
        return raw.column(resolved[name]) if name in resolved else None

    def text(name: str) -> pa.Array:
        values = column(name)
        return pa.nulls(n, pa.string()).fill_null("") if values is None else _text(values, name)

    _parse_ids(parsed, text)
    event = _parse_event_time(parsed, raw.column(resolved["timestamp"]))
    exponent = _parse_currency(parsed, text("currency"), "currency" in resolved, options)
    _parse_amount(parsed, text("amount"), exponent, options.amount_unit)
    _parse_card(parsed, text("card"), text("card_bin"), text("card_last4"), options)
    _parse_merchant(parsed, text("mcc"), text("merchant_country"))
    _parse_location(parsed, column("latitude"), column("longitude"), n)
    _parse_enum(parsed, "channel", text("channel"), _CHANNELS)
    _parse_enum(parsed, "entry_mode", text("entry_mode"), _ENTRY_MODES)
    _parse_labels(parsed, text("label"), text("scenario"), column("label_time"), event, options)
    return parsed


_ID_FIELDS = {"transaction_id": "transaction_id", "customer": "customer_id", "merchant": "merchant_id",
              "device": "device_id", "ip": "ip_address"}


def _parse_ids(parsed: _Parsed, text: Callable[[str], pa.Array]) -> None:
    for name, column in _ID_FIELDS.items():
        values = text(name)
        parsed.columns[column] = values
        parsed.problems.append(_Problem(name, f"longer than {MAX_ID_CHARS} characters", _too_long(values)))
    parsed.problems.append(_Problem("transaction_id", "missing", ~_given(parsed.columns["transaction_id"])))


def _parse_event_time(parsed: _Parsed, values: pa.Array) -> I64:
    times = _times(values, "timestamp")
    parsed.problems.extend(_check_time("timestamp", times, required=True))
    parsed.columns["event_time"] = times.seconds
    return times.seconds


def _parse_currency(parsed: _Parsed, text: pa.Array, mapped: bool, options: ImportOptions) -> I64:
    """Currency codes (empty: the default) and each row's minor-unit exponent (0 for minor-unit amounts)."""
    codes = pc.if_else(pa.array(_given(text) & mapped), pc.ascii_upper(text), options.currency)
    exponent, known = _lookup(codes, EXPONENTS, 2)
    parsed.problems.append(_Problem("currency", "not an ISO-4217 currency", ~known))
    parsed.columns["currency"] = codes
    return exponent if options.amount_unit == "major" else np.zeros_like(exponent)


def _parse_amount(parsed: _Parsed, text: pa.Array, exponent: I64, unit: AmountUnit) -> None:
    amounts = _amounts(text, exponent)
    parsed.problems.extend(_check_amount(text, amounts, unit))
    parsed.columns["amount_minor"] = amounts.minor
    rounded = int(amounts.rounded.sum())
    if rounded and unit == "major":
        parsed.warnings.append(f"{rounded:,} amounts had more decimals than their currency and were rounded")


def _parse_card(parsed: _Parsed, card: pa.Array, bins: pa.Array, last4s: pa.Array, options: ImportOptions) -> None:
    cards = _cards(card, bins, last4s, lambda: _pan_key(options, parsed.warnings))
    parsed.problems.extend(_check_card(card, cards))
    parsed.columns.update(card_token=cards.token, card_bin=cards.bin, card_last4=cards.last4)
    if cards.is_pan.any():
        parsed.warnings.append(f"{int(cards.is_pan.sum()):,} rows held raw card numbers; they were tokenized "
                               f"and not kept")


def _parse_merchant(parsed: _Parsed, mcc: pa.Array, country: pa.Array) -> None:
    digits = _digits(mcc, 1, 4)
    values = np.zeros(len(mcc), np.int32)
    values[digits] = _np(pc.cast(mcc.filter(pa.array(digits)), pa.int32()))
    country = pc.ascii_upper(country)
    parsed.columns.update(mcc=values, merchant_country=country)
    parsed.problems += [
        _Problem("mcc", "not a whole number from 0 to 9999", _given(mcc) & ~digits),
        _Problem("merchant_country", "not two ASCII letters", _given(country) & ~_letters(country, 2)),
    ]


def _parse_location(parsed: _Parsed, latitude: pa.Array | None, longitude: pa.Array | None, n: int) -> None:
    lat, lat_given, lat_problems = _coordinate(latitude, "latitude", 90.0, n)
    lon, lon_given, lon_problems = _coordinate(longitude, "longitude", 180.0, n)
    parsed.problems += lat_problems + lon_problems
    parsed.problems += [
        _Problem("latitude", "given without longitude", lat_given & ~lon_given),
        _Problem("longitude", "given without latitude", lon_given & ~lat_given),
    ]
    none = ~(lat_given & lon_given)
    parsed.columns.update(latitude=np.where(none, np.nan, lat), longitude=np.where(none, np.nan, lon))


def _parse_enum(parsed: _Parsed, name: str, text: pa.Array, table: Mapping[str, int]) -> None:
    values, known = _lookup(pc.utf8_lower(text), table, 0)
    reason = f"unknown {name.replace('_', ' ')} (expected an enum name or number)"
    parsed.problems.append(_Problem(name, reason, _given(text) & ~known))
    parsed.columns[name] = values.astype(np.int32)


def _parse_labels(parsed: _Parsed, label: pa.Array, scenario: pa.Array, label_time: pa.Array | None,
                  event: I64, options: ImportOptions) -> None:
    """is_fraud, the scenario ("" for legitimate rows) and when each fraud row's label arrives."""
    values, known = _lookup(pc.utf8_lower(label), _LABELS, 0)
    fraud = values.astype(np.bool_)
    parsed.problems.append(_Problem("label", "not a label (true/false, 1/0, yes/no, fraud/legit, chargeback)",
                                    _given(label) & ~known))
    parsed.problems.append(_Problem("scenario", f"longer than {MAX_ID_CHARS} characters", _too_long(scenario)))
    arrives = event + options.label_delay_s
    if label_time is not None:
        times = _times(label_time, "label_time")
        parsed.problems.extend(_check_time("label_time", times, required=False))
        early = fraud & times.ok & (times.seconds < event)
        parsed.problems.append(_Problem("label_time", "before the payment's own time", early))
        arrives = np.where(times.ok, times.seconds.astype(np.float64), arrives)
    parsed.columns.update(
        is_fraud=fraud,
        scenario=pc.if_else(pa.array(fraud), pc.utf8_lower(scenario), ""),
        label_time=np.where(fraud, arrives, np.inf).astype(np.float64),
    )

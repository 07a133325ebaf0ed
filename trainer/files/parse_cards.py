"""Cards: a raw card number (PAN) becomes the server's keyed token, BIN and last four, and goes no further."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fraudguard.errors import ValidationError
from fraudguard.redaction import luhn_valid
from fraudguard.security.keyfile import KeyFileError, load_or_create_key
from fraudguard.security.pan import CardRef, PanTokenizer
from fraudguard.settings import Settings, SettingsError
from trainer.files.arrays import B, _bools
from trainer.files.mapping import MAX_ID_CHARS
from trainer.files.parse_shared import _digits, _given, _matches, _Problem, _too_long
from trainer.files.results import ImportOptions

_PAN_LIKE = r"^\d(?:[ -]?\d){11,18}$"


@dataclass(frozen=True, slots=True)
class _Cards:
    token: pa.Array
    bin: pa.Array
    last4: pa.Array
    is_pan: B


def _cards(card: pa.Array, bins: pa.Array, last4s: pa.Array, key: Callable[[], bytes]) -> _Cards:
    """Card tokens: a Luhn-valid 12–19 digit value is a raw PAN and becomes its keyed token, BIN and last four.

    Each distinct PAN is tokenized once; the PANs themselves go no further than this function.
    """
    refs = _tokenize(card.filter(pa.array(_matches(card, _PAN_LIKE))), key)
    if not refs:
        return _Cards(card, bins, last4s, np.zeros(len(card), np.bool_))
    position = pc.index_in(card, value_set=pa.array(list(refs), pa.string()))
    is_pan = _bools(position.is_valid())
    mask = pa.array(is_pan)

    def pick(values: list[str], otherwise: pa.Array) -> pa.Array:
        return pc.if_else(mask, pc.take(pa.array(values, pa.string()), position), otherwise)

    return _Cards(pick([r.token for r in refs.values()], card), pick([r.bin for r in refs.values()], bins),
                  pick([r.last4 for r in refs.values()], last4s), is_pan)


def _tokenize(candidates: pa.Array, key: Callable[[], bytes]) -> dict[str, CardRef]:
    """``{raw value: CardRef}`` for the distinct candidates that pass the Luhn check."""
    values = [v for v in pc.unique(candidates).to_pylist() if luhn_valid(re.sub(r"[ -]", "", v))]
    if not values:
        return {}
    tokenizer = PanTokenizer(key())
    return {v: tokenizer.tokenize(v) for v in values}


def _pan_key(options: ImportOptions, warnings: list[str]) -> bytes:
    """``options.pan_key``, else the scoring server's key file (as ``fraudguard serve`` finds it), else a random key."""
    if options.pan_key is not None:
        return options.pan_key
    try:
        settings = Settings.from_sources(None)
    except SettingsError as exc:
        raise ValidationError("pan_key", f"cannot find the server's PAN key: {exc}") from exc
    path = settings.pan_key_path
    if path.is_file():
        try:
            return load_or_create_key(path)
        except KeyFileError as exc:
            raise ValidationError("pan_key", f"cannot use the server's PAN key: {exc}") from exc
    warnings.append(f"raw card numbers were tokenized with a random key made for this import: tokens will not "
                    f"match the server's (no key file at {path}; set FRAUDGUARD_PAN_KEY_FILE or "
                    f"FRAUDGUARD_DATA_DIR to use the server's key)")
    return secrets.token_bytes(32)


def _check_card(card: pa.Array, cards: _Cards) -> list[_Problem]:
    bins = cards.bin
    last4 = cards.last4
    return [
        _Problem("card", "missing", ~_given(card)),
        _Problem("card", f"longer than {MAX_ID_CHARS} characters", _too_long(card)),
        _Problem("card_bin", "not 6 to 8 digits", _given(bins) & ~_digits(bins, 6, 8)),
        _Problem("card_last4", "not 4 digits", _given(last4) & ~_digits(last4, 4, 4)),
    ]

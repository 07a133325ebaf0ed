"""Checks of text arguments (actors, notes, ids, bundle versions) before they are stored or acted on.

One rule per kind of problem, so every module refuses the same things with the same words, each message naming
the field (``ValidationError`` puts it first). Messages show a value only where the caller allows it: customer ids
are personal data, so their messages never quote them.

Light on purpose (no database, no numpy): ``scoring`` imports it too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from fraudguard.errors import ValidationError

# never in a one-line text: C0/C1 controls, line/paragraph separators, bidirectional controls (lone surrogates are
# refused for every text, one-line or not: they cannot be stored as UTF-8)
_FORBIDDEN_CATEGORIES = {"Cc": "a control character", "Zl": "a line separator", "Zp": "a paragraph separator"}
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SHOWN_CHARS = 40

# a bundle version id is also a directory name (scoring.model.bundle and fraudguard.model_registry both use this)
VERSION_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
VERSION_RULE = "1-64 of [A-Za-z0-9._-], not '.' or '..' (no path separators, spaces or control characters)"


def checked_text(value: object, field: str, *, max_chars: int, allow_empty: bool = False, allow_blank: bool = False,
                 single_line: bool = True, quote: bool = False) -> str:
    """``value`` if it is text ``field`` may hold, else ``ValidationError`` naming ``field``.

    Checked, in this order: it is a ``str``; not empty (``""``, nor only whitespace unless ``allow_blank``;
    both pass with ``allow_empty``); at most ``max_chars`` characters; no lone surrogate (not storable as UTF-8);
    no NUL; and with ``single_line``, no control character, line or paragraph separator or bidirectional control
    either (printable on one line, nothing that reorders or hides what follows).

    ``quote``: the message may show the offending character's code point. Without it, no message shows any part
    of the value (for personal data)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be text, got {type(value).__name__}")
    if not allow_empty and (not value or (not allow_blank and not value.strip())):
        raise ValidationError(field, "must not be empty")
    if len(value) > max_chars:
        raise ValidationError(field, f"at most {max_chars} characters, got {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "is not valid Unicode (a lone surrogate: not UTF-8 on the command line?)") \
            from None
    if not single_line:
        if "\x00" in value:
            raise ValidationError(field, "must not contain NUL characters")
        return value
    for i, char in enumerate(value):
        kind = "a bidirectional control" if char in _BIDI_CONTROLS else \
            _FORBIDDEN_CATEGORIES.get(unicodedata.category(char))
        if kind is not None:
            code = f" (U+{ord(char):04X})" if quote else ""
            raise ValidationError(field, f"must be printable text on one line: character {i} is {kind}{code}")
    return value


def checked_version(value: object, error: Callable[[str], Exception]) -> str:
    """``value`` if it is a bundle version id (:data:`VERSION_RULE`), else ``error(message)`` raised, the message
    quoting the value safely (``ValidationError`` for arguments, ``BundleError`` for what a bundle says)."""
    if isinstance(value, str) and VERSION_PATTERN.fullmatch(value) and value not in (".", ".."):
        return value
    raise error(f"bad bundle version {shown(value)}: expected {VERSION_RULE}")


def shown(value: object) -> str:
    """``value`` quoted for a message: escaped (``repr``) and shortened, whatever it holds (not for personal
    data)."""
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS]!r}... ({len(value)} characters)"
    return repr(value) if isinstance(value, str) else f"a {type(value).__name__}"

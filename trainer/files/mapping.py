"""The canonical fields, the limits on their values, and ``ColumnMapping``: which file column holds each field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from fraudguard.errors import ValidationError
from fraudguard.redaction import redact

REQUIRED_FIELDS: Final[tuple[str, ...]] = ("transaction_id", "timestamp", "amount", "card")
OPTIONAL_FIELDS: Final[tuple[str, ...]] = (
    "currency", "card_bin", "card_last4", "customer", "merchant", "mcc", "merchant_country", "device", "ip",
    "latitude", "longitude", "channel", "entry_mode", "label", "scenario", "label_time",
)  # fmt: skip
CANONICAL_FIELDS: Final[tuple[str, ...]] = REQUIRED_FIELDS + OPTIONAL_FIELDS

MIN_TIME: Final = 631_152_000  # 1990-01-01T00:00:00Z, the earliest accepted time
MAX_TIME: Final = 4_102_444_800  # 2100-01-01T00:00:00Z, the first time no longer accepted
MAX_AMOUNT_MINOR: Final = 10**15
MAX_ID_CHARS: Final = 128
MAP_OPTION: Final = "--map"


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Which file column holds each canonical field, as ``(field, column)`` pairs in canonical order.

    A mapping is complete: fields it does not name are not read, even if the file happens
    to have a column of that name. Several fields may share one column. Build one with
    ``parse`` (the CLI's ``--map`` text), ``of`` (a dict) or ``identity`` (canonical names).
    """

    pairs: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for name, column in self.pairs:
            if name not in CANONICAL_FIELDS:
                known = ", ".join(CANONICAL_FIELDS)
                raise ValidationError(MAP_OPTION, f"unknown field {redact(name)!r}; known fields: {known}")
            if name in seen:
                raise ValidationError(MAP_OPTION, f"field {name!r} is given twice")
            if not column.strip():
                raise ValidationError(MAP_OPTION, f"field {name!r} has an empty column name")
            seen.add(name)

    @classmethod
    def of(cls, columns: Mapping[str, str]) -> ColumnMapping:
        """From ``{field: column}`` (whitespace around column names is dropped, as in a file's header)."""
        return cls(_in_canonical_order((name, column.strip()) for name, column in columns.items()))

    @classmethod
    def parse(cls, text: str) -> ColumnMapping:
        """From ``--map`` text: ``field=COLUMN`` pairs separated by commas, e.g. ``transaction_id=ID,amount=AMT``.

        Whitespace around names is ignored; a column name may not contain a comma.
        """
        pairs: list[tuple[str, str]] = []
        for part in text.split(","):
            name, sep, column = part.partition("=")
            if not sep:
                raise ValidationError(MAP_OPTION, f"expected field=COLUMN, got {redact(part.strip())!r}")
            if not name.strip():
                raise ValidationError(MAP_OPTION, f"empty field name in {redact(part.strip())!r}")
            pairs.append((name.strip().lower(), column.strip()))
        return cls(_in_canonical_order(pairs))

    @classmethod
    def identity(cls, file_columns: Iterable[str]) -> ColumnMapping:
        """Every canonical field that is also a column name of the file, mapped to that column."""
        present = set(file_columns)
        return cls(tuple((name, name) for name in CANONICAL_FIELDS if name in present))

    def column(self, name: str) -> str | None:
        """The file column holding field ``name``, or None when the mapping does not give one."""
        return dict(self.pairs).get(name)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.pairs)

    def resolve(self, file_columns: Sequence[str], source: str = "the file") -> dict[str, str]:
        """``{field: column}``, after checking it against the file: required fields mapped, columns present."""
        for name in REQUIRED_FIELDS:
            if self.column(name) is None:
                raise ValidationError(MAP_OPTION, f"required field {name!r} has no column (name a column {name!r} "
                                                  f"or give --map {name}=COLUMN); {_columns_of(source, file_columns)}")
        present = set(file_columns)
        for name, column in self.pairs:
            if column not in present:
                raise ValidationError(MAP_OPTION, f"{name}={redact(column)!r}: no such column; "
                                                  f"{_columns_of(source, file_columns)}")
        if ("latitude" in self.fields) != ("longitude" in self.fields):
            raise ValidationError(MAP_OPTION, "latitude and longitude go together: map both or neither")
        return dict(self.pairs)


def _in_canonical_order(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    rank = {name: i for i, name in enumerate(CANONICAL_FIELDS)}
    return tuple(sorted(pairs, key=lambda pair: rank.get(pair[0], len(rank))))


def _columns_of(source: str, columns: Sequence[str], limit: int = 30) -> str:
    """``source``'s column names for a message: at most ``limit``, shortened, card numbers redacted."""
    shown = [redact(name if len(name) <= 40 else name[:39] + "…") for name in columns[:limit]]
    more = f" … ({len(columns) - limit:,} more)" if len(columns) > limit else ""
    return f"{source} has columns: {', '.join(repr(name) for name in shown)}{more}"

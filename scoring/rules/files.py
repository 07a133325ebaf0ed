"""The served rules on disk: one rules text and a directory of named lists, read and compiled into a ``RuleSet``.

A list ``@NAME`` is the file ``NAME.txt`` in the lists directory: one value per line, ``#`` starts a comment,
blank lines are ignored. A file whose values are all numbers is a list of numbers (for ``mcc``, ``amount``);
otherwise its values are texts (ids, country codes). A value in double quotes is always a text (``"12345"``).

``load_rules`` also runs the compiled rules once on a one-row batch, so the first real call does not pay for
loading the evaluation kernel (Numba loads its on-disk cache lazily).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraudguard.errors import FraudguardError
from scoring.features.batch import N_INTS, N_REALS
from scoring.features.schema import N_FEATURES
from scoring.rules.columns import RuleColumns
from scoring.rules.errors import RuleError
from scoring.rules.ruleset import RuleSet

LIST_SUFFIX = ".txt"
MAX_FILE_BYTES = 16 << 20  # a rules text or list larger than this is refused (lists of a few 100k ids fit)

Fingerprint = tuple[tuple[str, int, int, int], ...]


class RulesFileError(FraudguardError):
    """The rules text or a list cannot be used; ``str()`` names the file and, for rule errors, line and column."""

    def __init__(self, path: Path, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class RulesSource:
    """Where the served rules live: the rules text and the directory of its lists."""

    path: Path
    lists_dir: Path

    def fingerprint(self) -> Fingerprint | None:
        """(name, mtime, size, inode) of the rules text and every list; ``None`` when there is no rules text."""
        try:
            files = [_stamp(self.path)]
        except FileNotFoundError:
            return None
        except OSError:
            return (("?", 0, 0, 0),)  # unreadable: loading says why
        try:
            names = sorted(e.name for e in os.scandir(self.lists_dir) if e.name.endswith(LIST_SUFFIX))
        except OSError:
            names = []
        for name in names:
            try:
                files.append(_stamp(self.lists_dir / name))
            except OSError:
                continue
        return tuple(files)

    def load(self) -> RuleSet:
        """Read, compile and warm the rules; ``RulesFileError`` (with line and column for a rule error)."""
        source = _read(self.path)
        lists = load_lists(self.lists_dir)
        try:
            rule_set = RuleSet(source, lists)
        except RuleError as exc:
            raise RulesFileError(self.path, str(exc), exc.line, exc.column) from exc
        warm(rule_set)
        return rule_set


def _stamp(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (path.name, st.st_mtime_ns, st.st_size, st.st_ino)


def _read(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise RulesFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if len(data) > MAX_FILE_BYTES:
        raise RulesFileError(path, f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesFileError(path, f"not UTF-8 text (byte {exc.start})") from exc


def load_lists(directory: Path) -> dict[str, list[str] | list[float]]:
    """Every ``NAME.txt`` of ``directory`` as list ``NAME`` (none when the directory does not exist)."""
    if not directory.is_dir():
        return {}
    return {path.name.removesuffix(LIST_SUFFIX): parse_list(path, _read(path))
            for path in sorted(directory.glob("*" + LIST_SUFFIX)) if path.is_file()}


def parse_list(path: Path, text: str) -> list[str] | list[float]:
    """The values of one list file (see the module's documentation)."""
    values: list[str] = []
    quoted: list[bool] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        is_quoted = len(line) >= 2 and line[0] == line[-1] == '"'
        if not is_quoted and '"' in line:
            raise RulesFileError(path, f"line {number}: a quoted value must be the whole line", number, 1)
        values.append(line[1:-1] if is_quoted else line)
        quoted.append(is_quoted)
    if values and not any(quoted):
        numbers = [_number(v) for v in values]
        if all(v is not None for v in numbers):
            return [v for v in numbers if v is not None]
    return values


def _number(text: str) -> float | None:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_WARM_COLUMNS = RuleColumns(np.zeros((N_REALS, 1)), np.zeros((N_INTS, 1), np.int64),
                            np.zeros((1, N_FEATURES), np.float32), np.zeros(1))


def warm(rule_set: RuleSet) -> None:
    """Evaluate ``rule_set`` once on a row of zeros (loads the kernel)."""
    rule_set.evaluate(_WARM_COLUMNS, np.ones(1, np.int64))

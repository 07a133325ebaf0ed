"""What the journal raises. All are :class:`JournalError`, itself a :class:`FraudguardError`."""

from __future__ import annotations

from pathlib import Path

from fraudguard.errors import FraudguardError


class JournalError(FraudguardError):
    """Base of the journal's errors."""


class JournalFull(JournalError):
    """The journal holds ``max_bytes``: nothing was written. The caller applies its policy (back-pressure or
    reject); room comes back when replayed records are acknowledged."""

    def __init__(self, used: int, needed: int, limit: int) -> None:
        super().__init__(f"journal full: {used} of {limit} bytes used, the record needs {needed}; "
                         "acknowledge replayed records to make room")
        self.used = used
        self.needed = needed
        self.limit = limit


class RecordTooLarge(JournalError, ValueError):
    """A record that could never fit in one segment (the segment size bounds a record)."""


class JournalLocked(JournalError):
    """Another live journal (this process or another) holds the directory's lock."""

    def __init__(self, directory: Path, holder: str) -> None:
        super().__init__(f"journal {directory} is in use by another process ({holder}); "
                         "two servers cannot share one journal: give each its own data directory")
        self.directory = directory


class JournalUnwritable(JournalError):
    """The journal's directory or one of its files cannot be created, written or synced (the cause is chained)."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"journal: cannot {what} {path}")
        self.path = path


class JournalCorrupt(JournalError):
    """Damaged data where no crash can explain it (not the torn tail of the newest segment, which is repaired
    on open): ``path`` and ``offset`` say where. Nothing is skipped; a person has to look."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"journal corrupt: {path} at byte {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class JournalClosed(JournalError):
    """The journal was closed, or an earlier write or fsync failed (then the data on disk is unknown until a
    reopen recovers it: the cause is chained)."""


class ConcurrentUse(JournalError):
    """Two calls overlapped: the journal has one user at a time (see :mod:`scoring.record.journal`)."""

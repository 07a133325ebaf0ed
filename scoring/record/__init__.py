"""Recording decisions durably: the local journal that holds them while the database cannot."""

from scoring.record.errors import (
    ConcurrentUse,
    JournalClosed,
    JournalCorrupt,
    JournalError,
    JournalFull,
    JournalLocked,
    JournalUnwritable,
    RecordTooLarge,
)
from scoring.record.journal import Journal, Record, TailRepair
from scoring.record.sync import OsSyncer, Syncer

__all__ = [
    "ConcurrentUse",
    "Journal",
    "JournalClosed",
    "JournalCorrupt",
    "JournalError",
    "JournalFull",
    "JournalLocked",
    "JournalUnwritable",
    "OsSyncer",
    "Record",
    "RecordTooLarge",
    "Syncer",
    "TailRepair",
]

"""Recording decisions durably: the background writer, and the local journal that holds them while the database
cannot."""

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
from scoring.record.rows import DecisionRecord
from scoring.record.sync import OsSyncer, Syncer
from scoring.record.writer import (
    DecisionWriter,
    FullPolicy,
    RecorderClosed,
    RecorderError,
    RecorderFull,
    WriterStats,
)

__all__ = [
    "ConcurrentUse",
    "DecisionRecord",
    "DecisionWriter",
    "FullPolicy",
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
    "RecorderClosed",
    "RecorderError",
    "RecorderFull",
    "Syncer",
    "TailRepair",
    "WriterStats",
]

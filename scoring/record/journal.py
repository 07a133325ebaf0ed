"""A crash-safe, bounded, append-only journal of opaque records: where decisions wait while PostgreSQL
cannot take them (DESIGN.md, hot path step 6).

One writer uses it like this::

    journal = Journal(data_dir / "journal", segment_bytes=64 << 20, max_bytes=1 << 30)
    for record in journal.replay():       # after a restart: what the database has not confirmed
        ...
    seq = journal.append(row)             # memory only (a few µs); JournalFull when full
    journal.flush()                       # write + fdatasync: every seq <= journal.durable_seq is safe
    journal.acknowledge(seq)              # the database has 1..seq: checkpoint, old segments deleted
    journal.close()

**Durability.** ``append`` only buffers; ``flush`` writes and syncs, and the caller picks the batching
(every few ms or N records). A segment file is created only after every older segment is synced, and its
directory entry is synced with it, so after a crash only the newest segment can end in a torn write.

**Recovery** happens when the journal is opened: the newest segment is read through and cut back to its
last whole, checked record (``recovered`` reports what was cut, and a warning is logged); sequence numbers
of records lost that way — never reported durable — are handed out again. Damage anywhere else (an older
segment, a missing file, a bad checkpoint) raises :class:`JournalCorrupt` naming the file and offset, when
opening or while ``replay`` reaches it: nothing is skipped silently. A record appended but not yet reported
durable (a crash or a failed flush came first) may or may not come back: the writer must keep it until
``durable_seq`` covers it, and the database write must be idempotent (it is, on the transaction id).

**Bounds.** ``max_bytes`` caps the segment files plus the buffered bytes; ``append`` raises
:class:`JournalFull` rather than drop anything. Space comes back a whole segment at a time, when every record
of it is acknowledged, so keep ``segment_bytes`` a small fraction of ``max_bytes``.

**Threads and asyncio.** The journal has one user at a time: the background writer. Calls may come from
different threads (``await asyncio.to_thread(journal.flush)``) but must not overlap; overlapping calls raise
:class:`ConcurrentUse` instead of corrupting state (a non-blocking lock, ~0.1 µs). ``append`` never touches
the disk; the constructor, ``flush``, ``acknowledge``, ``close`` and iterating ``replay`` block on I/O, so
from an event loop run them in a thread. The directory is locked (``flock``) against a second journal, in
this process or another, until ``close`` or the process's death.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Concatenate, NamedTuple, ParamSpec, TypeVar

from scoring.record._files import (
    CHECKPOINT_FILE,
    lock_directory,
    read_checkpoint,
    remove_checkpoint_temp,
    write_all,
    write_checkpoint,
)
from scoring.record._format import (
    CRC_PREFIX,
    RECORD_HEADER,
    SEGMENT_HEADER,
    SegmentReader,
    segment_first_seq,
    segment_header,
    segment_path,
)
from scoring.record.errors import (
    ConcurrentUse,
    JournalClosed,
    JournalCorrupt,
    JournalFull,
    JournalUnwritable,
    RecordTooLarge,
)
from scoring.record.sync import OsSyncer, Syncer

log = logging.getLogger("fraudguard.scoring.journal")

DEFAULT_SEGMENT_BYTES = 64 << 20
DEFAULT_MAX_BYTES = 1 << 30
MIN_SEGMENT_BYTES = 64
_READ_BUFFER = 1 << 20

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Record(NamedTuple):
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class TailRepair:
    """What opening cut from the newest segment: a write torn by a crash (or a damaged tail)."""

    segment: Path
    offset: int  # where the segment ends now (0: the file was removed, its header was not whole)
    discarded_bytes: int
    reason: str


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: Path
    last_seq: int  # first_seq - 1 while empty
    size: int  # bytes on disk plus bytes pending
    exists: bool  # the file has been created
    pending: bytearray = field(default_factory=bytearray)
    fd: int | None = None


def _exclusive(method: Callable[Concatenate[Journal, _P], _R]) -> Callable[Concatenate[Journal, _P], _R]:
    """Refuse a call that overlaps another one (the journal has one user at a time)."""

    @functools.wraps(method)
    def guarded(self: Journal, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not self._busy.acquire(blocking=False):
            raise ConcurrentUse(f"journal {self._dir}: {method.__name__} overlapped another call")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._busy.release()

    return guarded


class Journal:
    """Opens (creating, locking and recovering) the journal in ``directory``; see the module's documentation.

    ``segment_bytes`` bounds each segment file, hence a record (less 32 bytes of framing); ``max_bytes`` bounds
    them all. ``syncer`` makes writes durable (default :class:`OsSyncer`: ``fdatasync``, directory ``fsync``)."""

    def __init__(self, directory: Path | str, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 max_bytes: int = DEFAULT_MAX_BYTES, syncer: Syncer | None = None) -> None:
        if segment_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(f"segment_bytes must be at least {MIN_SEGMENT_BYTES}, got {segment_bytes}")
        if max_bytes < segment_bytes:
            raise ValueError(f"max_bytes ({max_bytes}) must be at least segment_bytes ({segment_bytes})")
        self._dir = Path(directory)
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._sync = syncer if syncer is not None else OsSyncer()
        self._busy = threading.Lock()
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None  # the newest segment, while records may still go into it
        self._unusable: JournalClosed | None = None
        self._acked = 0
        self._used = 0
        self.recovered: TailRepair | None = None
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalUnwritable(self._dir, "create the directory") from exc
        self._lock_fd = lock_directory(self._dir)
        try:
            self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._next_seq = max([self._acked, *(s.last_seq for s in self._segments)]) + 1
        self._durable = self._next_seq - 1
        self._used = sum(s.size for s in self._segments)

    # -- state --------------------------------------------------------------------------------------------

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def last_seq(self) -> int:
        """The sequence number of the last record appended (0 before the first)."""
        return self._next_seq - 1

    @property
    def durable_seq(self) -> int:
        """Every record with a sequence number up to this one is safe: synced to disk, or acknowledged."""
        return max(self._durable, self._acked)

    @property
    def acknowledged_seq(self) -> int:
        return self._acked

    @property
    def used_bytes(self) -> int:
        """Bytes counted against ``max_bytes``: segment files and buffered records."""
        return self._used

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def segment_paths(self) -> tuple[Path, ...]:
        """The segment files on disk, oldest first."""
        return tuple(s.path for s in self._segments if s.exists)

    # -- the writer's calls ---------------------------------------------------------------------------------

    def append(self, payload: bytes) -> int:
        """Buffer one record; returns its sequence number. Durable after the next :meth:`flush`.

        Raises :class:`JournalFull` (nothing written) or :class:`RecordTooLarge`."""
        busy = self._busy  # the guard of _exclusive, inlined: this is the one call made per record
        if not busy.acquire(blocking=False):
            raise ConcurrentUse(f"journal {self._dir}: append overlapped another call")
        try:
            if self._unusable is not None:
                raise self._refusal()
            length = len(payload)
            frame = RECORD_HEADER.size + length
            seq = self._next_seq
            segment = self._active
            if segment is None or segment.size + frame > self._segment_bytes:
                needed = SEGMENT_HEADER.size + frame
                if needed > self._segment_bytes:
                    raise RecordTooLarge(f"a record of {length} bytes cannot fit in a segment of "
                                         f"{self._segment_bytes} bytes (framing takes {needed - length})")
                if self._used + needed > self._max_bytes:
                    raise JournalFull(self._used, needed, self._max_bytes)
                segment = self._start_segment(seq)
            else:
                needed = frame
                if self._used + needed > self._max_bytes:
                    raise JournalFull(self._used, needed, self._max_bytes)
            pending = segment.pending
            pending += RECORD_HEADER.pack(length, zlib.crc32(payload, zlib.crc32(CRC_PREFIX.pack(length, seq))), seq)
            pending += payload
            segment.size += frame
            segment.last_seq = seq
            self._used += needed
            self._next_seq = seq + 1
            return seq
        finally:
            busy.release()

    @_exclusive
    def flush(self) -> int:
        """Write and sync every buffered record; returns :attr:`durable_seq`.

        If writing or syncing fails the journal becomes unusable (what reached the disk is unknown after a
        failed fsync): :class:`JournalUnwritable` now, :class:`JournalClosed` after; reopen to recover."""
        if self._unusable is not None:
            raise self._refusal()
        self._flush()
        return self.durable_seq

    @_exclusive
    def acknowledge(self, seq: int) -> None:
        """Records up to ``seq`` are safe in the database: move the checkpoint, delete wholly acknowledged
        segments. Acknowledging an older position again does nothing. Costs about three fsyncs: batch it."""
        if self._unusable is not None:
            raise self._refusal()
        if seq <= self._acked:
            return
        if seq >= self._next_seq:
            raise ValueError(f"cannot acknowledge {seq}: the last record appended is {self._next_seq - 1}")
        write_checkpoint(self._dir, seq, self._sync)
        self._acked = seq
        self._drop_acknowledged()

    def replay(self) -> Iterator[Record]:
        """Every record not yet acknowledged, oldest first, as of this call (it flushes first).

        Iterating reads the segment files and checks every record; damage raises :class:`JournalCorrupt`.
        Appending, flushing and acknowledging between steps is allowed."""
        self.flush()
        acked = self._acked
        plan = [(s.path, s.first_seq, s.last_seq, s is self._active) for s in self._segments if s.last_seq > acked]
        return self._read(plan)

    def close(self) -> None:
        """Flush (unless an earlier write failed), close the files and release the directory's lock."""
        if self._lock_fd < 0:
            return
        if not self._busy.acquire(blocking=False):
            raise ConcurrentUse(f"journal {self._dir}: close overlapped another call")
        try:
            if self._unusable is None:
                self._flush()
        finally:
            for segment in self._segments:
                self._close_fd(segment)
            os.close(self._lock_fd)
            self._lock_fd = -1
            self._unusable = JournalClosed(f"journal {self._dir} is closed")
            self._busy.release()

    def _refusal(self) -> JournalClosed:
        """A fresh error for a call on a closed or failed journal (re-raising one instance would grow its
        traceback with every refused call)."""
        assert self._unusable is not None
        refusal = JournalClosed(str(self._unusable))
        refusal.__cause__ = self._unusable.__cause__
        return refusal

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening ------------------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Read the checkpoint and the segment list, repair the newest segment's tail, delete what is
        acknowledged."""
        remove_checkpoint_temp(self._dir)
        acked = read_checkpoint(self._dir)
        try:
            firsts = sorted(seq for name in os.listdir(self._dir) if (seq := segment_first_seq(name)) is not None)
        except OSError as exc:
            raise JournalUnwritable(self._dir, "list") from exc
        for first, after in zip(firsts, [*firsts[1:], None], strict=False):  # the last has no successor
            path = segment_path(self._dir, first)
            size = self._stat(path)
            self._segments.append(_Segment(first, path, first - 1 if after is None else after - 1, size, exists=True))
        oldest = self._segments[0] if self._segments else None
        if acked is None:
            if oldest is not None and oldest.first_seq != 1:
                raise JournalCorrupt(self._dir / CHECKPOINT_FILE, 0, "missing, yet the oldest segment starts at "
                                     f"record {oldest.first_seq}: were files removed by hand?")
            acked = 0
        if oldest is not None and oldest.first_seq > acked + 1:  # segments are removed only once acknowledged
            raise JournalCorrupt(oldest.path, 0, f"records {acked + 1}..{oldest.first_seq - 1} are neither "
                                 "acknowledged nor in any segment: was a segment removed by hand?")
        if self._segments:
            self._repair_tail(self._segments[-1])  # may remove it; the one before, if any, ends where it began
        self._acked = acked
        self._drop_acknowledged()

    def _repair_tail(self, segment: _Segment) -> None:
        """Read the newest segment through; cut it back to its last good record (remove it if its header is
        not whole). Only the newest segment can hold a torn write."""
        try:
            with open(segment.path, "rb", buffering=_READ_BUFFER) as stream:
                reader = SegmentReader(stream, segment.size, segment.first_seq)
                for _ in reader:
                    pass
        except OSError as exc:
            raise JournalUnwritable(segment.path, "read") from exc
        segment.last_seq = reader.last_seq
        if reader.damage is None:
            self._active = segment
            return
        repair = TailRepair(segment.path, reader.offset, segment.size - reader.offset, reader.damage)
        log.warning("journal: cut a torn or damaged tail", extra={
            "segment": str(repair.segment), "offset": repair.offset, "discarded_bytes": repair.discarded_bytes,
            "reason": repair.reason})
        try:
            if reader.offset == 0:
                segment.path.unlink()
                self._segments.pop()
            else:
                with open(segment.path, "r+b") as stream:
                    stream.truncate(reader.offset)
                    self._sync.file(stream.fileno())
                segment.size = reader.offset
                self._active = segment
            self._sync.directory(self._dir)
        except OSError as exc:
            raise JournalUnwritable(segment.path, "repair") from exc
        self.recovered = repair

    @staticmethod
    def _stat(path: Path) -> int:
        try:
            return path.stat().st_size
        except OSError as exc:
            raise JournalUnwritable(path, "stat") from exc

    # -- writing and removing -------------------------------------------------------------------------------

    def _start_segment(self, first_seq: int) -> _Segment:
        segment = _Segment(first_seq, segment_path(self._dir, first_seq), first_seq - 1, SEGMENT_HEADER.size,
                           exists=False, pending=bytearray(segment_header(first_seq)))
        self._segments.append(segment)
        self._active = segment
        return segment

    def _flush(self) -> None:
        try:
            for segment in self._segments:  # in order: a segment is created only once the older ones are synced
                if segment.pending:
                    self._write(segment)
                if segment is not self._active:
                    self._close_fd(segment)
        except OSError as exc:
            self._unusable = JournalClosed(f"journal {self._dir}: an earlier write failed; reopen it to recover")
            self._unusable.__cause__ = exc
            raise JournalUnwritable(self._dir, "write to") from exc
        self._durable = self._next_seq - 1

    def _write(self, segment: _Segment) -> None:
        created = not segment.exists
        if segment.fd is None:
            flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if created else 0)
            segment.fd = os.open(segment.path, flags, 0o600)
            segment.exists = True
        pending, segment.pending = segment.pending, bytearray()
        write_all(segment.fd, pending)
        self._sync.file(segment.fd)
        if created:
            self._sync.directory(self._dir)

    def _drop_acknowledged(self) -> None:
        """Delete the segments whose every record is acknowledged (a failure leaves them for the next open)."""
        while self._segments and self._segments[0].last_seq <= self._acked:
            segment = self._segments[0]
            self._close_fd(segment)
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                raise JournalUnwritable(segment.path, "remove") from exc
            self._segments.pop(0)
            if segment is self._active:
                self._active = None
            self._used -= segment.size

    @staticmethod
    def _close_fd(segment: _Segment) -> None:
        if segment.fd is not None:
            fd, segment.fd = segment.fd, None
            os.close(fd)

    # -- reading ------------------------------------------------------------------------------------------

    def _read(self, plan: list[tuple[Path, int, int, bool]]) -> Iterator[Record]:
        for path, first_seq, last_seq, open_ended in plan:
            if last_seq <= self._acked:  # acknowledged while iterating: maybe deleted already
                continue
            try:
                stream = open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 — closed below, across yields
            except FileNotFoundError as exc:
                if last_seq <= self._acked:
                    continue
                raise JournalCorrupt(path, 0, "the segment file is missing") from exc
            except OSError as exc:
                raise JournalUnwritable(path, "read") from exc
            with stream:
                size = os.fstat(stream.fileno()).st_size
                reader = SegmentReader(stream, size, first_seq)
                for seq, payload in reader:
                    if seq > self._acked:
                        yield Record(seq, payload)
                    if seq == last_seq:
                        break
                if reader.last_seq != last_seq:
                    raise JournalCorrupt(path, reader.offset, reader.damage or
                                         f"the segment ends at record {reader.last_seq}, {last_seq} was due")
                if not open_ended and reader.offset != size:
                    raise JournalCorrupt(path, reader.offset, f"{size - reader.offset} bytes after the last record "
                                         f"({last_seq}); the next segment starts at {last_seq + 1}")

"""The decision writer: the hot path hands decisions to a bounded queue; one background task stores them
(DESIGN.md, hot path step 6).

Use::

    writer = DecisionWriter(database, journal, full_policy="backpressure")
    writer.start()                      # in the event loop; replays what the journal holds first
    writer.submit(record)               # never awaits: RecorderFull when the queue is full
    await writer.submit_wait(record)    # backpressure: waits for room instead (reject: same as submit)
    await writer.close()                # stores everything accepted (database or journal), then stops

**Which call the server uses.** ``full_policy`` is the operator's choice for when the queue (and behind it the
journal) is full. ``"reject"``: the server calls :meth:`DecisionWriter.submit` (or :meth:`submit_many` for a
stream message's batch) and lets :class:`RecorderFull` (an ``UnavailableError``, so gRPC ``UNAVAILABLE``)
reach the caller, who retries. ``"backpressure"``: the server awaits :meth:`submit_wait` /
:meth:`submit_wait_many`, which return at once while there is room and otherwise hold the request (its
deadline still applies) until the writer catches up. Never a silent drop.

**Direct mode.** The task takes up to ``batch_rows`` rows (after waiting ``batch_interval_s`` for a batch
to fill) and ``COPY``s them into ``decisions`` in one transaction; should that meet a row stored already (a
retry, a replay, a client's resend), nothing of it is kept and the batch goes through a temporary staging
table and ``INSERT ... SELECT ... ON CONFLICT (transaction_id, event_day) DO NOTHING``: a row written twice
is stored once. A row whose day has no partition makes that day's partition and
is retried. A row the database refuses for what it is (a CHECK, a bad value: SQLSTATE classes 22 and 23)
is written apart and set aside in ``refused_path`` (the journal payload in base64, then the reason) and
counted in ``refused``: it is never retried forever nor dropped unseen.

**Journal mode.** A write that fails otherwise (server down, connection lost, a timeout) sends its batch to
the journal (append, then one ``fdatasync`` in a thread) and switches to journal mode; so does a database
that is merely slow: when, after taking a batch, more than ``spill_rows`` rows still wait in the queue (the
scorer produces faster than PostgreSQL takes rows). From then on everything queued goes to the journal at
each turn (appending is far cheaper than a database write), so nothing overtakes what is waiting there and
the hot path is not held up by the database. The same task probes the database (with a backoff from
``retry_initial_s`` to ``retry_max_s``) and, once it answers, replays the journal in chunks of about
``replay_rows`` rows, acknowledging each chunk after its transaction committed, one chunk between two turns
that journal the queue. When a replay pass finds nothing left unacknowledged, the writer returns to direct mode. A
writer started on a journal with unacknowledged records starts in journal mode (a crash's leftovers first).

**Journal full.** The batch in hand stays in memory (retried after each replay chunk frees space), the
queue fills behind it, and the full policy applies to ``submit``. Closing then waits (up to its timeout).

A record is durable when :attr:`on_durable` is called with it: committed in the database or synced to the
journal. Journal calls never overlap: only the writer's task makes them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType

import asyncpg

from fraudguard.db import Database, DatabaseError, DatabaseUnreachableError, PartitionMissingError
from fraudguard.db.partitions import ensure_partitions
from fraudguard.errors import FraudguardError, UnavailableError
from scoring.record.block import Seal
from scoring.record.errors import JournalError, JournalFull
from scoring.record.items import Item, copy_rows_of, decode_item, encode_item, item_copy_rows, row_count
from scoring.record.journal import Journal, Record
from scoring.record.rows import COLUMNS, COPY_COLUMNS, COPY_HEADER, COPY_TRAILER, CopyEncodingError, CopyRows

log = logging.getLogger("fraudguard.scoring.writer")

STAGING_TABLE = "fg_decisions_staging"
_COLUMN_LIST = ", ".join(COLUMNS)
_PREPARE_STAGING = (
    "SET LOCAL client_min_messages = warning; "
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} (LIKE decisions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MOVE = (f"INSERT INTO decisions ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM {STAGING_TABLE} "
         "ON CONFLICT (transaction_id, event_day) DO NOTHING")
_REFUSED_CLASSES = ("22", "23")  # data exception, integrity violation: the row itself is wrong


class FullPolicy(enum.StrEnum):
    """What ``submit`` does when the queue is full (the journal being full fills the queue)."""

    BACKPRESSURE = "backpressure"  # submit_wait waits for room; submit raises RecorderFull
    REJECT = "reject"  # both raise RecorderFull


class Mode(enum.StrEnum):
    DIRECT = "direct"  # batches go to the database
    JOURNAL = "journal"  # batches go to the journal, which is replayed when the database answers


class RecorderError(FraudguardError):
    """The writer could not store what it had accepted (raised by ``close`` when its time ran out)."""


class RecorderFull(UnavailableError):
    """The decision queue is full (the database and the journal cannot keep up): nothing was queued. Retry."""


class RecorderClosed(UnavailableError):
    """The writer is closing or closed: nothing was queued."""


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of the writer's counters (since start) and gauges, for metrics."""

    mode: Mode
    submitted: int  # accepted by submit
    written: int  # committed to the database in direct mode (duplicates included)
    duplicates: int  # of written and replayed, rows the database already had
    journaled: int  # synced to the journal
    replayed: int  # from the journal into the database
    rejected: int  # submit calls refused with RecorderFull (records counted)
    refused: int  # rows the database refused for their content, set aside in refused_path
    queue_depth: int  # accepted, not yet durable (in the queue or the batch in hand)
    journal_backlog: int  # journal records not yet acknowledged


class DecisionWriter:
    """See the module's documentation. ``database`` and ``journal`` stay the caller's to close (after
    :meth:`close`)."""

    def __init__(
        self,
        database: Database,
        journal: Journal,
        *,
        batch_rows: int = 512,
        batch_interval_s: float = 0.005,
        queue_rows: int = 100_000,
        full_policy: FullPolicy | str = FullPolicy.BACKPRESSURE,
        replay_rows: int = 4096,
        spill_rows: int | None = None,
        write_timeout_s: float = 10.0,
        probe_timeout_s: float = 1.0,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        refused_path: Path | None = None,
        on_durable: Callable[[Sequence[Item]], None] | None = None,
        seal: Seal | None = None,
        key_id: str | None = None,
    ) -> None:
        if batch_rows < 1 or queue_rows < batch_rows or replay_rows < 1:
            raise ValueError(f"need 1 <= batch_rows <= queue_rows and replay_rows >= 1, got {batch_rows}, "
                             f"{queue_rows}, {replay_rows}")
        if batch_interval_s < 0 or write_timeout_s <= 0 or probe_timeout_s <= 0 or not 0 < retry_initial_s <= \
                retry_max_s:
            raise ValueError("intervals and timeouts must be positive (retry_initial_s <= retry_max_s)")
        self._db = database
        self._journal = journal
        self._batch_rows = batch_rows
        self._interval = batch_interval_s
        self._queue_rows = queue_rows
        self.full_policy = FullPolicy(full_policy)
        self._replay_rows = replay_rows
        # by default: a quarter of the queue, and never less than four batches (a short queue never spills)
        self._spill_rows = max(queue_rows // 4, 4 * batch_rows) if spill_rows is None else spill_rows
        self._write_timeout = write_timeout_s
        self._probe_timeout = probe_timeout_s
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self.refused_path = refused_path or journal.directory.parent / "refused-decisions.log"
        self.on_durable = on_durable  # called with each prefix of the accepted items once it is durable
        self._seal, self._key_id = seal, key_id
        self._queue: deque[Item] = deque()
        self._queued_rows = 0
        self._in_hand: list[Item] = []  # taken from the queue, not yet durable
        self._have_rows = asyncio.Event()
        self._room = asyncio.Event()
        self._mode = Mode.DIRECT
        self._replaying: Iterator[Record] | None = None
        self._retry = retry_initial_s
        self._next_try = 0.0  # loop time of the next replay attempt
        self._stalled = False  # the last attempt to store the batch in hand made no progress
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._expect_duplicates = False  # the last write met rows stored already: COPY via the staging table
        self._counts = dict.fromkeys(("submitted", "written", "duplicates", "journaled", "replayed", "rejected",
                                      "refused"), 0)

    # -- the hot path ---------------------------------------------------------------------------------------

    def submit(self, item: Item, *, force: bool = False) -> None:
        """Queue one record or block; never waits. Raises :class:`RecorderFull` or :class:`RecorderClosed`.
        ``force``: queue it even beyond ``queue_rows`` (the caller checked :meth:`has_room` before doing the
        work whose result this is, and must not lose it now)."""
        rows = row_count(item)
        if (self._queued_rows + rows > self._queue_rows and not force) or self._closing:
            self.refuse(rows)
        self._queue.append(item)
        self._queued_rows += rows
        self._counts["submitted"] += rows
        if not self._have_rows.is_set():
            self._have_rows.set()

    def submit_many(self, items: Sequence[Item], *, force: bool = False) -> None:
        """Queue all of ``items`` or none (RecorderFull when they do not all fit; ``force`` as for submit)."""
        rows = sum(row_count(item) for item in items)
        if (self._queued_rows + rows > self._queue_rows and not force) or self._closing:
            self.refuse(rows)
        self._queue.extend(items)
        self._queued_rows += rows
        self._counts["submitted"] += rows
        if items and not self._have_rows.is_set():
            self._have_rows.set()

    def has_room(self, rows: int = 1) -> bool:
        """Whether ``rows`` more rows fit in the queue now."""
        return self._queued_rows + rows <= self._queue_rows and not self._closing

    async def submit_wait(self, item: Item) -> None:
        """Back-pressure: wait for room, then queue. With the reject policy, the same as :meth:`submit`."""
        await self.wait_for_room(min(row_count(item), self._queue_rows))
        self.submit(item)

    async def submit_wait_many(self, items: Sequence[Item]) -> None:
        """Back-pressure for several items (at most ``queue_rows`` rows): wait until all fit, then queue them."""
        await self.wait_for_room(min(sum(row_count(item) for item in items), self._queue_rows))
        self.submit_many(items)

    async def wait_for_room(self, rows: int = 1) -> None:
        """With the back-pressure policy, return once ``rows`` rows fit in the queue (or the writer closes);
        with the reject policy, at once."""
        while self._queued_rows + rows > self._queue_rows and self.full_policy is FullPolicy.BACKPRESSURE:
            if self._closing:
                break  # submit raises RecorderClosed
            self._room.clear()
            await self._room.wait()

    def refuse(self, rows: int) -> None:
        """Count ``rows`` refused and raise :class:`RecorderFull` (or :class:`RecorderClosed` when closing)."""
        if self._closing:
            raise RecorderClosed("the decision writer is closing")
        self._counts["rejected"] += rows
        raise RecorderFull(f"decision queue full ({self._queued_rows} of {self._queue_rows} records waiting, "
                           f"mode {self._mode}): the database and the journal are not keeping up")

    # -- life -------------------------------------------------------------------------------------------------

    @property
    def journal(self) -> Journal:
        """The outage journal (the caller's to close, after :meth:`close`)."""
        return self._journal

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def stats(self) -> WriterStats:
        c = self._counts
        backlog = self._journal.last_seq - self._journal.acknowledged_seq
        return WriterStats(self._mode, c["submitted"], c["written"], c["duplicates"], c["journaled"], c["replayed"],
                           c["rejected"], c["refused"], self._queued_rows + sum(map(row_count, self._in_hand)), backlog)

    def start(self) -> None:
        """Start the background task (call from the event loop). A journal holding unacknowledged records
        (a crash's or an outage's leftovers) starts the writer in journal mode: they are replayed first."""
        if self._task is not None:
            raise RuntimeError("the decision writer was started already")
        if self._journal.last_seq > self._journal.acknowledged_seq:
            self._mode = Mode.JOURNAL
            log.info("decision journal holds %d records: replaying them first",
                     self._journal.last_seq - self._journal.acknowledged_seq)
        self._task = asyncio.create_task(self._run(), name="decision-writer")

    async def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new records, store every accepted one (database, or journal), flush the journal, stop.

        Records still in the journal stay there for the next start. Raises :class:`RecorderError` when the
        records could not all be stored within ``timeout_s`` (both the database and the journal failing)."""
        self._closing = True
        self._have_rows.set()
        self._room.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            left = self._queued_rows + sum(map(row_count, self._in_hand))
            raise RecorderError(f"decision writer: {left} accepted records could not be stored within "
                                f"{timeout_s:g} s (database and journal unavailable); they are lost") from None
        finally:
            self._replaying = None
        try:
            await asyncio.to_thread(self._journal.flush)
        except JournalError:
            log.exception("decision journal: the final flush failed")

    async def __aenter__(self) -> DecisionWriter:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the background task ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self._mode is Mode.JOURNAL and loop.time() >= self._next_try:
                    await self._replay_chunk()
                if not self._in_hand:
                    if not self._queue:
                        if self._closing:
                            return
                        await self._wait_for_rows(loop)
                        continue
                    if self._queued_rows < self._batch_rows and not self._closing and self._interval > 0:
                        await asyncio.sleep(self._interval)  # let a batch gather
                    self._take(self._batch_rows if self._mode is Mode.DIRECT else self._queue_rows)
                elif self._stalled:
                    await asyncio.sleep(max(0.0, self._next_try - loop.time()))
                await self._store(loop)
            except Exception:  # a bug must not stop the writer: the batch in hand stays in hand
                log.exception("decision writer: unexpected error; retrying")
                self._stalled = True
                self._backoff(loop)

    async def _wait_for_rows(self, loop: asyncio.AbstractEventLoop) -> None:
        self._have_rows.clear()
        timeout = None if self._mode is Mode.DIRECT else max(0.0, self._next_try - loop.time())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._have_rows.wait()

    def _take(self, limit: int) -> None:
        """Take items from the queue up to ``limit`` rows (at least one item, however large)."""
        queue, rows = self._queue, 0
        taken: list[Item] = []
        while queue and (not taken or rows + row_count(queue[0]) <= limit):
            item = queue.popleft()
            taken.append(item)
            rows += row_count(item)
        self._queued_rows -= rows
        self._in_hand = taken
        self._room.set()

    async def _store(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._in_hand
        if self._mode is Mode.DIRECT and self._queued_rows > self._spill_rows:
            self._mode = Mode.JOURNAL
            self._retry = self._retry_initial
            self._next_try = loop.time()  # the database answers: replay at once, between turns
            log.warning("decision writer: the database is not keeping up (%d rows waiting); journaling and "
                        "replaying", self._queued_rows)
        if self._mode is Mode.DIRECT:
            if await self._write(batch, "written"):
                self._durable(batch)
                self._in_hand = []
                return
            self._mode = Mode.JOURNAL
            self._retry = self._retry_initial
            self._backoff(loop)
            log.warning("decision writer: the database is unavailable; recording to the journal")
        stored = await self._append(batch)
        self._in_hand = batch[stored:]
        self._stalled = stored == 0
        if self._stalled:
            self._next_try = min(self._next_try, loop.time() + self._retry)

    async def _append(self, batch: list[Item]) -> int:
        """Append and sync as much of ``batch`` as the journal takes; returns how many records are durable."""
        appended = 0
        payloads = _encode_all(batch)  # NumPy copies, microseconds a block: on the loop (see _Payload on threads)
        try:
            for payload in payloads:
                self._journal.append(payload)
                appended += 1
        except JournalFull as exc:
            log.warning("decision writer: %s; holding %d records in memory", exc, len(batch) - appended)
        except JournalError:
            log.exception("decision writer: the journal refused a record; holding it in memory")
        if appended:
            try:
                await asyncio.to_thread(self._journal.flush)
            except JournalError:
                log.exception("decision writer: the journal could not be synced; holding the batch in memory")
                return 0
            self._counts["journaled"] += sum(map(row_count, batch[:appended]))
            self._durable(batch[:appended])
        return appended

    async def _replay_chunk(self) -> None:
        """Replay one chunk of the journal into the database; back to direct mode when nothing is left."""
        loop = asyncio.get_running_loop()
        if self._replaying is None:
            health = await self._db.health(self._probe_timeout)
            if not health.ok:
                self._backoff(loop)
                return
        try:
            if self._replaying is None:
                self._replaying = await asyncio.to_thread(self._journal.replay)
            chunk, records = await asyncio.to_thread(_next_chunk, self._replaying, self._replay_rows)
        except (JournalError, ValueError):
            log.exception("decision writer: cannot replay the journal (it needs a person); still recording to it")
            self._replaying = None
            self._backoff(loop)
            return
        if not chunk:
            self._replaying = None
            if self._journal.last_seq <= self._journal.acknowledged_seq:
                self._mode = Mode.DIRECT
                self._retry = self._retry_initial
                self._stalled = False
                log.info("decision writer: journal replayed; writing to the database again")
            return
        if not await self._write(records, "replayed"):
            self._replaying = None
            self._backoff(loop)
            return
        try:
            await asyncio.to_thread(self._journal.acknowledge, chunk[-1].seq)
        except JournalError:  # the rows are stored; replaying them again later is harmless
            log.exception("decision writer: cannot acknowledge replayed journal records")
        self._retry = self._retry_initial
        self._next_try = loop.time()
        self._stalled = False

    def _backoff(self, loop: asyncio.AbstractEventLoop) -> None:
        self._next_try = loop.time() + self._retry
        self._retry = min(self._retry * 2, self._retry_max)

    def _durable(self, records: Sequence[Item]) -> None:
        if self.on_durable is not None:
            try:
                self.on_durable(records)
            except Exception:
                log.exception("decision writer: the on_durable callback failed")

    # -- the database -----------------------------------------------------------------------------------------

    async def _write(self, items: Sequence[Item], counter: str) -> bool:
        """Store ``items`` idempotently; False when the database is unavailable (nothing is known stored)."""
        payload = _Payload(items, self._seal, self._key_id)  # encoded chunk by chunk as the COPY asks
        try:
            inserted = await self._copy_making_partitions(payload)
        except Exception as exc:
            if not _refused(exc):
                _log_unavailable(exc)
                return False
            return await self._write_one_by_one(items, counter)
        self._count(counter, payload.row_count, inserted)
        return True

    async def _write_one_by_one(self, items: Sequence[Item], counter: str) -> bool:
        """A batch that held a bad row: each row alone, the bad ones set aside."""
        for item in items:
            try:
                rows = item_copy_rows(item, self._seal, self._key_id)
            except Exception as exc:  # the item itself cannot be laid out (a damaged block, a number out of range)
                await asyncio.to_thread(self._set_aside, item, None, exc)
                continue
            for index in range(len(rows)):
                try:
                    inserted = await self._copy_making_partitions(_Payload.of(rows.row(index)))
                except Exception as exc:
                    if not _refused(exc):
                        _log_unavailable(exc)
                        return False
                    await asyncio.to_thread(self._set_aside, item, index if len(rows) > 1 else None, exc)
                    continue
                self._count(counter, 1, inserted)
        return True

    def _count(self, counter: str, rows: int, inserted: int) -> None:
        self._counts[counter] += rows
        self._counts["duplicates"] += rows - inserted

    async def _copy_making_partitions(self, payload: _Payload) -> int:
        try:
            return await self._copy(payload)
        except PartitionMissingError:
            await payload.complete()
            await self._make_partitions(payload.event_days())
            return await self._copy(payload)

    async def _copy(self, payload: _Payload) -> int:
        """Store the rows; returns how many were new.

        Straight ``COPY`` into ``decisions`` (binary, streamed while the next chunk is encoded): one statement, so
        all or nothing. When it meets a row the table has already (SQLSTATE 23505: a retry, a replay, a resend),
        nothing of it stayed, and the rows go the idempotent way instead: ``COPY`` into the session's staging
        table, then ``INSERT ... ON CONFLICT DO NOTHING``, in one transaction. After a duplicate, batches take the
        idempotent way until one of them holds no duplicate (a replay's duplicates come in runs)."""
        async with asyncio.timeout(self._write_timeout), self._db.connection() as conn:
            if not self._expect_duplicates:
                try:
                    status = await conn.copy_to_table("decisions", source=payload, columns=COPY_COLUMNS,
                                                      format="binary")
                except asyncpg.UniqueViolationError:
                    self._expect_duplicates = True
                else:
                    return int(str(status).rsplit(" ", 1)[-1])
            await payload.complete()
            async with conn.transaction():
                await conn.execute(_PREPARE_STAGING)
                await conn.copy_to_table(STAGING_TABLE, source=payload, columns=COPY_COLUMNS, format="binary")
                status = await conn.execute(_MOVE)
        inserted = int(str(status).rsplit(" ", 1)[-1])
        self._expect_duplicates = inserted < payload.row_count
        return inserted

    async def _make_partitions(self, days: Iterable[date]) -> None:
        """The partition of each day (only that day: this never drops a partition, whatever the retention)."""
        async with asyncio.timeout(self._write_timeout), self._db.connection() as conn:
            for day in sorted(set(days)):
                changes = await ensure_partitions(conn, day, 0, None, behind_days=0)
                if changes.created:
                    log.warning("decision writer: made partitions %s for a late or early row", changes.created)

    def _set_aside(self, item: Item, row: int | None, exc: BaseException) -> None:
        """Keep a refused row where a person finds it: the item's journal payload in base64, then the reason
        (with the row's index when the item is a block of several)."""
        self._counts["refused"] += 1
        where = "" if row is None else f" (row {row})"
        tx_id = getattr(item, "transaction_id", "of a block")
        log.error("decision writer: the database refused decision %s%s (%s); set aside in %s", tx_id, where, exc,
                  self.refused_path)
        try:
            saved = base64.b64encode(encode_item(item)).decode()
        except ValueError:  # a record that cannot even be encoded (features not one-dimensional)
            saved = "unencodable:" + repr(item).replace("\n", " ")
        line = saved + "\t" + where.strip() + " " + str(exc).replace("\n", " ") + "\n"
        with open(self.refused_path, "a", encoding="utf-8") as out:
            out.write(line)


class _Payload:
    """A batch's rows as one binary COPY stream, an asynchronous iterable of chunks for asyncpg's
    ``copy_to_table``: each chunk (``_CHUNK_ROWS`` rows or more) is encoded when the COPY asks for it, so
    PostgreSQL ingests one chunk while the next is built. Chunks are kept: a second COPY (the staging way, or
    after making partitions) sends the same bytes, sealed once.

    Encoding runs on the event loop, a chunk at a time with the loop free between chunks — not in a thread: a
    thread running Python beside the scoring handlers makes them wait for the GIL whenever they take it back
    from onnxruntime or a Numba kernel (up to the 5 ms switch interval: measured, a unary call's p99 went from
    0.24 to 3 ms), while a small chunk on the loop delays the next handler by about a millisecond at most."""

    def __init__(self, items: Sequence[Item], seal: Seal | None, key_id: str | None) -> None:
        self._groups = list(_groups(items, _CHUNK_ROWS))
        self._seal, self._key_id = seal, key_id
        self._chunks: list[bytes] = []
        self._rows: list[CopyRows] = []
        self.row_count = sum(map(row_count, items))

    @classmethod
    def of(cls, rows: CopyRows) -> _Payload:
        """A payload of rows encoded already."""
        payload = cls((), None, None)
        payload._rows, payload._chunks, payload.row_count = [rows], [_chunk([rows], True, True)], len(rows)
        return payload

    async def _chunk_at(self, index: int) -> bytes:
        if index == len(self._chunks):
            group = self._groups[index]
            last = index == len(self._groups) - 1
            if index:
                await asyncio.sleep(0)  # let the handlers waiting on the loop run between chunks
            rows, chunk = _encode_chunk(group, self._seal, self._key_id, index == 0, last)
            self._rows.extend(rows)
            self._chunks.append(chunk)
        return self._chunks[index]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(max(len(self._groups), len(self._chunks))):
            yield await self._chunk_at(index)

    async def complete(self) -> None:
        """Encode what is not encoded yet."""
        for index in range(len(self._chunks), len(self._groups)):
            await self._chunk_at(index)

    def event_days(self) -> set[date]:
        """The event days of the rows (after :meth:`complete`)."""
        return set().union(*(rows.event_days() for rows in self._rows))


_CHUNK_ROWS = 64  # about a millisecond of encoding


def _groups(items: Sequence[Item], rows: int) -> Iterator[list[Item]]:
    group: list[Item] = []
    size = 0
    for item in items:
        group.append(item)
        size += row_count(item)
        if size >= rows:
            yield group
            group, size = [], 0
    if group or not items:
        yield group


def _encode_chunk(items: Sequence[Item], seal: Seal | None, key_id: str | None, first: bool,
                  last: bool) -> tuple[list[CopyRows], bytes]:
    rows = copy_rows_of(items, seal, key_id)
    return rows, _chunk(rows, first, last)


def _chunk(rows: Sequence[CopyRows], first: bool, last: bool) -> bytes:
    pieces = [COPY_HEADER] if first else []
    for r in rows:
        pieces.extend(r.pieces)
    if last:
        pieces.append(COPY_TRAILER)
    return b"".join(pieces)


def _encode_all(items: Sequence[Item]) -> list[bytes]:
    return [encode_item(item) for item in items]


def _next_chunk(records: Iterator[Record], rows: int) -> tuple[list[Record], list[Item]]:
    """The next journal records, decoded, holding about ``rows`` rows (at least one record)."""
    chunk: list[Record] = []
    items: list[Item] = []
    total = 0
    for record in records:
        item = decode_item(record.payload)
        chunk.append(record)
        items.append(item)
        total += row_count(item)
        if total >= rows:
            break
    return chunk, items


def _refused(exc: BaseException) -> bool:
    """Whether the database refused the rows themselves (retrying cannot help), not the connection."""
    if isinstance(exc, DatabaseUnreachableError) or not isinstance(exc, DatabaseError):
        return isinstance(exc, asyncpg.DataError | CopyEncodingError)  # a value that cannot be encoded
    return (exc.sqlstate or "").startswith(_REFUSED_CLASSES)


def _log_unavailable(exc: BaseException) -> None:
    if isinstance(exc, DatabaseError | TimeoutError | OSError | asyncpg.InterfaceError):  # a connection lost
        log.warning("decision writer: database write failed: %s", exc or type(exc).__name__)
    else:
        log.error("decision writer: database write failed unexpectedly", exc_info=exc)

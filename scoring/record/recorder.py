"""The scoring server's side of recording: every answered decision is safe from the process's death before the
answer leaves, and reaches PostgreSQL without the hot path ever awaiting the database.

Per request message, on the event loop, before the response is sent, :meth:`Recorder.record`:

1. builds one :class:`~scoring.record.block.DecisionBlock` (the PAN-free request bytes and the scorer's arrays);
2. appends it to the **write-ahead journal** (``DATA_DIR/journal/ahead``) and writes it to the file: one
   ``write(2)``, no ``fsync``. The page cache outlives a SIGKILL, so a decision the caller received is on disk
   (or in the kernel) whatever happens to the process; a power cut is what ``fsync`` is for, and that is the
   outage journal's job below;
3. hands the block to the :class:`~scoring.record.writer.DecisionWriter`, which batches blocks into ``COPY``
   every few milliseconds and, while the database is down, into the **outage journal** (``DATA_DIR/journal/
   outage``, fsync'd in batches) that it replays when the database is back.

Once the writer reports a block durable (committed, or synced to the outage journal), the write-ahead journal
acknowledges it (at most every ``ack_interval_s``), so that journal holds only the last moments. After a crash,
:meth:`start` hands whatever it still holds to the writer again; the database write is idempotent on the
transaction id, so a decision stored twice is stored once.

When the writer's queue is full, :meth:`admit` applies the full policy *before* the message is scored (so a
refused call changed no entity state): back-pressure waits for room, reject raises ``RecorderFull``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fraudguard.security.pan import PanTokenizer
from scoring.record.block import DecisionBlock, MessageKind, rule_entries, scrub_pans
from scoring.record.errors import JournalError, JournalFull
from scoring.record.items import Item, decode_item
from scoring.record.journal import MIN_SEGMENT_BYTES, Journal
from scoring.record.writer import DecisionWriter, FullPolicy, RecorderError, RecorderFull
from scoring.scorer import ScoredBatch
from scoring.wire.decode import DecodedRequest

log = logging.getLogger("fraudguard.scoring.recorder")

AHEAD_DIR, OUTAGE_DIR = "ahead", "outage"


class NoSync:
    """The write-ahead journal's syncer: written data is left to the page cache (it survives the process)."""

    def file(self, fd: int) -> None:
        return None

    def directory(self, path: Path) -> None:
        return None


class Recorder:
    """Owns the write-ahead journal and (closing) the writer's outage journal; feeds the writer. Open both with
    :meth:`open_journals`, then :meth:`start` in the loop, :meth:`close` at the end."""

    def __init__(self, writer: DecisionWriter, ahead: Journal, tokenizer: PanTokenizer,
                 ack_interval_s: float = 0.1) -> None:
        self.writer = writer
        writer.on_durable = self.on_durable
        self._ahead = ahead
        self._tokenizer = tokenizer
        self._ack_interval = ack_interval_s
        self._pending: deque[tuple[Item, int]] = deque()  # handed to the writer, not yet durable, in order
        self._durable_seq = 0
        self._ack_task: asyncio.Task[None] | None = None
        self.ahead_refused = 0  # messages answered UNAVAILABLE because the write-ahead journal refused them

    @staticmethod
    def open_journals(directory: Path, max_bytes: int) -> tuple[Journal, Journal]:
        """(write-ahead, outage) journals in ``directory``, each allowed half of ``max_bytes``."""
        half = max_bytes // 2
        segment = max(MIN_SEGMENT_BYTES, min(64 << 20, half // 8))  # space comes back a segment at a time
        ahead = Journal(directory / AHEAD_DIR, segment_bytes=segment, max_bytes=half, syncer=NoSync())
        try:
            outage = Journal(directory / OUTAGE_DIR, segment_bytes=segment, max_bytes=half)
        except BaseException:
            ahead.close()
            raise
        return ahead, outage

    # -- the hot path ---------------------------------------------------------------------------------------

    def has_room(self) -> bool:
        """Whether a message may be scored now: the writer's queue has room, and the write-ahead journal has
        more than an eighth of its space free (so that recording the message's decisions cannot fail)."""
        ahead = self._ahead
        return self.writer.has_room() and ahead.used_bytes + ahead.max_bytes // 8 <= ahead.max_bytes

    async def admit(self) -> None:
        """Call before scoring a message when :meth:`has_room` is False: waits (back-pressure) or raises
        :class:`RecorderFull` (reject, or closing)."""
        while True:
            await self.writer.wait_for_room()
            if self.has_room():
                return
            if self.writer.full_policy is FullPolicy.REJECT or not self.writer.has_room():
                self.writer.refuse(1)  # raises
            await asyncio.sleep(self._ack_interval)  # the write-ahead journal frees space as blocks are stored

    def record(self, decoded: DecodedRequest, scored: ScoredBatch, request: bytes, kind: MessageKind) -> None:
        """Make the message's decisions safe from a crash and queue them for the database. Raises
        ``RecorderFull`` (an ``UnavailableError``) when the write-ahead journal is full or unwritable."""
        if not decoded.pan_free:
            request = scrub_pans(request, kind, self._tokenizer)
        positions = np.arange(decoded.n_requested, dtype=np.uint32)
        if decoded.failures:
            positions = np.delete(positions, [f.index for f in decoded.failures])
        rules = scored.rule_set
        rule_set_version, entries = ("", ()) if rules is None else (rules.version, rule_entries(rules))
        block = DecisionBlock(
            kind=kind, request=request, positions=positions, scores=scored.scores,
            actions=scored.actions.astype(np.uint8), features=scored.features,
            reason_index=scored.reason_index.astype(np.uint16),
            reason_contribution=scored.reason_contribution.astype(np.float32),
            model_version=scored.model_version, server_time_us=scored.server_time_us,
            decided_at_us=time.time_ns() // 1000,
            rule_set_version=rule_set_version, rule_entries=entries, rule_hits=scored.rule_hits,
        )  # fmt: skip
        ahead = self._ahead
        try:
            seq = ahead.append(block.encode())
            ahead.flush()  # write(2) only (NoSync)
        except JournalError as exc:
            self.ahead_refused += 1
            if isinstance(exc, JournalFull):
                raise RecorderFull(f"the write-ahead journal is full: {exc}") from exc
            log.error("write-ahead journal refused a decision block", extra={"error": str(exc)})
            raise RecorderFull(f"the write-ahead journal cannot be written: {exc}") from exc
        self._pending.append((block, seq))
        self.writer.submit(block, force=True)  # admit() made room before scoring

    # -- life -------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Queue what the write-ahead journal still holds (a crash's leftovers), then start the writer."""
        leftovers: list[tuple[Item, int]] = []
        for entry in await asyncio.to_thread(lambda: list(self._ahead.replay())):
            try:
                leftovers.append((decode_item(entry.payload), entry.seq))
            except ValueError:
                log.exception("write-ahead journal: record %d cannot be decoded; kept in the journal", entry.seq)
                break  # acknowledging past it would delete it: keep everything from here for a person
        if leftovers:
            log.warning("write-ahead journal: %d decision blocks from the last run were not confirmed stored; "
                        "storing them now", len(leftovers))
            self._pending.extend(leftovers)
            self.writer.submit_many([item for item, _ in leftovers], force=True)
        self.writer.start()
        self._ack_task = asyncio.create_task(self._acknowledge_periodically(), name="write-ahead-ack")

    def on_durable(self, items: Sequence[Item]) -> None:
        """The writer's callback: ``items`` (a prefix of what it was given, in order) are durable."""
        pending = self._pending
        for item in items:
            if not pending or pending[0][0] is not item:
                log.error("decision recorder: durable items out of order; write-ahead journal not acknowledged")
                return
            self._durable_seq = pending.popleft()[1]

    async def _acknowledge_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._ack_interval)
            self._acknowledge()

    def _acknowledge(self) -> None:
        if self._durable_seq > self._ahead.acknowledged_seq:
            try:
                self._ahead.acknowledge(self._durable_seq)
            except JournalError:
                log.exception("write-ahead journal: cannot acknowledge; its records will be stored again later")

    async def close(self, timeout_s: float = 30.0) -> None:
        """Store everything accepted (database or outage journal), acknowledge it, close both journals."""
        try:
            await self.writer.close(timeout_s)
        finally:
            if self._ack_task is not None:
                self._ack_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._ack_task
            self._acknowledge()
            try:
                self._ahead.close()
            finally:
                await asyncio.to_thread(self.writer.journal.close)

    def journal_backlog(self) -> int:
        return self._ahead.last_seq - self._ahead.acknowledged_seq


__all__ = ["NoSync", "Recorder", "RecorderError"]

"""The decision journal (scoring/record): framing, rollover, acknowledgement, recovery from torn and damaged
files, bounds, the directory lock, a model-based test, a real SIGKILL crash test and simulated power cuts."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import inspect
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from scoring.record import (
    ConcurrentUse,
    Journal,
    JournalClosed,
    JournalCorrupt,
    JournalFull,
    JournalLocked,
    JournalUnwritable,
    OsSyncer,
    RecordTooLarge,
)
from scoring.record._format import RECORD_HEADER, SEGMENT_HEADER, segment_first_seq

REPO = Path(__file__).resolve().parents[1]
HEAD = SEGMENT_HEADER.size
FRAME = RECORD_HEADER.size


def payload_for(seq: int) -> bytes:
    """A payload that says which record it is and has a length that varies with it (0 to ~2.3 kB)."""
    return hashlib.blake2b(seq.to_bytes(8, "little")).digest() * (seq % 37) + seq.to_bytes(8, "little")[: seq % 9]


def segment_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if segment_first_seq(p.name) is not None)


def open_files() -> list[Path]:
    """What this process's file descriptors point at."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the descriptor of the listing itself, closed by now
            paths.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
    return paths


def replayed(journal: Journal) -> list[tuple[int, bytes]]:
    return [(r.seq, r.payload) for r in journal.replay()]


def write_records(directory: Path, payloads: list[bytes], segment_bytes: int) -> None:
    with Journal(directory, segment_bytes=segment_bytes, max_bytes=1 << 20) as journal:
        for payload in payloads:
            journal.append(payload)


# -- round trips ------------------------------------------------------------------------------------------


def test_round_trip_across_segment_rollover(tmp_path: Path) -> None:
    payloads = [payload_for(seq) for seq in range(1, 201)]
    with Journal(tmp_path, segment_bytes=8192, max_bytes=1 << 22) as journal:
        assert [journal.append(p) for p in payloads] == list(range(1, 201))
        assert journal.durable_seq == 0
        assert journal.flush() == 200 == journal.durable_seq
        assert replayed(journal) == list(enumerate(payloads, start=1))
        assert len(segment_files(tmp_path)) >= 10
        assert all(p.stat().st_size <= 8192 for p in segment_files(tmp_path))
        held = sorted(p.name for p in open_files() if p.parent == tmp_path)
        assert held == sorted(["LOCK", segment_files(tmp_path)[-1].name])  # no file left open per segment
    with Journal(tmp_path, segment_bytes=8192, max_bytes=1 << 22) as journal:
        assert journal.recovered is None
        assert replayed(journal) == list(enumerate(payloads, start=1))
        assert journal.append(b"next") == 201


def test_replay_flushes_and_sees_appends_made_while_iterating(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        for seq in range(1, 11):
            journal.append(b"%d" % seq)
        got = []
        for record in journal.replay():
            got.append(record.seq)
            journal.append(b"later")  # not part of this replay, and no harm to it
        assert got == list(range(1, 11))
        assert journal.durable_seq == 10
        assert [r.seq for r in journal.replay()] == list(range(1, 21))


def test_acknowledging_while_replaying_deletes_behind_the_reader(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        for seq in range(1, 21):
            journal.append(bytes([seq]) * 40)
        seen = []
        for record in journal.replay():  # the writer copies a batch to the database, then acknowledges it
            seen.append(record.seq)
            if record.seq % 3 == 0:
                journal.acknowledge(record.seq + 2)  # even past the reader: those are skipped, not an error
        assert seen == [1, 2, 3, 6, 9, 12, 15, 18]
        assert segment_files(tmp_path) == []
        assert journal.acknowledged_seq == 20


def test_empty_and_large_payloads(tmp_path: Path) -> None:
    big = os.urandom(4096 - HEAD - FRAME)  # exactly a whole segment
    with Journal(tmp_path, segment_bytes=4096, max_bytes=1 << 20) as journal:
        journal.append(b"")
        journal.append(big)
        journal.append(b"")
    assert [p.stat().st_size for p in segment_files(tmp_path)] == [HEAD + FRAME, 4096, HEAD + FRAME]
    with Journal(tmp_path, segment_bytes=4096, max_bytes=1 << 20) as journal:
        assert replayed(journal) == [(1, b""), (2, big), (3, b"")]


# -- acknowledgement ---------------------------------------------------------------------------------------


def test_acknowledge_deletes_whole_segments_and_survives_reopen(tmp_path: Path) -> None:
    payload = b"p" * 40  # 56-byte frames: four to a 256-byte segment
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        for _ in range(12):
            journal.append(payload)
        journal.flush()
        assert [segment_first_seq(p.name) for p in segment_files(tmp_path)] == [1, 5, 9]
        used = journal.used_bytes
        journal.acknowledge(6)  # segment 1..4 goes; 5..8 is only half acknowledged
        assert [segment_first_seq(p.name) for p in segment_files(tmp_path)] == [5, 9]
        assert journal.used_bytes == used - (HEAD + 4 * 56)
        assert [r.seq for r in journal.replay()] == list(range(7, 13))
        journal.acknowledge(3)  # older: nothing happens
        assert journal.acknowledged_seq == 6
        with pytest.raises(ValueError, match="13"):
            journal.acknowledge(13)
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        assert journal.acknowledged_seq == 6
        assert [r.seq for r in journal.replay()] == list(range(7, 13))
        journal.acknowledge(12)
        assert segment_files(tmp_path) == []
        assert journal.used_bytes == 0
        assert journal.append(payload) == 13  # numbering goes on
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        assert [r.seq for r in journal.replay()] == [13]


def test_acknowledging_unflushed_records_drops_them_and_numbering_goes_on(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        for _ in range(6):
            journal.append(b"x" * 40)
        journal.acknowledge(6)  # the database took them straight from memory
        assert journal.durable_seq == 6
        assert segment_files(tmp_path) == []
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        assert replayed(journal) == []
        assert journal.append(b"y") == 7


def test_segments_acknowledged_before_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    write_records(tmp_path, [b"z" * 40] * 10, segment_bytes=256)
    with Journal(tmp_path / "other", segment_bytes=256) as other:  # a real checkpoint for seq 8
        for _ in range(8):
            other.append(b"")
        other.acknowledge(8)
    shutil.copy(tmp_path / "other" / "checkpoint", tmp_path / "checkpoint")  # as if the crash came before unlink
    assert [segment_first_seq(p.name) for p in segment_files(tmp_path)] == [1, 5, 9]
    with Journal(tmp_path, segment_bytes=256, max_bytes=1 << 20) as journal:
        assert [segment_first_seq(p.name) for p in segment_files(tmp_path)] == [9]
        assert [r.seq for r in journal.replay()] == [9, 10]


# -- torn and damaged files -------------------------------------------------------------------------------


def _layout(tmp_path: Path) -> tuple[list[bytes], bytes, bytes]:
    """Six 40-byte records, 256-byte segments: segment 1 holds 1..4, segment 5 holds 5 and 6."""
    payloads = [bytes([seq]) * 40 for seq in range(1, 7)]
    source = tmp_path / "source"
    write_records(source, payloads, segment_bytes=256)
    first, last = segment_files(source)
    assert last.stat().st_size == HEAD + 2 * (FRAME + 40)
    return payloads, first.read_bytes(), last.read_bytes()


def _install(directory: Path, first: bytes, last: bytes) -> Path:
    directory.mkdir()
    (directory / "00000000000000000001.seg").write_bytes(first)
    path = directory / "00000000000000000005.seg"
    path.write_bytes(last)
    return path


def test_torn_tail_at_every_offset_keeps_exactly_the_whole_records(tmp_path: Path) -> None:
    payloads, first, last = _layout(tmp_path)
    frame = FRAME + 40
    for cut in range(len(last)):
        directory = tmp_path / f"cut{cut}"
        path = _install(directory, first, last[:cut])
        whole = max(0, (cut - HEAD) // frame) if cut >= HEAD else 0
        expected = list(enumerate(payloads[: 4 + whole], start=1))
        with Journal(directory, segment_bytes=256) as journal:
            assert replayed(journal) == expected, cut
            clean_end = cut >= HEAD and (cut - HEAD) % frame == 0
            if clean_end:
                assert journal.recovered is None, cut
            else:
                repair = journal.recovered
                assert repair is not None, cut
                assert repair.segment == path
                assert repair.offset == (0 if cut < HEAD else HEAD + whole * frame)
                assert repair.discarded_bytes == cut - repair.offset
                assert path.exists() == (cut >= HEAD)
            assert journal.append(b"after") == 5 + whole  # sequence numbers of lost records are used again
        with Journal(directory, segment_bytes=256) as journal:
            assert journal.recovered is None
            assert replayed(journal) == [*expected, (5 + whole, b"after")]


def test_flipped_bit_in_the_last_record_cuts_it_and_reports_it(tmp_path: Path) -> None:
    payloads, first, last = _layout(tmp_path)
    start = HEAD + FRAME + 40  # record 6
    header_bits = range(FRAME * 8)  # every bit of length, CRC and sequence number
    payload_bits = range(FRAME * 8 + 3, (len(last) - start) * 8, 8)  # one bit in each payload byte
    for bit in [*header_bits, *payload_bits]:
        damaged = bytearray(last)
        damaged[start + bit // 8] ^= 1 << (bit % 8)
        directory = tmp_path / f"bit{bit}"
        path = _install(directory, first, bytes(damaged))
        with Journal(directory, segment_bytes=256) as journal:
            assert replayed(journal) == list(enumerate(payloads[:5], start=1)), bit
            assert journal.recovered is not None
            assert (journal.recovered.segment, journal.recovered.offset) == (path, start), bit
            assert journal.recovered.discarded_bytes == len(last) - start
        assert path.stat().st_size == start


def test_a_stale_but_valid_record_is_damage_too(tmp_path: Path) -> None:
    payloads, first, last = _layout(tmp_path)
    frame = FRAME + 40
    stale = first[:HEAD + frame] + first[HEAD:HEAD + frame] + first[HEAD + 2 * frame:]  # record 1 again, not 2
    older = tmp_path / "older"
    _install(older, stale, last)
    with Journal(older, segment_bytes=256) as journal, pytest.raises(JournalCorrupt, match="1 where 2") as caught:
        list(journal.replay())
    assert caught.value.offset == HEAD + frame
    newest = tmp_path / "newest"
    _install(newest, first, last[:HEAD + frame] + last[HEAD:HEAD + frame])  # record 5 again where 6 was
    with Journal(newest, segment_bytes=256) as journal:
        assert journal.recovered is not None and "5 where 6" in journal.recovered.reason
        assert replayed(journal) == list(enumerate(payloads[:5], start=1))


@pytest.mark.parametrize("where", ["payload", "length", "sequence", "header"])
def test_damage_in_an_older_segment_names_file_and_offset(tmp_path: Path, where: str) -> None:
    _payloads, first, last = _layout(tmp_path)
    record2 = HEAD + FRAME + 40
    position = {"payload": record2 + FRAME + 7, "length": record2, "sequence": record2 + 8, "header": 3}[where]
    damaged = bytearray(first)
    damaged[position] ^= 0x10
    directory = tmp_path / "d"
    _install(directory, bytes(damaged), last)
    seen: list[int] = []
    with Journal(directory, segment_bytes=256) as journal:
        assert journal.recovered is None
        with pytest.raises(JournalCorrupt) as caught:
            seen.extend(r.seq for r in journal.replay())
    assert caught.value.path == directory / "00000000000000000001.seg"
    assert caught.value.offset == (0 if where == "header" else record2)
    assert str(directory / "00000000000000000001.seg") in str(caught.value)
    assert seen == ([] if where == "header" else [1])


def test_short_older_segment_and_missing_middle_segment_are_errors(tmp_path: Path) -> None:
    _payloads, first, last = _layout(tmp_path)
    short = tmp_path / "short"
    _install(short, first[:-5], last)
    with Journal(short, segment_bytes=256) as journal, pytest.raises(JournalCorrupt) as caught:
        list(journal.replay())
    assert (caught.value.path.name, caught.value.offset) == ("00000000000000000001.seg", HEAD + 3 * (FRAME + 40))

    trailing = tmp_path / "trailing"
    _install(trailing, first + b"\0" * 8, last)
    with Journal(trailing, segment_bytes=256) as journal, pytest.raises(JournalCorrupt, match="8 bytes after"):
        list(journal.replay())

    gap = tmp_path / "gap"
    payloads = [b"g" * 40] * 10
    write_records(gap, payloads, segment_bytes=256)
    (gap / "00000000000000000005.seg").unlink()
    with Journal(gap, segment_bytes=256) as journal, pytest.raises(JournalCorrupt, match="record 4, 8 was due"):
        list(journal.replay())


def test_missing_oldest_segment_or_bad_checkpoint_fail_on_open(tmp_path: Path) -> None:
    write_records(tmp_path, [b"h" * 40] * 6, segment_bytes=256)
    (tmp_path / "00000000000000000001.seg").unlink()
    with pytest.raises(JournalCorrupt, match=r"checkpoint.*missing"):
        Journal(tmp_path, segment_bytes=256)
    acked = tmp_path / "acked"
    with Journal(acked, segment_bytes=256) as journal:
        for _ in range(12):
            journal.append(b"h" * 40)
        journal.acknowledge(2)
    (acked / "00000000000000000001.seg").unlink()
    with pytest.raises(JournalCorrupt, match=r"records 3\.\.4") as gap:
        Journal(acked, segment_bytes=256)
    assert gap.value.path == acked / "00000000000000000005.seg"
    other = tmp_path / "other"
    write_records(other, [b"h" * 40] * 6, segment_bytes=256)
    (other / "checkpoint").write_bytes(b"\0" * 20)
    with pytest.raises(JournalCorrupt) as caught:
        Journal(other, segment_bytes=256)
    assert caught.value.path == other / "checkpoint"
    with pytest.raises(JournalCorrupt):  # not JournalLocked: the failed open released its lock
        Journal(other, segment_bytes=256)


# -- bounds and errors --------------------------------------------------------------------------------------


def test_journal_full_refuses_without_dropping_and_recovers_after_acknowledge(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=256, max_bytes=1024) as journal:
        appended = []
        with pytest.raises(JournalFull) as caught:
            while True:
                appended.append(journal.append(b"f" * 40))
        assert caught.value.used + caught.value.needed > 1024 >= caught.value.used
        assert journal.used_bytes <= 1024
        assert len(appended) == 16  # four whole segments of four 56-byte frames
        with pytest.raises(JournalFull):
            journal.append(b"f" * 40)  # still full, and nothing half-appended
        assert [r.seq for r in journal.replay()] == appended
        assert sum(p.stat().st_size for p in segment_files(tmp_path)) == journal.used_bytes
        journal.acknowledge(3)
        with pytest.raises(JournalFull):  # no segment is wholly acknowledged yet
            journal.append(b"f" * 40)
        journal.acknowledge(4)
        assert journal.append(b"f" * 40) == 17
        journal.acknowledge(17)
        assert journal.used_bytes == 0
        assert [journal.append(b"f" * 40) for _ in range(16)] == list(range(18, 34))


def test_the_limit_is_inclusive(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=256, max_bytes=512) as journal:
        whole = b"w" * (256 - HEAD - FRAME)  # one record fills a segment
        assert [journal.append(whole), journal.append(whole)] == [1, 2]
        assert journal.used_bytes == 512
        with pytest.raises(JournalFull):
            journal.append(b"")


def test_record_larger_than_a_segment_is_refused(tmp_path: Path) -> None:
    with Journal(tmp_path, segment_bytes=256, max_bytes=4096) as journal:
        journal.append(b"a" * (256 - HEAD - FRAME))
        with pytest.raises(RecordTooLarge, match="257"):
            journal.append(b"a" * 257)
        with pytest.raises(RecordTooLarge):
            journal.append(b"a" * (256 - HEAD - FRAME + 1))
        assert journal.append(b"ok") == 2


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segment_bytes"):
        Journal(tmp_path, segment_bytes=10)
    with pytest.raises(ValueError, match="max_bytes"):
        Journal(tmp_path, segment_bytes=4096, max_bytes=4095)


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    with pytest.raises(JournalUnwritable, match="create the directory") as caught:
        Journal(a_file / "journal")
    assert caught.value.path == a_file / "journal"
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(JournalUnwritable):
        Journal(a_file)


def test_closed_journal_refuses_calls(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append(b"a")
    journal.close()
    journal.close()  # twice is fine
    for call in (lambda: journal.append(b"b"), journal.flush, lambda: journal.acknowledge(1)):
        with pytest.raises(JournalClosed):
            call()
    with Journal(tmp_path) as again:  # close flushed
        assert replayed(again) == [(1, b"a")]


class FailingDisk(OsSyncer):
    """Syncs until told to fail, then raises EIO as a dying disk would."""

    failing = False

    def file(self, fd: int) -> None:
        if self.failing:
            raise OSError(errno.EIO, "Input/output error")
        super().file(fd)


def test_a_failed_sync_makes_the_journal_unusable_until_reopened(tmp_path: Path) -> None:
    disk = FailingDisk()
    journal = Journal(tmp_path, syncer=disk)
    journal.append(b"safe")
    journal.flush()
    journal.append(b"unknown")
    disk.failing = True
    with pytest.raises(JournalUnwritable) as caught:
        journal.flush()
    assert isinstance(caught.value.__cause__, OSError)
    assert journal.durable_seq == 1
    for call in (lambda: journal.append(b"b"), journal.flush, lambda: journal.acknowledge(1)):
        with pytest.raises(JournalClosed, match="reopen"):
            call()
    journal.close()  # no flush now, but the lock is released
    with Journal(tmp_path) as again:
        got = [r.payload for r in again.replay()]
        assert got in ([b"safe"], [b"safe", b"unknown"])  # a record never reported durable may be there or not


def test_overlapping_calls_are_refused(tmp_path: Path) -> None:
    with Journal(tmp_path) as journal:
        assert journal._busy.acquire()  # as if another thread were inside flush()
        try:
            for call in (lambda: journal.append(b"b"), journal.flush, lambda: journal.acknowledge(1)):
                with pytest.raises(ConcurrentUse):
                    call()
        finally:
            journal._busy.release()
        assert journal.append(b"b") == 1


# -- the lock ---------------------------------------------------------------------------------------------


def test_lock_stops_a_second_opener_in_this_process(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    with pytest.raises(JournalLocked, match=f"pid {os.getpid()}"):
        Journal(tmp_path)
    first.append(b"kept")
    first.close()
    with Journal(tmp_path) as second:
        assert replayed(second) == [(1, b"kept")]


_HOLDER = """
import sys
from scoring.record import Journal
journal = Journal(sys.argv[1])
print("open", flush=True)
sys.stdin.read()
"""


def test_lock_stops_another_process_and_dies_with_it(tmp_path: Path) -> None:
    with subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], cwd=REPO, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "open\n"
            with pytest.raises(JournalLocked, match=f"pid {holder.pid}"):
                Journal(tmp_path)
        finally:
            holder.kill()
            holder.wait(timeout=10)
    Journal(tmp_path).close()  # the kernel released the lock of the dead process


# -- a model of the journal -------------------------------------------------------------------------------

MODEL_SEGMENT = 160
MODEL_MAX = 1024
MODEL_PAYLOAD = 40
# JournalFull must not come early: besides the unacknowledged frames, the space in use can hold only the
# acknowledged part of the oldest segment (< one segment) and one header per segment
_MODEL_SEGMENTS = MODEL_MAX // (MODEL_SEGMENT - FRAME - MODEL_PAYLOAD) + 1
MODEL_SLACK = MODEL_SEGMENT + HEAD * _MODEL_SEGMENTS


class JournalModel(RuleBasedStateMachine):
    """Random appends, flushes, acknowledgements, clean reopens and crashes against a list and three numbers.

    A crash is a copy of the directory taken while the journal is open — what a killed process leaves,
    since only ``flush`` writes — reopened in place of the original."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="journal-model-"))
        self.generation = 0
        self.journal = self._open()
        self.payloads: dict[int, bytes] = {}
        self.last = self.flushed = self.acked = 0

    def _directory(self) -> Path:
        return self.root / str(self.generation)

    def _open(self) -> Journal:
        return Journal(self._directory(), segment_bytes=MODEL_SEGMENT, max_bytes=MODEL_MAX)

    @rule(payload=st.binary(max_size=MODEL_PAYLOAD))
    def append(self, payload: bytes) -> None:
        try:
            seq = self.journal.append(payload)
        except JournalFull as exc:
            assert exc.used + exc.needed > MODEL_MAX
            unacked = sum(FRAME + len(p) for s, p in self.payloads.items() if s > self.acked)
            assert unacked + exc.needed > MODEL_MAX - MODEL_SLACK
            return
        assert seq == self.last + 1
        self.last = seq
        self.payloads[seq] = payload

    @rule()
    def flush(self) -> None:
        assert self.journal.flush() == self.last
        self.flushed = self.last

    @rule(pick=st.integers(0, 1 << 16))
    def acknowledge(self, pick: int) -> None:
        seq = self.acked + pick % (self.last - self.acked + 1)
        self.journal.acknowledge(seq)
        self.acked = max(self.acked, seq)
        self.payloads = {s: p for s, p in self.payloads.items() if s > self.acked}

    @rule(beyond=st.integers(1, 3))
    def acknowledge_too_far(self, beyond: int) -> None:
        with pytest.raises(ValueError):
            self.journal.acknowledge(self.last + beyond)

    @rule()
    def reopen(self) -> None:
        self.journal.close()
        self.journal = self._open()
        assert self.journal.recovered is None
        self.flushed = self.last

    @rule()
    def crash(self) -> None:
        before = self._directory()
        self.generation += 1
        shutil.copytree(before, self._directory())
        self.journal.close()  # flushes into the old directory only
        self.journal = self._open()
        assert self.journal.recovered is None  # a flush always ends on a whole record
        self.last = self.flushed = max(self.flushed, self.acked)
        self.payloads = {s: p for s, p in self.payloads.items() if s <= self.flushed}

    @rule()
    def replay(self) -> None:
        assert replayed(self.journal) == sorted(self.payloads.items())
        self.flushed = self.last

    @invariant()
    def agrees(self) -> None:
        journal = self.journal
        assert (journal.last_seq, journal.acknowledged_seq) == (self.last, self.acked)
        assert journal.durable_seq == max(self.flushed, self.acked)
        files = segment_files(self._directory())
        firsts = [segment_first_seq(p.name) or 0 for p in files]
        if self.acked == self.last:
            assert firsts == []
        if len(firsts) >= 2:  # the oldest segment holds a record not yet acknowledged
            assert firsts[1] > self.acked + 1
        assert sum(p.stat().st_size for p in files) <= journal.used_bytes <= MODEL_MAX

    def teardown(self) -> None:
        self.journal.close()
        shutil.rmtree(self.root)


TestJournalModel = JournalModel.TestCase
TestJournalModel.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


# -- a real crash -------------------------------------------------------------------------------------------

_WRITER = "import hashlib\n" + inspect.getsource(payload_for) + """
import random, sys
from scoring.record import Journal

def say(line):  # one write per line: a kill cannot split it (stdout may be unbuffered)
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()

journal = Journal(sys.argv[1], segment_bytes=8192, max_bytes=1 << 30)
rng = random.Random(int(sys.argv[2]))
say(f"open {journal.last_seq}")
while True:
    for _ in range(rng.randint(1, 64)):
        seq = journal.last_seq + 1
        assert journal.append(payload_for(seq)) == seq
    say(f"durable {journal.flush()}")
    if journal.last_seq > 100 and rng.random() < 0.3:
        journal.acknowledge(journal.last_seq - 100)
        say(f"acked {journal.last_seq - 100}")
"""


def _run_and_kill(directory: Path, seed: int, delay: float) -> list[str]:
    """Start a writer, let it run ``delay`` seconds after its first acknowledgement, SIGKILL it; its output."""
    lines: list[str] = []
    started = threading.Event()
    with subprocess.Popen([sys.executable, "-c", _WRITER, str(directory), str(seed)], cwd=REPO, text=True,
                          stdout=subprocess.PIPE) as child:

        def drain() -> None:
            assert child.stdout is not None
            for line in child.stdout:
                lines.append(line)
                if line.startswith("acked"):
                    started.set()
            started.set()  # the writer died by itself: the assertion below says so

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            assert started.wait(timeout=30) and child.poll() is None, lines
            time.sleep(delay)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            reader.join(timeout=10)
    assert child.returncode == -signal.SIGKILL
    return lines


def test_sigkill_loses_nothing_reported_durable(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    reported_durable = reported_acked = resume = 0
    for _ in range(4):
        lines = _run_and_kill(tmp_path, seed=rng.randrange(1 << 30), delay=rng.uniform(0.0, 0.4))
        assert lines[0] == f"open {resume}\n"
        for line in lines[1:]:
            kind, value = line.split()  # whole lines only: the writer writes each with one call
            if kind == "durable":
                assert int(value) >= reported_durable
                reported_durable = int(value)
            elif kind == "acked":
                reported_acked = int(value)
        with Journal(tmp_path, segment_bytes=8192, max_bytes=1 << 30) as journal:
            records = list(journal.replay())
            assert journal.acknowledged_seq >= reported_acked
            assert journal.last_seq >= reported_durable
            seqs = [r.seq for r in records]
            assert seqs == list(range(journal.acknowledged_seq + 1, journal.last_seq + 1))  # once each, in order
            assert all(r.payload == payload_for(r.seq) for r in records)
            resume = journal.last_seq
    assert reported_durable > 100 and reported_acked > 0


# -- a power cut ----------------------------------------------------------------------------------------------


class PowerCut:
    """A syncer that syncs for real and remembers what a power cut would leave: each file as it was at its
    last sync, plus maybe part of what was written after; the directory's entries as they were at its last
    sync. Every file it sees stays open, so no inode number is reused while it remembers one. ``after_sync``
    runs after each sync: a moment to cut the power in the middle of a flush or an acknowledgement."""

    def __init__(self) -> None:
        self.synced: dict[int, bytes] = {}  # inode -> bytes at its last sync
        self.entries: dict[str, int] = {}  # name -> inode, at the directory's last sync
        self.pins: dict[int, int] = {}  # inode -> a read-only descriptor keeping it alive
        self.after_sync: Callable[[], None] = lambda: None

    def file(self, fd: int) -> None:
        os.fdatasync(fd)
        inode = self._pin(f"/proc/self/fd/{fd}")
        self.synced[inode] = self._read(inode)
        self.after_sync()

    def directory(self, path: Path) -> None:
        OsSyncer().directory(path)
        self.entries = {name: self._pin(path / name) for name in os.listdir(path)}
        self.after_sync()

    def image(self, target: Path, rng: random.Random) -> None:
        """Write into ``target`` what the disk would hold if the power failed now."""
        target.mkdir()
        for name, inode in self.entries.items():
            data, now = self.synced.get(inode, b""), self._read(inode)
            if now.startswith(data):  # an append not yet synced may have reached the disk in part
                data = now[: rng.randint(len(data), len(now))]
            (target / name).write_bytes(data)

    def close(self) -> None:
        for fd in self.pins.values():
            os.close(fd)

    def _pin(self, path: str | Path) -> int:
        fd = os.open(path, os.O_RDONLY)
        inode = os.fstat(fd).st_ino
        if inode in self.pins:
            os.close(fd)
        else:
            self.pins[inode] = fd
        return inode

    def _read(self, inode: int) -> bytes:
        fd = self.pins[inode]
        return os.pread(fd, os.fstat(fd).st_size, 0)


def test_power_cut_loses_nothing_synced(tmp_path: Path) -> None:
    """Unlike SIGKILL (the page cache survives it), a power cut keeps only what was synced: every record
    reported durable and every acknowledgement made must still be there, whole, once each, in order —
    whether the power fails between calls or between the syncs of one flush or acknowledgement."""
    rng = random.Random(11)
    cut = PowerCut()
    cuts: list[int] = []

    def power_fails(live: Journal) -> None:
        image = tmp_path / f"cut{len(cuts)}"
        cut.image(image, rng)
        with Journal(image, segment_bytes=4096, max_bytes=1 << 20) as after:
            records = list(after.replay())
            assert after.acknowledged_seq >= live.acknowledged_seq
            assert after.last_seq >= live.durable_seq
            assert [r.seq for r in records] == list(range(after.acknowledged_seq + 1, after.last_seq + 1))
            assert all(r.payload == payload_for(r.seq) for r in records)
        cuts.append(after.last_seq)

    try:
        with Journal(tmp_path / "live", segment_bytes=4096, max_bytes=1 << 20, syncer=cut) as journal:
            cut.after_sync = lambda: power_fails(journal) if rng.random() < 0.04 else None
            for _ in range(300):
                for _ in range(rng.randint(0, 6)):
                    journal.append(payload_for(journal.last_seq + 1))
                if rng.random() < 0.5:
                    journal.flush()
                elif rng.random() < 0.3 and journal.last_seq > 20:
                    journal.acknowledge(rng.randint(journal.acknowledged_seq, journal.last_seq - 10))
                if rng.random() < 0.04:
                    power_fails(journal)
            assert journal.acknowledged_seq > 0 and len(journal.segment_paths) > 2
            cut.after_sync = lambda: None
    finally:
        cut.close()
    assert len(cuts) > 10

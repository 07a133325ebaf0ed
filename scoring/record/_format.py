"""The bytes on disk: segment files of framed records, read back with every frame checked.

A segment ``<first seq, 20 digits>.seg`` is a header (magic, first sequence number) followed by frames::

    u32 payload length | u32 CRC | u64 sequence number | payload        (little-endian)

The CRC (CRC-32 of zlib: no CRC-32C package is a dependency) covers the length, the sequence number and
the payload, so a zero-filled or stale region never passes. Sequence numbers run on by one across
segments: the first frame of a segment carries the number in its name.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

MAGIC = b"FGJRNL\x00\x01"
SEGMENT_HEADER = struct.Struct("<8sQ")  # magic, first sequence number
RECORD_HEADER = struct.Struct("<IIQ")  # payload length, crc, sequence number
CRC_PREFIX = struct.Struct("<IQ")  # what the crc covers before the payload: length, sequence number
MAX_PAYLOAD = 0xFFFF_FFFF

_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


def segment_first_seq(name: str) -> int | None:
    """The first sequence number in a segment's file name, or None for any other file."""
    found = _SEGMENT_NAME.match(name)
    return int(found.group(1)) if found else None


def record_crc(seq: int, payload: bytes | bytearray | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(CRC_PREFIX.pack(len(payload), seq)))


def encode_record(seq: int, payload: bytes | bytearray | memoryview) -> bytes:
    return RECORD_HEADER.pack(len(payload), record_crc(seq, payload), seq) + payload


def segment_header(first_seq: int) -> bytes:
    return SEGMENT_HEADER.pack(MAGIC, first_seq)


class SegmentReader:
    """Iterates ``(seq, payload)`` over one segment and stops at the first frame that does not check out.

    After the loop, ``offset`` is the end of the last good frame (0 when even the header is bad), ``last_seq``
    the last good sequence number (``first_seq - 1`` when none) and ``damage`` says why it stopped early, or is
    None when it reached the end of the file cleanly."""

    def __init__(self, stream: BinaryIO, size: int, first_seq: int) -> None:
        self._stream = stream
        self._size = size
        self.first_seq = first_seq
        self.offset = 0
        self.last_seq = first_seq - 1
        self.damage: str | None = None

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        if not self._header_ok():
            return
        read, unpack, expected = self._stream.read, RECORD_HEADER.unpack, self.first_seq
        while self.offset < self._size:
            head = read(RECORD_HEADER.size)
            if len(head) < RECORD_HEADER.size:
                self.damage = "a record header cut short"
                return
            length, crc, seq = unpack(head)
            if length > self._size - self.offset - RECORD_HEADER.size:
                self.damage = f"a record length ({length}) past the end of the file"
                return
            payload = read(length)
            if len(payload) < length or record_crc(seq, payload) != crc:
                self.damage = "a record whose CRC does not match"
                return
            if seq != expected:
                self.damage = f"sequence number {seq} where {expected} was due"
                return
            self.offset += RECORD_HEADER.size + length
            self.last_seq = expected
            expected += 1
            yield seq, payload

    def _header_ok(self) -> bool:
        head = self._stream.read(SEGMENT_HEADER.size)
        if len(head) < SEGMENT_HEADER.size:
            self.damage = "a segment header cut short"
            return False
        magic, first = SEGMENT_HEADER.unpack(head)
        if magic != MAGIC or first != self.first_seq:
            self.damage = "not a journal segment header, or not this file's"
            return False
        self.offset = SEGMENT_HEADER.size
        return True


def segment_path(directory: Path, first_seq: int) -> Path:
    return directory / segment_name(first_seq)

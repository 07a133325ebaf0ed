"""The journal's small files: the directory lock and the acknowledged-position checkpoint."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import zlib
from pathlib import Path

from scoring.record.errors import JournalCorrupt, JournalLocked, JournalUnwritable
from scoring.record.sync import Syncer

LOCK_FILE = "LOCK"
CHECKPOINT_FILE = "checkpoint"
_CHECKPOINT_TEMP = "checkpoint.tmp"
_CHECKPOINT = struct.Struct("<8sQI")  # magic, acknowledged sequence number, crc32 of the first two
_CHECKPOINT_MAGIC = b"FGJCKPT1"


def write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def lock_directory(directory: Path) -> int:
    """An exclusive ``flock`` on ``directory/LOCK`` (the kernel drops it when its holder dies); returns the fd.

    ``flock`` belongs to the open file, so a second journal in the same process is refused too."""
    path = directory / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise JournalUnwritable(path, "create the lock file") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise JournalLocked(directory, f"pid {holder}" if holder else "pid unknown") from exc
    except OSError as exc:
        os.close(fd)
        raise JournalUnwritable(path, "lock") from exc
    with contextlib.suppress(OSError):  # only for the error message of a second opener
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def read_checkpoint(directory: Path) -> int | None:
    """The acknowledged sequence number, or None when no checkpoint was ever written."""
    path = directory / CHECKPOINT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JournalUnwritable(path, "read") from exc
    if len(data) == _CHECKPOINT.size:
        magic, acked, crc = _CHECKPOINT.unpack(data)
        if magic == _CHECKPOINT_MAGIC and zlib.crc32(data[:-4]) == crc:
            return int(acked)
    # written by rename of a synced file, so no crash explains a bad one
    raise JournalCorrupt(path, 0, "not a valid checkpoint")


def write_checkpoint(directory: Path, acked: int, syncer: Syncer) -> None:
    """Replace the checkpoint atomically: temporary file, fsync, rename, fsync of the directory."""
    body = struct.pack("<8sQ", _CHECKPOINT_MAGIC, acked)
    temp = directory / _CHECKPOINT_TEMP
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, body + struct.pack("<I", zlib.crc32(body)))
            syncer.file(fd)
        finally:
            os.close(fd)
        os.replace(temp, directory / CHECKPOINT_FILE)
        syncer.directory(directory)
    except OSError as exc:
        raise JournalUnwritable(directory / CHECKPOINT_FILE, "write") from exc


def remove_checkpoint_temp(directory: Path) -> None:
    """A temporary checkpoint left by a crash is never the real one."""
    with contextlib.suppress(FileNotFoundError):
        (directory / _CHECKPOINT_TEMP).unlink()

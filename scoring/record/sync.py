"""How the journal makes its writes durable: ``fdatasync`` of files, ``fsync`` of the directory.

A seam for tests: one that also records what would survive a power cut at any moment proves the
journal syncs the right things in the right order, which killing a process cannot show (the page
cache survives a SIGKILL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class Syncer(Protocol):
    """How the journal makes things durable. Tests pass one that also records what a power cut would keep."""

    def file(self, fd: int) -> None:
        """The file's data (and its size) reach the disk."""

    def directory(self, path: Path) -> None:
        """The directory's entries (created, renamed, removed files) reach the disk."""


class OsSyncer:
    def file(self, fd: int) -> None:
        os.fdatasync(fd)

    def directory(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

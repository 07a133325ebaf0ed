"""Secret keys kept in files readable by the owner only; made on first use."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from fraudguard.errors import FraudguardError

KEY_BYTES = 32


class KeyFileError(FraudguardError):
    """A key file exists but cannot be used."""


def load_or_create_key(path: Path, size: int = KEY_BYTES) -> bytes:
    """The ``size``-byte key stored at ``path``; a fresh random one is written (mode 0600) if absent."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return _create(path, size)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from exc
    if len(key) != size:
        raise KeyFileError(f"{path}: expected a {size}-byte key, found {len(key)} bytes")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"{path}: key file is readable by others (mode {mode:o}); chmod 600 it")
    return key


def _create(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(size)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # never overwrite a key another process made meanwhile
        except FileExistsError:
            return load_or_create_key(path, size)
    finally:
        tmp.unlink(missing_ok=True)
    return key

"""AES-256-GCM for the personal fields kept for investigation (device id, IP address, e-mail, names if given).

Why this shape:

- Keys live in a key file (``DATA_DIR/keys/personal.json``, mode 0600, made on first use) or in the
  ``FRAUDGUARD_PERSONAL_KEYS`` variable, which wins; never in the database, so a dump of the database alone
  reveals nothing. Both hold the same JSON: ``{"current": ID, "keys": {ID: base64 of 32 bytes, ...}}``. An empty
  variable counts as unset, as it does for every ``FRAUDGUARD_*`` setting.
- Every row stores the id of the key that sealed it (``personal_key_id``), so a new key can become current at any
  time while older rows stay readable; ``fraudguard keys rotate`` then re-encrypts them and retires old keys.
- A sealed value is ``nonce (12) || ciphertext || tag (16)`` with a fresh random 96-bit nonce; random nonces are
  safe for about 2**32 seals per key, which is one more reason to rotate (yearly at least).
- The associated data (:func:`personal_aad`) binds a ciphertext to its field and transaction: a value copied into
  another row or column no longer opens.
- Losing the key file loses every personal field: back it up with the same care as the database.

Errors never quote key material or plaintext.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fraudguard.errors import FraudguardError
from fraudguard.security.keyfile import KeyFileError

ENV_VAR = "FRAUDGUARD_PERSONAL_KEYS"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# the personal fields a ciphertext may belong to; "name" has no column yet (the contract carries no name)
PERSONAL_FIELDS = frozenset({"device_id", "ip_address", "email", "name"})

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
_MAX_FILE_BYTES = 1 << 20
_AAD_PREFIX = b"fraudguard.personal.v1\x00"


class PersonalKeyError(KeyFileError):
    """The personal-data keys (file or variable) cannot be used: unreadable, malformed, or readable by others."""


class SealedDataError(FraudguardError):
    """A sealed value cannot be opened: too short, tampered with, or sealed for another field, row or key."""


class UnknownKeyError(SealedDataError):
    """The value names a key id that the keyring does not hold (retired, or from another installation)."""

    def __init__(self, key_id: object) -> None:
        super().__init__(f"no personal-data key with id {_show(key_id)}: it was retired or belongs to another "
                         f"key file")
        self.key_id = key_id


def personal_aad(column: str, transaction_id: str) -> bytes:
    """The associated data of personal field ``column`` (``device_id``, ``ip_address``, ``email``, ``name``) of a
    transaction.

    Sealing with it means a ciphertext opens only as that field of that transaction; the field name is from a
    fixed set without NUL, so ``prefix || column || NUL || transaction_id`` is unambiguous."""
    if column not in PERSONAL_FIELDS:
        expected = ", ".join(sorted(PERSONAL_FIELDS))
        raise ValueError(f"not a personal field: {_show(column)} (expected one of {expected})")
    return _AAD_PREFIX + column.encode() + b"\x00" + transaction_id.encode("utf-8", "surrogatepass")


def new_key_id(now: datetime | None = None) -> str:
    """A short, printable, sortable id such as ``k20261129T221500-3fa2`` (the suffix keeps ids of one second apart)."""
    when = now or datetime.now(UTC)
    return f"k{when:%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"


class Keyring:
    """The personal-data keys: seals with the current one, opens with any. Make one with :meth:`load`."""

    __slots__ = ("_ciphers", "_current", "_keys", "source")

    def __init__(self, current_id: str, keys: Mapping[str, bytes], source: str = "memory") -> None:
        _check_keys(current_id, keys, source)
        self._current = current_id
        self._keys = dict(keys)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in self._keys.items()}  # built once: seal stays cheap
        self.source = source  # the file or variable the keys came from, for messages

    @classmethod
    def load(cls, path: Path, environ: Mapping[str, str] | None = None) -> Keyring:
        """The keys of ``FRAUDGUARD_PERSONAL_KEYS`` if set, else of the file at ``path`` (made, with one key, if
        absent). :class:`PersonalKeyError` if they cannot be used."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_VAR, "")
        if text.strip():
            current, keys = _parse(text, ENV_VAR)
            return cls(current, keys, ENV_VAR)
        try:
            current, keys = _read_file(path)
        except FileNotFoundError:
            current, keys = _create_file(path)
        return cls(current, keys, str(path))

    @property
    def current_id(self) -> str:
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    @property
    def from_environment(self) -> bool:
        return self.source == ENV_VAR

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``nonce || ciphertext || tag`` of ``plaintext`` under the current key; store :attr:`current_id` beside it."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._ciphers[self._current].encrypt(nonce, plaintext, aad)

    def open(self, key_id: str, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext of ``sealed``; :class:`SealedDataError` (or its :class:`UnknownKeyError`) if it cannot be."""
        cipher = self._ciphers.get(key_id) if isinstance(key_id, str) else None
        if cipher is None:
            raise UnknownKeyError(key_id)
        if not isinstance(sealed, bytes | bytearray | memoryview):
            raise SealedDataError(f"a sealed value is bytes, not {type(sealed).__name__}")
        if len(sealed) < NONCE_BYTES + TAG_BYTES:
            raise SealedDataError(f"sealed value of {len(sealed)} bytes is too short: nonce and tag alone take "
                                  f"{NONCE_BYTES + TAG_BYTES}")
        data = bytes(sealed)
        try:
            return cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], aad)
        except InvalidTag:
            raise SealedDataError(f"sealed value does not authenticate under key {key_id}: it was altered, or "
                                  "sealed for another field or transaction") from None

    def add_key(self, path: Path) -> str:
        """Make a new random key current, keep the old ones, write the file atomically and durably; the new id.

        Keys added to the file by another process meanwhile are kept. Refused for keys from the variable: a new
        key goes there, by whoever sets it."""
        self._refuse_environment("add a key")
        with _file_lock(path):
            _, keys = self._merged_with(path)
            key_id = new_key_id()
            while key_id in keys:
                key_id = new_key_id()
            keys[key_id] = secrets.token_bytes(KEY_BYTES)
            _write_file(path, key_id, keys, replace=True)
        self._adopt(key_id, keys, str(path))
        return key_id

    def remove_keys(self, path: Path, key_ids: Iterable[str]) -> tuple[str, ...]:
        """Drop ``key_ids`` (never the current key) from the file; the ids removed. The caller checks first that
        no row still uses them: what they sealed is unreadable afterwards."""
        self._refuse_environment("remove keys")
        with _file_lock(path):
            current, keys = self._merged_with(path)
            drop = sorted(set(key_ids) & set(keys))
            if current in drop:
                raise PersonalKeyError(f"{path}: {current} is the current key and cannot be retired")
            for key_id in drop:
                del keys[key_id]
            if drop:
                _write_file(path, current, keys, replace=True)
        self._adopt(current, keys, str(path))
        return tuple(drop)

    def __repr__(self) -> str:
        return f"Keyring(current={self._current!r}, keys={self.key_ids!r}, source={self.source!r})"

    def _refuse_environment(self, what: str) -> None:
        if self.from_environment:
            raise PersonalKeyError(f"the personal-data keys come from {ENV_VAR}: cannot {what} here; change the "
                                   "variable instead (make the new key 'current', keep the old ones)")

    def _merged_with(self, path: Path) -> tuple[str, dict[str, bytes]]:
        """The file's keys (if it exists) together with ours; a conflicting key under one id is refused."""
        try:
            current, on_disk = _read_file(path)
        except FileNotFoundError:
            return self._current, dict(self._keys)
        for key_id, key in self._keys.items():
            if on_disk.setdefault(key_id, key) != key:
                raise PersonalKeyError(f"{path}: key {key_id} in the file differs from the one loaded; refusing to "
                                       "overwrite either")
        return current, on_disk

    def _adopt(self, current: str, keys: Mapping[str, bytes], source: str) -> None:
        _check_keys(current, keys, source)
        self._keys = dict(keys)
        self._ciphers = {key_id: self._ciphers.get(key_id) or AESGCM(key) for key_id, key in keys.items()}
        self._current = current
        self.source = source


def _check_keys(current: str, keys: Mapping[str, bytes], source: str) -> None:
    if current not in keys:
        raise PersonalKeyError(f"{source}: the current key {_show(current)} is not among the keys")
    for key_id, key in keys.items():
        if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
            raise PersonalKeyError(f"{source}: bad key id {_show(key_id)} (1–64 letters, digits, '_.:-')")
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise PersonalKeyError(f"{source}: key {key_id} is not {KEY_BYTES} bytes")


def _parse(text: str | bytes, source: str) -> tuple[str, dict[str, bytes]]:
    """Current id and keys of the JSON document; :class:`PersonalKeyError` (never quoting it) if malformed."""
    try:
        doc: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PersonalKeyError(f"{source}: not a JSON key document ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not isinstance(doc.get("current"), str):
        raise PersonalKeyError(f'{source}: expected {{"current": ID, "keys": {{ID: base64 key, ...}}}}')
    keys: dict[str, bytes] = {}
    for key_id, encoded in doc["keys"].items():
        if not _KEY_ID.fullmatch(key_id):
            raise PersonalKeyError(f"{source}: bad key id {_show(key_id)} (1–64 letters, digits, '_.:-')")
        try:
            if not isinstance(encoded, str):
                raise ValueError("not a string")
            keys[key_id] = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            raise PersonalKeyError(f"{source}: key {key_id} is not base64") from None
    _check_keys(doc["current"], keys, source)
    return doc["current"], keys


def _read_file(path: Path) -> tuple[str, dict[str, bytes]]:
    """Read and check the key file; FileNotFoundError passes through (the caller makes the file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PersonalKeyError(f"{path}: cannot read key file ({exc.strerror})") from exc
    try:
        info = os.fstat(fd)  # of the file opened, not of whatever the path names a moment later
        if not stat.S_ISREG(info.st_mode):
            raise PersonalKeyError(f"{path}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise PersonalKeyError(f"{path}: key file is readable by others (mode {mode:o}); chmod 600 it")
        data = os.read(fd, _MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise PersonalKeyError(f"{path}: cannot read key file ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if len(data) > _MAX_FILE_BYTES:
        raise PersonalKeyError(f"{path}: larger than {_MAX_FILE_BYTES} bytes; not a key file")
    return _parse(data, str(path))


def _create_file(path: Path) -> tuple[str, dict[str, bytes]]:
    """A first key, written without overwriting a file another process made meanwhile (then that one is used)."""
    key_id = new_key_id()
    keys = {key_id: secrets.token_bytes(KEY_BYTES)}
    try:
        _write_file(path, key_id, keys, replace=False)
    except FileExistsError:
        return _read_file(path)
    return key_id, keys


def _write_file(path: Path, current: str, keys: Mapping[str, bytes], *, replace: bool) -> None:
    """Write via a 0600 temporary file, fsync, then link (new file: FileExistsError if one appeared meanwhile) or
    rename (update), and fsync the directory: rows get sealed with a new key only once it is safely on disk."""
    doc = {"current": current, "keys": {k: base64.b64encode(v).decode() for k, v in sorted(keys.items())}}
    data = (json.dumps(doc, indent=2) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
        _fsync_directory(path.parent)
    except _Exists:
        raise FileExistsError(path) from None
    except OSError as exc:
        raise PersonalKeyError(f"{path}: cannot write key file ({exc.strerror or exc})") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


class _Exists(Exception):
    """The key file appeared while we made ours (another process won the race)."""


def _link_new(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # never overwrite a key file another process made meanwhile
    except FileExistsError:
        raise _Exists from None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Serialise writers of one key file (two ``keys rotate`` at once) on a lock file beside it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PersonalKeyError(f"{path}: cannot lock key file ({exc.strerror or exc})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _show(value: object) -> str:
    """A value for a message: repr, cut short (ids and field names only; never keys or plaintext)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

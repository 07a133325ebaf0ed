"""Numba's on-disk kernel cache, keyed by the source of the whole ``scoring`` package.

Numba reuses a cached kernel until the file that defines it changes. Our kernels inline helpers
and freeze constants from other modules (``features/layout.py``, ``wire/xxh3.py``,
``wire/reason_text.py``, ``features/batch.py`` …), so an edit there alone would leave stale
machine code running — wrong features, silently. Here the cache lives in a directory named by a
fingerprint of every source file of the package: any edit gives a fresh directory, and the
directories of other fingerprints are removed.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from numba.core import config as numba_config

log = logging.getLogger("fraudguard.scoring")

_PACKAGE = Path(__file__).resolve().parent
_DEFAULT_ROOT = _PACKAGE / "__pycache__" / "numba-kernels"


def source_fingerprint(package: Path = _PACKAGE) -> str:
    """SHA-256 (16 hex digits) over the relative path and bytes of every ``.py`` file below ``package``."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def use_source_keyed_cache() -> Path:
    """Point Numba's cache at ``<root>/<fingerprint>`` before any kernel is defined; ``<root>`` is
    ``NUMBA_CACHE_DIR`` when the user set one, else ``scoring/__pycache__/numba-kernels``. Returns the directory."""
    configured: str = numba_config.CACHE_DIR  # type: ignore[attr-defined]  # set at runtime by numba
    root = Path(configured) / _DEFAULT_ROOT.name if configured else _DEFAULT_ROOT
    target = root / source_fingerprint()
    numba_config.CACHE_DIR = str(target)  # type: ignore[attr-defined]
    _remove_others(root, target)
    return target


def _remove_others(root: Path, keep: Path) -> None:
    """Delete the caches of other source versions (best effort: a cache that cannot be removed costs disk only)."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry != keep and entry.is_dir():
            try:
                shutil.rmtree(entry)
            except OSError as exc:
                log.debug("cannot remove an old kernel cache", extra={"path": str(entry), "error": str(exc)})

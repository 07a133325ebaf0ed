"""The bundles in a models directory, and which one is promoted (served).

``models_dir/PROMOTED`` holds the promoted version id; it is replaced atomically, so a
reader sees the old id or the new one, never a mix.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from fraudguard.errors import BundleError
from scoring.model.bundle import ModelBundle, check_version, fsync_dir, load_bundle
from scoring.model.runtime import ActiveModel, ModelRuntime

PROMOTED_FILE = "PROMOTED"
_WARM_UP_REASONS = 3

log = logging.getLogger("fraudguard.scoring")


def list_bundles(models_dir: Path) -> list[ModelBundle]:
    """Every loadable bundle, newest first. A directory that does not load is skipped with a warning;
    hidden ones (a ``write_bundle`` in progress) are ignored."""
    try:
        candidates = [p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise BundleError(f"cannot list models directory {models_dir}: {exc}") from exc
    bundles = []
    for path in candidates:
        try:
            bundles.append(load_bundle(path))
        except BundleError as exc:
            log.warning("skipping unusable model bundle", extra={"bundle_path": str(path), "error": str(exc)})
    bundles.sort(key=lambda b: (b.manifest.created_at, b.manifest.version), reverse=True)
    return bundles


def promoted_version(models_dir: Path) -> str | None:
    """The promoted version id, or None if nothing was ever promoted; ``BundleError`` if the file is garbage."""
    path = models_dir / PROMOTED_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from exc
    try:
        return check_version(text.strip())
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc


def promote(models_dir: Path, version: str) -> ModelBundle:
    """Make ``version`` the served bundle. It is loaded first: a bad bundle is refused and PROMOTED is unchanged."""
    bundle = load_bundle(models_dir / check_version(version))
    target = models_dir / PROMOTED_FILE
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{PROMOTED_FILE}.", suffix=".tmp", dir=models_dir)
    except OSError as exc:
        raise BundleError(f"cannot promote {version} in {models_dir}: {exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(version + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, target)
        fsync_dir(models_dir)
    except OSError as exc:
        Path(temp_name).unlink(missing_ok=True)
        raise BundleError(f"cannot promote {version} in {models_dir}: {exc}") from exc
    log.info("model bundle promoted", extra={"model_version": version, "models_dir": str(models_dir)})
    return bundle


def load_promoted(models_dir: Path, threads: int = 1) -> ActiveModel:
    """Load the promoted bundle and its runtime; ``BundleError`` if there is none or it is bad."""
    version = promoted_version(models_dir)
    if version is None:
        raise BundleError(f"no promoted bundle in {models_dir}; run 'fraudguard models demo' or 'fraudguard train'")
    return activate(models_dir / version, threads)


def activate(path: Path, threads: int = 1) -> ActiveModel:
    """Load the bundle at ``path`` and its runtime, warmed up: the first request must not pay for
    onnxruntime's first-run allocations or for loading the Numba kernels from their cache."""
    bundle = load_bundle(path)
    runtime = ModelRuntime.load(bundle, threads)
    sample = np.zeros((1, runtime.n_features), dtype=np.float32)
    runtime.predict(sample)
    runtime.top_reasons(sample, min(_WARM_UP_REASONS, runtime.n_features))
    return ActiveModel(bundle, runtime, datetime.now(UTC))

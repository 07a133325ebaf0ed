"""The Numba kernel cache is keyed by every source file of ``scoring``, so no edit can leave stale kernels."""

from __future__ import annotations

from pathlib import Path

from numba.core import config as numba_config

import scoring
from scoring._kernel_cache import _remove_others, source_fingerprint


def _package(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "kernels.py").write_text("X = 1\n")
    (root / "sub" / "layout.py").write_text("WIDTH = 64\n")
    return root


def test_any_source_edit_changes_the_fingerprint(tmp_path: Path) -> None:
    package = _package(tmp_path / "pkg")
    before = source_fingerprint(package)
    assert source_fingerprint(package) == before
    (package / "sub" / "layout.py").write_text("WIDTH = 32\n")  # a module the kernels only import from
    edited = source_fingerprint(package)
    assert edited != before
    (package / "sub" / "layout.py").rename(package / "layout.py")  # same bytes, another place
    assert source_fingerprint(package) not in (before, edited)


def test_caches_of_other_sources_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "numba-kernels"
    keep, old = root / "aaaa", root / "bbbb"
    for d in (keep, old):
        (d / "features_x").mkdir(parents=True)
        (d / "features_x" / "k.nbi").write_bytes(b"x")
    _remove_others(root, keep)
    assert keep.is_dir() and not old.exists()
    _remove_others(tmp_path / "missing", keep)  # nothing there yet: no error


def test_the_package_uses_the_cache_of_its_own_sources() -> None:
    cache_dir = Path(numba_config.CACHE_DIR)  # type: ignore[attr-defined]
    assert cache_dir.name == source_fingerprint(Path(scoring.__file__).parent)
    assert cache_dir.parent.name == "numba-kernels"

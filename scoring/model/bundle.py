"""The model bundle: a directory ``<models_dir>/<version>/`` holding

- ``manifest.json``: version, creation time, feature schema, action thresholds, metrics,
  training-data fingerprint (``BundleManifest``);
- ``model.onnx``: the LightGBM model exported to ONNX (scored by onnxruntime);
- ``trees.npz``: the same trees as arrays (``TreeArrays``), for reason codes;
- ``model.lgb.txt`` (optional): the LightGBM booster as text, for retraining.

Bundles are written once, atomically, and never modified. The scorer refuses a bundle
whose feature schema differs from its kernels'.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from fraudguard.errors import BundleError
from fraudguard.text_checks import checked_version
from scoring.features.schema import FEATURE_NAMES, SCHEMA_VERSION
from scoring.model.trees import TreeArrays

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
TREES_FILE = "trees.npz"
BOOSTER_FILE = "model.lgb.txt"
BUNDLE_FORMAT = 1


def check_version(version: str) -> str:
    """``version`` if it is a valid bundle version id (also a safe directory name), else ``BundleError``. The rule
    is fraudguard's (:data:`fraudguard.text_checks.VERSION_PATTERN`), the one the model registry checks too."""
    return checked_version(version, BundleError)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Minimum scores of the action bands: score >= challenge → CHALLENGE, >= review → REVIEW, >= block → BLOCK."""

    challenge: float
    review: float
    block: float

    def __post_init__(self) -> None:
        values = (self.challenge, self.review, self.block)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise BundleError(f"thresholds must be finite numbers, got {values}")
        if not 0 < self.challenge <= self.review <= self.block <= 1:
            raise BundleError(f"thresholds must satisfy 0 < challenge <= review <= block <= 1, got "
                              f"challenge={self.challenge}, review={self.review}, block={self.block}")


@dataclass(frozen=True, slots=True)
class BundleManifest:
    """What a bundle is: its identity, the schema it was trained on, and how to act on its scores."""

    version: str
    created_at: datetime
    schema_version: str
    feature_names: tuple[str, ...]
    thresholds: Thresholds
    metrics: Mapping[str, float]
    training_data_fingerprint: str
    description: str = ""

    def __post_init__(self) -> None:
        check_version(self.version)
        if not isinstance(self.created_at, datetime) or self.created_at.utcoffset() is None:
            raise BundleError(f"created_at must be a timezone-aware datetime, got {self.created_at!r}")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        if not isinstance(self.feature_names, tuple | list) or not all(isinstance(n, str) for n in self.feature_names):
            raise BundleError("feature_names must be a sequence of strings")
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        if len(set(self.feature_names)) != len(self.feature_names):
            raise BundleError("feature_names has duplicates")
        metrics: dict[str, float] = {}
        for name, value in dict(self.metrics).items():
            if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                raise BundleError(f"metric {name!r} must be a finite number, got {value!r}")
            metrics[name] = float(value)
        object.__setattr__(self, "metrics", MappingProxyType(metrics))

    def to_json(self) -> str:
        return json.dumps({
            "bundle_format": BUNDLE_FORMAT,
            "version": self.version,
            "created_at": self.created_at.isoformat().replace("+00:00", "Z"),
            "schema_version": self.schema_version,
            "feature_names": list(self.feature_names),
            "thresholds": {"challenge": self.thresholds.challenge, "review": self.thresholds.review,
                           "block": self.thresholds.block},
            "metrics": dict(self.metrics),
            "training_data_fingerprint": self.training_data_fingerprint,
            "description": self.description,
        }, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> BundleManifest:
        """Parse ``to_json``'s output; ``BundleError`` naming ``source`` and the bad key."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{source}: not valid JSON: {exc}") from exc
        fields = _Fields(data, source)
        fmt = fields.get("bundle_format", int)
        if fmt != BUNDLE_FORMAT:
            raise BundleError(f"{source}: unsupported bundle_format {fmt} (this version reads {BUNDLE_FORMAT})")
        thresholds = _Fields(fields.get("thresholds", dict), source, "thresholds.")
        metrics = _Fields(fields.get("metrics", dict), source, "metrics.")
        version = fields.get("version", str)
        created_at = _parse_time(fields.get("created_at", str), source)
        schema_version = fields.get("schema_version", str)
        feature_names = tuple(fields.get_list("feature_names", str))
        fingerprint = fields.get("training_data_fingerprint", str)
        description = fields.get("description", str, default="")
        metric_values = {name: metrics.get_number(name) for name in metrics.names()}
        challenge, review, block = (thresholds.get_number(k) for k in ("challenge", "review", "block"))
        try:  # the checks of __post_init__, which do not know the source
            return cls(version, created_at, schema_version, feature_names, Thresholds(challenge, review, block),
                       metric_values, fingerprint, description)
        except BundleError as exc:
            raise BundleError(f"{source}: {exc}") from exc


class _Fields:
    """Typed access to a JSON object, with errors that name the key."""

    def __init__(self, data: object, source: str, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise BundleError(f"{source}: {prefix.rstrip('.') or 'manifest'} must be a JSON object")
        self._data, self._source, self._prefix = data, source, prefix

    def get(self, key: str, kind: type[Any], default: Any = ...) -> Any:
        if key not in self._data:
            if default is not ...:
                return default
            raise BundleError(f"{self._source}: missing key {self._prefix}{key!r}")
        value = self._data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BundleError(f"{self._source}: key {self._prefix}{key!r} must be a {kind.__name__}, "
                              f"got {type(value).__name__}")
        return value

    def names(self) -> list[str]:
        return list(self._data)

    def get_number(self, key: str) -> float:
        value = self.get(key, object)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BundleError(f"{self._source}: key {self._prefix}{key!r} must be a number, got {type(value).__name__}")
        return float(value)

    def get_list(self, key: str, kind: type[Any]) -> list[Any]:
        values = self.get(key, list)
        if not all(isinstance(v, kind) for v in values):
            raise BundleError(f"{self._source}: key {self._prefix}{key!r} must be a list of {kind.__name__}")
        return list(values)


def _parse_time(text: str, source: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BundleError(f"{source}: key 'created_at' is not an ISO-8601 time: {text!r}") from exc
    if parsed.utcoffset() is None:
        raise BundleError(f"{source}: key 'created_at' must carry a timezone, got {text!r}")
    return parsed


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """A bundle directory, validated by ``load_bundle``."""

    path: Path
    manifest: BundleManifest

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def trees_path(self) -> Path:
        return self.path / TREES_FILE

    @property
    def booster_path(self) -> Path:
        """The LightGBM text model; may not exist (it is optional)."""
        return self.path / BOOSTER_FILE


def write_bundle(models_dir: Path, manifest: BundleManifest, onnx_model: bytes, trees: TreeArrays,
                 booster_text: str | None = None, extra_files: Mapping[str, bytes] | None = None) -> ModelBundle:
    """Write ``models_dir/<manifest.version>/`` atomically: a temporary directory, fsync, rename.

    ``extra_files``: more files by relative path (e.g. ``training.json``, ``report/report.html``);
    they may not replace the bundle's own files or leave the bundle directory.
    Refuses (``BundleError``) an existing version, an empty ONNX model, trees whose feature
    count differs from the manifest's, and trees that treat zero as missing (the ONNX export
    does not reproduce LightGBM's ``zero_as_missing``). On failure nothing is left behind.
    """
    _check_contents(manifest, onnx_model, trees)
    extras = _check_extra_files(extra_files or {})
    final = models_dir / manifest.version
    if final.exists():
        raise BundleError(f"bundle {manifest.version} already exists in {models_dir}")
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{manifest.version}.", suffix=".tmp", dir=models_dir))
    except OSError as exc:
        raise BundleError(f"cannot write bundle in {models_dir}: {exc}") from exc
    try:
        _write_file(staging / MANIFEST_FILE, manifest.to_json().encode())
        _write_file(staging / ONNX_FILE, onnx_model)
        _write_file(staging / TREES_FILE, trees.to_bytes())
        if booster_text is not None:
            _write_file(staging / BOOSTER_FILE, booster_text.encode())
        for relative, data in extras.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            _write_file(staging / relative, data)
        for folder in {(staging / relative).parent for relative in extras} - {staging}:
            fsync_dir(folder)
        staging.chmod(0o755)
        fsync_dir(staging)
        if final.exists():  # re-check: another writer may have finished meanwhile
            raise BundleError(f"bundle {manifest.version} already exists in {models_dir}")
        staging.rename(final)
        fsync_dir(models_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise BundleError(f"cannot write bundle {manifest.version} in {models_dir}: {exc}") from exc
        raise
    return ModelBundle(final, manifest)


def _check_extra_files(files: Mapping[str, bytes]) -> dict[PurePosixPath, bytes]:
    own = {MANIFEST_FILE, ONNX_FILE, TREES_FILE, BOOSTER_FILE}
    out: dict[PurePosixPath, bytes] = {}
    for name, data in files.items():
        path = PurePosixPath(name)
        if path.is_absolute() or not path.parts or ".." in path.parts or str(path) in own or "\\" in name:
            raise BundleError(f"extra bundle file {name!r} must be a relative path inside the bundle, not one of "
                              f"{sorted(own)}")
        out[path] = bytes(data)
    return out


def _check_contents(manifest: BundleManifest, onnx_model: bytes, trees: TreeArrays) -> None:
    if not onnx_model:
        raise BundleError("the ONNX model is empty")
    if trees.n_features != len(manifest.feature_names):
        raise BundleError(f"trees use {trees.n_features} features but the manifest names {len(manifest.feature_names)}")
    if trees.uses_zero_as_missing:
        raise BundleError("the trees treat zero as missing (zero_as_missing=true), which the ONNX export does not "
                          "reproduce; train with zero_as_missing=false")


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_bundle(path: Path) -> ModelBundle:
    """Read and check a bundle directory against the feature kernels; ``BundleError`` says what is wrong."""
    manifest_path = path / MANIFEST_FILE
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read bundle manifest {manifest_path}: {exc}") from exc
    manifest = BundleManifest.from_json(text, str(manifest_path))
    if manifest.version != path.name:
        raise BundleError(f"{manifest_path}: version {manifest.version!r} differs from its directory name "
                          f"{path.name!r}")
    for name in (ONNX_FILE, TREES_FILE):
        if not (path / name).is_file():
            raise BundleError(f"bundle {path} has no {name}")
    _check_schema(manifest, path)
    return ModelBundle(path, manifest)


def _check_schema(manifest: BundleManifest, path: Path) -> None:
    if manifest.feature_names != FEATURE_NAMES:
        raise BundleError(f"bundle {path} was trained on other features than the scorer computes: "
                          f"{_first_difference(manifest.feature_names, FEATURE_NAMES)}; retrain it")
    if manifest.schema_version != SCHEMA_VERSION:
        raise BundleError(f"bundle {path} has feature schema {manifest.schema_version}, the scorer {SCHEMA_VERSION} "
                          "(same names, but a feature's meaning changed); retrain it")


def _first_difference(bundle: tuple[str, ...], kernels: tuple[str, ...]) -> str:
    for i, (ours, theirs) in enumerate(zip(bundle, kernels, strict=False)):
        if ours != theirs:
            return f"feature {i} is {ours!r} in the bundle but {theirs!r} in the scorer"
    if len(bundle) < len(kernels):
        return f"the bundle has {len(bundle)} features, the scorer {len(kernels)} (missing {kernels[len(bundle)]!r})"
    return f"the bundle has {len(bundle)} features, the scorer {len(kernels)} (extra {bundle[len(kernels)]!r})"

"""Real (tiny) LightGBM models and bundles for the model tests and benchmarks. No mocks."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnxmltools
from onnxmltools.convert.common.data_types import FloatTensorType

from scoring.features.schema import FEATURE_NAMES, N_FEATURES, SCHEMA_VERSION
from scoring.model import BundleManifest, ModelBundle, Thresholds, TreeArrays, trees_from_booster, write_bundle
from scoring.model.registry import PROMOTED_FILE

BASE_TIME = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)


def random_features(n: int, seed: int, n_features: int = N_FEATURES, nan_rate: float = 0.08,
                    zero_rate: float = 0.08) -> npt.NDArray[np.float32]:
    """Normal values with NaNs, exact zeros and a few signed tiny values sprinkled in."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    x[rng.random(x.shape) < zero_rate] = 0.0
    x[rng.random(x.shape) < 0.01] = np.float32(-1e-36)
    x[rng.random(x.shape) < nan_rate] = np.nan
    return x


@cache
def train_booster(seed: int = 0, n_trees: int = 20, num_leaves: int = 15, n_features: int = N_FEATURES,
                  nan_rate: float = 0.08, rows: int = 3000, **params: Any) -> lgb.Booster:
    """A binary booster on random data whose label depends on a few features (so trees are not stumps)."""
    x = random_features(rows, seed, n_features, nan_rate=nan_rate)
    rng = np.random.default_rng(seed + 1)
    signal = np.nan_to_num(x[:, 0]) + 0.8 * np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) - np.isnan(x[:, 3])
    y = (signal + rng.normal(size=rows) > 1.0).astype(np.int32)
    parameters = {"objective": "binary", "num_leaves": num_leaves, "min_data_in_leaf": 5, "verbose": -1,
                  "num_threads": 1, "deterministic": True, "seed": seed, **params}
    return lgb.train(parameters, lgb.Dataset(x, y), num_boost_round=n_trees)


@cache
def onnx_bytes(booster: lgb.Booster) -> bytes:
    n_features = booster.num_feature()
    model = onnxmltools.convert_lightgbm(booster, initial_types=[("input", FloatTensorType([None, n_features]))],
                                         zipmap=False)
    return bytes(model.SerializeToString())


@cache
def tree_arrays(booster: lgb.Booster) -> TreeArrays:
    return trees_from_booster(booster)


def make_manifest(version: str, **changes: Any) -> BundleManifest:
    manifest = BundleManifest(
        version=version,
        created_at=BASE_TIME,
        schema_version=SCHEMA_VERSION,
        feature_names=FEATURE_NAMES,
        thresholds=Thresholds(0.3, 0.6, 0.9),
        metrics={"auc": 0.91, "average_precision": 0.42},
        training_data_fingerprint="sha256:feedface",
        description="test bundle",
    )
    return dataclasses.replace(manifest, **changes)


def make_bundle(models_dir: Path, version: str, booster: lgb.Booster | None = None, with_booster_text: bool = False,
                **manifest_changes: Any) -> ModelBundle:
    """Write a bundle of ``booster`` (default: the small shared one) under ``models_dir``."""
    booster = booster or train_booster()
    text = booster.model_to_string() if with_booster_text else None
    return write_bundle(models_dir, make_manifest(version, **manifest_changes), onnx_bytes(booster),
                        tree_arrays(booster), text)


def newer(minutes: int) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def write_promoted(models_dir: Path, content: str) -> None:
    """Replace PROMOTED directly, as a process that skips ``promote``'s checks (or another schema's) would."""
    temp = models_dir / f".{PROMOTED_FILE}.test"
    temp.write_text(content)
    os.replace(temp, models_dir / PROMOTED_FILE)

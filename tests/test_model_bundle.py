"""Bundle format, tree arrays and the registry of bundles."""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fraudguard.errors import BundleError
from scoring.features.schema import FEATURE_NAMES, SCHEMA_VERSION
from scoring.model import (
    PROMOTED_FILE,
    BundleManifest,
    Thresholds,
    TreeArrays,
    list_bundles,
    load_bundle,
    load_promoted,
    promote,
    promoted_version,
    trees_from_booster,
    write_bundle,
)
from tests._model_helpers import (
    make_bundle,
    make_manifest,
    newer,
    onnx_bytes,
    train_booster,
    tree_arrays,
    write_promoted,
)

# --- manifest -----------------------------------------------------------------------------


def test_manifest_json_round_trip() -> None:
    manifest = make_manifest("20261123T101500Z-3f2a1c")
    text = manifest.to_json()
    assert json.loads(text)["created_at"] == "2026-11-23T10:15:00Z"
    assert BundleManifest.from_json(text, "m.json") == manifest


def test_manifest_normalises_created_at_to_utc_and_metrics_are_read_only() -> None:
    paris = timezone(timedelta(hours=1))
    manifest = make_manifest("v1", created_at=datetime(2026, 11, 23, 11, 15, tzinfo=paris))
    assert manifest.created_at.utcoffset() == timedelta(0)
    assert manifest.created_at.hour == 10
    with pytest.raises(TypeError):
        manifest.metrics["auc"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize("changes, message", [
    ({"version": "../escape"}, "bad bundle version"),
    ({"version": ""}, "bad bundle version"),
    ({"version": "x" * 65}, "bad bundle version"),
    ({"created_at": datetime(2026, 11, 23)}, "timezone-aware"),
    ({"metrics": {"auc": math.nan}}, "metric 'auc'"),
    ({"feature_names": ("a", "a")}, "duplicates"),
])
def test_manifest_refuses_bad_values(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        make_manifest(**{"version": "v1", **changes})


@pytest.mark.parametrize("values", [(0.0, 0.5, 0.9), (0.6, 0.5, 0.9), (0.3, 0.95, 0.9), (0.3, 0.5, 1.1),
                                    (math.nan, 0.5, 0.9), (-0.1, 0.5, 0.9)])
def test_thresholds_must_be_ordered_within_zero_one(values: tuple[float, float, float]) -> None:
    with pytest.raises(BundleError, match="threshold"):
        Thresholds(*values)


def test_thresholds_may_coincide() -> None:
    assert Thresholds(0.5, 0.5, 1.0).block == 1.0


def _manifest_dict() -> dict[str, object]:
    loaded: dict[str, object] = json.loads(make_manifest("v1").to_json())
    return loaded


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("schema_version"), "'schema_version'"),
    (lambda d: d.update(version=3), "'version'"),
    (lambda d: d.update(feature_names=["a", 1]), "'feature_names'"),
    (lambda d: d.update(thresholds={"challenge": 0.1, "review": 0.2}), "thresholds.'block'"),
    (lambda d: d.update(thresholds={"challenge": 0.1, "review": "high", "block": 0.3}), "thresholds.'review'"),
    (lambda d: d.update(metrics={"auc": "good"}), "metrics.'auc'"),
    (lambda d: d.update(created_at="yesterday"), "'created_at'"),
    (lambda d: d.update(created_at="2026-11-23T10:15:00"), "'created_at' must carry a timezone"),
    (lambda d: d.update(bundle_format=99), "bundle_format"),
])
def test_manifest_from_json_names_the_bad_key(edit: object, key: str) -> None:
    data = _manifest_dict()
    edit(data)  # type: ignore[operator]
    with pytest.raises(BundleError, match=r"^m\.json: .*" + re.escape(key)):
        BundleManifest.from_json(json.dumps(data), "m.json")


def test_manifest_from_json_refuses_corrupt_json_and_bad_thresholds() -> None:
    with pytest.raises(BundleError, match=r"m\.json: not valid JSON"):
        BundleManifest.from_json('{"version": "v1"', "m.json")
    with pytest.raises(BundleError, match=r"m\.json: manifest must be a JSON object"):
        BundleManifest.from_json("[]", "m.json")
    data = _manifest_dict()
    data["thresholds"] = {"challenge": 0.9, "review": 0.5, "block": 0.95}
    with pytest.raises(BundleError, match=r"m\.json: thresholds must satisfy"):
        BundleManifest.from_json(json.dumps(data), "m.json")


# --- writing and loading bundles ----------------------------------------------------------


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    booster = train_booster()
    written = make_bundle(tmp_path, "v1", with_booster_text=True)
    assert sorted(p.name for p in written.path.iterdir()) == ["manifest.json", "model.lgb.txt", "model.onnx",
                                                               "trees.npz"]
    loaded = load_bundle(tmp_path / "v1")
    assert loaded == written
    assert loaded.onnx_path.read_bytes() == onnx_bytes(booster)
    assert loaded.booster_path.read_text() == booster.model_to_string()
    trees = TreeArrays.load(loaded.trees_path)
    original = tree_arrays(booster)
    for name in ("feature", "threshold", "left", "right", "default_left", "missing_type", "value", "tree_offsets"):
        np.testing.assert_array_equal(getattr(trees, name), getattr(original, name))
    assert trees.n_features == original.n_features
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no staging directory left behind


def test_write_refuses_an_existing_version_and_keeps_it(tmp_path: Path) -> None:
    make_bundle(tmp_path, "v1", description="first")
    with pytest.raises(BundleError, match="already exists"):
        make_bundle(tmp_path, "v1", description="second")
    assert load_bundle(tmp_path / "v1").manifest.description == "first"


def test_failed_write_leaves_no_partial_directory(tmp_path: Path) -> None:
    booster = train_booster()
    unencodable = "tree\ud800"  # a lone surrogate cannot be written as UTF-8: fails after the model files
    with pytest.raises(UnicodeEncodeError):
        write_bundle(tmp_path, make_manifest("v1"), onnx_bytes(booster), tree_arrays(booster), unencodable)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_inconsistent_contents(tmp_path: Path) -> None:
    booster = train_booster()
    with pytest.raises(BundleError, match="ONNX model is empty"):
        write_bundle(tmp_path, make_manifest("v1"), b"", tree_arrays(booster))
    narrow = train_booster(n_features=10)
    with pytest.raises(BundleError, match="trees use 10 features but the manifest names"):
        write_bundle(tmp_path, make_manifest("v1"), onnx_bytes(narrow), tree_arrays(narrow))
    zero_missing = train_booster(nan_rate=0.0, zero_as_missing=True)
    with pytest.raises(BundleError, match="zero_as_missing"):
        write_bundle(tmp_path, make_manifest("v1"), onnx_bytes(zero_missing), tree_arrays(zero_missing))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing", ["manifest.json", "model.onnx", "trees.npz"])
def test_load_refuses_a_bundle_with_a_missing_file(tmp_path: Path, missing: str) -> None:
    bundle = make_bundle(tmp_path, "v1")
    (bundle.path / missing).unlink()
    with pytest.raises(BundleError, match=missing):
        load_bundle(bundle.path)


def test_load_refuses_corrupt_manifest(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "v1")
    (bundle.path / "manifest.json").write_text('{"version": ')
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle.path)


def test_load_refuses_wrong_schema_version(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "v1", schema_version="0123456789abcdef")
    with pytest.raises(BundleError, match=f"feature schema 0123456789abcdef, the scorer {SCHEMA_VERSION}"):
        load_bundle(bundle.path)


def test_load_refuses_permuted_features_naming_the_first_difference(tmp_path: Path) -> None:
    names = list(FEATURE_NAMES)
    names[5], names[7] = names[7], names[5]
    bundle = make_bundle(tmp_path, "v1", feature_names=tuple(names))
    with pytest.raises(BundleError, match=f"feature 5 is '{FEATURE_NAMES[7]}' in the bundle but "
                                          f"'{FEATURE_NAMES[5]}' in the scorer"):
        load_bundle(bundle.path)


def test_load_refuses_a_bundle_missing_a_feature(tmp_path: Path) -> None:
    booster = train_booster(n_features=len(FEATURE_NAMES) - 1)
    manifest = make_manifest("v1", feature_names=FEATURE_NAMES[:-1])
    write_bundle(tmp_path, manifest, onnx_bytes(booster), tree_arrays(booster))
    with pytest.raises(BundleError, match=f"missing '{FEATURE_NAMES[-1]}'"):
        load_bundle(tmp_path / "v1")


def test_load_refuses_a_renamed_bundle_directory(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "v1")
    renamed = bundle.path.rename(tmp_path / "v2")
    with pytest.raises(BundleError, match="differs from its directory name"):
        load_bundle(renamed)


# --- tree arrays ----------------------------------------------------------------------------


def test_trees_from_booster_layout() -> None:
    booster = train_booster()
    trees = trees_from_booster(booster)
    assert trees.n_trees == booster.num_trees()
    assert trees.n_features == booster.num_feature()
    roots = trees.tree_offsets[:-1]
    assert np.all(trees.feature[roots] >= 0)  # no stumps in this model
    dump = booster.dump_model()["tree_info"][0]["tree_structure"]
    assert trees.feature[0] == dump["split_feature"]
    assert trees.threshold[0] == dump["threshold"]
    assert trees.value[0] == dump["internal_value"]
    assert trees.feature[trees.right[0]] == dump["right_child"].get("split_feature", -1)


def test_trees_from_booster_refuses_multiclass() -> None:
    booster = train_booster(objective="multiclass", num_class=3)
    with pytest.raises(BundleError, match="only binary"):
        trees_from_booster(booster)


def test_tree_arrays_refuse_links_that_leave_the_tree(tmp_path: Path) -> None:
    trees = tree_arrays(train_booster())
    right = trees.right.copy()
    right[0] = trees.tree_offsets[1] + 1  # into the next tree
    path = tmp_path / "trees.npz"
    np.savez(path, n_features=np.int64(trees.n_features), feature=trees.feature, threshold=trees.threshold,
             left=trees.left, right=right, default_left=trees.default_left, missing_type=trees.missing_type,
             value=trees.value, tree_offsets=trees.tree_offsets)
    with pytest.raises(BundleError, match="right child lies outside its own subtree"):
        TreeArrays.load(path)


def test_tree_arrays_refuse_garbage_and_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "trees.npz"
    path.write_bytes(b"PK\x03\x04 certainly not a zip")
    with pytest.raises(BundleError, match=r"not a readable \.npz"):
        TreeArrays.load(path)
    np.savez(path, feature=np.zeros(3, dtype=np.int32))
    with pytest.raises(BundleError, match="missing arrays"):
        TreeArrays.load(path)


# --- registry -------------------------------------------------------------------------------


def test_list_promote_and_promoted_version(tmp_path: Path) -> None:
    assert list_bundles(tmp_path / "absent") == []
    assert promoted_version(tmp_path) is None
    make_bundle(tmp_path, "old", created_at=newer(0))
    make_bundle(tmp_path, "new", created_at=newer(5))
    assert [b.manifest.version for b in list_bundles(tmp_path)] == ["new", "old"]
    assert promote(tmp_path, "old").manifest.version == "old"
    assert promoted_version(tmp_path) == "old"
    promote(tmp_path, "new")
    assert promoted_version(tmp_path) == "new"
    assert (tmp_path / PROMOTED_FILE).read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PROMOTED", "new", "old"]  # no temp files left


def test_list_skips_unusable_bundles_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_bundle(tmp_path, "good")
    make_bundle(tmp_path, "bad", schema_version="0000000000000000")
    (tmp_path / "stray").mkdir()
    with caplog.at_level(logging.WARNING, logger="fraudguard.scoring"):
        assert [b.manifest.version for b in list_bundles(tmp_path)] == ["good"]
    skipped = sorted(Path(r.__dict__["bundle_path"]).name for r in caplog.records)
    assert skipped == ["bad", "stray"]


def test_promote_refuses_a_bad_bundle_and_keeps_promoted(tmp_path: Path) -> None:
    make_bundle(tmp_path, "good")
    make_bundle(tmp_path, "bad", schema_version="0000000000000000")
    promote(tmp_path, "good")
    with pytest.raises(BundleError, match="feature schema"):
        promote(tmp_path, "bad")
    with pytest.raises(BundleError, match="cannot read bundle manifest"):
        promote(tmp_path, "absent")
    with pytest.raises(BundleError, match="bad bundle version"):
        promote(tmp_path, "../good")
    assert promoted_version(tmp_path) == "good"


def test_promoted_version_refuses_garbage(tmp_path: Path) -> None:
    write_promoted(tmp_path, "not a version!\n")
    with pytest.raises(BundleError, match="PROMOTED: bad bundle version"):
        promoted_version(tmp_path)


def test_load_promoted(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no promoted bundle in .*fraudguard models demo"):
        load_promoted(tmp_path)
    make_bundle(tmp_path, "v1")
    promote(tmp_path, "v1")
    active = load_promoted(tmp_path, threads=1)
    assert active.bundle.manifest.version == "v1"
    assert active.loaded_at.tzinfo is not None
    assert active.runtime.predict(np.zeros((2, len(FEATURE_NAMES)), dtype=np.float32)).shape == (2,)

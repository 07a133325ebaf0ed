"""``fraudguard models``: demo, list, show, promote — on one small demo bundle shared by the session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fraudguard.exit_codes import ExitCode
from scoring.features import N_FEATURES
from scoring.model import PROMOTED_FILE, ModelRuntime, list_bundles, load_bundle, promoted_version
from trainer.models_cli import main

DEMO_TRANSACTIONS = "20000"


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding one small promoted demo bundle, built once per session through the CLI."""
    data = tmp_path_factory.mktemp("demo") / "data"
    assert main(["demo", "--data-dir", str(data), "--transactions", DEMO_TRANSACTIONS]) == ExitCode.SUCCESS
    return data


@pytest.fixture
def data_dir(tmp_path: Path, demo_data_dir: Path) -> Path:
    """A private copy of the demo data directory, free to change."""
    copy = tmp_path / "data"
    shutil.copytree(demo_data_dir, copy)
    return copy


def promoted(data_dir: Path) -> str:
    version = promoted_version(data_dir / "models")
    assert version is not None
    return version


def add_copy(data_dir: Path, version: str, new_version: str) -> None:
    """A second bundle: the same files under another version id."""
    models = data_dir / "models"
    shutil.copytree(models / version, models / new_version)
    manifest = models / new_version / "manifest.json"
    data = json.loads(manifest.read_text())
    data["version"] = new_version
    data["created_at"] = "2020-01-01T00:00:00Z"
    manifest.write_text(json.dumps(data))


def test_demo_writes_a_promoted_bundle_that_scores(demo_data_dir: Path) -> None:
    bundle = load_bundle(demo_data_dir / "models" / promoted(demo_data_dir))
    m = bundle.manifest
    assert {"auc", "average_precision", "n_train", "fraud_rate"} <= set(m.metrics)
    assert m.metrics["auc"] > 0.95 and m.metrics["n_train"] > 0
    assert len(m.training_data_fingerprint) == 64
    assert 0 < m.thresholds.challenge <= m.thresholds.review <= m.thresholds.block <= 1
    assert bundle.booster_path.is_file()
    p = ModelRuntime.load(bundle).predict(np.zeros((3, N_FEATURES), np.float32))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))


def test_demo_if_missing_does_nothing_when_a_bundle_is_promoted(data_dir: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (data_dir / "models").iterdir())
    assert main(["demo", "--data-dir", str(data_dir), "--if-missing"]) == ExitCode.SUCCESS
    assert "nothing to do" in capsys.readouterr().out
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == before


def test_demo_if_missing_replaces_an_unusable_promoted_bundle(data_dir: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    old = promoted(data_dir)
    (data_dir / "models" / old / "manifest.json").write_text("{ not json")
    args = ["demo", "--data-dir", str(data_dir), "--if-missing", "--transactions", DEMO_TRANSACTIONS, "--seed", "8"]
    assert main(args) == ExitCode.SUCCESS
    assert "unusable" in capsys.readouterr().err
    assert promoted(data_dir) != old
    load_bundle(data_dir / "models" / promoted(data_dir))


def test_list_marks_the_promoted_bundle(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    version = promoted(data_dir)
    add_copy(data_dir, version, "older-copy")
    assert main(["list", "--data-dir", str(data_dir)]) == ExitCode.SUCCESS
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["VERSION", "CREATED", "(UTC)", "AUC", "AP"]
    assert lines[1].startswith(f"* {version} ") and lines[2].startswith("  older-copy ")  # newest first
    auc = load_bundle(data_dir / "models" / version).manifest.metrics["auc"]
    assert f"{auc:.4f}" in lines[1]


def test_list_of_an_empty_directory_says_how_to_make_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--data-dir", str(tmp_path)]) == ExitCode.SUCCESS
    assert "fraudguard models demo" in capsys.readouterr().out


def test_show_prints_the_manifest(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    version = promoted(data_dir)
    assert main(["show", version, "--data-dir", str(data_dir)]) == ExitCode.SUCCESS
    text = capsys.readouterr().out
    assert f"version:      {version}  (promoted)" in text
    assert "thresholds:   challenge >= " in text and "average_precision" in text
    assert "training:" in text and "synthetic data" in text and "1 candidate(s)" in text  # from training.json
    assert main(["show", version, "--data-dir", str(data_dir), "--json"]) == ExitCode.SUCCESS
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["version"] == version and "auc" in manifest["metrics"]


def test_promote_switches_the_served_bundle(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_copy(data_dir, promoted(data_dir), "second")
    assert main(["promote", "second", "--data-dir", str(data_dir)]) == ExitCode.SUCCESS
    assert "promoted second" in capsys.readouterr().out
    assert promoted(data_dir) == "second"


@pytest.mark.parametrize("command", ["show", "promote"])
def test_an_unknown_version_exits_30_with_a_clear_message(data_dir: Path, command: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    before = (data_dir / "models" / PROMOTED_FILE).read_text()
    assert main([command, "no-such-model", "--data-dir", str(data_dir)]) == ExitCode.UNKNOWN_MODEL_VERSION
    err = capsys.readouterr().err
    assert "no model bundle 'no-such-model'" in err and "fraudguard models list" in err
    assert (data_dir / "models" / PROMOTED_FILE).read_text() == before


def test_a_bad_bundle_exits_31_and_is_not_promoted(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    add_copy(data_dir, promoted(data_dir), "broken")
    (data_dir / "models" / "broken" / "model.onnx").unlink()
    before = promoted(data_dir)
    assert main(["promote", "broken", "--data-dir", str(data_dir)]) == ExitCode.BAD_MODEL_BUNDLE
    assert "model.onnx" in capsys.readouterr().err
    assert promoted(data_dir) == before
    assert [b.manifest.version for b in list_bundles(data_dir / "models")] == [before]


def test_data_dir_defaults_to_the_environment(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAUDGUARD_DATA_DIR", str(data_dir))
    assert main(["list"]) == ExitCode.SUCCESS
    assert promoted(data_dir) in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["bogus"], ["show"], ["demo", "--transactions", "0"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.USAGE
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["list", "--help"], ["show", "--help"],
                                  ["promote", "--help"]])
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.SUCCESS
    assert "--data-dir" in capsys.readouterr().out or argv == ["--help"]

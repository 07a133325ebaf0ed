"""``fraudguard models``: demo, list, show, promote, rollback, history — on one small demo bundle shared by the
session, with the promotions recorded in (and audited by) each real PostgreSQL server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest

from fraudguard.audit import list_audit, verify_audit
from fraudguard.db import EmbeddedPostgres
from fraudguard.db.dsn import with_database
from fraudguard.exit_codes import ExitCode
from scoring.features import N_FEATURES
from scoring.model import PROMOTED_FILE, ModelRuntime, list_bundles, load_bundle, promoted_version
from tests.pg import PREFIX, execute
from trainer.models_cli import DEMO_ACTOR, main

DEMO_TRANSACTIONS = "20000"
UNREACHABLE = "postgresql://nobody@127.0.0.1:1/x"


@pytest.fixture(scope="session")
def demo_dsn(embedded_server: EmbeddedPostgres) -> Iterator[str]:
    """A database of its own for the session's demo bundle (its promotion is recorded there)."""
    name = f"{PREFIX}_models_demo"
    asyncio.run(execute(embedded_server.admin_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(embedded_server.admin_dsn, name)
    finally:
        asyncio.run(execute(embedded_server.admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory, demo_dsn: str) -> Path:
    """A data directory holding one small promoted demo bundle, built once per session through the CLI."""
    data = tmp_path_factory.mktemp("demo") / "data"
    argv = ["demo", "--data-dir", str(data), "--transactions", DEMO_TRANSACTIONS, "--database-url", demo_dsn]
    assert main(argv) == ExitCode.SUCCESS
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


async def rows(dsn: str, query: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return [dict(r) for r in await conn.fetch(query)]
    finally:
        await conn.close()


async def audit(dsn: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The audit log as (action, subject, actor, details), after checking its chain."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        assert (await verify_audit(conn)).ok
        return [(e.action, e.subject, e.actor, dict(e.details)) for e in await list_audit(conn)]
    finally:
        await conn.close()


def _run(monkeypatch: pytest.MonkeyPatch, dsn: str, argv: tuple[str, ...]) -> int:
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", dsn)
    return main(list(argv))


async def cli(monkeypatch: pytest.MonkeyPatch, dsn: str, *argv: str) -> int:
    """``fraudguard models ARGV`` with the database at ``dsn`` (in a thread: the command runs its own event loop)."""
    return await asyncio.to_thread(_run, monkeypatch, dsn, argv)


def onnx_sha256(data_dir: Path, version: str) -> str:
    return hashlib.sha256((data_dir / "models" / version / "model.onnx").read_bytes()).hexdigest()


def test_demo_writes_a_promoted_bundle_that_scores(demo_data_dir: Path, demo_dsn: str) -> None:
    bundle = load_bundle(demo_data_dir / "models" / promoted(demo_data_dir))
    m = bundle.manifest
    assert {"auc", "average_precision", "n_train", "fraud_rate"} <= set(m.metrics)
    assert m.metrics["auc"] > 0.95 and m.metrics["n_train"] > 0
    assert len(m.training_data_fingerprint) == 64
    assert 0 < m.thresholds.challenge <= m.thresholds.review <= m.thresholds.block <= 1
    assert bundle.booster_path.is_file()
    p = ModelRuntime.load(bundle).predict(np.zeros((3, N_FEATURES), np.float32))
    assert p.shape == (3,) and np.all((p >= 0) & (p <= 1))
    assert sorted(p.name for p in (demo_data_dir / "models").iterdir()) == sorted([m.version, PROMOTED_FILE])
    [registered] = asyncio.run(rows(demo_dsn, "SELECT version, origin, encode(model_sha256, 'hex') AS sha "
                                              "FROM model_bundles"))
    assert registered == {"version": m.version, "origin": "demo", "sha": onnx_sha256(demo_data_dir, m.version)}
    [(action, subject, actor, details)] = asyncio.run(audit(demo_dsn))
    assert (action, subject, actor, details["previous"]) == ("model.promote", m.version, DEMO_ACTOR, None)


def test_demo_if_missing_does_nothing_when_a_bundle_is_promoted(data_dir: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (data_dir / "models").iterdir())
    assert main(["demo", "--data-dir", str(data_dir), "--if-missing"]) == ExitCode.SUCCESS
    assert "nothing to do" in capsys.readouterr().out
    assert sorted(p.name for p in (data_dir / "models").iterdir()) == before


async def test_demo_if_missing_replaces_an_unusable_promoted_bundle(data_dir: Path, dsn: str,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    old = promoted(data_dir)
    (data_dir / "models" / old / "manifest.json").write_text("{ not json")
    args = ["demo", "--data-dir", str(data_dir), "--if-missing", "--transactions", DEMO_TRANSACTIONS, "--seed", "8"]
    assert await cli(monkeypatch, dsn, *args) == ExitCode.SUCCESS
    assert "unusable" in capsys.readouterr().err
    new = promoted(data_dir)
    assert new != old
    load_bundle(data_dir / "models" / new)
    [(action, subject, actor, details)] = await audit(dsn)  # the unusable one could not be registered
    assert (action, subject, actor, details["previous"]) == ("model.promote", new, DEMO_ACTOR, None)


def test_demo_with_an_unreachable_database_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["demo", "--data-dir", str(tmp_path), "--transactions", DEMO_TRANSACTIONS, "--database-url", UNREACHABLE,
            "--db-connect-timeout-s", "2"]
    assert main(args) == ExitCode.DATABASE_UNREACHABLE
    assert "127.0.0.1" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


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


async def test_promote_registers_records_audits_then_switches(data_dir: Path, dsn: str,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    first = promoted(data_dir)
    add_copy(data_dir, first, "second")
    code = await cli(monkeypatch, dsn, "promote", "second", "--data-dir", str(data_dir), "--actor", "ops:alice",
                     "--note", "better AP — ticket #42")
    assert code == ExitCode.SUCCESS
    assert "promoted second" in capsys.readouterr().out
    assert promoted(data_dir) == "second"
    bundles = await rows(dsn, "SELECT version, origin, encode(model_sha256, 'hex') AS sha, thresholds::text, "
                              "location FROM model_bundles ORDER BY version")
    assert [(b["version"], b["origin"], b["sha"]) for b in bundles] == [
        (first, "demo", onnx_sha256(data_dir, first)), ("second", "trained", onnx_sha256(data_dir, "second"))]
    assert bundles[1]["location"] == str((data_dir / "models" / "second").resolve())
    assert json.loads(bundles[1]["thresholds"])["block"] == load_bundle(data_dir / "models" / "second").manifest \
        .thresholds.block
    [promotion] = await rows(dsn, "SELECT id, version, previous_version, actor, note FROM model_promotions")
    assert promotion == {"id": promotion["id"], "version": "second", "previous_version": first, "actor": "ops:alice",
                         "note": "better AP — ticket #42"}
    assert await audit(dsn) == [("model.promote", "second", "ops:alice", {
        "previous": first, "note": "better AP — ticket #42", "promotion_id": promotion["id"],
        "model_sha256": onnx_sha256(data_dir, "second")})]


async def test_promoting_the_served_bundle_records_nothing(data_dir: Path, dsn: str, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli(monkeypatch, dsn, "promote", promoted(data_dir), "--data-dir", str(data_dir)) == ExitCode.SUCCESS
    assert "already" in capsys.readouterr().out
    assert await audit(dsn) == []


def test_no_promotion_when_the_database_is_unreachable(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    before = promoted(data_dir)
    add_copy(data_dir, before, "second")
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", UNREACHABLE)
    args = ["promote", "second", "--data-dir", str(data_dir), "--db-connect-timeout-s", "2"]
    assert main(args) == ExitCode.DATABASE_UNREACHABLE
    err = capsys.readouterr().err
    assert "cannot reach PostgreSQL at nobody@127.0.0.1:1/x" in err and "Traceback" not in err
    assert promoted(data_dir) == before
    assert main(["rollback", "--data-dir", str(data_dir), "--db-connect-timeout-s", "2"]) \
        == ExitCode.DATABASE_UNREACHABLE
    assert main(["history", "--data-dir", str(data_dir), "--db-connect-timeout-s", "2"]) \
        == ExitCode.DATABASE_UNREACHABLE
    assert promoted(data_dir) == before


async def test_no_promotion_when_the_database_refuses(data_dir: Path, dsn: str, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    before = promoted(data_dir)
    add_copy(data_dir, before, "second")
    code = await cli(monkeypatch, with_database(dsn, "no_such_database"), "promote", "second", "--data-dir",
                     str(data_dir))
    assert code == ExitCode.DATABASE_CONFIG
    assert "no_such_database" in capsys.readouterr().err
    assert promoted(data_dir) == before


async def test_a_pointer_that_cannot_be_flipped_after_the_commit_is_reported(
    data_dir: Path, dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    add_copy(data_dir, promoted(data_dir), "second")
    pointer = data_dir / "models" / PROMOTED_FILE
    pointer.unlink()
    (pointer / "in-the-way").mkdir(parents=True)  # a directory where the pointer file goes: replacing it fails
    code = await cli(monkeypatch, dsn, "promote", "second", "--data-dir", str(data_dir))
    err = capsys.readouterr().err
    assert code == ExitCode.BAD_MODEL_BUNDLE
    assert "recorded in the database" in err and "NOT switched" in err and "intent" in err
    assert pointer.is_dir()
    [(action, subject, _, details)] = await audit(dsn)  # the intent, as documented
    assert (action, subject, details["previous"]) == ("model.promote", "second", None)


async def test_rollback_undoes_the_last_promotion(data_dir: Path, dsn: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    first = promoted(data_dir)
    add_copy(data_dir, first, "second")
    flags = ("--data-dir", str(data_dir))
    assert await cli(monkeypatch, dsn, "rollback", *flags) == ExitCode.UNKNOWN_MODEL_VERSION
    assert "nothing to roll back" in capsys.readouterr().err
    assert await cli(monkeypatch, dsn, "promote", "second", *flags) == ExitCode.SUCCESS
    assert await cli(monkeypatch, dsn, "rollback", *flags, "--actor", "ops:bob", "--note", "alerts") \
        == ExitCode.SUCCESS
    assert f"promoted {first}" in capsys.readouterr().out
    assert promoted(data_dir) == first
    assert await cli(monkeypatch, dsn, "rollback", *flags) == ExitCode.SUCCESS  # undoes the rollback
    assert promoted(data_dir) == "second"
    entries = await audit(dsn)
    assert [(a, s, d["previous"]) for a, s, _, d in entries] == [
        ("model.promote", "second", first), ("model.rollback", first, "second"), ("model.rollback", "second", first)]
    assert entries[1][2] == "ops:bob" and entries[1][3]["note"] == "alerts"


async def test_rollback_refuses_when_the_pointer_changed_outside(data_dir: Path, dsn: str,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    first = promoted(data_dir)
    add_copy(data_dir, first, "second")
    add_copy(data_dir, first, "third")
    assert await cli(monkeypatch, dsn, "promote", "second", "--data-dir", str(data_dir)) == ExitCode.SUCCESS
    (data_dir / "models" / PROMOTED_FILE).write_text("third\n")  # e.g. by hand
    assert await cli(monkeypatch, dsn, "rollback", "--data-dir", str(data_dir)) == ExitCode.UNKNOWN_MODEL_VERSION
    assert "outside 'fraudguard models'" in capsys.readouterr().err
    assert promoted(data_dir) == "third" and len(await audit(dsn)) == 1


async def test_a_bundle_changed_under_its_version_is_not_promoted_again(data_dir: Path, dsn: str,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    first = promoted(data_dir)
    add_copy(data_dir, first, "second")
    flags = ("--data-dir", str(data_dir))
    assert await cli(monkeypatch, dsn, "promote", "second", *flags) == ExitCode.SUCCESS
    assert await cli(monkeypatch, dsn, "promote", first, *flags) == ExitCode.SUCCESS
    with open(data_dir / "models" / "second" / "model.onnx", "ab") as f:
        f.write(b"\0")
    assert await cli(monkeypatch, dsn, "promote", "second", *flags) == ExitCode.BAD_MODEL_BUNDLE
    assert "second is registered already with other content" in capsys.readouterr().err
    assert promoted(data_dir) == first and len(await audit(dsn)) == 2


async def test_history_lists_the_promotions_newest_first(data_dir: Path, dsn: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    first = promoted(data_dir)
    add_copy(data_dir, first, "second")
    flags = ("--data-dir", str(data_dir))
    assert await cli(monkeypatch, dsn, "history", *flags) == ExitCode.SUCCESS
    assert "no promotions recorded" in capsys.readouterr().out
    assert await cli(monkeypatch, dsn, "promote", "second", *flags, "--actor", "ops:alice", "--note", "n1") == 0
    assert await cli(monkeypatch, dsn, "rollback", *flags) == ExitCode.SUCCESS
    capsys.readouterr()
    assert await cli(monkeypatch, dsn, "history", *flags) == ExitCode.SUCCESS
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "PROMOTED", "(UTC)", "VERSION", "PREVIOUS", "ACTOR", "NOTE"]
    assert lines[1].split()[3:5] == [first, "second"] and lines[2].split()[3:7] == ["second", first, "ops:alice", "n1"]
    assert await cli(monkeypatch, dsn, "history", *flags, "--json", "--limit", "1") == ExitCode.SUCCESS
    [latest] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert latest["version"] == first and latest["previous_version"] == "second" and latest["note"] == ""


HOSTILE_VERSIONS = ["a/b", "../models", "/etc/passwd", "x" * 10_000, "v\x00", "v\x1b[31mred", "v\n2", "v\u202e",
                    "..", ""]


@pytest.mark.parametrize("version", HOSTILE_VERSIONS)
@pytest.mark.parametrize("command", ["promote", "show"])
def test_hostile_versions_exit_2_before_any_database(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], command: str,
                                                     version: str) -> None:
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", UNREACHABLE)  # never reached: the input is refused first
    before = promoted(data_dir)
    assert main([command, version, "--data-dir", str(data_dir)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "bad bundle version" in err and "Traceback" not in err and len(err) < 500
    assert not any(c in err for c in "\x00\x1b\u202e")
    assert promoted(data_dir) == before


@pytest.mark.parametrize(("flag", "value"), [
    ("--note", "clear\x1b[2J"), ("--note", "two\nlines"), ("--note", "x" * 10_000), ("--note", "bidi\u202eevil"),
    ("--actor", ""), ("--actor", "tab\there"), ("--actor", "x" * 10_000),
])
@pytest.mark.parametrize("command", ["promote", "rollback"])
def test_hostile_notes_and_actors_exit_2_before_any_database(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], command: str,
                                                             flag: str, value: str) -> None:
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", UNREACHABLE)
    before = promoted(data_dir)
    add_copy(data_dir, before, "second")
    argv = [command, *(["second"] if command == "promote" else []), flag, value, "--data-dir", str(data_dir)]
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert flag.strip("-") in err and "Traceback" not in err and len(err) < 500
    assert promoted(data_dir) == before


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


@pytest.mark.parametrize("argv", [[], ["bogus"], ["show"], ["demo", "--transactions", "0"], ["promote"],
                                  ["history", "--limit", "0"], ["rollback", "extra"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.USAGE
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["list", "--help"], ["show", "--help"],
                                  ["promote", "--help"], ["rollback", "--help"], ["history", "--help"]])
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == ExitCode.SUCCESS
    assert "--data-dir" in capsys.readouterr().out or argv == ["--help"]

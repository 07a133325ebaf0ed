"""``fraudguard generate``, ``train`` and ``evaluate`` end to end, on files a retailer could have written."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudguard.cli import main
from fraudguard.exit_codes import ExitCode
from fraudguard.timeparse import parse_instant
from scoring.model import load_bundle, promoted_version
from scoring.model.registry import activate
from trainer.files import ColumnMapping, ImportOptions, read_payments
from trainer.replay import replay_features

README = Path(__file__).resolve().parents[1] / "README.md"
SMALL = ["--transactions", "24000", "--days", "30", "--seed", "5"]
TEST_FROM = "2024-01-24"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "payments.parquet"
    assert main(["generate", "-q", "--output", str(path), *SMALL]) == 0
    return path


@pytest.fixture(scope="module")
def foreign_csv(generated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same payments as another company would export them: its own column names, epoch seconds, amounts in
    cents, only card and merchant, and a junk row or two."""
    table = pq.read_table(generated)
    path = tmp_path_factory.mktemp("foreign") / "export.csv"
    times = table["timestamp"].cast(pa.int64()).to_numpy() // 1000
    cents = np.round(table["amount"].cast(pa.float64()).to_numpy() * 100).astype(np.int64)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ID", "TS", "AMT_CENTS", "CARD", "SHOP", "IS_FRAUD", "NOTE"])
        columns = zip(table["transaction_id"].to_pylist(), times.tolist(), cents.tolist(),
                      table["card"].to_pylist(), table["merchant"].to_pylist(), table["label"].to_pylist(),
                      strict=True)  # fmt: skip
        for i, (tx, ts, amt, card, shop, label) in enumerate(columns):
            w.writerow([tx, ts, amt, card, shop, "1" if label else "0", "x"])
            if i == 10:
                w.writerow(["junk-1", "yesterday", "12", "c", "s", "0", "x"])
    return path


FOREIGN_MAP = "transaction_id=ID,timestamp=TS,amount=AMT_CENTS,card=CARD,merchant=SHOP,label=IS_FRAUD"


def test_generate_is_deterministic_by_seed(generated: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.parquet"
    assert main(["generate", "-q", "--output", str(again), *SMALL]) == 0
    assert pq.read_table(again).equals(pq.read_table(generated))
    other = tmp_path / "other.parquet"
    assert main(["generate", "-q", "--output", str(other), *SMALL[:-1], "6"]) == 0
    assert not pq.read_table(other).equals(pq.read_table(generated))


def test_train_and_evaluate_on_a_foreign_file(foreign_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              embedded_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDGUARD_DATABASE_URL", embedded_dsn)  # --promote records and audits the promotion
    data_dir = tmp_path / "data"
    code = main(["train", "--input", str(foreign_csv), "--map", FOREIGN_MAP, "--amount-unit", "minor",
                 "--data-dir", str(data_dir), "--test-from", TEST_FROM, "--gap", "1d", "--max-trials", "2",
                 "--label-delay", "5d", "--promote", "--version", "foreign-1"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "line 13" in out.err and "timestamp" in out.err  # the junk row, reported with its line
    models = data_dir / "models"
    assert promoted_version(models) == "foreign-1"
    bundle = load_bundle(models / "foreign-1")
    record = json.loads((bundle.path / "training.json").read_text())
    assert record["mapping"]["merchant"] == "SHOP" and record["label_delay_s"] == 5 * 86400
    assert "device_count_1h" in record["features"]["excluded"] and "merchant_count_1h" in record["features"]["used"]
    assert record["periods"]["test_from"] == TEST_FROM + "T00:00:00Z"
    assert bundle.manifest.metrics["auc"] > 0.85

    scores_out, report_dir = tmp_path / "scores.csv", tmp_path / "report"
    code = main(["evaluate", "--input", str(foreign_csv), "--map", FOREIGN_MAP, "--amount-unit", "minor",
                 "--data-dir", str(data_dir), "--from", TEST_FROM, "--label-delay", "5d",
                 "--scores-out", str(scores_out), "--report-dir", str(report_dir)])  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "AUC" in out.out
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["auc_roc"] > 0.85 and metrics["card_precision"]["k"] == 100
    with open(scores_out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["transaction_id", "score"]
    # every payment of the period, with the score the served model gives it from the replayed features
    imported = read_payments(foreign_csv, ColumnMapping.parse(FOREIGN_MAP), ImportOptions(amount_unit="minor"))
    p = imported.payments
    first = int(np.searchsorted(p.event_time, parse_instant(TEST_FROM, "test")))
    assert [r[0] for r in rows[1:]] == p.transaction_id[first:].tolist()
    x = replay_features(p, label_delay_s=5 * 86400)[first:]
    expected = activate(models / "foreign-1").runtime.predict(x)
    assert np.array_equal(np.array([float(r[1]) for r in rows[1:]]), expected)
    for name in ("report.html", "report.md", "precision_recall.png", "score_distribution.png"):
        assert (report_dir / name).stat().st_size > 100, name


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["train", "--input", "{junk}"], ExitCode.BAD_INPUT_DATA, "is not UTF-8 text"),
    (["train", "--input", "{generated}", "--map", "transaction_id=transaction_id,timestamp=timestamp,"
      "amount=amount,card=card"], ExitCode.CANNOT_TRAIN, "needs labels"),
    (["train", "--input", "{generated}", "--gap", "soon"], ExitCode.USAGE, "--gap"),
    (["train", "--input", "{generated}", "--map", "when=TS"], ExitCode.BAD_INPUT_DATA, "--map"),
    (["train", "--input", "{generated}", "--test-from", "2030-01-01"], ExitCode.CANNOT_TRAIN, "--test-from"),
    (["evaluate", "--input", "{generated}", "--bundle", "nope"], ExitCode.UNKNOWN_MODEL_VERSION, "nope"),
    (["evaluate", "--input", "{generated}", "--from", "2024-03-01", "--to", "2024-02-01"], ExitCode.USAGE, "--to"),
    (["generate", "--output", "{tmp}/out.txt"], ExitCode.USAGE, "--output"),
    (["generate", "--output", "{tmp}/out.csv", "--fraud-rate", "0.9"], ExitCode.USAGE, "fraud_rate"),
])  # fmt: skip
def test_bad_input_gets_a_clear_error_and_exit_code(argv: list[str], code: int, message: str, generated: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 40)
    values = {"junk": str(junk), "generated": str(generated), "tmp": str(tmp_path)}
    argv = [a.format(**values) for a in argv]
    assert main([*argv, "--data-dir", str(tmp_path / "data")] if argv[0] != "generate" else argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_readme_goes_from_nothing_to_a_served_model(tmp_path: Path) -> None:
    """The README's own commands (with fewer payments and candidates, for time) generate, train, evaluate."""
    block = re.search(r"```sh\n# from nothing to a served model\n(.*?)```", README.read_text(), flags=re.S)
    assert block, "README lacks the 'from nothing to a served model' block"
    commands = [shlex.split(line) for line in block.group(1).splitlines() if line.startswith("fraudguard ")]
    assert [c[1] for c in commands] == ["generate", "train", "evaluate", "serve"]
    for argv in commands[:-1]:
        argv = [a.replace("1000000", "30000") for a in argv]
        if argv[1] == "train":
            argv += ["--max-trials", "1"]
        done = subprocess.run([sys.executable, "-m", "fraudguard.cli", *argv[1:]], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
        assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stderr[-3000:]}"
    models = tmp_path / "data" / "models"
    version = promoted_version(models)
    assert version is not None and activate(models / version).bundle.manifest.metrics["auc"] > 0.9


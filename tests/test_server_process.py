"""``fraudguard serve`` as a process: start-up errors with exit codes, SIGTERM drains, JSON logs without PII."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from fraudguard.exit_codes import ExitCode
from fraudguard.proto.fraud.v1 import scoring_pb2, scoring_pb2_grpc
from tests._server_process import ServerProcess
from tests.conftest import make_transaction

PAN = "4111111111111111"


def _serve(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fraudguard.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_no_bundle_exits_with_documented_code(tmp_path: Path) -> None:
    result = _serve(["--data-dir", str(tmp_path), "--listen", "127.0.0.1:0"])
    assert result.returncode == ExitCode.NO_MODEL_BUNDLE
    assert "fraudguard models demo" in result.stderr


def test_bad_setting_exits_with_documented_code(tmp_path: Path) -> None:
    result = _serve(["--data-dir", str(tmp_path), "--listen", "nowhere"])
    assert result.returncode == ExitCode.INVALID_SETTING
    assert "listen" in result.stderr


def test_unreadable_tls_files_exit_with_documented_code(tmp_path: Path, bundle_store: Path) -> None:
    shutil.copytree(bundle_store, tmp_path / "models")
    result = _serve(
        [
            "--data-dir",
            str(tmp_path),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            str(tmp_path / "missing.pem"),
            "--tls-key",
            str(tmp_path / "missing.key"),
        ]
    )
    assert result.returncode == ExitCode.TLS_FILES_UNREADABLE


def test_sigterm_drains_in_flight_calls_and_snapshots(tmp_path: Path, bundle_store: Path) -> None:
    shutil.copytree(bundle_store, tmp_path / "models")
    server = ServerProcess(tmp_path, ("--max-cards", "4096", "--max-entities", "4096")).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)  # type: ignore[no-untyped-call]
            pan_tx = make_transaction(5, card=None, customer_id="ann@example.com")
            pan_tx.card.Clear()
            pan_tx.card.pan = PAN
            stub.Score(scoring_pb2.ScoreRequest(transaction=pan_tx), timeout=30)
            bad = make_transaction(6, card=None)
            bad.card.Clear()
            bad.card.pan = PAN[:-1] + "2"
            with contextlib.suppress(grpc.RpcError):  # refused: the point is what gets logged
                stub.Score(scoring_pb2.ScoreRequest(transaction=bad), timeout=30)
            results: list[int] = []
            errors: list[BaseException] = []
            started = threading.Event()

            def slow_stream() -> None:
                def requests() -> Iterator[scoring_pb2.ScoreStreamRequest]:
                    for m in range(40):
                        if m == 1:
                            started.set()
                        yield scoring_pb2.ScoreStreamRequest(
                            transactions=[make_transaction(m * 10 + k) for k in range(10)]
                        )
                        threading.Event().wait(0.02)

                try:
                    for response in stub.ScoreStream(requests(), timeout=60):
                        results.append(len(response.results))
                except grpc.RpcError as exc:
                    errors.append(exc)

            worker = threading.Thread(target=slow_stream)
            worker.start()
            started.wait(30)
            code = server.terminate()
            worker.join(60)
        assert code == 0
        assert not errors and sum(results) == 400  # the in-flight stream finished
        assert (tmp_path / "state" / "entities.npz").exists()
    finally:
        server.kill()
    text = "\n".join(server.log_lines)
    entries = [json.loads(line) for line in server.log_lines if line.startswith("{")]
    messages = [e["msg"] for e in entries]
    assert "serving" in messages and "stopped" in messages
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert PAN not in text and PAN[:-1] not in text and "ann@example.com" not in text

"""The committed stubs are exactly what grpcio-tools generates from proto/ today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_stubs_match_a_fresh_generation() -> None:
    result = subprocess.run([sys.executable, "-m", "fraudguard.proto.generate", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_fails_when_a_stub_is_stale(tmp_path: Path) -> None:
    from fraudguard.proto import generate

    out = tmp_path / "stubs"
    generate.generate(out)
    stub = next(out.rglob("scoring_pb2.pyi"))
    stub.write_text(stub.read_text() + "\n# edited by hand\n")
    assert generate.differences(out)

"""Generate the Python stubs of ``proto/`` into this package.

Run ``python -m fraudguard.proto.generate`` after changing a ``.proto`` file and
commit the result; ``--check`` exits 1 when the committed stubs differ from a
fresh generation (the test suite runs it). Imports between our own protos are
rewritten from ``fraud.v1`` to ``fraudguard.proto.fraud.v1`` so the stubs live
inside the package without touching ``sys.path``.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
PROTO_ROOT = REPO_ROOT / "proto"
_IMPORT = re.compile(r"^from fraud\.v1 import ", re.MULTILINE)
_PYI_IMPORT = re.compile(r"^(import|from) fraud\.v1\.", re.MULTILINE)


def _proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def _run_protoc(out_dir: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    wkt_include = Path(grpc_tools.__file__).parent / "_proto"
    files = [str(p.relative_to(PROTO_ROOT)) for p in _proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{wkt_include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the message above")


def _rewrite_imports(out_dir: Path) -> None:
    for path in out_dir.rglob("*.py*"):
        text = path.read_text()
        text = _IMPORT.sub("from fraudguard.proto.fraud.v1 import ", text)
        text = _PYI_IMPORT.sub(r"\1 fraudguard.proto.fraud.v1.", text)
        text = text.replace("fraud.v1.", "fraudguard.proto.fraud.v1.") if path.suffix == ".pyi" else text
        text = text.replace("fraudguard.proto.fraudguard.proto.", "fraudguard.proto.")
        path.write_text(text)
    for package in [out_dir / "fraud", out_dir / "fraud" / "v1"]:
        (package / "__init__.py").write_text("")


def generate(target: Path) -> None:
    """Write fresh stubs for every ``.proto`` into ``target/fraud``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        _run_protoc(out)
        _rewrite_imports(out)
        shutil.rmtree(target / "fraud", ignore_errors=True)
        shutil.copytree(out / "fraud", target / "fraud")


def differences(target: Path) -> list[str]:
    """Files that differ between ``target/fraud`` and a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        expected = {p.relative_to(fresh) for p in (fresh / "fraud").rglob("*") if p.is_file()}
        actual = {
            p.relative_to(target)
            for p in (target / "fraud").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        changed = [
            str(rel)
            for rel in sorted(expected & actual)
            if not filecmp.cmp(fresh / rel, target / rel, shallow=False)
        ]
        return changed + [f"missing: {r}" for r in sorted(expected - actual)] + [
            f"stale: {r}" for r in sorted(actual - expected)
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args(argv)
    if args.check:
        diff = differences(PACKAGE_DIR)
        if diff:
            print("stubs differ from proto/ — run: python -m fraudguard.proto.generate", file=sys.stderr)
            print("\n".join(diff), file=sys.stderr)
            return 1
        print("stubs are up to date")
        return 0
    generate(PACKAGE_DIR)
    print(f"generated stubs in {PACKAGE_DIR / 'fraud'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

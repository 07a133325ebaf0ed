"""The committed OpenAPI document (``gateway/openapi.json``): ``python -m gateway.openapi`` writes it from the app,
``--check`` fails when the committed one differs (the test suite runs the check, so the document cannot drift)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.app import create_app

DOCUMENT = Path(__file__).with_name("openapi.json")


def document() -> dict[str, Any]:
    spec: dict[str, Any] = create_app(None).openapi()
    return spec


def rendered() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.openapi", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed document is out of date")
    args = parser.parse_args(argv)
    text = rendered()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{DOCUMENT} is out of date: run 'make openapi'", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

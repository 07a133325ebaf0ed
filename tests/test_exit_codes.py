"""Every documented exit code has help text; the CLI dispatcher knows its commands."""

from __future__ import annotations

import subprocess
import sys

from fraudguard import cli
from fraudguard.exit_codes import EXIT_CODE_HELP, ExitCode, describe


def test_every_exit_code_has_help() -> None:
    assert set(EXIT_CODE_HELP) == set(ExitCode)
    assert all(text.strip() for text in EXIT_CODE_HELP.values())
    assert describe(20).startswith("20 (NO_MODEL_BUNDLE)")
    assert describe(999) == "999"


def test_cli_usage_and_unknown_command(capsys: object) -> None:
    assert cli.main(["--help"]) == 0
    assert cli.main(["no-such-command"]) == 2


def test_console_script_help_is_fast_and_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "fraudguard.cli", "--help"], capture_output=True, text=True, check=True)
    for command in ("serve", "models", "bench"):
        assert command in out.stdout

"""The README's demo call works against a real server, as a newcomer would paste it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_demo_gets_a_decision_with_reasons(scoring_target: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    code = blocks[0].replace("127.0.0.1:50051", scoring_target)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    action, score = lines[0].split()
    assert action in {"ACTION_ALLOW", "ACTION_CHALLENGE", "ACTION_REVIEW", "ACTION_BLOCK"}
    assert 0.0 <= float(score) <= 1.0
    assert len(lines) == 4 and all(line.startswith("  ") for line in lines[1:])


def test_readme_documents_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
    makefile = (README.parent / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile
    assert "make test" in (README.parent / ".ci" / "run").read_text()


def test_readme_rules_example_compiles() -> None:
    from scoring.rules import RuleSet

    blocks = re.findall(r"```rules\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "README has no rules example"
    rule_set = RuleSet(blocks[0], {"trusted_cards": ["card-1", "card-2"]})
    assert len(rule_set.rules) == 4

"""The typed settings object: flags over FRAUDGUARD_* environment over defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fraudguard.settings import Settings, SettingsError


def _parse(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    return Settings.from_sources(parser.parse_args(argv), environ or {})


def test_precedence_flag_over_env_over_default() -> None:
    assert _parse([]).listen == "127.0.0.1:50051"
    assert _parse([], {"FRAUDGUARD_LISTEN": "0.0.0.0:9000"}).listen == "0.0.0.0:9000"
    both = _parse(["--listen", "[::]:7000"], {"FRAUDGUARD_LISTEN": "0.0.0.0:9000"})
    assert both.listen == "[::]:7000"
    assert _parse(["--data-dir", "/tmp/x", "--max-cards", "1_000"]).data_dir == Path("/tmp/x")
    assert _parse(["--max-cards", "1_000"]).max_cards == 1000


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--listen", "nohost"], "listen"),
        (["--listen", "host:99999"], "listen"),
        (["--max-cards", "0"], "max_cards"),
        (["--max-cards", "many"], "max_cards"),
        (["--shutdown-grace-s", "-1"], "shutdown_grace_s"),
        (["--log-level", "LOUD"], "log_level"),
        (["--tls-cert", "a.pem"], "tls_cert"),
    ],
)
def test_bad_values_name_the_setting(argv: list[str], field: str) -> None:
    with pytest.raises(SettingsError, match=field):
        _parse(argv)


def test_every_setting_is_documented() -> None:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    text = parser.format_help()
    for name in Settings.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in text
        assert "FRAUDGUARD_" + name.upper() in text

"""PAN tokenization and key files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudguard.errors import ValidationError
from fraudguard.security import KeyFileError, PanTokenizer, load_or_create_key

VISA = "4111111111111111"


def test_key_file_is_created_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "pan.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key


def test_key_file_refused_when_wrong_size_or_world_readable(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"x" * 5)
    short.chmod(0o600)
    with pytest.raises(KeyFileError, match="32-byte"):
        load_or_create_key(short)
    loose = tmp_path / "loose.key"
    loose.write_bytes(b"x" * 32)
    loose.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(loose)


def test_tokenize_is_deterministic_per_key_and_keeps_no_pan() -> None:
    a = PanTokenizer(b"a" * 32)
    ref = a.tokenize(VISA)
    assert ref == a.tokenize("4111 1111 1111 1111")
    assert (ref.bin, ref.last4) == ("411111", "1111")
    assert VISA not in ref.token and ref.token.startswith("pan_")
    assert PanTokenizer(b"b" * 32).tokenize(VISA).token != ref.token


@pytest.mark.parametrize(
    "pan", ["", "4111", "4111111111111112", "41111111111111111111", "4111x11111111111", "٤١١١١١١١١١١١١١١١"]
)
def test_bad_pans_are_refused_without_echoing_them(pan: str) -> None:
    with pytest.raises(ValidationError) as info:
        PanTokenizer(b"k" * 32).tokenize(pan)
    assert info.value.field == "card.pan"
    assert not pan or pan not in str(info.value)


@given(st.text(max_size=40))
def test_tokenize_never_crashes(pan: str) -> None:
    try:
        PanTokenizer(b"k" * 32).tokenize(pan)
    except ValidationError as exc:
        assert exc.field == "card.pan"

"""The personal-data keyring: AES-256-GCM seal/open, the key file and the environment override."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fraudguard.security.keyfile import KeyFileError
from fraudguard.security.personal import (
    ENV_VAR,
    NONCE_BYTES,
    TAG_BYTES,
    Keyring,
    PersonalKeyError,
    SealedDataError,
    UnknownKeyError,
    new_key_id,
    personal_aad,
)

NO_ENV: dict[str, str] = {}
AAD = personal_aad("email", "tx-1")


def _doc(current: str, **keys: bytes) -> str:
    return json.dumps({"current": current, "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()}})


def _write(path: Path, text: str | bytes, mode: int = 0o600) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    path.chmod(mode)
    return path


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return Keyring.load(tmp_path / "keys" / "personal.json", NO_ENV)


# --- seal and open ------------------------------------------------------------------------------------------------


def test_seal_open_round_trip_with_fresh_nonces(keyring: Keyring) -> None:
    sealed = keyring.seal(b"alice@example.com", AAD)
    assert len(sealed) == NONCE_BYTES + len(b"alice@example.com") + TAG_BYTES
    assert b"alice" not in sealed
    assert keyring.open(keyring.current_id, sealed, AAD) == b"alice@example.com"
    assert keyring.seal(b"alice@example.com", AAD) != sealed  # a fresh random nonce each time
    assert keyring.open(keyring.current_id, keyring.seal(b"", AAD), AAD) == b""


@pytest.mark.parametrize("other", [personal_aad("email", "tx-2"), personal_aad("ip_address", "tx-1"), b""])
def test_a_value_moved_to_another_row_or_field_does_not_open(keyring: Keyring, other: bytes) -> None:
    sealed = keyring.seal(b"alice@example.com", AAD)
    with pytest.raises(SealedDataError, match="does not authenticate"):
        keyring.open(keyring.current_id, sealed, other)


def test_aad_is_unambiguous_and_checks_the_field() -> None:
    assert personal_aad("email", "a\x00b") != personal_aad("email", "a") != personal_aad("device_id", "a")
    assert personal_aad("email", "tx\udc80")  # a lone surrogate does not crash the writer
    with pytest.raises(ValueError, match="not a personal field"):
        personal_aad("card_token", "tx-1")


def test_tampering_anywhere_is_refused(keyring: Keyring) -> None:
    sealed = keyring.seal(b"10.0.0.1", AAD)
    for i in range(len(sealed)):
        altered = bytearray(sealed)
        altered[i] ^= 0x01
        with pytest.raises(SealedDataError):
            keyring.open(keyring.current_id, bytes(altered), AAD)
    with pytest.raises(SealedDataError, match="too short"):
        keyring.open(keyring.current_id, sealed[: NONCE_BYTES + TAG_BYTES - 1], AAD)
    with pytest.raises(SealedDataError):
        keyring.open(keyring.current_id, sealed + b"\x00", AAD)


def test_unknown_key_id_is_a_clear_error(keyring: Keyring) -> None:
    sealed = keyring.seal(b"device-7", AAD)
    with pytest.raises(UnknownKeyError, match="no personal-data key with id 'k-gone'") as caught:
        keyring.open("k-gone", sealed, AAD)
    assert caught.value.key_id == "k-gone"


def test_a_value_sealed_under_another_key_does_not_open(tmp_path: Path) -> None:
    same_id = "k1"
    a = Keyring(same_id, {same_id: b"a" * 32})
    b = Keyring(same_id, {same_id: b"b" * 32})
    with pytest.raises(SealedDataError, match="does not authenticate"):
        b.open(same_id, a.seal(b"x", AAD), AAD)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key_id=st.one_of(st.text(max_size=70), st.none(), st.integers()),
       sealed=st.one_of(st.binary(max_size=80), st.text(max_size=10), st.none()),
       aad=st.binary(max_size=40))
def test_open_never_crashes_on_hostile_input(keyring: Keyring, key_id: object, sealed: object, aad: bytes) -> None:
    with pytest.raises(SealedDataError):
        keyring.open(key_id, sealed, aad)  # type: ignore[arg-type]


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300), st.text(max_size=60))
def test_what_is_sealed_opens_only_with_its_aad(keyring: Keyring, plaintext: bytes, tx: str) -> None:
    aad = personal_aad("device_id", tx)
    sealed = keyring.seal(plaintext, aad)
    assert keyring.open(keyring.current_id, sealed, aad) == plaintext
    with pytest.raises(SealedDataError):
        keyring.open(keyring.current_id, sealed, personal_aad("device_id", tx + "x"))


def test_repr_and_errors_show_no_key_material(tmp_path: Path) -> None:
    secret = b"S" * 32
    ring = Keyring("k1", {"k1": secret})
    assert base64.b64encode(secret).decode() not in repr(ring) and "SSSS" not in repr(ring)
    path = _write(tmp_path / "p.json", _doc("k1", k1=secret)[:-3])
    with pytest.raises(PersonalKeyError) as caught:
        Keyring.load(path, NO_ENV)
    assert "U1NT" not in str(caught.value)  # base64 of b"SSS"


# --- the key file -------------------------------------------------------------------------------------------------


def test_key_file_is_made_private_once_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "personal.json"
    first = Keyring.load(path, NO_ENV)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert first.source == str(path) and not first.from_environment
    again = Keyring.load(path, NO_ENV)
    assert again.current_id == first.current_id
    sealed = first.seal(b"x", AAD)
    assert again.open(first.current_id, sealed, AAD) == b"x"
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_key_ids_are_short_printable_and_distinct() -> None:
    ids = {new_key_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) <= 24 and i.isprintable() and i.startswith("k20") for i in ids)


def test_loads_made_at_once_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "personal.json"
    found: list[str] = []
    threads = [threading.Thread(target=lambda: found.append(Keyring.load(path, NO_ENV).current_id)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(found)) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "p.json", _doc("k1", k1=b"k" * 32), mode)
    with pytest.raises(PersonalKeyError, match="chmod 600"):
        Keyring.load(path, NO_ENV)
    assert issubclass(PersonalKeyError, KeyFileError)  # so commands exit with KEY_FILE_UNUSABLE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a JSON key document"),
        ("[1, 2]", "expected"),
        ('{"current": "k1"}', "expected"),
        ('{"current": 1, "keys": {}}', "expected"),
        (_doc("k2", k1=b"k" * 32), "current key 'k2' is not among the keys"),
        (_doc("k1", k1=b"k" * 16), "not 32 bytes"),
        ('{"current": "k1", "keys": {"k1": "not base64!"}}', "not base64"),
        ('{"current": "k1", "keys": {"k1": 42}}', "not base64"),
        (_doc("bad id", **{"bad id": b"k" * 32}), "bad key id"),
        (_doc("k1\n", **{"k1\n": b"k" * 32}), "bad key id"),
        ("[" * 100_000, "not a JSON key document"),
    ],
)
def test_malformed_key_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path / "p.json", text)
    with pytest.raises(PersonalKeyError, match=message):
        Keyring.load(path, NO_ENV)
    assert path.read_text() == text  # never "repaired" by overwriting


def test_odd_key_file_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(PersonalKeyError, match=r"cannot read|not a regular file"):
        Keyring.load(tmp_path, NO_ENV)
    big = _write(tmp_path / "big.json", b" " * ((1 << 20) + 1))
    with pytest.raises(PersonalKeyError, match="larger than"):
        Keyring.load(big, NO_ENV)
    target = _write(tmp_path / "real.json", _doc("k1", k1=b"k" * 32))
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(PersonalKeyError, match="cannot read"):
        Keyring.load(link, NO_ENV)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_load_never_crashes_on_hostile_files(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "hostile.json", data)
    try:
        ring = Keyring.load(path, NO_ENV)
    except PersonalKeyError:
        return
    assert ring.current_id in ring.key_ids


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=200), st.builds(json.dumps, st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)))))
def test_load_never_crashes_on_hostile_environment(text: str) -> None:
    assume(text.strip())  # blank counts as unset (tested below)
    try:
        ring = Keyring.load(Path("/nonexistent/never-made.json"), {ENV_VAR: text})
    except PersonalKeyError as exc:
        assert ENV_VAR in str(exc)
    else:
        assert ring.from_environment and ring.current_id in ring.key_ids


# --- the environment ----------------------------------------------------------------------------------------------


def test_the_environment_wins_over_the_file_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "personal.json"
    env = {ENV_VAR: _doc("env-1", **{"env-1": b"e" * 32, "env-0": b"f" * 32})}
    ring = Keyring.load(path, env)
    assert (ring.current_id, ring.key_ids, ring.from_environment) == ("env-1", ("env-0", "env-1"), True)
    assert not path.exists()
    with pytest.raises(PersonalKeyError, match=f"come from {ENV_VAR}"):
        ring.add_key(path)
    assert Keyring.load(path, {ENV_VAR: "  "}).source == str(path)  # blank counts as unset


def test_a_bad_environment_value_is_refused_even_with_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "personal.json"
    Keyring.load(path, NO_ENV)
    with pytest.raises(PersonalKeyError, match=ENV_VAR):
        Keyring.load(path, {ENV_VAR: "{not json"})


def test_the_process_environment_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, _doc("env-1", **{"env-1": b"e" * 32}))
    assert Keyring.load(tmp_path / "p.json").current_id == "env-1"


# --- adding and removing keys -------------------------------------------------------------------------------------


def test_add_key_keeps_old_keys_and_old_values_open(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "personal.json"
    ring = Keyring.load(path, NO_ENV)
    old_id = ring.current_id
    sealed = ring.seal(b"device-1", AAD)
    new_id = ring.add_key(path)
    assert new_id != old_id and ring.current_id == new_id and set(ring.key_ids) == {old_id, new_id}
    assert ring.open(old_id, sealed, AAD) == b"device-1"
    reloaded = Keyring.load(path, NO_ENV)
    assert reloaded.current_id == new_id and reloaded.open(old_id, sealed, AAD) == b"device-1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_add_key_keeps_keys_another_process_added(tmp_path: Path) -> None:
    path = tmp_path / "personal.json"
    mine = Keyring.load(path, NO_ENV)
    theirs = Keyring.load(path, NO_ENV)
    their_key = theirs.add_key(path)
    my_key = mine.add_key(path)
    final = Keyring.load(path, NO_ENV)
    assert final.current_id == my_key and their_key in final.key_ids and mine.key_ids == final.key_ids


def test_add_key_refuses_a_file_whose_key_changed_under_it(tmp_path: Path) -> None:
    path = tmp_path / "personal.json"
    ring = Keyring.load(path, NO_ENV)
    _write(path, _doc(ring.current_id, **{ring.current_id: b"z" * 32}))
    before = path.read_bytes()
    with pytest.raises(PersonalKeyError, match="differs"):
        ring.add_key(path)
    assert path.read_bytes() == before


def test_remove_keys_never_removes_the_current_key(tmp_path: Path) -> None:
    path = tmp_path / "personal.json"
    ring = Keyring.load(path, NO_ENV)
    old = ring.current_id
    new = ring.add_key(path)
    with pytest.raises(PersonalKeyError, match="current key"):
        ring.remove_keys(path, [new])
    assert ring.remove_keys(path, [old, "never-there"]) == (old,)
    assert Keyring.load(path, NO_ENV).key_ids == (new,) == ring.key_ids
    assert ring.remove_keys(path, [old]) == ()


def test_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    path = tmp_path / "ro" / "personal.json"
    ring = Keyring.load(path, NO_ENV)
    path.parent.chmod(0o500)
    try:
        with pytest.raises(PersonalKeyError, match="cannot"):
            ring.add_key(path)
    finally:
        path.parent.chmod(0o700)


def test_a_key_file_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = _write(tmp_path / "not-a-dir", b"x")
    with pytest.raises(PersonalKeyError, match="cannot read"):
        Keyring.load(blocker / "personal.json", NO_ENV)
    ring = Keyring("k1", {"k1": b"k" * 32})
    with pytest.raises(PersonalKeyError, match="cannot"):
        ring.add_key(blocker / "personal.json")
    assert ring.current_id == "k1" and ring.key_ids == ("k1",)  # unchanged when the write failed

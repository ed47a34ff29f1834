"""The state directory: stable identity, atomic writes, modes, corrupt files moved aside."""

from __future__ import annotations

import base64
import os
import random
import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.statedir import StateDir, atomic_write

T0 = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def make(tmp_path: Path) -> StateDir:
    return StateDir(tmp_path / "state", clock=lambda: T0)


# -- atomic_write --------------------------------------------------------------------------------


def test_atomic_write_replaces_content_with_mode_and_no_temp_files(tmp_path: Path) -> None:
    p = tmp_path / "f"
    atomic_write(p, b"one")
    atomic_write(p, b"two", mode=0o640)
    assert p.read_bytes() == b"two"
    assert mode(p) == 0o640
    assert [x.name for x in tmp_path.iterdir()] == ["f"]


def test_atomic_write_default_mode_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        atomic_write(tmp_path / "secret", b"x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "secret") == 0o600


def test_atomic_write_failure_before_rename_keeps_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "f"
    atomic_write(p, b"old")

    def boom(src: object, dst: object) -> None:
        raise OSError("injected: disk went away before rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="injected"):
        atomic_write(p, b"new")
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f"]


# -- layout and modes ----------------------------------------------------------------------------


def test_dirs_and_files_have_private_modes(tmp_path: Path) -> None:
    sd = make(tmp_path)
    assert mode(sd.path) == 0o711  # others may traverse to svc/, never list
    assert mode(sd.specs_dir) == 0o700
    assert mode(sd.svc_root) == 0o755  # like /hab/svc: each svc_user reaches its own dir
    sd.load_or_create_member_id(random.Random(1))
    sd.save_incarnation(3)
    sd.save_rumors(b"\x00rumors")
    sd.ctl_secret()
    for name in ("MEMBER_ID", "INCARNATION", "rumors.dat", "CTL_SECRET"):
        assert mode(sd.path / name) == 0o600, name


def test_user_toml_path_follows_habitat_shape_and_rejects_traversal(tmp_path: Path) -> None:
    sd = make(tmp_path)
    assert sd.user_toml_path("redis") == sd.path / "user" / "redis" / "config" / "user.toml"
    assert mode(sd.path / "user") == 0o700
    for bad in ("../etc", "a/b", "", ".."):
        with pytest.raises(ValueError):
            sd.user_toml_path(bad)


# -- member id -----------------------------------------------------------------------------------


def test_member_id_is_32_hex_and_stable_across_instances(tmp_path: Path) -> None:
    first = make(tmp_path).load_or_create_member_id(random.Random(1))
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    # A different rng on restart must not change the id: it is read back, not redrawn.
    again = make(tmp_path).load_or_create_member_id(random.Random(2))
    assert again == first


def test_member_id_is_a_uuid4_and_depends_on_rng(tmp_path: Path) -> None:
    a = StateDir(tmp_path / "a").load_or_create_member_id(random.Random(1))
    b = StateDir(tmp_path / "b").load_or_create_member_id(random.Random(2))
    assert a != b
    assert a[12] == "4"  # UUID version nibble


@pytest.mark.parametrize("content", [b"not-an-id\n", b"", b"ABCDEF" * 6, b"\xff" * 32])
def test_corrupt_member_id_moved_aside_and_replaced(tmp_path: Path, content: bytes) -> None:
    sd = make(tmp_path)
    (sd.path / "MEMBER_ID").write_bytes(content)
    with capture_logs() as logs:
        new = sd.load_or_create_member_id(random.Random(7))
    assert re.fullmatch(r"[0-9a-f]{32}", new)
    aside = sd.path / "MEMBER_ID.corrupt-20240301T123045Z"
    assert aside.read_bytes() == content
    assert [e for e in logs if e["event"] == "state.corrupt" and e["moved_to"] == str(aside)]
    assert make(tmp_path).load_or_create_member_id(random.Random(8)) == new


def test_repeated_quarantine_at_same_second_keeps_both(tmp_path: Path) -> None:
    sd = make(tmp_path)
    (sd.path / "rumors.dat").write_bytes(b"first")
    first = sd.quarantine("rumors.dat")
    (sd.path / "rumors.dat").write_bytes(b"second")
    second = sd.quarantine("rumors.dat")
    assert first is not None and second is not None and first != second
    assert first.read_bytes() == b"first" and second.read_bytes() == b"second"
    assert sd.load_rumors() is None
    assert sd.quarantine("rumors.dat") is None  # nothing left to move


# -- incarnation and rumors ----------------------------------------------------------------------


def test_incarnation_round_trip_default_zero(tmp_path: Path) -> None:
    sd = make(tmp_path)
    assert sd.load_incarnation() == 0
    sd.save_incarnation(41)
    assert make(tmp_path).load_incarnation() == 41
    with pytest.raises(ValueError):
        sd.save_incarnation(-1)


@pytest.mark.parametrize("content", [b"-3", b"12abc", b"\xff", b""])
def test_corrupt_incarnation_reads_zero_and_is_moved_aside(tmp_path: Path, content: bytes) -> None:
    sd = make(tmp_path)
    (sd.path / "INCARNATION").write_bytes(content)
    assert sd.load_incarnation() == 0
    assert not (sd.path / "INCARNATION").exists()
    assert (sd.path / "INCARNATION.corrupt-20240301T123045Z").read_bytes() == content


def test_directory_in_place_of_a_state_file_is_moved_aside(tmp_path: Path) -> None:
    sd = make(tmp_path)
    (sd.path / "INCARNATION").mkdir()
    assert sd.load_incarnation() == 0
    sd.save_incarnation(2)
    assert sd.load_incarnation() == 2


def test_rumors_round_trip(tmp_path: Path) -> None:
    sd = make(tmp_path)
    assert sd.load_rumors() is None
    sd.save_rumors(b"\x93\x01\x02\x03")
    assert make(tmp_path).load_rumors() == b"\x93\x01\x02\x03"


# -- ctl secret ----------------------------------------------------------------------------------


def test_ctl_secret_is_64_random_bytes_base64_stable_and_private(tmp_path: Path) -> None:
    sd = make(tmp_path)
    secret = sd.ctl_secret()
    assert len(base64.b64decode(secret, validate=True)) == 64
    assert mode(sd.path / "CTL_SECRET") == 0o600
    assert make(tmp_path).ctl_secret() == secret
    assert StateDir(tmp_path / "other").ctl_secret() != secret


def test_ctl_secret_operator_provided_is_kept_and_tightened(tmp_path: Path) -> None:
    sd = make(tmp_path)
    f = sd.path / "CTL_SECRET"
    f.write_text("my-own-secret\n")
    f.chmod(0o644)
    assert sd.ctl_secret() == "my-own-secret"
    assert mode(f) == 0o600


def test_empty_ctl_secret_replaced(tmp_path: Path) -> None:
    sd = make(tmp_path)
    (sd.path / "CTL_SECRET").write_text("  \n")
    secret = sd.ctl_secret()
    assert len(base64.b64decode(secret)) == 64
    assert (sd.path / "CTL_SECRET.corrupt-20240301T123045Z").exists()

"""A bad state dir at start (issue 13, items 8 and 9): values beyond what the wire can carry and
symlink loops are moved aside like other corrupt files, what cannot be fixed is described in one
line, and temp files a kill left behind are removed.

Before this change: an INCARNATION of 5,000 digits raised ValueError (Python refuses int() of
more than 4,300 digits), one of 2^64-1 was returned as is (its successor cannot be packed), a
symlink loop raised OSError(ELOOP), and stale temp files stayed forever.
"""

from __future__ import annotations

import errno
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pysup.statedir import (
    MAX_STORED_INCARNATION,
    StateDir,
    atomic_write,
    describe_error,
)

T0 = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)


def make(tmp_path: Path) -> StateDir:
    return StateDir(tmp_path / "state", clock=lambda: T0)


@pytest.mark.parametrize(
    "text",
    ["9" * 5000, str(2**64 - 1), str(MAX_STORED_INCARNATION + 1), "1" + "0" * 25],
    ids=["5000-digits", "2^64-1", "bound+1", "26-digits"],
)
def test_an_incarnation_beyond_the_bound_is_moved_aside(tmp_path: Path, text: str) -> None:
    state = make(tmp_path)
    (state.path / "INCARNATION").write_text(text + "\n")
    assert state.load_incarnation() == 0
    moved = list(state.path.glob("INCARNATION.corrupt-*"))
    assert len(moved) == 1 and moved[0].read_text() == text + "\n"


def test_the_largest_stored_incarnation_is_kept(tmp_path: Path) -> None:
    state = make(tmp_path)
    state.save_incarnation(MAX_STORED_INCARNATION)
    assert state.load_incarnation() == MAX_STORED_INCARNATION
    with pytest.raises(ValueError):
        state.save_incarnation(MAX_STORED_INCARNATION + 1)


@pytest.mark.parametrize("name", ["INCARNATION", "MEMBER_ID", "rumors.dat", "CTL_SECRET"])
def test_a_state_file_that_is_a_symlink_loop_is_moved_aside(tmp_path: Path, name: str) -> None:
    state = make(tmp_path)
    os.symlink(name, state.path / name)  # points at itself
    if name == "INCARNATION":
        assert state.load_incarnation() == 0
    elif name == "MEMBER_ID":
        assert len(state.load_or_create_member_id(random.Random(1))) == 32
    elif name == "rumors.dat":
        assert state.load_rumors() is None
    else:
        assert state.ctl_secret()
    moved = list(state.path.glob(f"{name}.corrupt-*"))
    assert len(moved) == 1 and moved[0].is_symlink()


def test_describe_error_says_what_and_how_to_fix(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".MEMBER_ID.x.tmp"))
    line = describe_error(tmp_path, full)
    assert "No space left on device" in line and "free space" in line and "\n" not in line
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    line = describe_error(loop, OSError(errno.EEXIST, "File exists", str(loop)))
    assert "symlink that does not resolve" in line and "--state-dir" in line


def test_a_state_dir_that_is_a_symlink_loop_raises_oserror(tmp_path: Path) -> None:
    loop = tmp_path / "state"
    os.symlink(loop, loop)
    with pytest.raises(OSError):
        StateDir(loop)


def test_stale_temp_files_are_removed_where_the_supervisor_writes(tmp_path: Path) -> None:
    state = make(tmp_path)
    atomic_write(state.path / "INCARNATION", b"3\n")
    config = state.svc_root / "redis" / "config"
    config.mkdir(parents=True)
    data = state.svc_root / "redis" / "data"
    data.mkdir()
    stale = [
        state.path / ".INCARNATION.k2j4h1z_.tmp",
        state.specs_dir / ".redis.spec.toml.abcdefgh.tmp",
        config / ".redis.conf.0a1b2c3d.tmp",
        state.svc_root / "redis" / ".INSTALL_STATUS.zzzzzzzz.tmp",
    ]
    kept = [
        state.path / "notes.tmp",  # not our pattern
        state.path / ".x.short.tmp",
        data / ".db.abcdefgh.tmp",  # the service's own data dir is not ours to clean
    ]
    for p in stale + kept:
        p.write_bytes(b"partial")
    removed = state.remove_stale_tmp()
    assert sorted(removed) == sorted(stale)
    assert all(not p.exists() for p in stale) and all(p.exists() for p in kept)
    assert (state.path / "INCARNATION").read_bytes() == b"3\n"

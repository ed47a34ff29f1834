"""The run process identity record and its verification (pysup.service.pidfile), on fixed data.

What is proven: only the recorded process, alive, in the same boot, with the same start time and
still its own session leader is "ours"; a reused pid (later start time, another session), a record
from before a reboot, an exited process (or its zombie) are not; cwd/exe/cmdline changes are
reported as drift, not refused (exec and chdir are normal for a run process); the record codec
round-trips and refuses what it cannot trust; the stat parser survives hostile command names.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pysup.service import adopt
from pysup.service.pidfile import (
    MAX_RECORD_BYTES,
    ProcessView,
    RecordError,
    RunRecord,
    Verdict,
    decode,
    encode,
    load_record,
    observe,
    parse_stat,
    read_pid_file,
    verify,
)
from tests.util import async_wait_for

BOOT = "4b1c8e0e-8d0d-4f47-a5c5-8c1f2f1f9e01"
RECORD = RunRecord(
    pid=4242,
    boot_id=BOOT,
    starttime=987654,
    cwd="/hab/svc/api",
    exe="/bin/sh",
    cmdline=("/bin/sh", "/hab/svc/api/hooks/run"),
    pipes={"stdout": 11, "stderr": 12},
    started_at=1_700_000_000.5,
)
SAME = ProcessView(
    pid=4242,
    boot_id=BOOT,
    starttime=987654,
    sid=4242,
    state="S",
    cwd="/hab/svc/api",
    exe="/bin/sh",
    cmdline=("/bin/sh", "/hab/svc/api/hooks/run"),
)


def test_the_recorded_process_alive_is_ours_without_drift() -> None:
    checked = verify(RECORD, SAME)
    assert checked.verdict is Verdict.OURS and checked.ours
    assert checked.drift == ()


@pytest.mark.parametrize(
    ("view", "verdict"),
    [
        (None, Verdict.GONE),
        (replace(SAME, state="Z"), Verdict.GONE),
        (replace(SAME, state="X"), Verdict.GONE),
        (replace(SAME, boot_id="another-boot"), Verdict.OTHER_BOOT),
        (replace(SAME, starttime=987655), Verdict.REUSED),
        (replace(SAME, starttime=987653), Verdict.REUSED),
        # the same start time by chance, but not the session we made: not ours either
        (replace(SAME, sid=1), Verdict.REUSED),
    ],
    ids=["no-process", "zombie", "dead", "rebooted", "later-start", "earlier-start", "session"],
)
def test_anything_else_is_not_ours(view: ProcessView | None, verdict: Verdict) -> None:
    checked = verify(RECORD, view)
    assert checked.verdict is verdict
    assert not checked.ours


def test_a_reused_pid_with_the_same_cwd_and_command_is_still_refused() -> None:
    """cwd/exe/cmdline are not what proves identity: a second instance of the same program in
    the same directory must not pass for the first."""
    assert verify(RECORD, replace(SAME, starttime=SAME.starttime + 1)).verdict is Verdict.REUSED


def test_exec_and_chdir_are_drift_not_refusal() -> None:
    moved = replace(
        SAME, cwd="/var/lib/redis", exe="/usr/bin/redis-server", cmdline=("redis-server", "*:6379")
    )
    checked = verify(RECORD, moved)
    assert checked.ours
    assert checked.drift == ("cwd", "exe", "cmdline")


def test_unreadable_fields_are_no_drift() -> None:
    """Another user's process, read without root: cwd/exe unreadable is not evidence either way."""
    checked = verify(RECORD, replace(SAME, cwd=None, exe=None, cmdline=None))
    assert checked.ours and checked.drift == ()


def test_a_view_of_another_pid_is_a_caller_bug() -> None:
    with pytest.raises(ValueError):
        verify(RECORD, replace(SAME, pid=4243))


def test_record_round_trips() -> None:
    assert decode(encode(RECORD)) == RECORD
    unreadable = replace(RECORD, cwd=None, exe=None, cmdline=None, pipes={})
    assert decode(encode(unreadable)) == unreadable


def _mutated(**changes: object) -> bytes:
    data = json.loads(encode(RECORD))
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"4242\n",  # a bare PID file's content
        b"{not json",
        b"[]",
        _mutated(version=2),
        _mutated(version=KeyError),
        _mutated(pid=1),  # init is never a run process
        _mutated(pid=-5),
        _mutated(pid="4242"),
        _mutated(pid=True),
        _mutated(starttime=KeyError),
        _mutated(starttime=1.5),
        _mutated(boot_id=""),
        _mutated(boot_id=7),
        _mutated(cwd=3),
        _mutated(cmdline="sh -c run"),
        _mutated(cmdline=["sh", 1]),
        _mutated(pipes=[11, 12]),
        _mutated(pipes={"stdout": "11"}),
        _mutated(started_at="yesterday"),
        _mutated(started_at=True),
        b" " * (MAX_RECORD_BYTES + 1),
    ],
)
def test_untrustworthy_records_are_refused(raw: bytes) -> None:
    with pytest.raises(RecordError):
        decode(raw)


@pytest.mark.parametrize(
    "comm", [b"sleep", b"a b", b"x) S 1 2", b"((", b")", b"\xff\xfe"], ids=repr
)
def test_stat_fields_are_counted_from_the_last_parenthesis(comm: bytes) -> None:
    # field 3 state, 4 ppid, 5 pgrp, 6 session, ..., 22 starttime
    tail = [b"S", b"1", b"77", b"77"] + [b"0"] * 15 + [b"123456", b"9", b"9"]
    raw = b"77 (" + comm + b") " + b" ".join(tail) + b"\n"
    assert parse_stat(raw) == ("S", 77, 123456)


def test_a_short_stat_line_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_stat(b"77 (x) S 1 2\n")


def fake_proc(tmp_path: Path) -> Path:
    """A /proc in a temp dir with our recorded process (pid 4242) in it."""
    proc = tmp_path / "proc"
    (proc / "sys/kernel/random").mkdir(parents=True)
    (proc / "sys/kernel/random/boot_id").write_text(BOOT + "\n")
    base = proc / "4242"
    base.mkdir()
    tail = [b"S", b"1", b"4242", b"4242"] + [b"0"] * 15 + [b"987654", b"0"]
    (base / "stat").write_bytes(b"4242 (sh) " + b" ".join(tail) + b"\n")
    os.symlink("/hab/svc/api", base / "cwd")
    os.symlink("/bin/sh", base / "exe")
    (base / "cmdline").write_bytes(b"/bin/sh\0/hab/svc/api/hooks/run\0")
    return proc


def test_observe_reads_a_fake_proc(tmp_path: Path) -> None:
    """`observe` against a /proc laid out in a temp dir (the real one is used by the process
    tests): stat, cwd and exe links, NUL-separated cmdline; a missing pid is None."""
    proc = fake_proc(tmp_path)
    assert observe(4242, proc) == SAME
    assert observe(4243, proc) is None


def test_an_unreadable_proc_entry_is_cannot_tell_not_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EMFILE while reading /proc must not read as "exited": the caller would start a second copy
    of a service that still runs. Only ENOENT/ESRCH mean gone."""
    proc = fake_proc(tmp_path)
    real = Path.read_bytes

    def out_of_descriptors(self: Path) -> bytes:
        if self.name == "stat":
            raise OSError(errno.EMFILE, "Too many open files")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", out_of_descriptors)
    with pytest.raises(OSError):
        observe(4242, proc)
    monkeypatch.setattr(Path, "read_bytes", real)
    assert observe(4242, proc) == SAME


async def test_an_adopted_process_is_still_watched_while_proc_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The /proc poll (no pidfd) retries on EMFILE and reports the exit only once the entry is
    really gone."""
    proc = fake_proc(tmp_path)
    monkeypatch.setattr(adopt, "POLL_S", 0.01)
    reads = 0
    real = Path.read_bytes

    def flaky(self: Path) -> bytes:
        nonlocal reads
        if self.name == "stat":
            reads += 1
            if reads <= 5:
                raise OSError(errno.EMFILE, "Too many open files")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", flaky)
    watch = adopt.ExitWatch(RECORD, None, proc)
    exited = asyncio.ensure_future(watch.exited())
    # five failed polls, then three that see the process: none of them reports an exit
    await async_wait_for(lambda: _true(reads >= 8), timeout=5, what="eight polls")
    assert not exited.done()
    shutil.rmtree(proc / "4242")
    await asyncio.wait_for(exited, timeout=5)
    watch.close()


async def _true(value: bool) -> bool:
    return value


def test_load_record_and_pid_file(tmp_path: Path) -> None:
    assert load_record(tmp_path) is None
    assert read_pid_file(tmp_path) is None
    (tmp_path / "PID.json").write_bytes(encode(RECORD))
    (tmp_path / "PID").write_text("4242\n")
    assert load_record(tmp_path) == RECORD
    assert read_pid_file(tmp_path) == 4242
    (tmp_path / "PID").write_text("not a pid\n")
    assert read_pid_file(tmp_path) is None
    (tmp_path / "PID.json").write_bytes(b"\x00garbage")
    with pytest.raises(RecordError):
        load_record(tmp_path)

"""Who a service's run process is: the record written when it starts, and its verification.

`<svc>/PID` holds the pid alone (Habitat's file, `pkg.svc_pid_file`). A pid says nothing once its
process exited: the kernel hands the number to the next process that needs one. So when the run
process starts we also write `<svc>/PID.json`, a `RunRecord` of what identifies that process for
as long as it lives, and a supervisor started later (after a SIGKILL of the previous one) adopts
or stops the process only if what `/proc` says about the pid now matches it (`verify`):

- the boot (`/proc/sys/kernel/random/boot_id`): pids and start times restart with every boot;
- the start time (`/proc/<pid>/stat` field 22, clock ticks after boot): fixed for the life of a
  process and unchanged by exec. A reused pid belongs to a process forked after ours died, so its
  start time is later: equal only if fork, death, a wrap-around of the whole pid space and a new
  fork all fit in one tick (10 ms);
- the session (`/proc/<pid>/stat` field 6): we start the run process as a session leader
  (`setsid`); a group leader cannot leave its session, so its session id stays its pid.

Working directory, executable and command line are recorded and compared too, but a difference
alone does not refuse: a run hook `exec`s its program (exe and cmdline change) and services such as
Redis and PostgreSQL `chdir` into their data directory. They are reported as `drift` for the log.
Whatever does not verify (no record, a corrupt record, another boot, another process) is never
signalled. `verify` and the codec are pure; `observe` and `boot_id` read `/proc`.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pysup.statedir import atomic_write

PID_FILE_NAME: Final = "PID"
RECORD_FILE_NAME: Final = "PID.json"
RECORD_VERSION: Final = 1
"""Bumped when a field's meaning changes; a record of another version is not trusted."""
MAX_RECORD_BYTES: Final = 64 * 1024
"""A record is a few hundred bytes (a long command line a few KiB); anything larger is corrupt and
is not parsed."""
PROC: Final = Path("/proc")


class RecordError(ValueError):
    """A record file that cannot be trusted (corrupt, truncated, another version)."""


@dataclass(frozen=True)
class ProcessView:
    """What `/proc` says about one pid at one moment."""

    pid: int
    boot_id: str
    starttime: int
    """Clock ticks after boot (`/proc/<pid>/stat` field 22)."""
    sid: int
    state: str
    """One letter (`R`, `S`, `Z`, ...); `Z`: exited, not yet reaped by its parent."""
    cwd: str | None = None
    exe: str | None = None
    cmdline: tuple[str, ...] | None = None
    """None where it could not be read (another user's process when we are not root)."""


@dataclass(frozen=True)
class RunRecord:
    """The identity of a run process, as written to `PID.json` when it started."""

    pid: int
    boot_id: str
    starttime: int
    cwd: str | None
    exe: str | None
    cmdline: tuple[str, ...] | None
    pipes: Mapping[str, int] = field(default_factory=dict)
    """Stream name (`stdout`, `stderr`) -> inode of the pipe the process writes it to: how a later
    supervisor finds a read end to reopen (`adopt.open_pipe_reader`)."""
    started_at: float = 0.0
    """Wall-clock seconds (Unix time) of the start, for display."""

    @classmethod
    def of(cls, view: ProcessView, pipes: Mapping[str, int], started_at: float) -> RunRecord:
        return cls(
            pid=view.pid,
            boot_id=view.boot_id,
            starttime=view.starttime,
            cwd=view.cwd,
            exe=view.exe,
            cmdline=view.cmdline,
            pipes=dict(pipes),
            started_at=started_at,
        )


class Verdict(enum.Enum):
    """What a recorded pid is now."""

    OURS = "ours"
    """The recorded process, alive: it may be adopted or stopped."""
    GONE = "gone"
    """No such process (or only its zombie): it exited while no supervisor watched."""
    OTHER_BOOT = "other_boot"
    """The record is from before a reboot: whatever has the pid now is another process."""
    REUSED = "reused"
    """The pid belongs to another process (later start time, or not the session we made)."""


@dataclass(frozen=True)
class Verification:
    verdict: Verdict
    drift: tuple[str, ...] = ()
    """For OURS: which of cwd, exe, cmdline differ from the record (expected after exec/chdir)."""

    @property
    def ours(self) -> bool:
        return self.verdict is Verdict.OURS


def verify(record: RunRecord, view: ProcessView | None) -> Verification:
    """Is `view` (the pid's process now; None if there is none) the process of `record`?"""
    if view is None or view.state in ("Z", "X"):
        return Verification(Verdict.GONE)
    if view.pid != record.pid:
        raise ValueError(f"view of pid {view.pid} checked against a record of {record.pid}")
    if view.boot_id != record.boot_id:
        return Verification(Verdict.OTHER_BOOT)
    if view.starttime != record.starttime or view.sid != record.pid:
        return Verification(Verdict.REUSED)
    drift = tuple(
        name
        for name, now, then in (
            ("cwd", view.cwd, record.cwd),
            ("exe", view.exe, record.exe),
            ("cmdline", view.cmdline, record.cmdline),
        )
        if now is not None and then is not None and now != then
    )
    return Verification(Verdict.OURS, drift)


# --- the record file (pure codec) -----------------------------------------------------------------


def encode(record: RunRecord) -> bytes:
    data = {
        "version": RECORD_VERSION,
        "pid": record.pid,
        "boot_id": record.boot_id,
        "starttime": record.starttime,
        "cwd": record.cwd,
        "exe": record.exe,
        "cmdline": list(record.cmdline) if record.cmdline is not None else None,
        "pipes": dict(record.pipes),
        "started_at": record.started_at,
    }
    return (json.dumps(data, sort_keys=True) + "\n").encode()


def decode(raw: bytes) -> RunRecord:
    """The record in `raw`; `RecordError` for anything that is not a complete, valid record."""
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordError(f"record of {len(raw)} bytes (at most {MAX_RECORD_BYTES})")
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise RecordError(f"not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise RecordError("not a version 1 record")
    pid = _int(data, "pid")
    if pid <= 1:
        raise RecordError(f"pid {pid} is not a run process")
    pipes = data.get("pipes")
    if not isinstance(pipes, dict) or not all(
        isinstance(k, str) and type(v) is int for k, v in pipes.items()
    ):
        raise RecordError("pipes: not a map of stream names to inodes")
    cmdline = data.get("cmdline")
    if cmdline is not None and not (
        isinstance(cmdline, list) and all(isinstance(a, str) for a in cmdline)
    ):
        raise RecordError("cmdline: not a list of strings")
    started_at = data.get("started_at")
    if not isinstance(started_at, int | float) or isinstance(started_at, bool):
        raise RecordError("started_at: not a number")
    boot = data.get("boot_id")
    if not isinstance(boot, str) or not boot:
        raise RecordError("boot_id: missing")
    return RunRecord(
        pid=pid,
        boot_id=boot,
        starttime=_int(data, "starttime"),
        cwd=_opt_str(data, "cwd"),
        exe=_opt_str(data, "exe"),
        cmdline=tuple(cmdline) if cmdline is not None else None,
        pipes=pipes,
        started_at=float(started_at),
    )


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int or value < 0:
        raise RecordError(f"{key}: not a non-negative integer")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{key}: not a string")
    return value


def parse_stat(raw: bytes) -> tuple[str, int, int]:
    """(state, sid, starttime) from the text of `/proc/<pid>/stat`. The command name (field 2)
    is in parentheses and may itself contain spaces and parentheses: fields are counted from
    the last `)`."""
    rest = raw[raw.rfind(b")") + 2 :].split()
    # rest[0] is field 3 (state), so field n is rest[n - 3]
    if len(rest) < 20:
        raise ValueError("short /proc stat line")
    return rest[0].decode(), int(rest[3]), int(rest[19])


# --- /proc (I/O) ----------------------------------------------------------------------------------


def boot_id(proc: Path = PROC) -> str:
    """This boot's id; falls back to the boot time in seconds where the id cannot be read."""
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("btime "):
            return "btime:" + line.split()[1]
    raise OSError("neither boot_id nor btime in /proc")


def observe(pid: int, proc: Path = PROC, boot: str | None = None) -> ProcessView | None:
    """What `/proc` says about `pid` now; None if there is no such process. Raises OSError when
    /proc cannot be read (EMFILE, ENFILE, EACCES): "cannot tell" must never read as "gone", or a
    supervisor out of descriptors would start a second copy of a service that still runs."""
    base = proc / str(pid)
    try:
        state, sid, starttime = parse_stat((base / "stat").read_bytes())
    except (FileNotFoundError, ProcessLookupError, ValueError):  # ESRCH: exited while read
        return None
    return ProcessView(
        pid=pid,
        boot_id=boot if boot is not None else boot_id(proc),
        starttime=starttime,
        sid=sid,
        state=state,
        cwd=_readlink(base / "cwd"),
        exe=_readlink(base / "exe"),
        cmdline=_cmdline(base / "cmdline"),
    )


def _readlink(path: Path) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _cmdline(path: Path) -> tuple[str, ...] | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return tuple(a.decode(errors="replace") for a in raw.split(b"\0")[:-1]) or None


def load_record(svc_dir: Path) -> RunRecord | None:
    """The record in `svc_dir`; None if there is none. `RecordError` if it cannot be trusted."""
    try:
        with (svc_dir / RECORD_FILE_NAME).open("rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise RecordError(f"cannot read: {e}") from None
    return decode(raw)


def read_pid_file(svc_dir: Path) -> int | None:
    """The pid in `<svc>/PID` (for the log when there is no record); None if absent or junk."""
    try:
        text = (svc_dir / PID_FILE_NAME).read_text(errors="replace")[:32].strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def write_record(svc_dir: Path, record: RunRecord) -> None:
    """`PID.json`, then `PID` (each atomically): a supervisor killed between the two writes
    leaves the record, which is what adoption reads. Raises OSError."""
    atomic_write(svc_dir / RECORD_FILE_NAME, encode(record), 0o644)
    atomic_write(svc_dir / PID_FILE_NAME, f"{record.pid}\n".encode(), 0o644)


def forget(svc_dir: Path) -> None:
    """Remove `PID.json` and `PID` (the process exited, or they named no process of ours)."""
    for name in (RECORD_FILE_NAME, PID_FILE_NAME):
        with contextlib.suppress(FileNotFoundError):
            (svc_dir / name).unlink()

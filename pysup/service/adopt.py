"""Taking over a run process that a previous supervisor started: its exit, its output.

A process we did not fork cannot be `waitpid()`ed: when the supervisor that started it was killed,
it was reparented to init (or the nearest subreaper) and only that parent learns its exit status.
`ExitWatch` learns *that* it exited from a pidfd (`pidfd_open`, Linux >= 5.3: the fd becomes
readable when the process exits; it is opened before the identity check, so a check that sees our
process proves the pidfd refers to it); without pidfds it polls `/proc` for the same identity. The
exit status stays unknown (None).

Output. The run process writes to pipes whose read end the supervisor pumps into `logs/` and its
own log. When the supervisor dies the read end goes with it, and a service's next write would die
of SIGPIPE (or EPIPE). So every run process also inherits a spare read end of each of its pipes
(`spare_reader`), which it never reads: writes keep succeeding into the pipe buffer (64 KiB on
Linux) while no supervisor runs, and block once it is full, until one reads again. The adopting
supervisor opens a read end of the same pipe through `/proc/<pid>/fd/` (`open_pipe_reader`) and
pumps it again (`ReopenedPipe`): what was written meanwhile reaches the log files (only what the
killed supervisor had read but not yet written is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

import structlog

from pysup.faults import RateLimiter
from pysup.service.hooks import LineSink, OutputPipe, open_log
from pysup.service.pidfile import (
    PROC,
    RecordError,
    RunRecord,
    Verification,
    forget,
    load_record,
    observe,
    read_pid_file,
    verify,
)

log = structlog.get_logger(__name__)

POLL_S: Final = 0.5
"""Seconds between `/proc` checks of an adopted process where pidfds are unavailable: how late its
exit may be noticed (and its restart begin). One stat read per adopted process per period."""
POLL_LOG_INTERVAL_S: Final = 60.0
"""At most one `adopt.poll_failed` line a minute while /proc cannot be read (a descriptor shortage
can last; one line a poll would flood the log it is reported in)."""


def spare_reader(write_fd: int) -> int:
    """A new read end of the pipe whose write end is `write_fd` (opening a pipe through `/proc`
    gives an end of the mode asked for). The caller passes it to the child and closes its own."""
    return os.open(f"/proc/self/fd/{write_fd}", os.O_RDONLY | os.O_CLOEXEC)


def spare_readers(*write_fds: int, service_group: str) -> list[int]:
    """`spare_reader` of each pipe; none where `/proc` cannot give them (logged: the process
    runs, but would die of SIGPIPE at its next write if the supervisor were killed)."""
    spares: list[int] = []
    try:
        for fd in write_fds:
            spares.append(spare_reader(fd))
    except OSError as e:
        log.warning("service.spare_reader_failed", service_group=service_group, error=str(e))
    return spares


def pipe_inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def open_pipe_reader(pid: int, inode: int, proc: Path = PROC) -> int | None:
    """A non-blocking read end of pipe `inode`, opened through one of `pid`'s fds that refers to
    it (its stdout, or the spare read end); None if it has none left or we may not open it."""
    fd_dir = proc / str(pid) / "fd"
    want = f"pipe:[{inode}]"
    try:
        names = sorted(os.listdir(fd_dir), key=lambda n: int(n) if n.isdigit() else -1)
    except OSError:
        return None
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(fd_dir / name) == want:
                return os.open(fd_dir / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return None


def find_orphan(
    svc_dir: Path, service_group: str, proc: Path = PROC
) -> tuple[ExitWatch | None, Verification | None]:
    """The run process a killed supervisor left, verified and watched (`ExitWatch`), or None and
    why: the verification, or None when there was no record to verify. What does not verify is
    never signalled; its PID files are removed (the next start writes new ones)."""
    try:
        record = load_record(svc_dir)
    except RecordError as e:
        log.warning("service.pid_record_invalid", service_group=service_group, error=str(e))
        forget(svc_dir)
        return None, None
    if record is None:
        pid = read_pid_file(svc_dir)
        if pid is not None:  # Habitat's or an older pysup's: nothing proves whose pid it is
            log.warning("service.pid_unverified", service_group=service_group, pid=pid)
            forget(svc_dir)
        return None, None
    watch, checked = ExitWatch.take(record, proc)
    if watch is None:
        verdict = checked.verdict.value
        log.info("service.pid_stale", service_group=service_group, pid=record.pid, verdict=verdict)
        forget(svc_dir)
    return watch, checked


Sink = Callable[[str, IO[bytes] | None], LineSink]
"""(stream name, its log file or None) -> where its lines go."""


def reopen_output(
    record: RunRecord, log_dir: Path, sink: Sink
) -> tuple[list[OutputPipe], list[IO[bytes]], list[str]]:
    """Pump the adopted process's stdout and stderr again: (pipes started, log files opened for
    them, streams whose pipe could not be reopened)."""
    pipes: list[OutputPipe] = []
    files: list[IO[bytes]] = []
    lost: list[str] = []
    for stream in ("stdout", "stderr"):
        inode = record.pipes.get(stream)
        fd = open_pipe_reader(record.pid, inode) if inode is not None else None
        if fd is None:
            lost.append(stream)
            continue
        file: IO[bytes] | None = None
        try:
            file = open_log(log_dir, "run", stream)
            files.append(file)
        except OSError as e:  # the lines still reach the supervisor log
            log.warning("service.log_open_failed", path=str(log_dir), error=str(e))
        pipe = ReopenedPipe(sink(stream, file), fd)
        pipe.child_started()
        pipes.append(pipe)
    return pipes, files, lost


class ReopenedPipe(OutputPipe):
    """An `OutputPipe` that pumps a reopened read end instead of a pipe of its own."""

    def __init__(self, sink: LineSink, read_fd: int) -> None:
        super().__init__(sink)
        # Drop the fresh pipe the base class made; pump `read_fd` in its place.
        self.close_write_end()
        os.close(self._read_fd)
        self._read_fd = read_fd


class ExitWatch:
    """Learns when a process that is not our child exits (see the module docstring)."""

    def __init__(self, record: RunRecord, pidfd: int | None, proc: Path = PROC) -> None:
        self.record = record
        self._pidfd = pidfd
        self._proc = proc
        self._exited: asyncio.Future[None] | None = None
        self._poll_log = RateLimiter(POLL_LOG_INTERVAL_S)

    @classmethod
    def take(cls, record: RunRecord, proc: Path = PROC) -> tuple[ExitWatch | None, Verification]:
        """Verify the recorded process and, if it is ours, start watching it.

        The pidfd is opened *before* the check: a pid cannot go from our process to another and
        back, so if the check sees our process alive, the pidfd was opened on it.
        """
        pidfd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                pidfd = pidfd_open(record.pid)
            except ProcessLookupError:
                pass  # gone: `verify` says so below
            except OSError as e:  # ENOSYS (old kernel), EPERM (seccomp): poll /proc instead
                log.debug("adopt.pidfd_unavailable", error=str(e))
        checked = verify(record, observe(record.pid, proc))
        if not checked.ours:
            if pidfd is not None:
                os.close(pidfd)
            return None, checked
        return cls(record, pidfd, proc), checked

    @property
    def pid(self) -> int:
        return self.record.pid

    def exited(self) -> asyncio.Future[None]:
        """Resolves when the process has exited. Call from the event loop."""
        if self._exited is None:
            loop = asyncio.get_running_loop()
            self._exited = loop.create_future()
            if self._pidfd is not None:
                loop.add_reader(self._pidfd, self._on_exit)
            else:
                task = loop.create_task(self._poll())
                _polls.add(task)
                task.add_done_callback(_polls.discard)
        return self._exited

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)

    async def _poll(self) -> None:
        while True:  # a polling period: there is nothing to wait on without a pidfd
            try:
                view = observe(self.record.pid, self._proc)
            except OSError as e:  # cannot tell (out of descriptors): ask again next period
                held = self._poll_log.allow("poll")
                if held is not None:
                    log.warning("adopt.poll_failed", pid=self.record.pid, error=str(e), held=held)
            else:
                if not verify(self.record, view).ours:
                    self._on_exit()
                    return
            await asyncio.sleep(POLL_S)

    def close(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


_polls: set[asyncio.Task[None]] = set()

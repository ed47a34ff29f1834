"""The supervised run process of a service, and the supervisor that keeps it up.

`SupervisedProcess` runs one incarnation at a time of either the rendered `run` hook (a file) or the
plan's `pkg_svc_run` command (`/bin/sh -c 'exec <cmd>'`), in its own session and process group, with
the service's cwd, environment and user. Its stdout/stderr are streamed (never buffered) to
`<log_dir>/run.stdout.log` / `run.stderr.log` and to the supervisor log as `hook.output` events with
the `svc.group(run)` prefix. While it runs, `<svc_dir>/PID` holds its pid and `<svc_dir>/PID.json`
what identifies it (`pidfile.RunRecord`). When the leader exits, whatever it left in its process
group is SIGKILLed (a restart must not find the old instance's children holding its ports).

Its own session means it outlives a supervisor killed with SIGKILL. The next supervisor `adopt`s it
(`pidfile.verify` first: a reused pid is never touched) and supervises it as if it had started it:
exit noticed through a pidfd (the exit code is then unknown), output pumped again (`adopt`), stop
by signal as usual.

`ProcessSupervisor` keeps it up while `desired_up`: an unexpected exit is logged (`service.exited`)
and followed, after `RestartBackoff.next_delay`, by a restart (`service.restart`). The service layer
drives it: `start()`, `stop()` (shutdown signal, timeout, SIGKILL; it runs post-stop itself),
`restart()` for an immediate restart (config change) and `on_state_change`/`on_exit` callbacks
(e.g. run post-run after each UP).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import structlog

from pysup.service.adopt import find_orphan, pipe_inode, reopen_output, spare_readers
from pysup.service.backoff import RestartBackoff
from pysup.service.hooks import (
    HookError,
    LineSink,
    OutputPipe,
    ensure_executable,
    hook_argv,
    kill_group,
    open_log,
    release_when_reaped,
    signal_number,
    spawn_credentials,
)
from pysup.service.pidfile import (
    PID_FILE_NAME,
    RunRecord,
    Verification,
    forget,
    observe,
    write_record,
)
from pysup.service.reaper import spawn_registered

log = structlog.get_logger(__name__)

#: Habitat's `pkg_shutdown_timeout_sec` default.
DEFAULT_SHUTDOWN_TIMEOUT_S = 8.0
_SHELL = "/bin/sh"


class ProcessState(enum.Enum):
    """`process.state` in the HTTP API."""

    UP = "up"
    DOWN = "down"


class ProcessError(Exception):
    """The run process could not be started (or was started twice)."""


StateCallback = Callable[[ProcessState], None]


class SupervisedProcess:
    """One service's run process: start, stop, wait; restartable (one incarnation at a time)."""

    def __init__(
        self,
        *,
        service_group: str,
        svc_dir: Path,
        env: Mapping[str, str],
        run_hook: Path | None = None,
        run_cmd: str | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        group: str | None = None,
        log_dir: Path | None = None,
        on_state_change: StateCallback | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Exactly one of `run_hook` (a file) and `run_cmd` (`pkg_svc_run`) must be given.

        `cwd` defaults to `svc_dir`, `log_dir` to `svc_dir/logs`. `env` is the complete environment.
        """
        if (run_hook is None) == (run_cmd is None):
            raise ValueError("exactly one of run_hook and run_cmd is required")
        self.service_group = service_group
        self.svc_dir = svc_dir
        self.env = dict(env)
        self.run_hook = run_hook
        self.run_cmd = run_cmd
        self.cwd = cwd if cwd is not None else svc_dir
        self.user = user
        self.group = group
        self.log_dir = log_dir if log_dir is not None else svc_dir / "logs"
        self.on_state_change = on_state_change
        self._wall_clock = wall_clock
        self._pid: int | None = None
        self._exited: asyncio.Future[int | None] | None = None
        self._notify = True
        self.adopted = False
        """The current (or last) incarnation was adopted from a previous supervisor."""
        self._state = ProcessState.DOWN
        self._state_entered = wall_clock()
        self.restart_count = 0
        """Restarts after unexpected exits (Habitat's `restart_count`). Maintained by the owner
        (`ProcessSupervisor` counts backoff restarts and zeroes it on an immediate restart)."""
        self.last_exit_code: int | None = None
        """The exit code of the last incarnation; negative = killed by that signal; None when
        unknown (an adopted process is not our child: its status goes to its parent)."""

    @property
    def pid(self) -> int | None:
        return self._pid if self._state is ProcessState.UP else None

    @property
    def state(self) -> ProcessState:
        return self._state

    @property
    def state_entered(self) -> float:
        """Wall-clock seconds (Unix time) of the last state change (API `process.state_entered`)."""
        return self._state_entered

    @property
    def pid_file(self) -> Path:
        return self.svc_dir / PID_FILE_NAME

    @property
    def running(self) -> bool:
        """An incarnation exists and has not finished exiting yet."""
        return self._exited is not None and not self._exited.done()

    def _argv(self) -> list[str]:
        if self.run_hook is not None:
            ensure_executable(self.run_hook)
            return hook_argv(self.run_hook)
        assert self.run_cmd is not None
        return [_SHELL, "-c", f"exec {self.run_cmd}"]

    async def start(self) -> int:
        """Spawn the run process; returns its pid. Raises `ProcessError` if it cannot start."""
        if self.running:
            raise ProcessError(f"{self.service_group}: run process already running")
        what = f"{self.service_group}(run)"
        try:
            creds = spawn_credentials(self.user, self.group, what=what)
            argv = self._argv()
        except HookError as e:
            raise ProcessError(str(e)) from e
        try:
            out_file = open_log(self.log_dir, "run", "stdout")
            err_file = open_log(self.log_dir, "run", "stderr")
        except OSError as e:
            raise ProcessError(f"{what}: cannot open logs in {self.log_dir}: {e}") from e
        files = (out_file, err_file)
        out = OutputPipe(self._sink("stdout", out_file))
        err = OutputPipe(self._sink("stderr", err_file))
        pipes = {"stdout": pipe_inode(out.write_fd), "stderr": pipe_inode(err.write_fd)}
        spares = spare_readers(out.write_fd, err.write_fd, service_group=self.service_group)
        try:
            proc = await spawn_registered(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out.write_fd,
                stderr=err.write_fd,
                pass_fds=spares,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                **creds,
            )
        except (OSError, ValueError) as e:
            out.close()
            err.close()
            out_file.close()
            err_file.close()
            raise ProcessError(f"{what}: cannot start {argv[0]}: {e}") from e
        finally:
            for fd in spares:
                os.close(fd)
        out.child_started()
        err.child_started()
        self._write_record(proc.pid, pipes)
        self._begin(proc.pid, adopted=False, notify=True)
        log.info("service.started", service_group=self.service_group, pid=proc.pid)
        self._follow(proc.pid, proc.wait(), lambda: release_when_reaped(proc), (out, err), files)
        return proc.pid

    def adopt(self, *, notify: bool = True) -> Verification | None:
        """Take over the run process a previous supervisor left running, if its record verifies.

        Returns the verification (`.ours`: it is now UP and watched) or None when there was no
        record to verify (`adopt.find_orphan`: nothing that does not verify is signalled).
        `notify=False` keeps `on_state_change` quiet for this incarnation (it is about to be
        stopped, not served).
        """
        if self.running:
            raise ProcessError(f"{self.service_group}: run process already running")
        sg = self.service_group
        watch, checked = find_orphan(self.svc_dir, sg)
        if watch is None or checked is None:
            return checked
        record = watch.record
        pipes, files, lost = reopen_output(record, self.log_dir, self._sink)
        if lost:  # it runs on; what it writes there waits in the pipe (or it has no pipe left)
            log.warning("service.adopt_output_lost", service_group=sg, streams=lost)
        self._begin(record.pid, adopted=True, notify=notify, since=record.started_at or None)
        log.info("service.adopted", service_group=sg, pid=record.pid, drift=list(checked.drift))
        self._follow(record.pid, watch.exited(), watch.close, pipes, files)
        return checked

    def _sink(self, stream: str, file: IO[bytes] | None) -> LineSink:
        return LineSink(service_group=self.service_group, hook="run", stream=stream, file=file)

    def _write_record(self, pid: int, pipes: Mapping[str, int]) -> None:
        try:
            view = observe(pid)  # our child, not reaped yet: the entry cannot be another's
            if view is None:
                raise OSError(f"no /proc entry for pid {pid}")
            write_record(self.svc_dir, RunRecord.of(view, pipes, self._wall_clock()))
        except OSError as e:  # it runs, but a supervisor killed now could not adopt it
            log.warning("service.pid_file_failed", service_group=self.service_group, error=str(e))

    def _begin(self, pid: int, *, adopted: bool, notify: bool, since: float | None = None) -> None:
        self._pid = pid
        self.adopted = adopted
        self._notify = notify
        self._exited = asyncio.get_running_loop().create_future()
        self._set_state(ProcessState.UP, since)

    def _follow(
        self,
        pid: int,
        exit_code: Awaitable[int | None],
        release: Callable[[], None],
        pipes: Sequence[OutputPipe],
        files: Sequence[IO[bytes]],
    ) -> None:
        assert self._exited is not None
        task = asyncio.get_running_loop().create_task(
            self._watch(pid, exit_code, release, self._exited, pipes, files)
        )
        _watchers.add(task)
        task.add_done_callback(_watchers.discard)

    async def _watch(
        self,
        pid: int,
        exit_code: Awaitable[int | None],
        release: Callable[[], None],
        exited: asyncio.Future[int | None],
        pipes: Sequence[OutputPipe],
        files: Sequence[IO[bytes]],
    ) -> None:
        code: int | None = None
        try:
            code = await exit_code
        finally:
            release()
            if kill_group(pid, signal.SIGKILL):
                log.debug("service.stragglers_killed", service_group=self.service_group)
            forget(self.svc_dir)
            self.last_exit_code = code
            self._set_state(ProcessState.DOWN)
            try:
                await asyncio.gather(*(p.finish() for p in pipes))
            finally:
                for p in pipes:
                    p.close()
                for f in files:
                    f.close()
                if not exited.done():
                    exited.set_result(code)

    def _set_state(self, state: ProcessState, since: float | None = None) -> None:
        self._state = state
        self._state_entered = self._wall_clock() if since is None else since
        if self.on_state_change is not None and self._notify:
            try:
                self.on_state_change(state)
            except Exception:
                log.exception("service.callback_failed", service_group=self.service_group)

    async def wait(self) -> int | None:
        """Wait until the current (or last) incarnation has exited; its exit code (None: unknown,
        see `last_exit_code`)."""
        if self._exited is None:
            raise ProcessError(f"{self.service_group}: run process was never started")
        return await asyncio.shield(self._exited)

    async def stop(
        self, signal_name: str = "TERM", timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    ) -> None:
        """Signal the process group; SIGKILL it after `timeout_s`; return when reaped.

        A no-op when nothing runs.
        """
        sig = signal_number(signal_name)
        if not self.running or self._pid is None or self._exited is None:
            return
        pid = self._pid
        log.info("service.stopping", service_group=self.service_group, pid=pid, signal=sig.name)
        kill_group(pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), timeout_s)
        except TimeoutError:
            log.warning(
                "service.kill", service_group=self.service_group, pid=pid, timeout_s=timeout_s
            )
            kill_group(pid, signal.SIGKILL)
            await asyncio.shield(self._exited)


_watchers: set[asyncio.Task[None]] = set()

ExitCallback = Callable[[int | None, float | None], None]


class ProcessSupervisor:
    """Keeps a `SupervisedProcess` up while `desired_up`, restarting it with backoff."""

    def __init__(
        self,
        process: SupervisedProcess,
        *,
        backoff: RestartBackoff | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        shutdown_signal: str = "TERM",
        shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S,
        on_exit: ExitCallback | None = None,
    ) -> None:
        """`on_exit(exit_code, restart_delay_s)` is called after every *unexpected* exit (exit code
        None: it could not even start) with the delay before the restart attempt."""
        self.process = process
        self.backoff = backoff if backoff is not None else RestartBackoff()
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self.shutdown_signal = shutdown_signal
        self.shutdown_timeout_s = shutdown_timeout_s
        self.on_exit = on_exit
        self._desired_up = False
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None
        self.next_restart_at: float | None = None
        """`clock()` time of the pending restart, if one is pending."""

    async def adopt(self, *, stop: bool = False) -> Verification | None:
        """At load: take over the run process a killed supervisor left (`SupervisedProcess.adopt`)
        and keep it up from now on; with `stop`, stop it instead (shutdown signal, timeout, KILL),
        so that the caller starts a fresh one. Returns the verification (None: no record)."""
        async with self._lock:
            checked = self.process.adopt(notify=not stop)
            if checked is None or not checked.ours:
                return checked
            if stop:
                log.info("service.orphan_stopping", service_group=self.process.service_group)
                await self.process.stop(self.shutdown_signal, self.shutdown_timeout_s)
                return checked
            self._desired_up = True
            self.backoff.record_start(self._clock())
        self._ensure_monitor()
        return checked

    @property
    def desired_up(self) -> bool:
        return self._desired_up

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def state(self) -> ProcessState:
        return self.process.state

    @property
    def state_entered(self) -> float:
        return self.process.state_entered

    @property
    def restart_count(self) -> int:
        return self.process.restart_count

    async def start(self) -> bool:
        """Want the process up and start it now; True if it is up.

        If it cannot start (`service.start_failed` is logged), it is retried with backoff.
        """
        self._desired_up = True
        self._wake.set()  # a pending backoff sleep ends: we are starting now
        async with self._lock:
            if not self.process.running:
                await self._try_start()
        self._ensure_monitor()
        return self.process.state is ProcessState.UP

    async def stop(self, signal_name: str | None = None, timeout_s: float | None = None) -> None:
        """Want it down: cancel a pending restart, stop it (see `SupervisedProcess.stop`)."""
        self._desired_up = False
        self._wake.set()
        async with self._lock:
            await self.process.stop(
                signal_name or self.shutdown_signal,
                self.shutdown_timeout_s if timeout_s is None else timeout_s,
            )
        if self._monitor is not None:
            try:
                await self._monitor
            except Exception:
                log.exception("service.monitor_failed", service_group=self.process.service_group)
            self._monitor = None
        self.next_restart_at = None

    async def restart(self) -> bool:
        """An immediate restart (config or hook change): no backoff, counters reset (as Habitat)."""
        await self.stop()
        self.backoff.reset()
        self.process.restart_count = 0
        return await self.start()

    async def close(self) -> None:
        await self.stop()

    def _ensure_monitor(self) -> None:
        if self._monitor is None or self._monitor.done():
            self._monitor = asyncio.get_running_loop().create_task(self._run())

    async def _try_start(self) -> bool:
        try:
            await self.process.start()
        except ProcessError as e:
            log.error(
                "service.start_failed", service_group=self.process.service_group, error=str(e)
            )
            return False
        self.backoff.record_start(self._clock())
        return True

    def _wanted(self) -> bool:
        # A method, not the attribute: it changes across awaits (mypy would narrow the attribute).
        return self._desired_up

    async def _run(self) -> None:
        sg = self.process.service_group
        while self._wanted():
            code: int | None = None
            if self.process.running or self.process.state is ProcessState.UP:
                code = await self.process.wait()
            if not self._wanted():
                return
            now = self._clock()
            self.backoff.record_exit(now)
            delay = self.backoff.next_delay(self._rng)
            log.warning("service.exited", service_group=sg, exit_code=code)
            if self.on_exit is not None:
                try:
                    self.on_exit(code, delay)
                except Exception:
                    log.exception("service.callback_failed", service_group=sg)
            log.info(
                "service.restart",
                service_group=sg,
                delay_s=round(delay, 3),
                attempt=self.backoff.attempts,
            )
            self.next_restart_at = now + delay
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self.next_restart_at = None
            async with self._lock:
                if not self._wanted():
                    return
                if not self.process.running:  # `start()` may have started it meanwhile
                    self.process.restart_count += 1
                    await self._try_start()

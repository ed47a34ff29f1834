"""Running lifecycle hooks (install, init, health-check, ...) as real processes, with asyncio.

A hook file is executed directly (its shebang; `/bin/sh` when it has none) in its own session and
process group, with its stdout and stderr streamed line by line to

- the supervisor log: structlog event `hook.output` with `service_group`, `hook`, `stream`, `line`
  and `text` = `"<svc.group>(<hook>): <line>"` (Habitat's `svc.group(HOOK)` preamble), and
- `<log_dir>/<hook>.stdout.log` / `<log_dir>/<hook>.stderr.log` (appended).

Output pipes are our own `os.pipe()`s, not asyncio's subprocess pipes: with asyncio's pipes
`Process.wait()` only returns once every holder of the pipe closed it, so a hook that leaves a
background child behind (`daemon &`) would hang the supervisor. We wait for the hook process itself,
then give the pipes a short drain period and close them.

On timeout the whole process group gets SIGTERM, then SIGKILL after a grace period. The same
building blocks (`OutputPipe`, `LineSink`, `spawn_credentials`, `kill_group`) serve `process.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import signal
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import structlog

from pysup.service.hooknames import HOOK_NAMES  # Habitat's hook file names
from pysup.service.reaper import CHILDREN, spawn_registered

log = structlog.get_logger(__name__)

#: Bytes of each stream kept in a `HookResult`.
DEFAULT_TAIL_BYTES: Final = 4096
#: Seconds between SIGTERM and SIGKILL of a hook's process group after its timeout.
DEFAULT_KILL_GRACE_S: Final = 2.0
#: Seconds to keep reading output after the hook exited (a leftover child may hold the pipe).
DRAIN_S: Final = 0.5
#: A line longer than this many bytes is logged in pieces (memory stays bounded).
MAX_LINE_BYTES: Final = 64 * 1024
_READ_CHUNK: Final = 64 * 1024
_SHELL: Final = "/bin/sh"
_U64_MAX: Final = 2**64 - 1


class HookError(Exception):
    """A hook could not be started (missing file, bad interpreter, unknown user)."""


class SuitabilityError(ValueError):
    """The suitability hook's last stdout line is not an unsigned 64-bit integer."""


@dataclass(frozen=True)
class HookResult:
    """The outcome of one hook run."""

    name: str
    exit_code: int | None
    """The exit code; negative = killed by that signal; None when it timed out."""
    timed_out: bool
    stdout_tail: str
    """The last `DEFAULT_TAIL_BYTES` (or `tail_bytes`) of stdout, decoded leniently."""
    stderr_tail: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def parse_suitability(stdout: str) -> int:
    """The suitability hook's value: the last non-empty stdout line as an unsigned 64-bit int."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise SuitabilityError("suitability hook printed nothing")
    last = lines[-1]
    if not last.isdigit() or not last.isascii():
        raise SuitabilityError(f"suitability is not an unsigned integer: {last[:80]!r}")
    value = int(last)
    if value > _U64_MAX:
        raise SuitabilityError(f"suitability does not fit in u64: {last[:80]!r}")
    return value


def spawn_credentials(user: str | None, group: str | None, *, what: str) -> dict[str, Any]:
    """Keyword arguments for `create_subprocess_exec` that run the child as `user`/`group`.

    Only when we are root; otherwise the request is ignored with a debug log (as an unprivileged
    supervisor, we can only run things as ourselves). Without `group` the user's primary group is
    used; supplementary groups are dropped.
    """
    if user is None and group is None:
        return {}
    if os.geteuid() != 0:
        log.debug("hook.user_ignored", what=what, user=user, group=group, reason="not root")
        return {}
    kwargs: dict[str, Any] = {"extra_groups": []}
    gid: int | None = None
    if user is not None:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise HookError(f"{what}: unknown user {user!r}") from None
        kwargs["user"] = pw.pw_uid
        gid = pw.pw_gid
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise HookError(f"{what}: unknown group {group!r}") from None
    kwargs["group"] = gid
    return kwargs


def signal_number(name: str) -> signal.Signals:
    """`"TERM"`, `"SIGTERM"` or `"15"` -> `signal.SIGTERM`."""
    text = name.strip().upper()
    if text.isdigit():
        return signal.Signals(int(text))
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return signal.Signals[text]
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def kill_group(pgid: int, sig: int) -> bool:
    """Send `sig` to process group `pgid`; False if no member exists any more."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def ensure_executable(path: Path) -> None:
    """Set mode 0755 on a hook file (Habitat renders hooks with 0755); best effort."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != 0o755:
            path.chmod(0o755)
    except OSError as e:
        log.debug("hook.chmod_failed", path=str(path), error=str(e))


_SHEBANG_MAX: Final = 256
"""Bytes of a hook's first line read for its shebang (Linux reads at most 256)."""


def shebang(head: bytes) -> tuple[str, str | None] | None:
    """(interpreter, optional argument) of a ``#!`` line, as the kernel splits it; None without
    one. The interpreter keeps a trailing ``\r`` (a file saved with Windows line endings), since
    that is what the kernel tries to execute."""
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "surrogateescape")
    interp, _, arg = line.strip(" \t").partition(" ")
    if not interp:
        return None
    arg = arg.strip(" \t")
    return interp, arg or None


def missing_interpreter(path: Path, head: bytes) -> str | None:
    """Why the shebang interpreter of hook `path` cannot run, or None when it can (or there is
    none). Names the interpreter: ``exec`` itself would only say that the *hook* is missing."""
    parsed = shebang(head)
    if parsed is None:
        return None
    interp = parsed[0]
    if interp.endswith("\r"):
        return (
            f"{path}: the interpreter {interp!r} of its #! line does not exist: the file has "
            "Windows line endings (CRLF); convert it to LF"
        )
    target = Path(interp) if interp.startswith("/") else path.parent / interp
    if not target.exists():
        return f"{path}: the interpreter {interp} named by its #! line does not exist"
    if target.is_dir() or not os.access(target, os.X_OK):
        return f"{path}: the interpreter {interp} named by its #! line is not executable"
    return None


def hook_argv(path: Path) -> list[str]:
    """How to execute a hook file: directly when it has a shebang (and is executable), else sh.

    Raises `HookError` naming the interpreter when its shebang's interpreter does not exist."""
    try:
        with path.open("rb") as f:
            head = f.read(_SHEBANG_MAX)
    except OSError as e:
        raise HookError(f"cannot read hook {path}: {e}") from e
    if head.startswith(b"#!") and os.access(path, os.X_OK):
        problem = missing_interpreter(path, head)
        if problem is not None:
            raise HookError(problem)
        return [str(path)]
    return [_SHELL, str(path)]


class LineSink:
    """Where the lines of one output stream go: a log file, the supervisor log, a bounded tail."""

    def __init__(
        self,
        *,
        service_group: str,
        hook: str,
        stream: str,
        file: IO[bytes] | None,
        tail_bytes: int = 0,
    ) -> None:
        self._service_group = service_group
        self._hook = hook
        self._stream = stream
        self._prefix = f"{service_group}({hook})"
        self._file = file
        self._tail_bytes = tail_bytes
        self._tail = bytearray()
        self.lines = 0

    def line(self, raw: bytes) -> None:
        """One line without its newline."""
        self.lines += 1
        if self._file is not None:
            try:
                self._file.write(raw + b"\n")
            except OSError as e:  # disk full: keep the service running, say so once per line
                log.warning("hook.log_write_failed", hook=self._hook, error=str(e))
        if self._tail_bytes > 0:
            self._tail += raw + b"\n"
            if len(self._tail) > 2 * self._tail_bytes:
                del self._tail[: len(self._tail) - self._tail_bytes]
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        log.info(
            "hook.output",
            service_group=self._service_group,
            hook=self._hook,
            stream=self._stream,
            line=text,
            text=f"{self._prefix}: {text}",
        )

    @property
    def hook(self) -> str:
        return self._hook

    @property
    def tail(self) -> str:
        return bytes(self._tail[-self._tail_bytes :]).decode("utf-8", errors="replace")


class OutputPipe:
    """An `os.pipe()` whose write end goes to a child and whose read end is pumped into a sink."""

    def __init__(self, sink: LineSink) -> None:
        self.sink = sink
        self._read_fd, self.write_fd = os.pipe()
        self._transport: asyncio.ReadTransport | None = None
        self._task: asyncio.Task[None] | None = None

    def child_started(self) -> None:
        """Close our copy of the write end (the child has its own) and start pumping."""
        self.close_write_end()
        self._task = asyncio.get_running_loop().create_task(self._pump())

    def close_write_end(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_CHUNK, loop=loop)
        pipe = os.fdopen(self._read_fd, "rb", buffering=0)
        self._read_fd = -1
        try:
            self._transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
            )
        except BaseException:
            pipe.close()
            raise
        buf = bytearray()
        while chunk := await reader.read(_READ_CHUNK):
            buf += chunk
            start = 0
            while (nl := buf.find(b"\n", start)) >= 0:
                self.sink.line(bytes(buf[start:nl]))
                start = nl + 1
            del buf[:start]
            while len(buf) >= MAX_LINE_BYTES:
                self.sink.line(bytes(buf[:MAX_LINE_BYTES]))
                del buf[:MAX_LINE_BYTES]
        if buf:
            self.sink.line(bytes(buf))

    async def finish(self, drain_s: float = DRAIN_S) -> None:
        """After the child exited: read what is left for up to `drain_s`, then close."""
        try:
            if self._task is not None:
                done, _ = await asyncio.wait({self._task}, timeout=drain_s)
                if not done:
                    log.debug("hook.output_held_open", hook=self.sink.hook)
                    self._task.cancel()
                    try:
                        await self._task
                    except asyncio.CancelledError:
                        current = asyncio.current_task()
                        if current is not None and current.cancelling():
                            raise  # we were cancelled too: do not swallow it
                elif (exc := self._task.exception()) is not None:
                    log.warning("hook.output_failed", hook=self.sink.hook, error=str(exc))
        finally:
            self.close()

    def close(self) -> None:
        self.close_write_end()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1


def open_log(log_dir: Path, name: str, stream: str) -> IO[bytes]:
    """`<log_dir>/<name>.<stream>.log`, opened for appending, unbuffered (`tail -f` sees lines)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return open(log_dir / f"{name}.{stream}.log", "ab", buffering=0)


_pending_releases: set[asyncio.Task[None]] = set()


def release_when_reaped(proc: asyncio.subprocess.Process) -> None:
    """Drop `proc`'s pid from the reaper registry once asyncio has reaped it."""
    if proc.returncode is not None:
        CHILDREN.release(proc.pid)
        return

    async def _later() -> None:
        with contextlib.suppress(Exception):
            await proc.wait()
        CHILDREN.release(proc.pid)

    task = asyncio.get_running_loop().create_task(_later())
    _pending_releases.add(task)
    task.add_done_callback(_pending_releases.discard)


async def terminate_group(
    proc: asyncio.subprocess.Process, sig: int, grace_s: float
) -> asyncio.subprocess.Process:
    """Send `sig` to `proc`'s process group, SIGKILL the group after `grace_s`, wait until reaped.

    After the leader is gone, SIGKILL whatever is left of the group (children it left behind).
    """
    kill_group(proc.pid, sig)
    try:
        await asyncio.wait_for(proc.wait(), grace_s)
    except TimeoutError:
        kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
    kill_group(proc.pid, signal.SIGKILL)
    return proc


async def run_hook(
    name: str,
    path: Path,
    *,
    service_group: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    log_dir: Path,
    user: str | None = None,
    group: str | None = None,
    kill_grace_s: float = DEFAULT_KILL_GRACE_S,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
) -> HookResult:
    """Run hook `name` (one of `HOOK_NAMES`) from file `path`; see the module docstring.

    Raises `HookError` when the hook cannot be started. Cancelling the caller kills the hook's
    process group.
    """
    if name not in HOOK_NAMES:
        raise ValueError(f"unknown hook name {name!r}")
    what = f"{service_group}({name})"
    creds = spawn_credentials(user, group, what=what)
    ensure_executable(path)
    argv = hook_argv(path)
    with open_log(log_dir, name, "stdout") as out_file, open_log(log_dir, name, "stderr") as err:
        out = _pipe(service_group, name, "stdout", out_file, tail_bytes)
        errp = _pipe(service_group, name, "stderr", err, tail_bytes)
        started = time.monotonic()
        try:
            try:
                proc = await _spawn(argv, out, errp, cwd, env, creds)
            except (OSError, ValueError) as e:
                raise HookError(f"{what}: cannot start {path}: {e}") from e
            out.child_started()
            errp.child_started()
            log.debug("hook.started", service_group=service_group, hook=name, pid=proc.pid)
            timed_out = await _wait_or_kill(proc, service_group, name, timeout_s, kill_grace_s)
            await asyncio.gather(out.finish(), errp.finish())
        finally:
            out.close()
            errp.close()
    result = HookResult(
        name=name,
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        stdout_tail=out.sink.tail,
        stderr_tail=errp.sink.tail,
        duration_s=time.monotonic() - started,
    )
    log.debug(
        "hook.finished",
        service_group=service_group,
        hook=name,
        exit_code=result.exit_code,
        timed_out=timed_out,
        duration_s=round(result.duration_s, 3),
    )
    return result


async def _spawn(
    argv: list[str],
    out: OutputPipe,
    err: OutputPipe,
    cwd: Path,
    env: Mapping[str, str],
    creds: dict[str, Any],
) -> asyncio.subprocess.Process:
    """Start the hook in its own session (so its whole group can be killed), output to the pipes."""
    return await spawn_registered(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out.write_fd,
        stderr=err.write_fd,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        **creds,
    )


def _pipe(service_group: str, hook: str, stream: str, file: IO[bytes], tail: int) -> OutputPipe:
    sink = LineSink(
        service_group=service_group, hook=hook, stream=stream, file=file, tail_bytes=tail
    )
    return OutputPipe(sink)


async def _wait_or_kill(
    proc: asyncio.subprocess.Process,
    service_group: str,
    hook: str,
    timeout_s: float,
    kill_grace_s: float,
) -> bool:
    """Wait for the hook to exit; past `timeout_s` kill its group (TERM, grace, KILL) and return
    True. Cancelled, the group is killed at once. Either way the process is reaped later."""
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "hook.timeout",
                service_group=service_group,
                hook=hook,
                pid=proc.pid,
                timeout_s=timeout_s,
            )
            await terminate_group(proc, signal.SIGTERM, kill_grace_s)
            return True
    except asyncio.CancelledError:
        kill_group(proc.pid, signal.SIGKILL)
        raise
    finally:
        release_when_reaped(proc)
    return False

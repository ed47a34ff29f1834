"""Reaping orphaned children when pysup is PID 1 or a child subreaper.

Hooks and services double-fork (`(daemon &)`, `nohup x &`, `setsid ...`). When the intermediate
process exits, its children are reparented to the nearest *subreaper* ancestor, or to PID 1. In a
container pysup often *is* PID 1; elsewhere we can ask the kernel to make us a subreaper
(`prctl(PR_SET_CHILD_SUBREAPER)`) so orphans of our hooks stay in our tree. Either way, when such an
orphan exits it is our zombie until we `waitpid` it.

The catch: asyncio waits for the children *it* spawned itself (Python 3.11's default
`ThreadedChildWatcher` calls `waitpid(pid)` per child in a thread; the pidfd watcher polls a pidfd).
A global `waitpid(-1)` would steal their exit status (asyncio would then report 255 and warn).

Design:

- `ChildRegistry` (one per process, `CHILDREN`) records the pids asyncio owns. Every spawn in pysup
  goes through `spawn_registered` (hooks, the run process), which holds the registry "busy" from
  before the fork until the pid is recorded; `release(pid)` is called once asyncio reaped the pid.
- `Reaper`, installed only when we are PID 1 or a subreaper, handles SIGCHLD
  (`loop.add_signal_handler`) and a slow periodic sweep (SIGCHLDs coalesce): it scans `/proc` for
  *zombie* children of ours whose pid is not registered and `waitpid(pid, WNOHANG)`s exactly those.
  Live children are never touched and registered pids never reaped. While a spawn is in flight the
  scan is deferred and rerun when the spawn finishes, so a child that exits before its pid is
  registered is not mistaken for an orphan.

Code that spawns children in the pysup process without `spawn_registered` (e.g. `subprocess.run`)
races the reaper: register those pids too (`CHILDREN.spawning()` + `CHILDREN.register`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    import ctypes

log = structlog.get_logger(__name__)

#: `<linux/prctl.h>`
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


class ChildRegistry:
    """The pids of children that asyncio waits for (the reaper must leave them alone)."""

    def __init__(self) -> None:
        self._pids: set[int] = set()
        self._spawning = 0
        self._idle_listeners: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def spawning(self) -> Iterator[None]:
        """Hold this around the fork and the `register` of its pid."""
        self._spawning += 1
        try:
            yield
        finally:
            self._spawning -= 1
            if self._spawning == 0:
                for listener in list(self._idle_listeners):
                    listener()

    @property
    def busy(self) -> bool:
        """A spawn is in flight: a zombie child may be ours but not registered yet."""
        return self._spawning > 0

    def register(self, pid: int) -> None:
        self._pids.add(pid)

    def release(self, pid: int) -> None:
        """asyncio has reaped `pid`; an orphan reusing the pid later is fair game."""
        self._pids.discard(pid)

    def owns(self, pid: int) -> bool:
        return pid in self._pids

    def add_idle_listener(self, listener: Callable[[], None]) -> None:
        self._idle_listeners.append(listener)

    def remove_idle_listener(self, listener: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._idle_listeners.remove(listener)


#: The registry of this process.
CHILDREN = ChildRegistry()


async def spawn_registered(
    program: str, *args: str, registry: ChildRegistry = CHILDREN, **kwargs: Any
) -> asyncio.subprocess.Process:
    """`asyncio.create_subprocess_exec`, with the child's pid recorded in `registry`.

    The caller must `registry.release(proc.pid)` after `await proc.wait()` has returned.
    """
    with registry.spawning():
        proc = await asyncio.create_subprocess_exec(program, *args, **kwargs)
        registry.register(proc.pid)
    return proc


def _libc() -> ctypes.CDLL | None:
    import ctypes  # only to become a subreaper (PID 1 in a container): ~1.6 ms at start-up

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def set_child_subreaper() -> bool:
    """Make this process a child subreaper (Linux >= 3.4). True on success."""
    libc = _libc()
    prctl = getattr(libc, "prctl", None) if libc is not None else None
    if prctl is None:
        return False
    rc = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if rc != 0:
        import ctypes

        log.debug("reaper.subreaper_failed", errno=ctypes.get_errno())
        return False
    return True


def is_child_subreaper() -> bool:
    """Whether this process is a child subreaper (False where that cannot be asked)."""
    libc = _libc()
    prctl = getattr(libc, "prctl", None) if libc is not None else None
    if prctl is None:
        return False
    import ctypes

    flag = ctypes.c_int(0)
    if prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0:
        return False
    return flag.value != 0


def has_children(proc_root: Path = Path("/proc")) -> bool:
    """Whether this process has a child, from its main thread's `children` file (children of
    threads that exited are reparented to it); True when that cannot be read."""
    pid = str(os.getpid())
    try:
        with open(proc_root / pid / "task" / pid / "children", "rb") as f:
            return bool(f.read().strip())
    except OSError:
        return True


def zombie_children(parent_pid: int, proc_root: Path = Path("/proc")) -> list[int]:
    """Pids of zombie processes whose parent is `parent_pid`, from `/proc/<pid>/stat`."""
    found: list[int] = []
    try:
        entries = list(os.scandir(proc_root))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "stat"), "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited (and reaped) while we looked
        # "pid (comm) S ppid ..."; comm may contain spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 2 and fields[0] == b"Z" and int(fields[1]) == parent_pid:
            found.append(int(entry.name))
    return found


class Reaper:
    """Reaps orphaned zombie children that asyncio does not own."""

    def __init__(
        self,
        registry: ChildRegistry = CHILDREN,
        *,
        sweep_interval_s: float = 10.0,
        proc_root: Path = Path("/proc"),
    ) -> None:
        """`sweep_interval_s`: seconds between scans without a SIGCHLD (a safety net: signals
        coalesce and a deferred scan may find nothing). Longer costs a zombie's lifetime only."""
        self._registry = registry
        self._sweep_interval_s = sweep_interval_s
        self._proc_root = proc_root
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._deferred: asyncio.AbstractEventLoop | None = None
        """The loop to finish `install` on after the first spawn (see `install`)."""
        self._pending = False
        self.reaped_count = 0

    @property
    def active(self) -> bool:
        return self._loop is not None

    def install(self, *, make_subreaper: bool = True) -> bool:
        """Start reaping if we are PID 1 or (after trying to become one) a subreaper.

        Must be called from the running event loop. Returns whether the reaper is active.
        """
        if self._loop is not None:
            return True
        is_init = os.getpid() == 1
        if not is_init and make_subreaper:
            set_child_subreaper()
        elif not is_init and not has_children(self._proc_root):
            # Whether we are a subreaper (a flag kept across exec) matters only once we have
            # children: ask after the first spawn, not at start (asking loads ctypes: ~0.8 MiB
            # of an idle supervisor's RSS, issue 18). `install` then reaps what is already there.
            self._deferred = asyncio.get_running_loop()
            self._registry.add_idle_listener(self._on_first_spawn)
            return False
        if not (is_init or is_child_subreaper()):
            log.debug("reaper.inactive", reason="neither PID 1 nor a child subreaper")
            return False
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self._on_sigchld)
        self._registry.add_idle_listener(self._on_registry_idle)
        self._loop = loop
        self._schedule_sweep()
        log.info("reaper.active", pid1=is_init)
        self.reap_once()
        return True

    def _on_first_spawn(self) -> None:
        loop, self._deferred = self._deferred, None
        self._registry.remove_idle_listener(self._on_first_spawn)
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: self.install(make_subreaper=False))

    def close(self) -> None:
        """Stop reaping (the subreaper flag stays set: it cannot be observed to matter then)."""
        self._deferred = None
        self._registry.remove_idle_listener(self._on_first_spawn)
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self._loop.remove_signal_handler(signal.SIGCHLD)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._registry.remove_idle_listener(self._on_registry_idle)
        self._loop = None

    def reap_once(self) -> list[int]:
        """Reap unowned zombie children now; returns their pids. Deferred while a spawn runs."""
        if self._registry.busy:
            self._pending = True
            return []
        self._pending = False
        reaped: list[int] = []
        for pid in zombie_children(os.getpid(), self._proc_root):
            if self._registry.owns(pid):
                continue
            try:
                got, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue  # someone else reaped it
            if got == pid:
                reaped.append(pid)
                self.reaped_count += 1
                log.debug("reaper.reaped", pid=pid, exit_code=os.waitstatus_to_exitcode(status))
        return reaped

    def _on_sigchld(self) -> None:
        self.reap_once()

    def _on_registry_idle(self) -> None:
        if self._pending and self._loop is not None:
            self._loop.call_soon_threadsafe(self.reap_once)

    def _schedule_sweep(self) -> None:
        if self._loop is not None:
            self._sweep = self._loop.call_later(self._sweep_interval_s, self._on_sweep)

    def _on_sweep(self) -> None:
        self.reap_once()
        self._schedule_sweep()

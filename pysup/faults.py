"""Long-lived tasks survive one bad message or tick, and die loudly when they cannot go on.

One policy for every loop of the supervisor (gossip receive and timer, accept loops, the control
gateway, watchers, discovery, the join and save loops, service reconcilers):

- ``guard(task)`` wraps one message or one tick. An exception in it is a *fault*: counted in
  ``pysup_task_faults_total{task,error}``, logged as ``task.fault`` at most once per
  ``LOG_INTERVAL_S`` per task (with how many were not logged since), and the task goes on.
- ``spawn(name, coro, critical=...)`` starts a long-lived task. If it ends with an exception it
  is *dead*: logged once as ``task.died`` with the traceback, counted in
  ``pysup_task_deaths_total{task}``, and listed by ``problems()`` (``/healthz`` then answers 503).
  A dead *critical* task calls ``on_fatal``: the daemon stops with an error exit status rather than
  run on as a zombie member that no longer gossips or answers.
- ``loop_exception`` is the event loop's exception handler: callbacks and tasks not started here
  are counted and logged the same way instead of through asyncio's plain-text logger.

Cancellation is never a fault (it is how shutdown works). ``Faults`` lives in the shell; the pure
core does not know it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec

import structlog

from pysup.metrics import Metrics

log = structlog.get_logger(__name__)

P = ParamSpec("P")

LOG_INTERVAL_S = 10.0
"""Seconds: at most one ``task.fault`` line per task in this window. A fault that repeats on every
message (a full disk, no file descriptors) would otherwise write a line per datagram; the counter
in /metrics still sees every one. 10 s keeps a persistent fault visible in any log tail while
bounding the volume to 360 lines an hour per task."""

FatalHandler = Callable[[str, BaseException], None]


def error_label(exc: BaseException) -> str:
    """A short, bounded label for metrics: the errno name of an OSError, else the type name."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, type(exc).__name__)
    return type(exc).__name__


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class RateLimiter:
    """At most one event per key per ``interval_s``; says how many were held back meanwhile."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None when this event is to be held back; else the count held back since the last."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


@dataclass
class Fault:
    """What a ``guard`` block caught (None when it ran through)."""

    error: BaseException | None = None


class Faults:
    """The fault policy of one supervisor (see the module docstring)."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        on_fatal: FatalHandler | None = None,
        log_interval_s: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.on_fatal = on_fatal
        self._limiter = RateLimiter(log_interval_s, clock)
        self.counts: dict[str, int] = {}
        """task -> faults so far (also in /metrics; kept here for tests and benchmarks)."""
        self.dead: dict[str, str] = {}
        """critical task -> one line saying why it died."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    # --- one message, one tick ----------------------------------------------------------

    def record(self, task: str, exc: BaseException, **fields: Any) -> None:
        """Count a fault of ``task`` and log it (rate-limited). Environment errors (OSError:
        a full disk, no descriptors) are warnings without a traceback; anything else is a bug
        and its first occurrence in a window carries the traceback."""
        self.counts[task] = self.counts.get(task, 0) + 1
        label = error_label(exc)
        if self.metrics is not None:
            self.metrics.task_faults.labels(task=task, error=label).inc()
        held = self._limiter.allow(task)
        if held is None:
            return
        extra = {"not_logged": held} if held else {}
        if isinstance(exc, OSError):
            log.warning(
                "task.fault", task=task, error=one_line(exc), errno=label, **extra, **fields
            )
        else:
            log.error("task.fault", task=task, error=one_line(exc), exc_info=exc, **extra, **fields)

    @contextlib.contextmanager
    def guard(self, task: str, **fields: Any) -> Iterator[Fault]:
        """Run one message or tick; an exception is recorded (``record``) and swallowed."""
        fault = Fault()
        try:
            yield fault
        except Exception as e:
            fault.error = e
            self.record(task, e, **fields)

    def wrap(self, task: str, fn: Callable[P, None]) -> Callable[P, None]:
        """``fn`` with every call guarded: for callbacks (datagram handlers, timers)."""

        def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
            with self.guard(task):
                fn(*args, **kwargs)

        return guarded

    # --- long-lived tasks ---------------------------------------------------------------

    def spawn(
        self, name: str, coro: Coroutine[Any, Any, None], *, critical: bool = True
    ) -> asyncio.Task[None]:
        """Start a long-lived task; its death is reported (and fatal when ``critical``)."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._ended(name, critical, t))
        return task

    def _ended(self, name: str, critical: bool, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if critical:
            self.dead[name] = one_line(exc)
        if self.metrics is not None:
            self.metrics.task_deaths.labels(task=name).inc()
        log.error("task.died", task=name, critical=critical, error=one_line(exc), exc_info=exc)
        if critical and not self.closing and self.on_fatal is not None:
            self.on_fatal(name, exc)

    def problems(self) -> list[str]:
        """Why this supervisor is not healthy: one line per dead critical task."""
        return [f"task {name} died: {why}" for name, why in sorted(self.dead.items())]

    async def close(self) -> None:
        """Cancel the tasks started here and wait for them (shutdown: nothing is fatal now)."""
        self.closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- the event loop's last resort ---------------------------------------------------

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """``loop.set_exception_handler``: whatever escaped a callback or an unawaited task."""
        exc = context.get("exception")
        message = str(context.get("message") or "unhandled exception in the event loop")
        if not isinstance(exc, BaseException):
            exc = RuntimeError(message)
        self.record("loop", exc, message=message)

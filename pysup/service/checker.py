"""The health-check loop of one service: when to run its health-check hook, and the last result.

The asyncio shell around the pure ``HealthSchedule``: the first check runs as soon as the process is
up (``process_up``), the next ones when the schedule says (splay after the first OK, the interval
after later OKs, the recheck bound after a non-OK). While the process is down the service is
CRITICAL and nothing runs. The check itself is the caller's coroutine (``run_check``), which maps
the hook's exit code, a timeout included (UNKNOWN), to a ``HealthStatus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import structlog

from pysup.faults import Faults
from pysup.service.health import HealthSchedule, HealthStatus

log = structlog.get_logger(__name__)


class HealthChecker:
    """Runs `run_check` on the schedule while `is_up()`; ``status`` is the last result."""

    def __init__(
        self,
        *,
        schedule: HealthSchedule,
        run_check: Callable[[], Awaitable[HealthStatus]],
        is_up: Callable[[], bool],
        rng: random.Random,
        service_group: str,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
        faults: Faults | None = None,
    ) -> None:
        """`on_change` is called after ``status`` changed (the service gossips its health); a
        check that raises is a fault of ``service.health`` (`faults`) and the loop goes on."""
        self._faults = faults if faults is not None else Faults()
        self.schedule = schedule
        self.status: HealthStatus | None = None
        """The last result; None before the first check and after a stop."""
        self._run_check = run_check
        self._is_up = is_up
        self._rng = rng
        self._clock = clock
        self._wake = asyncio.Event()
        self._next_at: float | None = None
        self._sg = service_group
        self._on_change = on_change

    def process_up(self) -> None:
        """The process (re)started: check now, and a fresh splay after the next first OK."""
        self.schedule.reset()
        self._next_at = self._clock()
        self._wake.set()

    def process_down(self) -> None:
        self.status = HealthStatus.CRITICAL  # down is down, whatever the last check said

    def stopped(self) -> None:
        self.status = None
        self._next_at = None

    async def run(self) -> None:
        """The loop; cancel it to end."""
        while True:
            timeout = None if self._next_at is None else max(0.0, self._next_at - self._clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            due = self._next_at
            if due is None or self._clock() < due:
                continue
            if not self._is_up():
                self.status = HealthStatus.CRITICAL
                self._next_at = None
                continue
            with self._faults.guard("service.health", service_group=self._sg) as fault:
                await self._check(due)
            if fault.error is not None and self._next_at == due:  # not again at once
                self._next_at = self.schedule.next_check(
                    self._clock(), HealthStatus.UNKNOWN, self._rng
                )

    async def _check(self, due: float) -> None:
        status = await self._run_check()
        if status is not self.status:
            old = self.status.value if self.status is not None else None
            log.info("health.changed", service_group=self._sg, old=old, new=status.value)
        self.status = status
        if self._on_change is not None:
            self._on_change()
        if self._next_at == due:  # not re-armed by a restart meanwhile
            self._next_at = self.schedule.next_check(self._clock(), status, self._rng)

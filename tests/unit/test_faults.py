"""The fault policy (pysup/faults.py): guard, rate-limited logging, task deaths, the loop handler,
and one loop that uses it (a service's health checks).

Deterministic: a manual clock drives the rate limiter; tasks die at once, no sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random

import pytest
from structlog.testing import capture_logs

from pysup.faults import Faults, RateLimiter, error_label
from pysup.metrics import Metrics
from pysup.service.checker import HealthChecker
from pysup.service.health import HealthSchedule, HealthStatus
from pysup.testing.clock import ManualClock
from tests.util import async_wait_for


def test_rate_limiter_allows_one_per_interval_and_counts_the_rest() -> None:
    clock = ManualClock(0.0)
    limiter = RateLimiter(10.0, clock)
    assert limiter.allow("a") == 0
    assert [limiter.allow("a") for _ in range(5)] == [None] * 5
    assert limiter.allow("b") == 0, "keys are independent"
    clock.advance(10.0)
    assert limiter.allow("a") == 5, "the next line says how many were held back"
    assert limiter.allow("a") is None


def test_guard_swallows_counts_and_logs_once_per_window() -> None:
    clock = ManualClock(0.0)
    metrics = Metrics()
    faults = Faults(metrics, log_interval_s=10.0, clock=clock)
    with capture_logs() as logs:
        for _ in range(100):
            with faults.guard("gossip.receive") as fault:
                raise OSError(errno.ENOSPC, "No space left on device")
            assert isinstance(fault.error, OSError)
        clock.advance(10.0)
        with faults.guard("gossip.receive"):
            raise OSError(errno.ENOSPC, "No space left on device")
    lines = [entry for entry in logs if entry["event"] == "task.fault"]
    assert len(lines) == 2, lines
    assert lines[0]["task"] == "gossip.receive" and lines[0]["errno"] == "ENOSPC"
    assert lines[0]["log_level"] == "warning" and "exc_info" not in lines[0]
    assert lines[1]["not_logged"] == 99
    assert faults.counts["gossip.receive"] == 101
    value = metrics.registry.get_sample_value(
        "pysup_task_faults_total", {"task": "gossip.receive", "error": "ENOSPC"}
    )
    assert value == 101


def test_a_bug_is_logged_with_its_traceback_and_a_clean_block_records_nothing() -> None:
    faults = Faults()
    with faults.guard("gossip.timer") as fine:
        pass
    assert fine.error is None and faults.counts == {}
    with capture_logs() as logs, faults.guard("gossip.timer"):
        raise KeyError("missing")
    assert logs[0]["log_level"] == "error" and isinstance(logs[0]["exc_info"], KeyError)


async def test_guard_lets_cancellation_through() -> None:
    faults = Faults()
    with pytest.raises(asyncio.CancelledError), faults.guard("x"):
        raise asyncio.CancelledError
    assert faults.counts == {}


def test_wrap_guards_every_call() -> None:
    faults = Faults()
    seen: list[int] = []

    def handler(n: int) -> None:
        seen.append(n)
        if n % 2:
            raise ValueError(n)

    guarded = faults.wrap("cb", handler)
    for n in range(4):
        guarded(n)
    assert seen == [0, 1, 2, 3] and faults.counts["cb"] == 2


async def test_a_dead_critical_task_is_fatal_and_a_health_problem() -> None:
    fatal: list[tuple[str, str]] = []
    metrics = Metrics()
    faults = Faults(metrics, on_fatal=lambda name, exc: fatal.append((name, str(exc))))

    async def dies() -> None:
        raise RuntimeError("socket gone")

    async def ends() -> None:
        return None

    for task in (faults.spawn("ring.join", dies()), faults.spawn("helper", dies(), critical=False)):
        with pytest.raises(RuntimeError):
            await task
    await faults.spawn("finished", ends())
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert fatal == [("ring.join", "socket gone")]
    assert faults.problems() == ["task ring.join died: RuntimeError: socket gone"]
    assert metrics.registry.get_sample_value("pysup_task_deaths_total", {"task": "helper"}) == 1


async def test_cancelled_tasks_and_deaths_during_shutdown_are_not_fatal() -> None:
    fatal: list[str] = []
    faults = Faults(on_fatal=lambda name, exc: fatal.append(name))
    forever = faults.spawn("forever", asyncio.Event().wait())  # type: ignore[arg-type]
    await asyncio.sleep(0)
    await faults.close()
    assert forever.cancelled()

    async def dies() -> None:
        raise RuntimeError("late")

    late = faults.spawn("late", dies())
    with pytest.raises(RuntimeError):
        await late
    await asyncio.sleep(0)
    assert fatal == [], "closing: a task ending now is shutdown, not a failure"


def test_loop_exception_handler_counts_what_escaped() -> None:
    faults = Faults()
    loop = asyncio.new_event_loop()
    try:
        faults.loop_exception(loop, {"message": "Exception in callback", "exception": OSError(24)})
        faults.loop_exception(loop, {"message": "no exception here"})
    finally:
        loop.close()
    assert faults.counts["loop"] == 2


def test_error_label_is_bounded() -> None:
    assert error_label(OSError(errno.EMFILE, "Too many open files")) == "EMFILE"
    assert error_label(OSError("no errno")) == "OSError"
    assert error_label(ValueError("x")) == "ValueError"


async def test_a_health_check_that_raises_is_a_fault_and_the_loop_goes_on() -> None:
    """Before: the exception ended the service's health loop for good (no more checks)."""
    faults, clock, calls = Faults(), ManualClock(0.0), []

    async def run_check() -> HealthStatus:
        calls.append(clock())
        if len(calls) == 1:
            raise RuntimeError("a bug in one check")
        return HealthStatus.OK

    checker = HealthChecker(
        schedule=HealthSchedule(),
        run_check=run_check,
        is_up=lambda: True,
        rng=random.Random(1),
        service_group="web.default",
        clock=clock,
        faults=faults,
    )
    task = asyncio.create_task(checker.run())
    try:
        checker.process_up()
        await async_wait_for(lambda: _done(len(calls) == 1), 5.0, what="the first check")
        await asyncio.sleep(0)
        assert faults.counts["service.health"] == 1 and not task.done()
        clock.advance(60.0)
        checker.process_up()  # the process restarted: check now
        await async_wait_for(lambda: _done(checker.status is HealthStatus.OK), 5.0, what="OK")
        assert len(calls) == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _done(value: bool) -> bool:
    return value

"""Helpers shared by the integration tests: bounded waits that poll for a condition,
``free_port`` (collision-proof: see pysup/testing/ports.py) and ``process_alive``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pysup.testing.ports import free_port

__all__ = ["async_wait_for", "free_port", "process_alive", "wait_for"]

T = TypeVar("T")


def wait_for(cond: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "") -> T:
    """Poll `cond` until it returns a truthy value; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T = cond()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        time.sleep(interval)
        last = cond()
    return last


async def async_wait_for(
    cond: Callable[[], Awaitable[T]], timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """The asyncio flavour of `wait_for`."""
    deadline = time.monotonic() + timeout
    last = await cond()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(interval)
        last = await cond()
    return last


def process_alive(pid: int) -> bool:
    """The process exists and is not a zombie (ESRCH while reading means it was just reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] != b"Z"

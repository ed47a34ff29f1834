"""Helpers shared by the integration tests: bounded waits that poll for a condition."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

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


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free for both UDP and TCP on `host` right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")

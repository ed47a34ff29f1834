"""The bounded listener (pysup/listener.py) on real sockets on 127.0.0.1, in process.

What it proves:
- at the cap, the connection idle the longest is closed to admit a new one (`evicted`), or, without
  eviction, the new one is closed (`too_many_connections`); a connection with a request in
  progress is never evicted;
- a connection idle past the timeout is closed; one that never had a request is reported
  (`header_timeout`), one that did simply expires;
- accept errors (EMFILE) back off (50 ms doubling) instead of spinning, are counted as faults of
  `<name>.accept` and logged once per window, and accepting resumes when they stop. (asyncio's own
  server, used before, logged a traceback per attempt: 540,000 in 20 s.)
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from pysup.crypto.tls import ServerTlsFiles, server_context
from pysup.faults import Faults
from pysup.listener import ACCEPT_BACKOFF_MIN_S, ConnectionLimits, Listener
from pysup.testing.certs import TestCA
from tests.util import async_wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Idle(asyncio.Protocol):
    """Holds the connection and says nothing (the listener alone decides when it ends)."""

    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class Harness:
    def __init__(self, limits: ConnectionLimits) -> None:
        self.refused: list[str] = []
        self.protocols: list[Idle] = []
        self.faults = Faults()

        def factory() -> Idle:
            p = Idle()
            self.protocols.append(p)
            return p

        self.listener = Listener(
            "t", factory, limits, self.faults, lambda reason, peer: self.refused.append(reason)
        )

    async def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.listener.port))
        s.setblocking(False)
        n = len(self.protocols) + len(self.refused)
        await async_wait_for(
            lambda: _true(len(self.protocols) + len(self.refused) > n), 5.0, what="accepted"
        )
        return s


async def _true(value: bool) -> bool:
    return value


def closed_by_peer(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset (abort)


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    h = Harness(request.param)
    await h.listener.start("127.0.0.1", 0)
    try:
        yield h
    finally:
        h.listener.close(abort_connections=True)
        await h.listener.wait_closed()


@pytest.mark.parametrize("harness", [ConnectionLimits(2, evict_idle=True)], indirect=True)
async def test_at_the_cap_the_longest_idle_is_evicted_but_never_a_busy_one(
    harness: Harness,
) -> None:
    first, second = await harness.connect(), await harness.connect()
    harness.listener.busy(harness.protocols[0])  # a request in progress on `first`
    third = await harness.connect()
    await async_wait_for(lambda: _true(closed_by_peer(second)), 5.0, what="second evicted")
    assert harness.refused == ["evicted"]
    assert not closed_by_peer(first) and not closed_by_peer(third)
    harness.listener.busy(harness.protocols[2])
    fourth = await harness.connect()  # nothing idle left: the new one is refused
    await async_wait_for(lambda: _true(closed_by_peer(fourth)), 5.0, what="fourth refused")
    assert harness.refused == ["evicted", "too_many_connections"]
    for s in (first, second, third, fourth):
        s.close()


@pytest.mark.parametrize("harness", [ConnectionLimits(1)], indirect=True)
async def test_without_eviction_the_new_connection_is_refused(harness: Harness) -> None:
    first = await harness.connect()
    second = await harness.connect()
    await async_wait_for(lambda: _true(closed_by_peer(second)), 5.0, what="refused")
    assert harness.refused == ["too_many_connections"] and not closed_by_peer(first)
    first.close()
    second.close()


@pytest.mark.parametrize("harness", [ConnectionLimits(10, idle_timeout_s=0.5)], indirect=True)
async def test_idle_connections_are_closed_and_silent_ones_reported(harness: Harness) -> None:
    silent, served = await harness.connect(), await harness.connect()
    harness.listener.busy(harness.protocols[1])
    harness.listener.idle(harness.protocols[1])  # one request came and went
    start = time.monotonic()
    await async_wait_for(
        lambda: _true(closed_by_peer(silent) and closed_by_peer(served)), 5.0, what="both closed"
    )
    assert time.monotonic() - start >= 0.4
    assert harness.refused == ["header_timeout"]
    silent.close()
    served.close()


async def test_accept_errors_back_off_and_are_logged_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h = Harness(ConnectionLimits(10))
    loop = asyncio.get_running_loop()
    real_accept = loop.sock_accept
    attempts: list[float] = []

    async def sock_accept(sock: socket.socket) -> Any:
        attempts.append(time.monotonic())
        if len(attempts) <= 5:
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(sock)

    monkeypatch.setattr(loop, "sock_accept", sock_accept)
    with capture_logs() as logs:
        await h.listener.start("127.0.0.1", 0)
        try:
            s = await h.connect()
        finally:
            h.listener.close(abort_connections=True)
            await h.listener.wait_closed()
    s.close()
    gaps = [b - a for a, b in itertools.pairwise(attempts[:6])]
    expected = [ACCEPT_BACKOFF_MIN_S * 2**i for i in range(5)]  # 0.05, 0.1, 0.2, 0.4, 0.8
    assert all(g >= e * 0.9 for g, e in zip(gaps, expected, strict=True)), gaps
    assert h.faults.counts["t.accept"] == 5
    assert [e["event"] for e in logs].count("task.fault") == 1


async def test_with_tls_a_bad_or_stalled_handshake_is_refused_and_tls_clients_served(
    tmp_path: Path,
) -> None:
    """Plain bytes and a silent client against a TLS listener are refused (`tls_handshake`, the
    silent one after the handshake timeout) and are no fault of the listener; a TLS client is
    served after them. Before (TLS with the bounded listener was new): nothing to check."""
    ca = TestCA(tmp_path)
    issued = ca.issue("server", names=("127.0.0.1",))
    h = Harness(ConnectionLimits(10))
    h.listener = Listener(
        "t",
        h.listener._factory,
        ConnectionLimits(10),
        h.faults,
        lambda reason, peer: h.refused.append(reason),
        tls=server_context(ServerTlsFiles(issued.certificate, issued.key)),
        tls_handshake_timeout_s=0.5,
    )
    await h.listener.start("127.0.0.1", 0)
    try:
        plain = socket.create_connection(("127.0.0.1", h.listener.port))
        plain.sendall(b"GET / HTTP/1.1\r\n\r\n")
        silent = socket.create_connection(("127.0.0.1", h.listener.port))
        await async_wait_for(lambda: _true(len(h.refused) == 2), 5.0, what="both refused")
        assert h.refused == ["tls_handshake", "tls_handshake"]
        assert not h.faults.counts, h.faults.counts
        client = ssl.create_default_context(cafile=str(ca.certificate))
        _, writer = await asyncio.open_connection("127.0.0.1", h.listener.port, ssl=client)
        await async_wait_for(
            lambda: _true(h.listener.connections == 1), 5.0, what="a TLS client admitted"
        )
        writer.close()
        plain.close()
        silent.close()
    finally:
        h.listener.close(abort_connections=True)
        await h.listener.wait_closed()

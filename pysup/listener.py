"""Accepting TCP connections without falling over: a connection cap, idle deadlines, and accept
errors that back off instead of spinning.

asyncio's own server has none of these. Out of descriptors (EMFILE), it logs a traceback for each
of up to ``backlog`` accept attempts per wakeup and schedules as many retries (measured on this
project: 540,000 tracebacks, 220 MB of log in 20 s, with 1,100 idle HTTP connections against a
1024-descriptor limit), and it never closes a connection that sends nothing. One ``Listener``
serves one listening socket; the HTTP gateway, the control gateway and the gossip streams each
have one, with their own ``ConnectionLimits``. What a connection carries is the protocol's
business (an aiohttp request handler, an asyncio stream); the listener only admits, counts and,
for protocols that say when a request is in progress (``busy``/``idle``), closes idle ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import structlog

from pysup.faults import Faults

log = structlog.get_logger(__name__)

ACCEPT_BACKOFF_MIN_S = 0.05
"""Seconds to wait after a failed accept (EMFILE, ENFILE, ENOBUFS, ENOMEM ...) before the next;
doubled on each failure in a row up to ``ACCEPT_BACKOFF_MAX_S``. The pending connection stays in
the kernel's queue meanwhile, so nothing is lost that a later accept cannot take."""
ACCEPT_BACKOFF_MAX_S = 1.0
"""Longest wait between accept attempts while they keep failing: a freed descriptor is used
within a second, and a persistent failure costs one attempt (and one counted fault) a second."""
SWEEP_INTERVAL_S = 1.0
"""Seconds between checks for connections past their idle deadline: a deadline is enforced to
within this much. One pass is O(connections), bounded by the cap."""

RefusedHandler = Callable[[str, tuple[str, int]], None]
"""Told of each connection closed by the listener: ``too_many_connections`` (refused at the cap),
``evicted`` (idle the longest, closed to admit a new one at the cap), ``header_timeout`` (no
request within the idle timeout of connecting: slowloris), ``tls_handshake`` (with TLS: the
handshake failed or did not finish within its timeout)."""


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (every connection is a descriptor, and
    the soft default of 1024 is what a flood exhausts first); log both. Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    log.info("process.fd_limit", soft=soft, hard=hard, soft_before=before)
    return soft, hard


@dataclass(frozen=True)
class ConnectionLimits:
    """What one listener admits. Each server documents why its values (see their constants)."""

    max_connections: int
    """Connections served at once; sized so all listeners together stay well inside the common
    1024-descriptor limit."""
    evict_idle: bool = False
    """At the cap: close the connection idle the longest (no request in progress) to admit the
    new one (True), or close the new one (False, and always when none is idle). Evicting keeps a
    probe's fresh connection served while idle attackers hold every slot."""
    idle_timeout_s: float | None = None
    """Close a connection with no request in progress for this long, from its accept or the end
    of its last request (None: the protocol keeps its own deadlines). Needs ``busy``/``idle``."""
    backlog: int = 128
    """Connections the kernel queues before we accept them."""


@dataclass
class _Conn:
    transport: asyncio.Transport
    peer: tuple[str, int]
    since: float
    """When it last became idle (accept, or the end of a request)."""
    busy: int = 0
    requests: int = 0


def _numeric_addrinfo(host: str, port: int) -> list[Any] | None:
    """`host` as a numeric address, resolved here (None: it is a name). The loop's getaddrinfo
    would start its thread pool and the IDNA codec just to parse an IP (issue 18: start-up)."""
    try:
        return socket.getaddrinfo(
            host.encode("ascii"),
            port,
            type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST,
        )
    except (UnicodeEncodeError, socket.gaierror):
        return None


class Listener:
    """Accepts connections for ``factory``'s protocol under ``limits`` (see the module docstring).

    Faults of the accept loop (``<name>.accept``) and the sweep go to ``faults``; both are critical
    tasks: a listener that cannot accept is a gateway that is gone.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[[], asyncio.BaseProtocol],
        limits: ConnectionLimits,
        faults: Faults,
        on_refused: RefusedHandler | None = None,
        clock: Callable[[], float] = time.monotonic,
        tls: ssl.SSLContext | None = None,
        tls_handshake_timeout_s: float = 10.0,
    ) -> None:
        """With ``tls`` every connection is a TLS server session; one whose handshake fails or
        takes longer than ``tls_handshake_timeout_s`` is closed and refused (``tls_handshake``)."""
        self.name = name
        self._tls = tls
        self._tls_timeout_s = tls_handshake_timeout_s
        self._factory = factory
        self.limits = limits
        self._faults = faults
        self._on_refused = on_refused
        self._clock = clock
        self._sock: socket.socket | None = None
        self._conns: dict[asyncio.BaseProtocol, _Conn] = {}
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, host: str, port: int) -> None:
        """Bind and listen (raises OSError, e.g. the address is in use), then accept."""
        infos = _numeric_addrinfo(host or "0.0.0.0", port)
        if infos is None:  # a host name: resolved in the loop's executor
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(self.limits.backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._spawn(f"{self.name}.accept", self._accept_loop(sock))
        if self.limits.idle_timeout_s is not None:
            self._spawn(f"{self.name}.sweep", self._sweep_loop(self.limits.idle_timeout_s))

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = self._faults.spawn(name, coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def sockets(self) -> list[socket.socket]:
        return [self._sock] if self._sock is not None else []

    @property
    def port(self) -> int:
        assert self._sock is not None
        return int(self._sock.getsockname()[1])

    @property
    def connections(self) -> int:
        self._prune()
        return len(self._conns) + self._pending

    def close(self, abort_connections: bool = False) -> None:
        """Stop accepting; open connections are left to their protocol unless aborted."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._sock is not None:
            self._sock.close()
        if abort_connections:
            for conn in list(self._conns.values()):
                conn.transport.abort()
            self._conns.clear()

    async def wait_closed(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- what the protocol tells us -----------------------------------------------------

    def busy(self, protocol: asyncio.BaseProtocol) -> None:
        """A request is in progress on this connection: it is not idle."""
        conn = self._conns.get(protocol)
        if conn is not None:
            conn.busy += 1

    def idle(self, protocol: asyncio.BaseProtocol) -> None:
        """A request ended: the idle deadline starts again."""
        conn = self._conns.get(protocol)
        if conn is not None:
            conn.busy = max(0, conn.busy - 1)
            conn.requests += 1
            conn.since = self._clock()

    # --- accepting ----------------------------------------------------------------------

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        delay = ACCEPT_BACKOFF_MIN_S
        task = f"{self.name}.accept"
        while not self._closed:
            try:
                conn, addr = await loop.sock_accept(sock)
            except OSError as e:
                if sock.fileno() < 0:  # closed under us: close() was called
                    return
                self._faults.record(task, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, ACCEPT_BACKOFF_MAX_S)
                continue
            delay = ACCEPT_BACKOFF_MIN_S
            with self._faults.guard(task):
                self._admit(conn, (str(addr[0]), int(addr[1])))
            # A ready connection is accepted without suspending; yield so the one just admitted
            # is set up (and a request on it parsed) before the next is counted against the cap.
            await asyncio.sleep(0)

    def _admit(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        conn.setblocking(False)
        if self.connections >= self.limits.max_connections and not self._evict_one():
            conn.close()
            self._refused("too_many_connections", peer)
            return
        self._pending += 1
        task = asyncio.get_running_loop().create_task(self._connect(conn, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            with self._faults.guard(f"{self.name}.accept") as fault:
                transport, protocol = await self._open(loop, conn, peer)
        finally:
            self._pending -= 1
        if fault.error is not None or transport is None or protocol is None:
            conn.close()
            return
        self._conns[protocol] = _Conn(cast(asyncio.Transport, transport), peer, self._clock())

    async def _open(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, peer: tuple[str, int]
    ) -> tuple[asyncio.BaseTransport | None, asyncio.BaseProtocol | None]:
        if self._tls is None:
            return await loop.connect_accepted_socket(self._factory, sock=conn)
        try:
            return await loop.connect_accepted_socket(
                self._factory,
                sock=conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._tls_timeout_s,
            )
        except OSError:  # ssl.SSLError, a reset, the handshake timeout: the client's doing
            self._refused("tls_handshake", peer)
            return None, None

    def _evict_one(self) -> bool:
        if not self.limits.evict_idle:
            return False
        idle = [(c.since, p) for p, c in self._conns.items() if c.busy == 0]
        if not idle:
            return False
        _, protocol = min(idle, key=lambda item: item[0])
        conn = self._conns.pop(protocol)
        conn.transport.abort()
        self._refused("evicted", conn.peer)
        return True

    def _prune(self) -> None:
        gone = [p for p, c in self._conns.items() if c.transport.is_closing()]
        for p in gone:
            del self._conns[p]

    def _refused(self, reason: str, peer: tuple[str, int]) -> None:
        if self._on_refused is not None:
            self._on_refused(reason, peer)

    # --- idle deadlines -----------------------------------------------------------------

    async def _sweep_loop(self, idle_timeout_s: float) -> None:
        while not self._closed:
            await asyncio.sleep(min(SWEEP_INTERVAL_S, idle_timeout_s / 4))
            with self._faults.guard(f"{self.name}.sweep"):
                self.sweep(idle_timeout_s)

    def sweep(self, idle_timeout_s: float) -> None:
        """Close connections idle past the deadline; those that never sent a request are
        reported (``header_timeout``), those that did simply expired (keep-alive)."""
        self._prune()
        now = self._clock()
        expired = [
            (p, c) for p, c in self._conns.items() if c.busy == 0 and now - c.since > idle_timeout_s
        ]
        for protocol, conn in expired:
            del self._conns[protocol]
            conn.transport.abort()
            if conn.requests == 0:
                self._refused("header_timeout", conn.peer)

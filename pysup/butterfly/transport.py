"""The only socket code of the ring: UDP datagrams and TCP streams on one port.

Two datagram back ends, chosen by `udp_backend`:
- `asyncio-dgram` (the default, the library the project chose): a receive task awaits
  `recv()` and a send task drains a bounded queue into `send()`.
- `asyncio`: a non-blocking socket watched by the event loop (`add_reader`): each readiness
  callback reads every queued datagram (up to RECV_BATCH) straight into the handler, and a send
  is one non-blocking `sendto`. asyncio-dgram puts every datagram through an asyncio.Queue and a
  task switch each way, which measured about a third of an idle member's CPU (bench/README.md);
  asyncio's own datagram endpoint reads one datagram per loop iteration, so on a busy loop an
  ack waits behind one full iteration per datagram queued before it. This matters when one
  process hosts hundreds of members (the benchmarks use it), hardly for one supervisor.

Streams carry one request frame and at most one reply frame, each a 4-byte big-endian length and
the payload. A frame is refused as early as possible: by its announced length (over MAX_FRAME),
then by the bytes all inbound frames hold together (over STREAM_BYTES_BUDGET), then by its
envelope header (magic, version, encryption flag against our key), each before the rest of the
frame is read. (Authentication itself needs the whole frame: the ring key's secretbox covers all
of it; the byte budget bounds what unauthenticated frames can hold meanwhile.) Everything that
goes wrong with a socket (refused, reset, timeout, garbage) is counted and dropped here; the core
never sees a socket error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import asyncio_dgram
import structlog

from pysup.butterfly.codec import HEADER_LEN, MAX_DATAGRAM, MAX_FRAME, CodecError
from pysup.butterfly.config import STREAM_BYTES_BUDGET
from pysup.butterfly.effects import Addr
from pysup.faults import Faults
from pysup.listener import ConnectionLimits, Listener

log = structlog.get_logger(__name__)

_LEN = struct.Struct(">I")
RECV_BATCH = 64
"""`asyncio` back end: datagrams read in one readiness callback at most, so one flooded socket
cannot keep the loop from its other sockets and timers for long (64 datagrams are ~5-10 ms of
decoding and merging). Sends are not buffered in user space: a full kernel send buffer drops the
datagram (counted as `udp_dropped_overload`), as a full receive buffer does; UDP may lose it
anyway, and a stalled socket then cannot grow memory."""
RECV_SIZE = 65_536
"""Bytes asked of the kernel per datagram: any UDP datagram fits; the codec refuses what is over
MAX_DATAGRAM."""
STREAM_TIMEOUT_S = 5.0
"""Connect, write and read deadline for one stream exchange."""
MAX_STREAM_CONNECTIONS = 256
"""Concurrent inbound streams; more are refused so a flood of connections stays bounded."""
STREAM_BACKLOG = 1024
"""Pending TCP connections the kernel queues for us (asyncio's default is 100). A ring starting
at once joins one seed from every member; beyond the backlog, connects wait out SYN retries
(1 s, then 3 s)."""


UDP_BACKENDS = ("asyncio-dgram", "asyncio")
SEND_QUEUE_LIMIT = 10_000
"""asyncio-dgram back end: datagrams waiting to be sent beyond this many are dropped (and
counted), so a stalled socket cannot grow memory without bound."""
RECV_ERRORS_IN_A_ROW = 10_000
"""asyncio-dgram back end: a receive that fails this many times in a row without one datagram in
between means the socket is broken (one ICMP error per dead peer's packet never comes close); the
receive task then dies, which stops the supervisor instead of leaving a member that is deaf."""
STREAM_LIMITS = ConnectionLimits(
    max_connections=MAX_STREAM_CONNECTIONS, evict_idle=False, backlog=STREAM_BACKLOG
)
"""Inbound gossip streams: beyond the cap a connection is closed at once (``stream_refused``);
each stream keeps its own deadline (STREAM_TIMEOUT_S), so there is no idle sweep."""


class TransportError(Exception):
    """A stream exchange failed (connect, timeout, bad frame)."""


class FrameRefused(TransportError):
    """An inbound frame refused before its body was read; `reason` is the metrics label
    (`stream_bad_frame`, `stream_budget`, or the codec's reason for a bad envelope header)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ByteBudget:
    """Bytes that inbound frames hold together, from their length prefix until they are decoded
    (STREAM_BYTES_BUDGET): a frame that would exceed it is refused."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> bool:
        if self.held + n > self.limit:
            return False
        self.held += n
        return True

    def give(self, n: int) -> None:
        self.held -= n


HeaderCheck = Callable[[bytes], CodecError | None]
"""What is wrong with a frame's envelope header (the codec's `header_problem` with our key)."""


@dataclass
class TransportStats:
    udp_dropped_overload: int = 0
    udp_oversized: int = 0
    udp_send_errors: int = 0
    stream_bad_frames: int = 0
    stream_refused: int = 0
    stream_errors: int = 0


DatagramHandler = Callable[[bytes, Addr], None]
StreamHandler = Callable[[bytes, Addr], Awaitable[bytes | None]]
RejectHandler = Callable[[str, Addr], None]
"""Told of every inbound stream we drop (reason, peer), so the shell can count it in metrics:
`stream_refused` (too many connections), `stream_bad_frame` (a length prefix over MAX_FRAME or
under the envelope header), `stream_budget` (the frame would take the bytes held by inbound frames
over STREAM_BYTES_BUDGET), the codec's `malformed`/`version`/`unencrypted`/`encrypted` (a bad
envelope header, refused before the body is read), `stream_timeout` (nothing or too little sent
within STREAM_TIMEOUT_S: slowloris), `stream_truncated` (closed mid-frame), `stream_error` (a
socket error)."""


class Transport:
    def __init__(
        self,
        host: str,
        port: int,
        on_datagram: DatagramHandler,
        on_stream: StreamHandler,
        on_reject: RejectHandler | None = None,
        udp_backend: str = "asyncio-dgram",
        faults: Faults | None = None,
        check_header: HeaderCheck | None = None,
    ) -> None:
        if udp_backend not in UDP_BACKENDS:
            raise ValueError(f"udp backend {udp_backend!r}: expected one of {UDP_BACKENDS}")
        self.udp_backend = udp_backend
        self._dgram: asyncio_dgram.aio.DatagramServer | None = None
        self._outq: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue(maxsize=SEND_QUEUE_LIMIT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.host = host
        self.port = port
        self._on_datagram = on_datagram
        self._on_stream = on_stream
        self._on_reject = on_reject
        self._sock: socket.socket | None = None
        self._tcp: Listener | None = None
        self._streams = 0
        self._closing = False
        self.faults = faults if faults is not None else Faults()
        self._check_header = check_header
        self.budget = ByteBudget(STREAM_BYTES_BUDGET)
        self.stats = TransportStats()

    @property
    def bound(self) -> Addr:
        return (self.host, self.port)

    async def start(self) -> None:
        """Bind UDP first (port 0 picks a free port), then TCP on the same port."""
        loop = asyncio.get_running_loop()
        if self.udp_backend == "asyncio-dgram":
            self._dgram = await asyncio_dgram.bind((self.host, self.port))
            self.port = int(self._dgram.sockname[1])
        else:
            self._sock = await _bind_udp(self.host, self.port)
            self.port = int(self._sock.getsockname()[1])
            loop.add_reader(self._sock.fileno(), self._read_ready, self._sock)
        self._tcp = Listener(
            "gossip.stream", self._stream_protocol, STREAM_LIMITS, self.faults, self._refused
        )
        try:
            await self._tcp.start(self.host, self.port)
        except OSError:
            self._close_sock()
            if self._dgram is not None:
                self._dgram.close()
            raise
        if self._dgram is not None:
            self._spawn("gossip.receive", self._dgram_recv_loop(self._dgram))
            self._spawn("gossip.send", self._dgram_send_loop(self._dgram))

    def _stream_protocol(self) -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=MAX_FRAME)
        return asyncio.StreamReaderProtocol(reader, self._serve_stream)

    def _refused(self, reason: str, peer: Addr) -> None:
        self.stats.stream_refused += 1
        self._rejected("stream_refused", peer)

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        """A critical task: if it dies the member is deaf or mute, and the supervisor stops."""
        task = self.faults.spawn(name, coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dgram_recv_loop(self, dgram: asyncio_dgram.aio.DatagramServer) -> None:
        errors = 0
        while True:
            try:
                data, addr = await dgram.recv()
            except asyncio_dgram.TransportClosed:
                if self._closing:
                    return
                raise TransportError("the UDP socket was closed") from None
            except OSError:
                self.stats.udp_send_errors += 1  # ICMP errors surface here: nothing for SWIM
                errors += 1
                if errors >= RECV_ERRORS_IN_A_ROW:
                    raise
                continue
            errors = 0
            host, port = cast(tuple[str, int], addr)[:2]
            self._received(data, (str(host), int(port)))

    async def _dgram_send_loop(self, dgram: asyncio_dgram.aio.DatagramServer) -> None:
        while True:
            data, addr = await self._outq.get()
            with self.faults.guard("gossip.send"):
                try:
                    await dgram.send(data, addr)
                except (OSError, asyncio_dgram.TransportClosed):
                    self.stats.udp_send_errors += 1

    async def close(self) -> None:
        self._closing = True
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._dgram is not None:
            self._dgram.close()
        self._close_sock()
        if self._tcp is not None:
            await self._tcp.wait_closed()

    def _close_sock(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    # --- datagrams ----------------------------------------------------------------------

    def send(self, data: bytes, addr: Addr) -> None:
        if self._dgram is not None:
            if len(data) > MAX_DATAGRAM:
                self.stats.udp_oversized += 1
                return
            try:
                self._outq.put_nowait((data, addr))
            except asyncio.QueueFull:
                self.stats.udp_dropped_overload += 1
            return
        sock = self._sock
        if sock is None:
            self.stats.udp_send_errors += 1
            return
        if len(data) > MAX_DATAGRAM:
            self.stats.udp_oversized += 1
            return
        try:
            sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.stats.udp_dropped_overload += 1  # kernel send buffer full (RECV_BATCH)
        except OSError:
            self.stats.udp_send_errors += 1

    def _read_ready(self, sock: socket.socket) -> None:
        """Every datagram queued on the socket, up to RECV_BATCH, in one callback."""
        for _ in range(RECV_BATCH):
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # An ICMP error (a peer's port closed) surfaces here: nothing for SWIM. A closed
                # socket also lands here once; its reader is already removed.
                self.stats.udp_send_errors += 1
                if sock.fileno() < 0:
                    return
                continue
            self._received(data, addr)

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        # One datagram that makes its handler raise (a full disk while saving a refutation, no
        # descriptor left) is lost; the receive loop goes on. (`faults.guard` spelled out: this
        # is the hot path, and try costs nothing until it catches.)
        try:
            self._on_datagram(data, (addr[0], addr[1]))
        except Exception as e:
            self.faults.record("gossip.receive", e)

    # --- streams ------------------------------------------------------------------------

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peername = writer.get_extra_info("peername") or ("", 0)
        peer: Addr = (str(peername[0]), int(peername[1]))
        if self._streams >= MAX_STREAM_CONNECTIONS:
            self.stats.stream_refused += 1
            self._rejected("stream_refused", peer)
            writer.close()
            return
        self._streams += 1
        held = 0
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                length = await read_length(reader)
                if not self.budget.take(length):
                    raise FrameRefused("stream_budget", f"{length} bytes over the stream budget")
                held = length
                data = await read_body(reader, length, self._check_header)
            reply = await self._on_stream(data, peer)
            del data  # decoded: what it held goes back to the budget
            self.budget.give(held)
            held = 0
            if reply is not None:
                async with asyncio.timeout(STREAM_TIMEOUT_S):
                    await write_frame(writer, reply)
        except FrameRefused as e:
            self.stats.stream_bad_frames += 1
            self._rejected(e.reason, peer)
        except TimeoutError:
            self.stats.stream_errors += 1
            self._rejected("stream_timeout", peer)
        except asyncio.IncompleteReadError:
            self.stats.stream_errors += 1
            self._rejected("stream_truncated", peer)
        except OSError:
            self.stats.stream_errors += 1
            self._rejected("stream_error", peer)
        finally:
            self.budget.give(held)
            self._streams -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _rejected(self, reason: str, peer: Addr) -> None:
        if self._on_reject is not None:
            self._on_reject(reason, peer)

    def _stream_source(self) -> tuple[str, int] | None:
        """Outgoing streams leave from our gossip IP when we listen on one: peers take a
        member's address from where its packets come from, and an unbound TCP socket would
        leave from whatever IP the kernel picks (127.0.0.1 for any 127.0.0.x, or another
        interface's address on a multi-homed host), where we may not be listening."""
        if self.host in ("", "0.0.0.0", "::"):
            return None
        return (self.host, 0)

    async def request(self, addr: Addr, data: bytes, want_reply: bool) -> bytes | None:
        """One stream exchange; raises TransportError on any failure."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(
                    addr[0], addr[1], limit=MAX_FRAME, local_addr=self._stream_source()
                )
                await write_frame(writer, data)
                if not want_reply:
                    return None
                length = await read_length(reader)
                # A reply is held only until the caller decodes it, with no await in between.
                if not self.budget.take(length):
                    raise FrameRefused("stream_budget", f"reply of {length} bytes over budget")
                try:
                    return await read_body(reader, length, self._check_header)
                finally:
                    self.budget.give(length)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            raise TransportError(f"{addr[0]}:{addr[1]}: {type(e).__name__}") from None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


async def _bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port); port 0 picks a free one."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_DGRAM)
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


async def read_length(reader: asyncio.StreamReader) -> int:
    """A frame's length prefix, refused (`FrameRefused`) when no frame can be that long."""
    length: int = _LEN.unpack(await reader.readexactly(_LEN.size))[0]
    if length > MAX_FRAME or length < HEADER_LEN:
        raise FrameRefused("stream_bad_frame", f"frame of {length} bytes")
    return length


async def read_body(
    reader: asyncio.StreamReader, length: int, check_header: HeaderCheck | None
) -> bytes:
    """The frame after its length prefix: the envelope header first, refused (`FrameRefused`
    with the codec's reason) before a byte more is read, then the rest."""
    header = await reader.readexactly(HEADER_LEN)
    problem = check_header(header) if check_header is not None else None
    if problem is not None:
        raise FrameRefused(problem.reason, problem.detail)
    return header + await reader.readexactly(length - HEADER_LEN)


async def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(_LEN.pack(len(data)) + data)
    await writer.drain()

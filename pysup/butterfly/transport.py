"""The only socket code of the ring: UDP datagrams (asyncio-dgram) and TCP streams on one port.

Streams carry one request frame and at most one reply frame, each a 4-byte big-endian length and
the payload. Everything that goes wrong with a socket (refused, reset, timeout, garbage) is
counted and dropped here; the core never sees a socket error.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import asyncio_dgram
import structlog

from pysup.butterfly.codec import MAX_DATAGRAM, MAX_FRAME
from pysup.butterfly.effects import Addr

log = structlog.get_logger(__name__)

_LEN = struct.Struct(">I")
RECV_QUEUE_LIMIT = 10_000
"""Datagrams waiting to be processed beyond this many are dropped (and counted): a flood must
not grow memory without bound."""
STREAM_TIMEOUT_S = 5.0
"""Connect, write and read deadline for one stream exchange."""
MAX_STREAM_CONNECTIONS = 256
"""Concurrent inbound streams; more are refused so a flood of connections stays bounded."""


class TransportError(Exception):
    """A stream exchange failed (connect, timeout, bad frame)."""


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


class Transport:
    def __init__(
        self,
        host: str,
        port: int,
        on_datagram: DatagramHandler,
        on_stream: StreamHandler,
    ) -> None:
        self.host = host
        self.port = port
        self._on_datagram = on_datagram
        self._on_stream = on_stream
        self._udp: asyncio_dgram.aio.DatagramServer | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._outq: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue(maxsize=RECV_QUEUE_LIMIT)
        self._streams = 0
        self.stats = TransportStats()

    @property
    def bound(self) -> Addr:
        return (self.host, self.port)

    async def start(self) -> None:
        """Bind UDP first (port 0 picks a free port), then TCP on the same port."""
        self._udp = await asyncio_dgram.bind((self.host, self.port))
        self.port = int(self._udp.sockname[1])
        try:
            self._tcp = await asyncio.start_server(
                self._serve_stream, self.host, self.port, reuse_address=True, limit=MAX_FRAME
            )
        except OSError:
            self._udp.close()
            raise
        self._spawn(self._recv_loop())
        self._spawn(self._send_loop())

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 1.0)

    # --- datagrams ----------------------------------------------------------------------

    def send(self, data: bytes, addr: Addr) -> None:
        if len(data) > MAX_DATAGRAM:
            self.stats.udp_oversized += 1
            return
        try:
            self._outq.put_nowait((data, addr))
        except asyncio.QueueFull:
            self.stats.udp_dropped_overload += 1

    async def _send_loop(self) -> None:
        assert self._udp is not None
        while True:
            data, addr = await self._outq.get()
            try:
                await self._udp.send(data, addr)
            except (OSError, asyncio_dgram.TransportClosed):
                self.stats.udp_send_errors += 1

    async def _recv_loop(self) -> None:
        assert self._udp is not None
        udp = self._udp
        # asyncio-dgram queues received datagrams without a bound; we watch its depth to shed
        # load under a flood (see RECV_QUEUE_LIMIT).
        recvq: asyncio.Queue[Any] = udp.__dict__["_recvq"]
        while True:
            try:
                data, addr = await udp.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError:
                continue  # ICMP errors surface here; they say nothing useful to SWIM
            backlog = recvq.qsize()
            if backlog > RECV_QUEUE_LIMIT:
                # Shed load: drop the oldest queued datagrams rather than grow without bound.
                for _ in range(backlog - RECV_QUEUE_LIMIT):
                    recvq.get_nowait()
                    self.stats.udp_dropped_overload += 1
            host, port = cast(tuple[str, int], addr)[:2]
            self._on_datagram(data, (str(host), int(port)))

    # --- streams ------------------------------------------------------------------------

    async def _serve_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)
        if self._streams >= MAX_STREAM_CONNECTIONS:
            self.stats.stream_refused += 1
            writer.close()
            return
        self._streams += 1
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                data = await read_frame(reader)
            reply = await self._on_stream(data, (str(peer[0]), int(peer[1])))
            if reply is not None:
                async with asyncio.timeout(STREAM_TIMEOUT_S):
                    await write_frame(writer, reply)
        except TransportError:
            self.stats.stream_bad_frames += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            self.stats.stream_errors += 1
        finally:
            self._streams -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def request(self, addr: Addr, data: bytes, want_reply: bool) -> bytes | None:
        """One stream exchange; raises TransportError on any failure."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(addr[0], addr[1], limit=MAX_FRAME)
                await write_frame(writer, data)
                if not want_reply:
                    return None
                return await read_frame(reader)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            raise TransportError(f"{addr[0]}:{addr[1]}: {type(e).__name__}") from None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    header = await reader.readexactly(_LEN.size)
    (length,) = _LEN.unpack(header)
    if length > MAX_FRAME:
        raise TransportError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return await reader.readexactly(length)


async def write_frame(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(_LEN.pack(len(data)) + data)
    await writer.drain()

"""Minimal asyncio client for the Serf agent RPC protocol (msgpack over TCP).

Written from the protocol description at serf.io ("RPC Protocol"): every request is a msgpack
header map ``{"Command": str, "Seq": int}`` optionally followed by a body map; every response is a
header ``{"Seq": int, "Error": str}`` optionally followed by a body. Which commands carry a body is
fixed per command. ``stream`` subscriptions answer with one body-less header and afterwards push
``header + event record`` pairs tagged with the stream's Seq, interleaved with other responses on
the same connection, so a single reader task demultiplexes by Seq.

Only what the benchmark needs is implemented: handshake, stats, members, members-filtered, event,
join, stream and stop. Arrival times of streamed events are taken when the bytes were read from
the socket (``time.monotonic()``), before decoding, so decoding cost does not inflate latencies.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

#: The only IPC version Serf speaks.
IPC_VERSION = 1

EventCallback = Callable[[float, dict[str, Any]], None]
"""Called with (monotonic receive time, event record) for each streamed event."""


class SerfRPCError(RuntimeError):
    """The agent answered a request with a non-empty Error field, or the connection broke."""


@dataclass
class _Pending:
    future: asyncio.Future[Any]
    has_body: bool


class SerfRPC:
    """One RPC connection to one agent. Use ``await SerfRPC.open(host, port)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        # Stream Seqs stay known after stop: in-flight events still carry a body to skip.
        self._streams: dict[int, EventCallback | None] = {}
        self._unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape")
        # When set, the next decoded object is the body for this Seq (response or stream event).
        self._body_for: tuple[int, str] | None = None
        self._closed = False
        self._read_task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, host: str, port: int, wait_s: float = 5.0) -> SerfRPC:
        """Connect and perform the mandatory handshake."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait_s)
        rpc = cls(reader, writer)
        try:
            await asyncio.wait_for(rpc._call("handshake", {"Version": IPC_VERSION}), wait_s)
        except BaseException:
            await rpc.close()
            raise
        return rpc

    @classmethod
    async def open_retrying(
        cls, host: str, port: int, deadline: float, interval: float = 0.05
    ) -> SerfRPC:
        """Connect, retrying refused connections until ``deadline`` (monotonic seconds)."""
        while True:
            try:
                return await cls.open(host, port, wait_s=max(0.1, deadline - time.monotonic()))
            except (ConnectionError, OSError, TimeoutError):
                if time.monotonic() + interval > deadline:
                    raise
                await asyncio.sleep(interval)

    # -- commands ---------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        """Agent stats; ``["serf"]["members"|"failed"|"left"]`` are decimal strings."""
        result: dict[str, Any] = await self._call("stats", None, has_body=True)
        return result

    async def members(self) -> list[dict[str, Any]]:
        body = await self._call("members", None, has_body=True)
        return list(body.get("Members") or [])

    async def members_filtered(
        self,
        *,
        name: str = "",
        status: str = "",
        tags: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Members whose Name/Status/Tags match the given (anchored regex) filters."""
        req = {"Tags": tags or {}, "Status": status, "Name": name}
        body = await self._call("members-filtered", req, has_body=True)
        return list(body.get("Members") or [])

    async def event(self, name: str, payload: bytes, coalesce: bool = False) -> None:
        """Fire a user event. ``coalesce=False`` so receivers' agents deliver it immediately."""
        await self._call("event", {"Name": name, "Payload": payload, "Coalesce": coalesce})

    async def join(self, addrs: list[str], replay: bool = False) -> int:
        body = await self._call("join", {"Existing": addrs, "Replay": replay}, has_body=True)
        return int(body.get("Num", 0))

    async def stream(self, event_type: str, callback: EventCallback) -> int:
        """Subscribe to events (e.g. ``"user:bench"``); returns the Seq to pass to ``stop``."""
        seq = self._next_seq()
        self._streams[seq] = callback
        try:
            await self._call("stream", {"Type": event_type}, seq=seq)
        except BaseException:
            self._streams.pop(seq, None)
            raise
        return seq

    async def stop(self, stream_seq: int) -> None:
        # Drop the callback first: events already in flight may be read before stop's answer
        # resumes us. The Seq stays known so their bodies are still consumed.
        self._streams[stream_seq] = None
        await self._call("stop", {"Stop": stream_seq})

    async def close(self) -> None:
        self._closed = True
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._read_task
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._fail_pending(SerfRPCError("connection closed"))

    # -- plumbing ---------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    async def _call(
        self,
        command: str,
        body: dict[str, Any] | None,
        *,
        has_body: bool = False,
        seq: int | None = None,
    ) -> Any:
        if self._closed:
            raise SerfRPCError("connection closed")
        if seq is None:
            seq = self._next_seq()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[seq] = _Pending(fut, has_body)
        data = msgpack.packb({"Command": command, "Seq": seq}, use_bin_type=True)
        if body is not None:
            data += msgpack.packb(body, use_bin_type=True)
        self._writer.write(data)
        try:
            await self._writer.drain()
            return await fut
        finally:
            self._pending.pop(seq, None)

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                received = time.monotonic()
                self._unpacker.feed(data)
                for obj in self._unpacker:
                    self._dispatch(obj, received)
        except (ConnectionError, OSError) as exc:
            self._fail_pending(SerfRPCError(f"connection lost: {exc}"))
        finally:
            self._fail_pending(SerfRPCError("connection closed by agent"))

    def _dispatch(self, obj: Any, received: float) -> None:
        if self._body_for is not None:
            seq, kind = self._body_for
            self._body_for = None
            if kind == "stream":
                callback = self._streams.get(seq)
                if callback is not None:
                    callback(received, obj)
            else:
                pending = self._pending.get(seq)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(obj)
            return
        if not isinstance(obj, dict) or "Seq" not in obj:
            raise SerfRPCError(f"unexpected RPC frame: {obj!r}")
        seq = int(obj["Seq"])
        error = obj.get("Error") or ""
        pending = self._pending.get(seq)
        if pending is not None:
            if pending.has_body:
                # The body follows even on error for body-carrying commands.
                self._body_for = (seq, "resp")
                if error and not pending.future.done():
                    pending.future.set_exception(SerfRPCError(error))
            elif not pending.future.done():
                if error:
                    pending.future.set_exception(SerfRPCError(error))
                else:
                    pending.future.set_result(None)
        elif seq in self._streams:
            self._body_for = (seq, "stream")

    def _fail_pending(self, exc: Exception) -> None:
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(exc)

"""The Serf RPC client's framing against a scripted fake agent on 127.0.0.1.

What matters: streamed events tagged with the stream's Seq arrive interleaved with responses to
other commands on the same connection, and the client must route header+body pairs correctly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest

from bench.serf_rpc import SerfRPC, SerfRPCError


async def _fake_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    unpacker = msgpack.Unpacker(raw=False)
    stream_seq: int | None = None

    def send(*objs: Any) -> None:
        writer.write(b"".join(msgpack.packb(o, use_bin_type=True) for o in objs))

    async def next_obj() -> Any:
        while True:
            for obj in unpacker:
                return obj
            data = await reader.read(4096)
            if not data:
                raise ConnectionError
            unpacker.feed(data)

    try:
        while True:
            header = await next_obj()
            cmd, seq = header["Command"], header["Seq"]
            if cmd == "handshake":
                assert (await next_obj()) == {"Version": 1}
                send({"Seq": seq, "Error": ""})
            elif cmd == "stream":
                assert (await next_obj()) == {"Type": "user:x"}
                stream_seq = seq
                send({"Seq": seq, "Error": ""})
            elif cmd == "members":
                # An event for the stream sneaks in before the members answer.
                assert stream_seq is not None
                event = {"Event": "user", "Name": "x", "Payload": b"p1", "LTime": 3}
                send({"Seq": stream_seq, "Error": ""}, event)
                send({"Seq": seq, "Error": ""}, {"Members": [{"Name": "n0", "Status": "alive"}]})
            elif cmd == "event":
                body = await next_obj()
                send({"Seq": seq, "Error": "" if body["Name"] == "x" else "bad name"})
            elif cmd == "stop":
                await next_obj()
                send({"Seq": seq, "Error": ""})
                # An event already in flight after stop must be skipped, not misparsed.
                send({"Seq": stream_seq, "Error": ""}, {"Event": "user", "Payload": b"late"})
                send({"Seq": seq + 100, "Error": ""})
    except ConnectionError:
        pass
    finally:
        writer.close()


async def test_stream_events_interleave_with_responses() -> None:
    server = await asyncio.start_server(_fake_agent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got: list[tuple[float, dict[str, Any]]] = []
    rpc = await SerfRPC.open("127.0.0.1", port)
    try:
        seq = await rpc.stream("user:x", lambda t, e: got.append((t, e)))
        members = await rpc.members()
        assert members == [{"Name": "n0", "Status": "alive"}]
        assert [e["Payload"] for _, e in got] == [b"p1"]
        assert got[0][0] > 0
        await rpc.event("x", b"payload")
        with pytest.raises(SerfRPCError, match="bad name"):
            await rpc.event("y", b"payload")
        await rpc.stop(seq)
        # The connection still frames correctly after the late stream event.
        assert await rpc.members() == [{"Name": "n0", "Status": "alive"}]
        assert [e["Payload"] for _, e in got] == [b"p1"]  # nothing delivered after stop
    finally:
        await rpc.close()
        server.close()
        await server.wait_closed()

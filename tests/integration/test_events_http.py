"""`/events` over real HTTP on 127.0.0.1, on a throwaway aiohttp app (not the gateway): streaming
as `curl -N` sees it, resumption, and what happens to slow, stalled and surplus clients."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from pysup.events import EventHub, EventLimits, EventStream
from pysup.events.model import MemberRefuted, Payload
from pysup.events.sse import SseMessage, SseParser
from pysup.events.web import add_events_route
from tests.util import async_wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

READ_BOUND_S = 5.0
"""An event published reaches a connected client within this long (it is sent at once; the
bound only absorbs a loaded machine)."""


Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True, slots=True)
class Blob(Payload):
    NAME: ClassVar[str] = "test.blob"
    parts: tuple[str, ...]


def refuted(n: int) -> MemberRefuted:
    return MemberRefuted(member_id="a" * 32, incarnation=n)


async def serve(limits: EventLimits) -> tuple[EventStream, Client]:
    stream = EventStream(EventHub(limits, member_id="m" * 32))
    app = web.Application()
    add_events_route(app, stream)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return stream, client


@pytest.fixture
async def events() -> AsyncIterator[tuple[EventStream, Client]]:
    stream, client = await serve(EventLimits())
    yield stream, client
    stream.close()
    await client.close()


async def wait_clients(stream: EventStream, n: int) -> None:
    async def check() -> bool:
        return stream.hub.stats.clients == n

    await async_wait_for(check, READ_BOUND_S, what=f"{n} connected event clients")


async def read_until(resp: ClientResponse, parser: SseParser, want: int) -> list[SseMessage]:
    """Read until `want` messages arrived (or the stream ended), within READ_BOUND_S."""
    out: list[SseMessage] = []
    async with asyncio.timeout(READ_BOUND_S):
        while len(out) < want:
            chunk = await resp.content.readany()
            if not chunk:
                break
            out += parser.feed(chunk)
    return out


async def test_streams_as_curl_sees_it(
    events: tuple[EventStream, Client],
) -> None:
    stream, client = events
    resp = await client.get("/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache, no-transform"
    parser = SseParser()
    (hello,) = await read_until(resp, parser, 1)
    assert hello.event == "stream.hello" and parser.retry_ms == 2000
    stream.publish(refuted(1))
    (event,) = await read_until(resp, parser, 1)
    assert (event.event, event.id) == ("member.refuted", "1")
    assert event.json()["data"]["incarnation"] == 1
    resp.close()


async def test_resume_with_last_event_id_and_since(
    events: tuple[EventStream, Client],
) -> None:
    stream, client = events
    ids = [stream.publish(refuted(n)).id for n in range(5)]
    resp = await client.get("/events", headers={"Last-Event-ID": str(ids[1])})
    got = await read_until(resp, SseParser(), 4)
    assert [m.id for m in got[1:]] == [str(i) for i in ids[2:]]
    resp.close()
    resp = await client.get("/events", params={"since": str(ids[3])})
    got = await read_until(resp, SseParser(), 2)
    assert [m.id for m in got[1:]] == [str(ids[4])]
    resp.close()
    resp = await client.get("/events", params={"since": "yesterday"})
    assert resp.status == 400
    assert "since='yesterday'" in (await resp.json())["error"]


async def test_a_client_that_fell_behind_the_history_is_dropped_with_a_final_event() -> None:
    stream, client = await serve(EventLimits(history_events=10))
    try:
        resp = await client.get("/events")
        parser = SseParser()
        await read_until(resp, parser, 1)
        for n in range(50):  # one burst, before the client's writer runs again
            stream.publish(refuted(n))
        got = await read_until(resp, parser, 10)
        assert [m.event for m in got] == ["stream.dropped"]
        assert await resp.content.read() == b""  # and the stream ended
        await wait_clients(stream, 0)
        assert stream.hub.stats.dropped == 1
    finally:
        stream.close()
        await client.close()


async def test_a_client_that_reads_nothing_is_cut_off_and_never_delays_other_requests() -> None:
    """A client that sends its request and then never reads: once its socket buffers are full
    the write times out and the connection is closed; meanwhile /healthz answers at once."""
    limits = EventLimits(write_timeout_s=0.5, history_bytes=4 << 20)
    stream, client = await serve(limits)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        assert client.port is not None
        sock.connect(("127.0.0.1", client.port))
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        await wait_clients(stream, 1)
        blob = "x" * 1000
        deadline = time.monotonic() + 30
        slowest_healthz = 0.0
        while stream.hub.stats.stalled == 0:
            assert time.monotonic() < deadline, "the stalled client was never cut off"
            for _ in range(20):
                stream.publish(Blob((blob,) * 10))  # about 10 KB each
            started = time.monotonic()
            assert (await client.get("/healthz")).status == 200
            slowest_healthz = max(slowest_healthz, time.monotonic() - started)
        await wait_clients(stream, 0)
        assert slowest_healthz < 1.0
    finally:
        sock.close()
        stream.close()
        await client.close()


async def test_one_client_too_many_gets_503() -> None:
    stream, client = await serve(EventLimits(max_clients=1))
    try:
        first = await client.get("/events")
        await read_until(first, SseParser(), 1)
        second = await client.get("/events")
        assert second.status == 503
        assert second.headers["Retry-After"] == "2"
        first.close()
    finally:
        stream.close()
        await client.close()


async def test_close_ends_streams(
    events: tuple[EventStream, Client],
) -> None:
    stream, client = events
    resp = await client.get("/events")
    parser = SseParser()
    await read_until(resp, parser, 1)
    stream.close()
    got = await read_until(resp, parser, 1)
    assert [m.event for m in got] == ["stream.closing"]
    assert await resp.content.read() == b""

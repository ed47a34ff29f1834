"""``GET /events``: the aiohttp handler that streams an ``EventStream`` to one client.

The gateway registers it (``add_events_route``); its token middleware applies as to every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Final

from aiohttp import web

from pysup.events.hub import TooManyClients
from pysup.events.sse import BadResume, parse_resume
from pysup.events.stream import EventStream

HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    # nginx buffers responses unless told not to; a buffered event stream arrives in lumps.
    "X-Accel-Buffering": "no",
}


async def events_handler(request: web.Request, stream: EventStream) -> web.StreamResponse:
    try:
        resume = parse_resume(request.headers.get("Last-Event-ID"), request.query.get("since"))
    except BadResume as e:
        return web.json_response({"error": str(e)}, status=400)
    try:
        chunks = stream.subscribe(resume)
    except TooManyClients as e:
        retry = str(max(1, stream.hub.limits.retry_ms // 1000))
        return web.json_response({"error": str(e)}, status=503, headers={"Retry-After": retry})
    response = web.StreamResponse(headers=HEADERS)
    timeout = stream.hub.limits.write_timeout_s
    _bound_send_buffer(request, stream.hub.limits.send_buffer_bytes)
    writing = False

    def abort_blocked_write() -> None:
        # At shutdown a client that stopped reading would hold its handler (and so the gateway's
        # shutdown) for up to the write timeout; one that reads gets `stream.closing` instead.
        if writing and request.transport is not None:
            request.transport.abort()

    try:
        await response.prepare(request)
        with stream.on_close(abort_blocked_write):
            async for chunk in chunks:
                writing = True
                try:
                    async with asyncio.timeout(timeout):
                        await response.write(chunk)
                except TimeoutError:
                    # It accepts nothing: its buffers are full. Cut it off so its socket,
                    # buffers and client slot are freed; it may reconnect and resume.
                    stream.stalled()
                    if request.transport is not None:
                        request.transport.abort()
                    break
                writing = False
    except ConnectionError:
        pass  # the client went away (or was cut off above); `aclose` below frees its slot
    finally:
        await chunks.aclose()
    return response


def _bound_send_buffer(request: web.Request, size: int) -> None:
    """``EventLimits.send_buffer_bytes`` on this connection's socket (TLS included: the socket
    under the TLS layer)."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def add_events_route(app: web.Application, stream: EventStream, path: str = "/events") -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await events_handler(request, stream)

    app.router.add_get(path, handler)

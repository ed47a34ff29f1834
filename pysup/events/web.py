"""``GET /events``: the aiohttp handler that streams an ``EventStream`` to one client.

The gateway registers it (``add_events_route``); its token middleware applies as to every route.
"""

from __future__ import annotations

import asyncio
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
    try:
        await response.prepare(request)
        async for chunk in chunks:
            try:
                async with asyncio.timeout(timeout):
                    await response.write(chunk)
            except TimeoutError:
                # It accepts nothing: its buffers are full. Cut it off so its socket, buffers
                # and client slot are freed; it may reconnect and resume.
                stream.stalled()
                if request.transport is not None:
                    request.transport.abort()
                break
    except ConnectionError:
        pass  # the client went away; `aclose` below frees its slot
    finally:
        await chunks.aclose()
    return response


def add_events_route(app: web.Application, stream: EventStream, path: str = "/events") -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await events_handler(request, stream)

    app.router.add_get(path, handler)

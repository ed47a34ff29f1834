"""`/ui` over real HTTP: the redirect, the page and its files with their types and headers, and
the scripted ring's token rule (the page open, the data closed)."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.fuzz import FakeSupervisor
from pysup.events import EventHub, EventStream
from pysup.events.sse import SseParser
from pysup.gateway.http import make_app
from pysup.gateway.static import HEADERS
from pysup.testing.uiring import ScriptedRing

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


async def test_page_files_and_headers() -> None:
    ring = ScriptedRing(3)
    async with TestClient(TestServer(ring.app(token="t0k"), host="127.0.0.1")) as client:
        resp = await client.get("/ui", allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (308, "ui/")
        page = await client.get("/ui")  # follows the redirect
        assert page.status == 200 and str(page.url).endswith("/ui/")
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<script type="module" src="ui.js">' in await page.text()
        for name, media in (("ui.js", "text/javascript"), ("ui.css", "text/css")):
            resp = await client.get(f"/ui/{name}")
            assert resp.status == 200
            assert resp.headers["Content-Type"] == f"{media}; charset=utf-8"
            for header, value in HEADERS.items():
                assert resp.headers[header] == value
        assert (await client.get("/ui/../census")).status == 401  # normalised: a data route
        assert (await client.get("/ui/secret.txt")).status == 401  # not a page file: closed
        assert (await client.get("/census")).status == 401
        auth = {"Authorization": "Bearer t0k"}
        assert (await client.get("/census", headers=auth)).status == 200
        assert (await client.get("/ui/secret.txt", headers=auth)).status == 404


async def test_the_gateway_serves_the_page_open_and_events_behind_the_token() -> None:
    """The real gateway (``make_app``): the page's files and the probes need no token; ``/events``
    and the JSON routes the page reads do, and ``/events`` streams with it."""
    stream = EventStream(EventHub(member_id="m" * 32))
    app = make_app(FakeSupervisor(random.Random(1)), "t0k", events=stream)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for path in ("/ui/", "/ui/ui.js", "/ui/state.js", "/ui/ui.css", "/healthz"):
            assert (await client.get(path)).status == 200, path
        for path in ("/events", "/butterfly", "/metrics"):
            assert (await client.get(path)).status == 401, path
        resp = await client.get("/events", headers={"Authorization": "Bearer t0k"})
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        parser, messages = SseParser(), []
        async with asyncio.timeout(5):
            while not messages:
                messages += parser.feed(await resp.content.readany())
        assert messages[0].event == "stream.hello"
        stream.close()

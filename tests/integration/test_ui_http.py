"""`/ui` over real HTTP: the redirect, the page and its files with their types and headers, and
the scripted ring's token rule (the page open, the data closed)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

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

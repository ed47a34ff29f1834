"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium.

Needs (as root, once): ``apt-get install -y chromium chromium-driver``; and selenium (the dev
extra). Without them every test here is skipped, saying which is missing.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from pysup.testing.uiring import ScriptedRing

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SCREENSHOTS = Path(__file__).parents[2] / "build" / "screenshots"
"""Where the screenshots go (ignored by git; the README's comes from here)."""

T = TypeVar("T")


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if shutil.which(path) is None:
            return f"{path} is missing: apt-get install -y chromium chromium-driver ({package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="h19-ui-chromium-") as profile:
        options = Options()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield driver
        finally:
            driver.quit()


class Served:
    """A ``ScriptedRing``'s app on 127.0.0.1 (port 0) in a thread with its own event loop;
    ``call`` runs a change on that loop (the ring is not thread-safe)."""

    def __init__(self, ring: ScriptedRing, token: str | None = None) -> None:
        self.ring = ring
        self.loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(ring.app(token), handle_signals=False)
        started: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        self.port = started.result(timeout=10)
        self.url = f"http://127.0.0.1:{self.port}/ui/"

    def _run(self, started: Future[int]) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> int:
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            server: Any = site._server
            return int(server.sockets[0].getsockname()[1])

        try:
            started.set_result(self.loop.run_until_complete(start()))
        except BaseException as e:  # surface a start failure in the test, not in the thread
            started.set_exception(e)
            return
        self.loop.run_forever()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def stop() -> None:
            self.ring.stream.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(ring: ScriptedRing, token: str | None = None) -> Served:
        served = Served(ring, token)
        started.append(served)
        return served

    yield start
    for served in started:
        served.close()


def save_full_page(browser: Any, name: str, width: int) -> Path:
    """A PNG of the whole page (beyond the viewport) at `width` CSS pixels, saved as
    build/screenshots/`name`.png."""
    page = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": page["height"], "scale": 1},
        },
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


EXPECTED_CONSOLE = ("Failed to load resource", "net::ERR_")
"""Console errors a test may cause on purpose: a 401 before the token is entered, a stream cut
off by the test."""


@pytest.fixture(autouse=True)
def no_script_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every browser test fails on a JavaScript error in the page (an exception while
    rendering an event would otherwise go unnoticed)."""
    if "browser" not in request.fixturenames:
        yield
        return
    driver = request.getfixturevalue("browser")
    driver.get_log("browser")  # discard what earlier tests left
    yield
    errors = [
        e["message"]
        for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not any(x in e["message"] for x in EXPECTED_CONSOLE)
    ]
    assert not errors, errors

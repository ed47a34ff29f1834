"""The dashboard, ``GET /ui``: static files shipped in the package (no build step, no CDN).

The page is plain HTML, CSS and two ES modules. It reads ``/census`` and ``/butterfly`` and
streams ``/events``, all with ``fetch``, so it works offline and in an air-gapped cluster.

The token. With ``HAB_SUP_GATEWAY_AUTH_TOKEN`` set every data route needs
``Authorization: Bearer``. A browser cannot send that header when it *navigates* to a page, and
``EventSource`` cannot send it at all, so:

- the page's own files (``UI_OPEN_PATHS``) are served without the token: they hold no data;
- the page asks for the token (on the first 401), keeps it in ``sessionStorage`` (or, if asked,
  ``localStorage``), and sends it as the Bearer header on every request; it streams ``/events``
  with ``fetch`` and reads the body itself instead of using ``EventSource``.

So the data routes keep the one rule they have (the middleware's constant-time compare), and the
token never appears in a URL (logs, history, ``Referer``) or in a cookie (no CSRF surface on the
POST routes). A strict Content-Security-Policy allows scripts from this origin only, and the page
inserts ring data as text only, so gossiped names cannot run script in the page.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Final

from aiohttp import web

ASSETS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "ui.html": "text/html",
        "ui.css": "text/css",
        "ui.js": "text/javascript",
        "state.js": "text/javascript",
    }
)
"""Every file served, with its media type: an allowlist, so no path from a request reaches the
file system."""

PREFIX: Final = "/ui"

UI_OPEN_PATHS: Final[frozenset[str]] = frozenset(
    {PREFIX, f"{PREFIX}/", *(f"{PREFIX}/{name}" for name in ASSETS if name != "ui.html")}
)
"""Paths the gateway serves without the token (add them to its open routes)."""

HEADERS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # Revalidate each time: after an upgrade the page and its scripts must match.
        "Cache-Control": "no-cache",
    }
)


@functools.cache
def load_asset(name: str) -> bytes:
    """One file, read from the installed package on its first request (then kept): a supervisor
    whose dashboard is never opened neither holds the files nor pays for importlib.resources'
    readers (zipfile: ~20 ms at start-up, issue 18)."""
    from importlib import resources

    return resources.files(__name__).joinpath(name).read_bytes()


def load_assets() -> dict[str, bytes]:
    """Every file (``load_asset`` of each)."""
    return {name: load_asset(name) for name in ASSETS}


def add_ui_routes(app: web.Application) -> None:
    """Register ``/ui`` (redirects to ``/ui/``), ``/ui/`` (the page) and its files."""

    def handler(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        media = ASSETS[name]

        async def serve(request: web.Request) -> web.Response:
            body = load_asset(name)
            return web.Response(body=body, content_type=media, charset="utf-8", headers=HEADERS)

        return serve

    async def redirect(request: web.Request) -> web.Response:
        # Relative, so the page also works behind a proxy that adds a path prefix
        # (``kubectl proxy``'s /api/v1/namespaces/N/pods/P:9631/proxy/ui).
        raise web.HTTPPermanentRedirect("ui/")

    app.router.add_get(PREFIX, redirect)
    for name in ASSETS:
        app.router.add_get(f"{PREFIX}/" if name == "ui.html" else f"{PREFIX}/{name}", handler(name))

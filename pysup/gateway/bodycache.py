"""A route's serialized JSON body, kept until what it was built from changes (issue 18, goal 7).

`/services` and `/census` are read far more often than they change (dashboards, load balancers,
`pysup census` polling every member): building the JSON was most of a request's CPU. A route
passes a key that changes whenever its view would (the census object, which ``CensusCache``
replaces when the ring's version moves; each service's ``service_key``), and gets the same bytes
``web.json_response`` would have sent, built only when the key differs from the last one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from typing import Any

from aiohttp import web


class BodyCache:
    """One route's last body and the key it was built for. Keys compare with ``==`` (a tuple
    compares its items by identity first, so an unchanged key costs a few pointer checks)."""

    def __init__(self) -> None:
        self._key: Hashable | None = None
        self._body: bytes | None = None
        self.builds = 0
        """How many times the body was (re)built: tests read it to prove invalidation."""

    def body(self, key: Hashable, build: Callable[[], Any]) -> bytes:
        """The JSON of ``build()``, rebuilt only when `key` differs from the last call's."""
        if self._body is None or key != self._key:
            # json.dumps with its defaults: the bytes web.json_response would send.
            self._body = json.dumps(build()).encode("utf-8")
            self._key = key
            self.builds += 1
        return self._body

    def response(self, key: Hashable, build: Callable[[], Any]) -> web.Response:
        """A 200 with the cached body and web.json_response's Content-Type."""
        return web.Response(
            body=self.body(key, build), content_type="application/json", charset="utf-8"
        )

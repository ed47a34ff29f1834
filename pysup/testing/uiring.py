"""A scripted ring behind the dashboard, without a daemon: for the browser tests and by hand.

``ScriptedRing`` holds a member table and a real ``RumorStore``; ``/census`` and ``/butterfly``
are rendered from them by the gateway's own JSON functions, and every change made through it is
published on ``/events`` as the daemon will publish it (``pysup.events.translate``). The app also
serves the dashboard's files and applies the gateway's token rule (Bearer, constant-time, the
page's files open).

By hand: ``python -m pysup.testing.uiring [--port 8019] [--token T]`` serves a 5-member ring in
which a member fails and comes back every half minute; open http://127.0.0.1:8019/ui/.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import random
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from pysup.butterfly.effects import MemberChanged, RumorChanged
from pysup.butterfly.member import Health, Member, new_member_id
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    ServiceConfigRumor,
    ServiceRumor,
)
from pysup.butterfly.rumors import RumorStore, StoredRumor
from pysup.census import census_json
from pysup.census_build import build_census
from pysup.events import EventHub, EventLimits, EventStream
from pysup.events.model import Payload
from pysup.events.translate import member_event, rumor_event
from pysup.events.web import events_handler
from pysup.gateway.http import butterfly_json
from pysup.gateway.static import UI_OPEN_PATHS, add_ui_routes

PKG = "core/habsup/0.1.0/20240101000000"


class ScriptedRing:
    """A ring of `size` members seen from the first (in id order), with one service group."""

    def __init__(
        self,
        size: int = 3,
        service_group: str = "habsup.default",
        *,
        seed: int = 19,
        leader: bool = True,
        limits: EventLimits | None = None,
    ) -> None:
        rng = random.Random(seed)
        self.ids = sorted(new_member_id(rng) for _ in range(size))
        self.service_group = service_group
        self.table = {
            mid: Member(mid, 1, f"10.0.0.{i + 1}", 9638) for i, mid in enumerate(self.ids)
        }
        self.local_id = self.ids[0]
        self.store = RumorStore()
        self.limits = limits or EventLimits()
        self.stream = self._new_stream()
        self.requests: dict[str, int] = {"census": 0, "butterfly": 0, "events": 0}
        self._event_transports: set[asyncio.Transport] = set()
        for i, mid in enumerate(self.ids):
            sys = {"ip": f"10.0.0.{i + 1}", "hostname": f"node{i}", "member_id": mid}
            self.store.merge(
                ServiceRumor(mid, service_group, 1, PKG, True, {}, sys, health_check="Ok")
            )
        self.store.merge(ServiceConfigRumor(service_group, 1, b"[http]\nport = 8080\n"))
        if leader and size >= 3:
            winner = self.ids[-1]
            votes = tuple(self.ids)
            self.store.merge(
                ElectionRumor(service_group, winner, 0, 0, ElectionStatus.FINISHED, votes)
            )

    def _new_stream(self) -> EventStream:
        first_id = int(time.time() * 1_000_000)  # as the daemon does: above any earlier run's
        return EventStream(EventHub(self.limits, first_id=first_id, member_id=self.local_id))

    # --- changes --------------------------------------------------------------------------------

    def set_health(
        self,
        member_id: str,
        health: Health,
        *,
        incarnation: int | None = None,
        suspected_by: str | None = None,
        publish: bool = True,
    ) -> None:
        """Change a member's record; `publish=False` changes it silently (an event the page
        missed)."""
        old = self.table[member_id]
        new = old._replace(health=health, incarnation=incarnation or old.incarnation)
        self.table[member_id] = new
        if publish:
            self.publish(member_event(MemberChanged(new, old.health, suspected_by or "")))

    def merge(self, rumor: ServiceRumor | ServiceConfigRumor | ElectionRumor) -> None:
        stored: StoredRumor | None = self.store.merge(rumor)
        if stored is not None:
            self.publish(rumor_event(RumorChanged(stored)))

    def publish(self, payload: Payload) -> None:
        self.stream.publish(payload)

    def drop_streams(self) -> None:
        """Cut every ``/events`` connection (as a network failure would)."""
        for transport in list(self._event_transports):
            transport.abort()

    def restart_stream(self) -> None:
        """As after a supervisor restart: a new history with higher ids; clients are cut off
        and their ``Last-Event-ID`` is unknown to the new one (they get a reset)."""
        self.stream.close()
        self.stream = self._new_stream()
        self.drop_streams()

    # --- JSON ------------------------------------------------------------------------------------

    @property
    def local(self) -> Member:
        return self.table[self.local_id]

    def others(self) -> list[Member]:
        return [m for mid, m in self.table.items() if mid != self.local_id]

    def census(self) -> dict[str, Any]:
        return census_json(build_census(self.local, self.others(), self.store))

    def butterfly(self) -> dict[str, Any]:
        return butterfly_json(self.local, self.others(), self.store)

    # --- the app ---------------------------------------------------------------------------------

    def app(self, token: str | None = None) -> web.Application:
        app = web.Application(middlewares=[_bearer(token)])

        async def census(request: web.Request) -> web.Response:
            self.requests["census"] += 1
            return web.json_response(self.census())

        async def butterfly(request: web.Request) -> web.Response:
            self.requests["butterfly"] += 1
            return web.json_response(self.butterfly())

        async def events(request: web.Request) -> web.StreamResponse:
            self.requests["events"] += 1
            transport = request.transport
            if transport is not None:
                self._event_transports.add(transport)
            try:
                return await events_handler(request, self.stream)
            finally:
                if transport is not None:
                    self._event_transports.discard(transport)

        app.router.add_get("/census", census)
        app.router.add_get("/butterfly", butterfly)
        app.router.add_get("/events", events)
        add_ui_routes(app)
        return app


def _bearer(token: str | None) -> Middleware:
    """The gateway's token rule: the page's files are open, everything else needs the token."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token and request.path not in UI_OPEN_PATHS:
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    return check


async def _churn(ring: ScriptedRing, period_s: float) -> None:
    """One member after another fails (Suspect, then Confirmed) and comes back."""
    reporter = ring.ids[0]
    n = 0
    while True:
        victim = ring.ids[1 + n % (len(ring.ids) - 1)]
        n += 1
        await asyncio.sleep(period_s)
        ring.set_health(victim, Health.SUSPECT, suspected_by=reporter)
        await asyncio.sleep(period_s / 3)
        ring.set_health(victim, Health.CONFIRMED)
        await asyncio.sleep(period_s / 3)
        inc = ring.table[victim].incarnation + 1
        ring.set_health(victim, Health.ALIVE, incarnation=inc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8019)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--token", default=None)
    parser.add_argument("--period", type=float, default=30.0, help="seconds between failures")
    args = parser.parse_args()
    ring = ScriptedRing(args.members)

    async def start(app: web.Application) -> None:
        app["churn"] = asyncio.ensure_future(_churn(ring, args.period))

    app = ring.app(args.token)
    app.on_startup.append(start)
    print(f"dashboard: http://127.0.0.1:{args.port}/ui/")
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()

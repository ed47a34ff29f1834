"""The HTTP gateway (aiohttp, :9631): health, readiness, ring state, metrics, and the service API.

It starts before any join attempt, so `/healthz` and `/readyz` work before the ring forms (the
seed's ask: a Kubernetes readinessProbe that is usable at once).
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from pysup.butterfly.member import Member
from pysup.butterfly.messages import RumorKind, by_kind, kind_of
from pysup.events.stream import EventStream
from pysup.events.web import add_events_route
from pysup.gateway.host import HttpHost
from pysup.gateway.static import UI_OPEN_PATHS, add_ui_routes
from pysup.ring import RumorView

log = structlog.get_logger(__name__)

OPEN_ROUTES = frozenset({"/healthz", "/readyz"})
"""Probes must work without the token: the kubelet has none."""
OPEN_PATHS = OPEN_ROUTES | UI_OPEN_PATHS
"""Served without the token: the probes, and the dashboard's own files (they hold no data; the
page asks for the token and sends it to the data routes, ``pysup.gateway.static``)."""


INDEX = {
    "/": "this index",
    "/healthz": "liveness: 200 while every critical task runs, else 503 with the reason",
    "/readyz": "readiness: 200 when ready (see --readiness), else 503 with a reason",
    "/services": "every service this supervisor runs (Habitat's JSON)",
    "/services/{svc}/{group}[/{org}]": "one service",
    "/services/{svc}/{group}[/{org}]/config": "its merged configuration",
    "/services/{svc}/{group}[/{org}]/health": "its last health check",
    "/census": "every service group across the ring, with members",
    "/butterfly": "the gossip ring: members and rumors",
    "/metrics": "Prometheus metrics",
    "/events": "Server-Sent Events: what this member learns (docs/events.md)",
    "/ui/": "the dashboard: members, service groups, elections, events",
    "/sup/depart (POST, loopback)": "leave the ring and stop services (container pre-stop)",
}


def _member_json(m: Member) -> dict[str, Any]:
    return {
        "id": m.id,
        "address": m.address,
        "gossip_port": m.gossip_port,
        "incarnation": m.incarnation,
        "persistent": m.persistent,
        "health": m.health.label,
    }


def _service_view(r: Any) -> tuple[str, str | None, dict[str, Any]]:
    entry = {
        "member_id": r.member_id,
        "service_group": r.service_group,
        "incarnation": r.incarnation,
        "pkg": r.pkg,
        "initialized": r.initialized,
        "cfg": dict(r.cfg),
        "sys": dict(r.sys),
    }
    return r.service_group, r.member_id, entry


def _config_view(r: Any) -> tuple[str, str | None, dict[str, Any]]:
    entry = {
        "service_group": r.service_group,
        "incarnation": r.incarnation,
        "encrypted": r.encrypted,
        "config": r.config.decode("utf-8", "replace"),
    }
    return r.service_group, None, entry


def _file_view(r: Any) -> tuple[str, str | None, dict[str, Any]]:
    entry = {
        "service_group": r.service_group,
        "filename": r.filename,
        "incarnation": r.incarnation,
        "encrypted": r.encrypted,
        "size": len(r.body),
    }
    return r.service_group, r.filename, entry


def _election_view(r: Any) -> tuple[str, str | None, dict[str, Any]]:
    entry = {
        "service_group": r.service_group,
        "member_id": r.member_id,
        "term": r.term,
        "suitability": r.suitability,
        "status": r.status.value,
        "votes": list(r.votes),
    }
    return r.service_group, None, entry


def _departure_view(r: Any) -> tuple[str, str | None, dict[str, Any]]:
    return r.member_id, None, {"member_id": r.member_id}


_View = Callable[[Any], tuple[str, str | None, dict[str, Any]]] | None
_BUTTERFLY: Mapping[RumorKind, _View] = by_kind(
    "/butterfly view",
    {
        RumorKind.MEMBER: None,  # members are the "member" section, from the member table
        RumorKind.SERVICE: _service_view,
        RumorKind.SERVICE_CONFIG: _config_view,
        RumorKind.SERVICE_FILE: _file_view,
        RumorKind.ELECTION: _election_view,
        RumorKind.ELECTION_UPDATE: _election_view,
        RumorKind.DEPARTURE: _departure_view,
    },
)
"""Each kind's `/butterfly` entry: (key, sub-key or None, entry) under `<kind>.list`, in the
order of Habitat's sections."""


def butterfly_json(me: Member, members: list[Member], store: RumorView) -> dict[str, Any]:
    """Habitat's `/butterfly` shape: member.members keyed by id, then each rumor kind."""
    everyone = [me, *members]
    lists: dict[RumorKind, dict[str, Any]] = {k: {} for k, v in _BUTTERFLY.items() if v}
    for r in store:
        kind = kind_of(r)
        view = _BUTTERFLY[kind]
        if view is None:
            continue
        key, sub, entry = view(r)
        if sub is None:
            lists[kind][key] = entry
        else:
            lists[kind].setdefault(key, {})[sub] = entry
    return {
        "member": {
            "members": {m.id: _member_json(m) for m in everyone},
            "health": {m.id: m.health.label for m in everyone},
            "local_member_id": me.id,
        },
        **{kind.value: {"list": entries} for kind, entries in lists.items()},
    }


def make_app(
    sup: HttpHost,
    token: str | None,
    extra_routes: Callable[[web.Application], None] | None = None,
    events: EventStream | None = None,
) -> web.Application:
    """The gateway's app; `events`: the stream ``/events`` serves (None: no such route)."""

    @web.middleware
    async def auth_and_count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        route = request.match_info.route.resource
        label = route.canonical if route is not None else "unmatched"
        if token and request.path not in OPEN_PATHS:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {token}"
            # surrogateescape: aiohttp hands non-UTF-8 header bytes over as lone surrogates,
            # which a strict encode() turned into a 500 (found by bench/fuzz.py).
            given_bytes = given.encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given_bytes, expected.encode()):
                sup.metrics.reject("http", "unauthorized")
                sup.metrics.http_requests.labels(route=label, status="401").inc()
                return web.json_response({"error": "unauthorized"}, status=401)
        try:
            response = await handler(request)
        except web.HTTPException as e:
            sup.metrics.http_requests.labels(route=label, status=str(e.status)).inc()
            if e.status >= 400:
                sup.metrics.reject("http", str(e.status))
                return web.json_response({"error": e.reason}, status=e.status)
            raise
        sup.metrics.http_requests.labels(route=label, status=str(response.status)).inc()
        return response

    async def index(request: web.Request) -> web.Response:
        return web.json_response({"pysup": INDEX})

    async def healthz(request: web.Request) -> web.Response:
        problems = sup.liveness()
        if problems:
            return web.json_response(
                {"status": "failing", "reason": "; ".join(problems)}, status=503
            )
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready, reason = sup.readiness()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def butterfly(request: web.Request) -> web.Response:
        return web.json_response(
            butterfly_json(sup.local_member(), sup.ring_members(), sup.rumor_store())
        )

    async def metrics(request: web.Request) -> web.Response:
        me = sup.local_member()
        counts: dict[str, int] = {"Alive": 0, "Suspect": 0, "Confirmed": 0, "Departed": 0}
        for m in sup.ring_members():
            counts[m.health.label] += 1
        for health, n in counts.items():
            sup.metrics.members.labels(health=health).set(n)
        for kind, n in sup.rumor_store().counts().items():
            sup.metrics.rumors.labels(kind=kind.value).set(n)
        sup.metrics.incarnation.set(me.incarnation)
        sup.metrics.asyncio_tasks.set(len(asyncio.all_tasks()))
        return web.Response(body=sup.metrics.render(), content_type="text/plain", charset="utf-8")

    async def depart(request: web.Request) -> web.Response:
        if request.remote not in ("127.0.0.1", "::1"):
            return web.json_response({"error": "only from loopback"}, status=403)
        await sup.depart()
        return web.json_response({"departing": True}, status=202)

    app = web.Application(middlewares=[auth_and_count], client_max_size=1024 * 1024)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/butterfly", butterfly)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/sup/depart", depart)
    if events is not None:
        add_events_route(app, events)
    add_ui_routes(app)
    if extra_routes is not None:
        extra_routes(app)
    return app

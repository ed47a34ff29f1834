"""The service routes of the HTTP gateway: ``/services``, one service, its config and health, and
``/census``. The JSON is built by ``pysup.service.api_json`` and ``pysup.census`` (pure).

Status codes as Habitat: an invalid service group name is 400, a service not loaded here 404;
``.../health`` is 200 for OK and WARNING, 503 for CRITICAL, 500 for UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from pysup.census import Census, ServiceGroup, census_json
from pysup.gateway.bodycache import BodyCache
from pysup.service.api_json import (
    config_json,
    health_json,
    service_json,
    service_key,
    services_json,
)
from pysup.service.manager import ServiceManager

if TYPE_CHECKING:  # the service layer loads with the first plan (issue 18)
    from pysup.service.service import Service


def add_service_routes(
    app: web.Application,
    manager: ServiceManager,
    census: Callable[[], Census],
    caches: tuple[BodyCache, BodyCache] | None = None,
) -> None:
    """Register GET /services, /services/{svc}/{group}[/{org}][/config|/health] and /census.
    `caches`: the bodies of /services and /census (tests pass theirs to count rebuilds)."""
    services_cache, census_cache = caches or (BodyCache(), BodyCache())

    def lookup(request: web.Request) -> Service | web.Response:
        svc = request.match_info["svc"]
        group = request.match_info["group"]
        org = request.match_info.get("org")
        try:
            ServiceGroup.of(svc, group, org)
        except ValueError as e:
            return web.json_response({"error": str(e)}, status=400)
        found = manager.get(svc, group, org)
        if found is None:
            sg = ServiceGroup(svc, group, org)
            return web.json_response({"error": f"service {sg} is not loaded"}, status=404)
        return found

    async def services(request: web.Request) -> web.Response:
        loaded = manager.services()
        key = tuple(service_key(s) for s in loaded)
        return services_cache.response(key, lambda: services_json(loaded))

    async def one(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(service_json(found))

    async def config(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(config_json(found))

    async def health(request: web.Request) -> web.Response:
        found = lookup(request)
        if isinstance(found, web.Response):
            return found
        body, status = health_json(found)
        return web.json_response(body, status=status)

    async def census_route(request: web.Request) -> web.Response:
        # CensusCache hands back the same object until the ring or the local member changes.
        current = census()
        return census_cache.response((current,), lambda: census_json(current))

    router = app.router
    router.add_get("/services", services)
    for base in ("/services/{svc}/{group}", "/services/{svc}/{group}/{org}"):
        router.add_get(base, one)
        router.add_get(base + "/config", config)
        router.add_get(base + "/health", health)
    router.add_get("/census", census_route)

"""The cached /services and /census bodies (issue 18, goal 7): byte-identical to what
web.json_response sent before the cache, rebuilt exactly when a member, a rumor or a service's
state changes, and not rebuilt for a request that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import ServiceRumor
from pysup.butterfly.rumors import RumorStore
from pysup.census import Census, census_json
from pysup.census_build import CensusCache
from pysup.gateway.bodycache import BodyCache
from pysup.gateway.service_routes import add_service_routes
from pysup.service.api_json import services_json
from pysup.service.service import Service, ServiceState
from tests.unit.test_api_json import svc as api_service

A, B = "a" * 32, "b" * 32


class FakeManager:
    """What the routes read from the service manager: the loaded services."""

    def __init__(self, services: list[Service]) -> None:
        self.loaded = services

    def services(self) -> list[Service]:
        return list(self.loaded)


class Ring:
    """A member table, a rumor store and a version that moves on every change, read through
    the daemon's CensusCache as `Daemon.census` does."""

    def __init__(self) -> None:
        self.me = Member(A, 1, "10.0.0.1", 9638)
        self.others = [Member(B, 1, "10.0.0.2", 9638)]
        self.store = RumorStore()
        self.version = 0
        self.cache = CensusCache()

    def census(self) -> Census:
        return self.cache.get(self.me, self.others, self.store, self.version)


async def get(app: web.Application, path: str) -> web.Response:
    for route in app.router.routes():
        if route.method == "GET" and route.resource and route.resource.canonical == path:
            response = await route.handler(make_mocked_request("GET", path))
            assert isinstance(response, web.Response)
            return response
    raise AssertionError(f"no route {path}")


def make(manager: FakeManager, ring: Ring) -> tuple[web.Application, BodyCache, BodyCache]:
    app = web.Application()
    caches = (BodyCache(), BodyCache())
    add_service_routes(app, manager, ring.census, caches)  # type: ignore[arg-type]
    return app, *caches


def same_as_json_response(response: web.Response, data: object) -> None:
    expected = web.json_response(data)
    assert response.body == expected.body
    assert response.content_type == expected.content_type == "application/json"
    assert response.charset == expected.charset == "utf-8"


async def test_census_body_is_rebuilt_when_a_member_or_a_rumor_changes(tmp_path: Path) -> None:
    ring = Ring()
    app, _, cache = make(FakeManager([]), ring)
    first = await get(app, "/census")
    same_as_json_response(first, census_json(ring.census()))
    assert (await get(app, "/census")).body == first.body and cache.builds == 1

    ring.others = [ring.others[0].with_health(Health.SUSPECT)]
    ring.version += 1
    suspect = await get(app, "/census")
    assert cache.builds == 2
    members = json.loads(suspect.body)["members"]  # type: ignore[arg-type]
    assert [m["health"] for m in members if m["member_id"] == B] == ["Suspect"]
    same_as_json_response(suspect, census_json(ring.census()))

    ring.store.merge(ServiceRumor(B, "redis.default", 3, "core/redis/1/2", True, {}, {}, "Ok"))
    ring.version += 1
    with_rumor = await get(app, "/census")
    assert cache.builds == 3
    assert "redis.default" in json.loads(with_rumor.body)["census_groups"]  # type: ignore[arg-type]
    same_as_json_response(with_rumor, census_json(ring.census()))


async def test_services_body_is_rebuilt_when_a_service_changes(tmp_path: Path) -> None:
    svc = api_service.__wrapped__(tmp_path)  # type: ignore[attr-defined]
    manager = FakeManager([svc])
    app, cache, _ = make(manager, Ring())
    first = await get(app, "/services")
    same_as_json_response(first, services_json([svc]))
    assert (await get(app, "/services")).body == first.body and cache.builds == 1

    changes = [
        ("state", lambda: setattr(svc, "state", ServiceState.WAITING)),
        ("reason", lambda: setattr(svc, "reason", "waiting for a bind")),
        ("last_error", lambda: setattr(svc, "last_error", "run hook exited 1")),
        ("incarnation", lambda: setattr(svc, "incarnation", 7)),
        ("update", lambda: setattr(svc, "update_status", "update failed")),
        ("cfg", lambda: setattr(svc, "cfg", {"http": {"port": 1}})),
        ("restart_count", lambda: setattr(svc.process, "restart_count", 3)),
    ]
    for n, (what, change) in enumerate(changes, start=2):
        change()
        response = await get(app, "/services")
        assert cache.builds == n, what
        same_as_json_response(response, services_json([svc]))
        assert (await get(app, "/services")).body == response.body and cache.builds == n, what

    (tmp_path / "other").mkdir()
    other = api_service.__wrapped__(tmp_path / "other")  # type: ignore[attr-defined]
    manager.loaded.append(other)  # a service loaded: a new entry
    response = await get(app, "/services")
    assert cache.builds == len(changes) + 2 and len(json.loads(response.body)) == 2  # type: ignore[arg-type]
    same_as_json_response(response, services_json([svc, other]))

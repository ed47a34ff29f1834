"""`/census` under load: what one request costs the supervisor when the ring is big.

    python -m bench.census_load [--members 100] [--groups 20] [--duration 10] [--connections 16]
        [--churn-hz 0] [--mode daemon|rebuild]

One process serves the real HTTP gateway (`make_app` + the service routes) over an in-memory ring:
`--members` members (the local one included), each running one service in one of `--groups`
groups (with exported cfg and sys), every group with a gossiped config (a ~1 KiB TOML), a
Finished election and one gossiped file. `wrk` (2 threads, a child process) hammers `GET /census`
for `--duration` seconds; the result is requests/s, p50/p99 latency, and the server process's
own CPU (`time.process_time`, wrk excluded) per request.

`--churn-hz H` changes the ring H times a second while wrk runs (one member's incarnation goes
up, as a refuted suspicion does), so a census cache keyed by the ring's version must rebuild.
`--mode daemon` builds the census the way `Supervisor.census` does; `--mode rebuild` builds it
from scratch on every request (what every request did before the census cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from bench.http_load import parse_wrk, wrk_binary
from bench.serf_env import free_ports
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)
from pysup.butterfly.rumors import RumorStore
from pysup.butterfly.version import next_version
from pysup.census import Census, census_json
from pysup.census_build import CensusCache, build_census
from pysup.gateway.http import make_app
from pysup.gateway.service_routes import add_service_routes
from pysup.metrics import Metrics

HOST = "127.0.0.1"


def _mid(i: int) -> str:
    return f"{i:032x}"


def _config_toml(group: int) -> bytes:
    lines = [f'[app{k}]\nport = {8000 + k}\nname = "group{group}-{k}"\n' for k in range(24)]
    return "".join(lines).encode()


class FakeRing:
    """The member table and rumor store of a converged ring, with a version that changes with
    either (the shape `Supervisor.census` reads)."""

    def __init__(self, members: int, groups: int) -> None:
        self.me = Member(_mid(0), 1, HOST, 9638)
        self._members = {
            _mid(i): Member(_mid(i), 1, f"10.0.{i // 250}.{i % 250 + 1}", 9638)
            for i in range(1, members)
        }
        self.store = RumorStore()
        for g in range(groups):
            sg = f"svc{g}.default"
            self.store.merge(ServiceConfigRumor(sg, 1, _config_toml(g)))
            self.store.merge(ServiceFileRumor(sg, "ca.pem", 1, b"x" * 512))
        for i in range(members):
            sg = f"svc{i % groups}.default"
            self.store.merge(
                ServiceRumor(
                    _mid(i),
                    sg,
                    1,
                    f"core/svc{i % groups}/1.0.0/20260101000000",
                    True,
                    {"port": 8000 + i, "host": f"h{i}"},
                    {"ip": f"10.0.{i // 250}.{i % 250 + 1}", "hostname": f"h{i}"},
                    "Ok",
                )
            )
        for g in range(groups):
            leader = _mid(g)
            self.store.merge(
                ElectionRumor(f"svc{g}.default", leader, 1, 0, ElectionStatus.FINISHED, (leader,))
            )
        self.changes = 0
        self.members_version = next_version()

    @property
    def version(self) -> int:
        return max(self.members_version, self.store.version)

    def members(self) -> Iterator[Member]:
        return iter(self._members.values())

    def churn(self) -> None:
        """One member refutes a suspicion: a new incarnation in the member table."""
        self.changes += 1
        mid = _mid(1 + self.changes % len(self._members))
        m = self._members[mid]
        self._members[mid] = m._replace(incarnation=m.incarnation + 1, health=Health.ALIVE)
        self.members_version = next_version()


def census_provider(ring: FakeRing, mode: str) -> Callable[[], Census]:
    if mode == "rebuild":
        return lambda: build_census(ring.me, ring.members(), ring.store)
    cache = CensusCache()  # what `Supervisor.census` does
    return lambda: cache.get(ring.me, ring.members(), ring.store, ring.version)


class _View:
    def __init__(self, ring: FakeRing) -> None:
        self.metrics = Metrics()
        self._ring = ring

    def readiness(self) -> tuple[bool, str]:
        return True, "ok"

    def local_member(self) -> Member:
        return self._ring.me

    def ring_members(self) -> list[Member]:
        return list(self._ring.members())

    def rumor_store(self) -> RumorStore:
        return self._ring.store

    async def depart(self) -> None:
        return None


class _NoServices:
    def services(self) -> list[Any]:
        return []


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = wrk_binary()
    if wrk is None:
        return {"skipped": "wrk not installed"}
    ring = FakeRing(args.members, args.groups)
    census = census_provider(ring, args.mode)
    app = make_app(_View(ring), None, lambda a: add_service_routes(a, _NoServices(), census))  # type: ignore[arg-type]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    (port,) = free_ports(1)
    site = web.TCPSite(runner, HOST, port)
    await site.start()
    body = json.dumps(census_json(census())).encode()

    async def churn() -> None:
        while True:
            await asyncio.sleep(1.0 / args.churn_hz)
            ring.churn()

    churner = asyncio.create_task(churn()) if args.churn_hz > 0 else None
    cmd = [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    cpu0, wall0 = time.process_time(), time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *cmd, f"http://{HOST}:{port}/census", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    if churner is not None:
        churner.cancel()
    await runner.cleanup()
    stats = parse_wrk(out.decode())
    requests = stats.get("requests", 0.0) or 1.0
    return {
        "mode": args.mode,
        "members": args.members,
        "groups": args.groups,
        "churn_hz": args.churn_hz,
        "ring_changes": ring.changes,
        "census_bytes": len(body),
        "rps": stats.get("rps"),
        "p50_ms": round(stats.get("p50", 0.0) * 1e3, 2),
        "p99_ms": round(stats.get("p99", 0.0) * 1e3, 2),
        "non_2xx": stats.get("non_2xx"),
        "server_cpu_s": round(cpu, 2),
        "server_cpu_share": round(cpu / wall, 2),
        "cpu_ms_per_request": round(cpu * 1e3 / requests, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--members", type=int, default=100)
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--churn-hz", type=float, default=0.0)
    p.add_argument("--mode", choices=("daemon", "rebuild"), default="daemon")
    args = p.parse_args(argv)
    result = asyncio.run(run(args))
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kubernetes peer discovery end to end, against the fake API server on 127.0.0.1.

First `Discovery` (what the daemon owns) in-process: convergence, the RBAC rule registries checked
against the requests the code really sends, 403 and not-in-cluster fallbacks. Then real
`pysup run` processes (127.0.0.111-115, one shared gossip port as pods of one Service have)
pointed at the fake through PYSUP_KUBE_* and a token file: endpoints appearing in random order
form exactly one ring; a deleted endpoint's member leaves and is not contacted again; partial
rings that found each other first merge; a 403 falls back without crash-looping and recovers
once RBAC is fixed.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from pysup.discovery import configmap, lease
from pysup.discovery import kubernetes as kube_discovery
from pysup.discovery.configmap import ConfigMapWatcher
from pysup.discovery.kube_client import (
    InClusterConfig,
    KubeClient,
    parse_resource_path,
    verb_for,
)
from pysup.discovery.kubernetes import KubernetesPeerSource, Peer
from pysup.discovery.lease import LeaseElector
from pysup.discovery.reflector import WatchTuning
from pysup.discovery.runtime import Discovery, DiscoveryTuning, Rule
from pysup.testing.fake_kube import FakeEndpoint, FakeKube, config_map, endpoint_slice, pod
from tests.integration.daemons import Fleet, Sup, all_alive, fleet
from tests.util import async_wait_for, free_port, wait_for

__all__ = ["fleet"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.integration]

NS = "default"
SVC = "pysup-gossip"
TOKEN = "token-1"
FAST = WatchTuning(backoff_base_s=0.02, backoff_max_s=0.2, watch_timeout_s=30)
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# In-process: Discovery against the fake


@pytest.fixture
async def fake() -> AsyncIterator[FakeKube]:
    f = FakeKube(token=TOKEN)
    await f.start("127.0.0.1", free_port())
    yield f
    await f.stop()


def kube_env(fake_host: str, fake_port: int, tmp: Path, **extra: str) -> dict[str, str]:
    """The environment that points pysup at the fake instead of a cluster."""
    token = tmp / "token"
    token.write_text(TOKEN + "\n")
    return {
        "KUBERNETES_SERVICE_HOST": fake_host,
        "KUBERNETES_SERVICE_PORT": str(fake_port),
        "PYSUP_KUBE_SCHEME": "http",
        "PYSUP_KUBE_TOKEN_PATH": str(token),
        "POD_NAMESPACE": NS,
        **extra,
    }


async def running(coro: Any) -> asyncio.Task[None]:
    task: asyncio.Task[None] = asyncio.ensure_future(coro)
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def ep(i: int, **kw: Any) -> FakeEndpoint:
    return FakeEndpoint(f"10.1.0.{i}", f"pysup-{i}", **kw)


def discovery(env: dict[str, str], **kw: Any) -> Discovery:
    kw.setdefault("service", SVC)
    kw.setdefault("tuning", DiscoveryTuning(retry_s=0.3, dns_interval_s=0.05))
    return Discovery("kubernetes", self_ip="10.1.0.0", gossip_port=9638, env=env, **kw)


async def test_discovery_follows_endpoints_and_excludes_self(
    fake: FakeKube, tmp_path: Path
) -> None:
    woke: list[int] = []
    d = discovery(kube_env(fake.host, fake.port, tmp_path), on_change=lambda: woke.append(1))
    task = await running(d.run())
    try:
        order = list(range(6))
        random.Random(3).shuffle(order)
        for n in range(1, len(order) + 1):
            fake.put(
                "endpointslices", endpoint_slice("s1", SVC, [ep(i, ready=False) for i in order[:n]])
            )
        want = [(f"10.1.0.{i}", 9638) for i in range(1, 6)]  # 10.1.0.0 is me

        async def converged() -> bool:
            return d.seeds() == want

        await async_wait_for(converged, 5, what="seeds")
        assert d.mode == "endpointslices" and woke
        fake.put("endpointslices", endpoint_slice("s1", SVC, [ep(i) for i in (0, 1, 2)]))
        await async_wait_for(lambda: asyncio.sleep(0, len(d.seeds()) == 2), 5, what="deletion")
    finally:
        await stop(task)


async def test_rule_registries_match_the_requests_the_code_sends(
    fake: FakeKube, tmp_path: Path
) -> None:
    """With RBAC allowing exactly the declared REQUIRED_RULES, every client path (EndpointSlices,
    pods, the lease's create/renew/takeover/release, the ConfigMap watch) works, and the verbs it
    sent are exactly the declared ones: a call the registries miss would be a 403 here, a
    declared rule the code never uses would be missing from the log."""
    declared = kube_discovery.REQUIRED_RULES | lease.REQUIRED_RULES | configmap.REQUIRED_RULES
    for group, res, verb in declared:
        fake.allow(group, res, verb)
    fake.put("endpointslices", endpoint_slice("s1", SVC, [ep(1)]))
    fake.put("pods", pod("pysup-2", "10.1.0.2", {"app": "pysup"}))
    env = kube_env(fake.host, fake.port, tmp_path)
    cfg = InClusterConfig.from_env(env, scheme="http", token_path=env["PYSUP_KUBE_TOKEN_PATH"])
    seen: list[frozenset[Peer]] = []
    async with KubeClient(cfg) as client:
        for kw in ({"service": SVC}, {"selector": "app=pysup"}):
            src = KubernetesPeerSource(client, NS, tuning=FAST, **kw)  # type: ignore[arg-type]
            t = await running(src.run(seen.append))
            await async_wait_for(lambda: asyncio.sleep(0, bool(seen)), 5)
            await asyncio.sleep(0.1)  # the watch request is sent after the list
            await stop(t)
            seen.clear()
        a = LeaseElector(client, NS, "pysup-native", "a", 1.0, 0.1)
        await a.step()  # get (404) + create
        await a.step()  # get + update (renew)
        a.stop()
        await a.run()  # release: get + update
        texts: list[str | None] = []
        fake.put("configmaps", config_map("pysup-native", {"user.toml": "x = 1"}))
        w = ConfigMapWatcher(client, NS, "pysup-native", tuning=FAST)
        t = await running(w.run(lambda text, rv: texts.append(text)))
        await async_wait_for(lambda: asyncio.sleep(0, texts == ["x = 1"]), 5)
        await asyncio.sleep(0.1)
        await stop(t)
    sent: set[Rule] = set()
    for method, path, query in fake.requests:
        ref = parse_resource_path(path)
        sent.add((ref.api_group, ref.resource, verb_for(method, ref, "watch=true" in query)))
    assert sent == set(declared)


async def test_403_falls_back_to_dns_then_retries_the_api(fake: FakeKube, tmp_path: Path) -> None:
    fake.deny("discovery.k8s.io", "endpointslices", "list", "watch")
    fake.put("endpointslices", endpoint_slice("s1", SVC, [ep(1)]))
    names: list[str] = []

    async def resolve(name: str, port: int) -> set[Peer]:
        names.append(name)
        return {("10.9.0.1", port)}

    d = discovery(kube_env(fake.host, fake.port, tmp_path), resolve=resolve)
    with capture_logs() as logs:
        task = await running(d.run())
        try:
            await async_wait_for(lambda: asyncio.sleep(0, d.seeds() == [("10.9.0.1", 9638)]), 5)
            assert d.mode == "fallback"
            assert names[0] == f"{SVC}.{NS}.svc"
            # The API is tried again after retry_s; once RBAC allows it, it takes over.
            fake.allow_all()
            await async_wait_for(
                lambda: asyncio.sleep(0, d.seeds() == [("10.1.0.1", 9638)]), 5, what="API again"
            )
            assert d.mode == "endpointslices" and not task.done()
        finally:
            await stop(task)
    forb = [e for e in logs if e["event"] == "discovery.forbidden"]
    assert forb and forb[0]["rule"].endswith('resources: ["endpointslices"], verbs: ["list"]')


async def test_not_in_a_cluster_uses_dns_without_crashing(tmp_path: Path) -> None:
    async def resolve(name: str, port: int) -> set[Peer]:
        raise OSError("NXDOMAIN")

    d = discovery({"POD_NAMESPACE": NS}, resolve=resolve)
    with capture_logs() as logs:
        task = await running(d.run())
        await asyncio.sleep(0.5)
        assert not task.done()
        await stop(task)
    events = [e["event"] for e in logs]
    assert "discovery.not_in_cluster" in events and "discovery.dns_failed" in events
    assert "discovery.failed" not in events
    assert d.seeds() == []


# ---------------------------------------------------------------------------------------------
# Real processes


class ThreadedFake:
    """The fake API server on its own event loop in a thread, so the tests can use the blocking
    `Fleet` helpers; every control call is run on the fake's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake = FakeKube(token=TOKEN)

    def start(self) -> None:
        self.thread.start()
        self.run(self.fake.start("127.0.0.1", free_port()))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        fut: Future[T] = Future()

        def go() -> None:
            try:
                fut.set_result(fn(*args))
            except Exception as e:
                fut.set_exception(e)

        self.loop.call_soon_threadsafe(go)
        return fut.result(10)

    def close(self) -> None:
        with suppress(Exception):
            self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def kube() -> Iterator[ThreadedFake]:
    t = ThreadedFake()
    t.start()
    try:
        yield t
    finally:
        t.close()


HOSTS = [f"127.0.0.{111 + i}" for i in range(5)]


def shared_port(hosts: list[str]) -> int:
    """A port free for UDP and TCP on every host (pods of one Service share the port)."""
    for _ in range(50):
        port = free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
            ):
                try:
                    t.bind((h, port))
                    u.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no shared free port")


def start_pods(
    fleet: Fleet,
    kube: ThreadedFake,
    tmp: Path,
    n: int,
    *,
    services: list[str] | None = None,
    **env: str,
) -> tuple[list[Sup], int]:
    port = shared_port(HOSTS[:n])
    f = kube.fake
    sups = []
    for i in range(n):
        e = kube_env(f.host, f.port, tmp, POD_NAME=f"pysup-{i}", POD_IP=HOSTS[i])
        e.update(PYSUP_STATEFULSET="pysup", PYSUP_DISCOVERY_STRANGER_GRACE_S="0.5", **env)
        svc = services[i] if services else SVC
        extra = ["--peer-discovery", "kubernetes", "--kubernetes-service", svc]
        extra += ["--readiness", "ring", "--json-logging"]
        sups.append(fleet.new(f"pysup-{i}", host=HOSTS[i], gossip_port=port, extra=extra, env=e))
    for s in sups:
        fleet.launch(s)
    for s in sups:
        s.wait_http()
    return sups, port


def publish(kube: ThreadedFake, name: str, svc: str, ips: list[str], port: int) -> None:
    eps = [FakeEndpoint(ip, f"pysup-{HOSTS.index(ip)}", ready=False) for ip in ips]
    kube.call(kube.fake.put, "endpointslices", endpoint_slice(name, svc, eps, port=port))


def ring_ids(sups: list[Sup]) -> set[frozenset[str]]:
    return {frozenset(s.members()) for s in sups}


def last_peers(sup: Sup) -> list[str] | None:
    """The peer set of the last `discovery.peers` log line (JSON logging)."""
    last = None
    for line in sup.log_text().splitlines():
        with suppress(ValueError):
            ev = json.loads(line)
            if isinstance(ev, dict) and ev.get("event") == "discovery.peers":
                last = [f"{h}:{p}" for h, p in ev["peers"]]
    return last


def ready(sup: Sup) -> bool:
    return sup.get("/readyz")[0] == 200


@pytest.mark.timeout(120)
def test_five_pods_endpoints_in_random_order_form_one_ring_and_a_deleted_one_leaves(
    fleet: Fleet, kube: ThreadedFake, tmp_path: Path
) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    sups, port = start_pods(fleet, kube, tmp_path, 5)
    # Nobody is published yet: only ordinal 0 may count itself a ring (the split-brain rule).
    wait_for(lambda: ready(sups[0]), 10, what="pysup-0 ready as the founder")
    assert [ready(s) for s in sups] == [True, False, False, False, False], f"seed {seed}"
    order = list(HOSTS)
    rng.shuffle(order)
    slices: dict[str, list[str]] = {"pysup-gossip-a": [], "pysup-gossip-b": []}
    for ip in order:
        name = rng.choice(sorted(slices))
        slices[name].append(ip)
        publish(kube, name, SVC, slices[name], port)
        time.sleep(rng.random() * 0.5)
    t0 = time.monotonic()
    wait_for(
        lambda: all_alive(sups, 5), 30, what=f"5 Alive everywhere (seed {seed})\n{fleet.logs()}"
    )
    print(f"\nTIMING one ring of 5 after the last endpoint: {time.monotonic() - t0:.2f}s")
    assert len(ring_ids(sups)) == 1  # exactly one ring: everyone lists the same 5 ids
    wait_for(lambda: all(ready(s) for s in sups), 10, what="all ready")

    # Delete pysup-4's endpoint, then stop it: it leaves and nobody contacts it again.
    gone = sups[4]
    gone_id = gone.member_id()
    name = next(n for n, ips in slices.items() if gone.host in ips)
    slices[name].remove(gone.host)
    publish(kube, name, SVC, slices[name], port)
    rest = sups[:4]
    wait_for(
        lambda: all(gone.gossip_addr not in (last_peers(s) or [gone.gossip_addr]) for s in rest),
        10,
        what="endpoint deletion seen",
    )
    gone.signal(signal.SIGTERM)
    assert gone.wait_exit(15) == 0
    wait_for(
        lambda: all(s.health_of(gone_id) in ("Departed", "Confirmed") for s in rest),
        15,
        what=f"departure seen\n{fleet.logs()}",
    )
    # Listen where it was: for a while, no member sends it anything.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind((gone.host, port))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its old streams: TIME_WAIT
        tcp.bind((gone.host, port))
        tcp.listen()
        udp.settimeout(3.0)
        with pytest.raises(TimeoutError):
            data, src = udp.recvfrom(65536)
            pytest.fail(f"{src} still sends to the departed member: {data[:40]!r}")
        tcp.settimeout(0.1)
        with pytest.raises(TimeoutError):
            tcp.accept()
    assert all(len(s.members()) == 5 for s in rest)  # it stays listed, as Departed
    # Every request the pods made is one the gossip Role grants.
    verbs = {
        (m, parse_resource_path(p).resource, "watch=true" in q)
        for m, p, q in kube.call(lambda: list(kube.fake.requests))
    }
    assert {(r, w) for _, r, w in verbs} == {("endpointslices", False), ("endpointslices", True)}


@pytest.mark.timeout(120)
def test_partial_rings_that_formed_first_merge(
    fleet: Fleet, kube: ThreadedFake, tmp_path: Path
) -> None:
    """Two groups see different endpoint sets at first (two Services) and each forms a ring;
    once the endpoints list everyone, the discovered addresses outside each ring are contacted
    (`strangers`) and the rings merge. Without that, both rings would stay apart forever."""
    services = ["half-a", "half-a", "half-b", "half-b", "half-b"]
    sups, port = start_pods(fleet, kube, tmp_path, 5, services=services)
    publish(kube, "half-a-1", "half-a", HOSTS[:2], port)
    publish(kube, "half-b-1", "half-b", HOSTS[2:5], port)
    wait_for(lambda: all_alive(sups[:2], 2) and all_alive(sups[2:], 3), 30, what="two rings")
    time.sleep(1.0)
    assert len(ring_ids(sups)) == 2  # apart while nobody has discovered the other half
    publish(kube, "half-a-1", "half-a", HOSTS, port)
    wait_for(lambda: all_alive(sups, 5), 30, what=f"merged ring\n{fleet.logs()}")
    assert len(ring_ids(sups)) == 1


@pytest.mark.timeout(120)
def test_403_falls_back_without_crash_looping_and_recovers(
    fleet: Fleet, kube: ThreadedFake, tmp_path: Path
) -> None:
    kube.call(kube.fake.deny, "discovery.k8s.io", "endpointslices", "list", "watch")
    sups, port = start_pods(fleet, kube, tmp_path, 2, PYSUP_DISCOVERY_RETRY_S="1")
    publish(kube, "s1", SVC, HOSTS[:2], port)

    def forbidden_logged() -> bool:
        return all('"discovery.forbidden"' in s.log_text() for s in sups)

    wait_for(forbidden_logged, 10, what="discovery.forbidden")
    time.sleep(2.0)  # several API retries and DNS fallbacks later
    for s in sups:
        assert s.alive(), s.log_tail()
        assert s.get("/healthz")[0] == 200
        assert "discovery.failed" not in s.log_text()
        assert '"discovery.fallback"' in s.log_text()
        assert 'verbs: [\\"list\\"]' in s.log_text()  # the missing rule is named
    assert [ready(s) for s in sups] == [True, False]  # pysup-0 founds; pysup-1 waits
    assert all(len(s.members()) == 1 for s in sups)
    kube.call(kube.fake.allow_all)  # RBAC fixed: the next API retry finds the peers
    wait_for(lambda: all_alive(sups, 2), 20, what=f"ring after RBAC fix\n{fleet.logs()}")
    wait_for(lambda: all(ready(s) for s in sups), 10, what="both ready")

"""Kubernetes discovery, lease election and ConfigMap watching against the fake API server on
127.0.0.1 (real HTTP, real watch streams): convergence, deletes, terminating/self filtering,
bookmarks, 410 relists, dropped streams, token rotation, RBAC denial and fallback, lease
election/takeover/conflicts, ConfigMap changes, DNS re-resolution."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from pysup.discovery.configmap import ConfigMapWatcher
from pysup.discovery.dns import DnsPeerSource
from pysup.discovery.kube_client import (
    InClusterConfig,
    KubeClient,
    KubeConflict,
    KubeForbidden,
    KubeGone,
    KubeNotFound,
    KubeUnauthorized,
)
from pysup.discovery.kubernetes import KubernetesPeerSource, Peer
from pysup.discovery.lease import LeaseElector, format_micro_time
from pysup.discovery.reflector import WatchTuning
from pysup.testing.fake_kube import FakeEndpoint, FakeKube, config_map, endpoint_slice, pod
from tests.util import async_wait_for, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

NS = "default"
FAST = WatchTuning(backoff_base_s=0.02, backoff_max_s=0.2, watch_timeout_s=30)
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"


@pytest.fixture
async def fake() -> AsyncIterator[FakeKube]:
    f = FakeKube(token="token-1")
    await f.start("127.0.0.1", free_port())
    yield f
    await f.stop()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    p = tmp_path / "token"
    p.write_text("token-1\n")
    return p


def write_token(path: Path, token: str) -> None:
    path.write_text(token + "\n")


@pytest.fixture
async def client(fake: FakeKube, token_file: Path) -> AsyncIterator[KubeClient]:
    cfg = InClusterConfig(
        host=fake.host,
        port=fake.port,
        scheme="http",
        token_path=str(token_file),
        namespace_override=NS,
    )
    async with KubeClient(cfg) as c:
        yield c


@asynccontextmanager
async def running(coro: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


class Peers:
    """Records every peer set a source delivers."""

    def __init__(self) -> None:
        self.history: list[frozenset[Peer]] = []

    def __call__(self, peers: frozenset[Peer]) -> None:
        self.history.append(peers)

    @property
    def last(self) -> frozenset[Peer] | None:
        return self.history[-1] if self.history else None

    def becomes(self, want: set[Peer]) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return self.last == frozenset(want)

        return check


def ep(i: int, **kw: Any) -> FakeEndpoint:
    return FakeEndpoint(f"10.1.0.{i}", f"sup-{i}", **kw)


def peer(i: int) -> Peer:
    return (f"10.1.0.{i}", 9638)


def source(client: KubeClient, **kw: Any) -> KubernetesPeerSource:
    kw.setdefault("service", "sup")
    return KubernetesPeerSource(client, NS, tuning=FAST, rng=random.Random(1), **kw)


# ---------------------------------------------------------------------------------------------
# EndpointSlice discovery


async def test_endpoints_in_random_order_converge(fake: FakeKube, client: KubeClient) -> None:
    """Slices created/modified in random order, some before and some after the watch starts,
    end with exactly the expected peer set; other services' slices are ignored."""
    rng = random.Random(42)
    fake.put("endpointslices", endpoint_slice("other-x", "other", [ep(99)]))
    groups = {f"sup-{k}": [ep(10 * k + j) for j in range(3)] for k in range(4)}
    order = list(groups)
    rng.shuffle(order)
    for name in order[:2]:
        fake.put("endpointslices", endpoint_slice(name, "sup", groups[name][:1]))
    got = Peers()
    src = source(client, self_ip="10.1.0.0")  # 10.1.0.0 is me (in slice sup-0)
    async with running(src.run(got)):
        await async_wait_for(lambda: asyncio.sleep(0, got.last is not None), 5)
        for name in order:
            eps = list(groups[name])
            rng.shuffle(eps)
            for n in range(1, len(eps) + 1):
                fake.put("endpointslices", endpoint_slice(name, "sup", eps[:n]))
                await asyncio.sleep(rng.random() * 0.01)
        want = {peer(10 * k + j) for k in range(4) for j in range(3)} - {peer(0)}
        await async_wait_for(got.becomes(want), 5, what="converged peer set")
    assert src.mode == "endpointslices"
    assert src.watcher is not None and src.watcher.lists == 1  # no relist was needed


async def test_deleted_terminating_and_self_are_not_peers(
    fake: FakeKube, client: KubeClient
) -> None:
    fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1), ep(2, ready=False), ep(3)]))
    fake.put("endpointslices", endpoint_slice("b", "sup", [ep(4), ep(5)]))
    got = Peers()
    async with running(source(client, self_ip="10.1.0.3", self_pod="sup-5").run(got)):
        await async_wait_for(got.becomes({peer(1), peer(2), peer(4)}), 5, what="initial")
        fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1), ep(2, terminating=True)]))
        await async_wait_for(got.becomes({peer(1), peer(4)}), 5, what="terminating skipped")
        fake.remove("endpointslices", NS, "b")
        await async_wait_for(got.becomes({peer(1)}), 5, what="deleted slice gone")


async def test_bookmark_advances_resource_version(fake: FakeKube, client: KubeClient) -> None:
    fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1)]))
    got = Peers()
    src = source(client)
    async with running(src.run(got)):
        await async_wait_for(got.becomes({peer(1)}), 5)
        rv_before = src.watcher.resource_version if src.watcher else None
        for i in range(3):  # writes elsewhere move the global resourceVersion
            fake.put("configmaps", config_map(f"cm{i}", {"k": "v"}))
        assert int(rv_before or 0) < fake.rv
        fake.send_bookmarks()

        async def advanced() -> bool:
            return src.watcher is not None and src.watcher.resource_version == str(fake.rv)

        await async_wait_for(advanced, 5, what="bookmark rv")
        assert len(got.history) == 1  # a bookmark is not a change
    assert any("allowWatchBookmarks=true" in q for (_, _, q) in fake.requests)


async def test_gone_410_relists_without_losing_an_update(
    fake: FakeKube, client: KubeClient
) -> None:
    """The watch ends, an update happens and history is compacted before the client resumes:
    the resume gets 410, the client lists again and sees the update."""
    fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1)]))
    got = Peers()
    src = source(client)
    with capture_logs() as logs:
        async with running(src.run(got)):
            await async_wait_for(got.becomes({peer(1)}), 5)
            # One synchronous step: no watch can observe the write.
            fake.close_watches()
            fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1), ep(2)]))
            fake.compact()
            await async_wait_for(got.becomes({peer(1), peer(2)}), 5, what="update after 410")
            # And an ERROR 410 in the middle of a stream is handled the same way.
            fake.expire_watches()
            fake.put("endpointslices", endpoint_slice("a", "sup", [ep(2)]))
            await async_wait_for(got.becomes({peer(2)}), 5, what="update after ERROR 410")
    gone = [e for e in logs if e["event"] == "kube.watch.relist" and e["reason"] == "gone"]
    assert len(gone) >= 2
    assert src.watcher is not None and src.watcher.lists >= 3


async def test_dropped_stream_resumes(fake: FakeKube, client: KubeClient) -> None:
    fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1)]))
    got = Peers()
    src = source(client)
    with capture_logs() as logs:
        async with running(src.run(got)):
            await async_wait_for(got.becomes({peer(1)}), 5)
            fake.drop_watches()
            fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1), ep(2)]))
            await async_wait_for(got.becomes({peer(1), peer(2)}), 5, what="after drop")
            fake.put("endpointslices", endpoint_slice("a", "sup", [ep(3)]))
            await async_wait_for(got.becomes({peer(3)}), 5, what="watching again")
    assert any(e["event"] == "kube.watch.relist" and e["reason"] == "KubeUnavailable" for e in logs)


async def test_401_rereads_rotated_token(
    fake: FakeKube, client: KubeClient, token_file: Path
) -> None:
    """The token is rotated (file and server) well inside the 60 s refresh: the next request
    gets 401, the client re-reads the file and succeeds."""
    fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1)]))
    got = Peers()
    with capture_logs() as logs:
        async with running(source(client).run(got)):
            await async_wait_for(got.becomes({peer(1)}), 5)
            fake.rotate_token("token-2")
            write_token(token_file, "token-2")
            fake.drop_watches()  # force new requests
            fake.put("endpointslices", endpoint_slice("a", "sup", [ep(2)]))
            await async_wait_for(got.becomes({peer(2)}), 5, what="after token rotation")
    assert any(e["event"] == "kube.token_reread" for e in logs)
    # A token that stays wrong is a typed error, not a crash.
    fake.rotate_token("token-3")
    with pytest.raises(KubeUnauthorized):
        await client.get(f"{LEASES}/x")


async def test_403_logs_missing_rule_and_falls_back(fake: FakeKube, client: KubeClient) -> None:
    fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1)]))
    fake.deny("discovery.k8s.io", "endpointslices", "list", "watch")
    called: list[str] = []

    async def fallback(on_peers: Callable[[frozenset[Peer]], None]) -> None:
        called.append("dns")
        on_peers(frozenset({("10.9.9.9", 9638)}))

    got = Peers()
    src = source(client, fallback=fallback)
    with capture_logs() as logs:
        await asyncio.wait_for(src.run(got), 5)  # returns after the fallback returns: no raise
    assert called == ["dns"]
    assert got.last == frozenset({("10.9.9.9", 9638)})
    assert src.mode == "fallback"
    (forb,) = [e for e in logs if e["event"] == "discovery.forbidden"]
    assert forb["rule"] == (
        'apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list"]'
    )
    assert forb["verb"] == "list"
    assert "cannot list resource" in forb["message"]


async def test_403_on_watch_only_names_watch_and_uses_pods(
    fake: FakeKube, client: KubeClient
) -> None:
    """list allowed but watch denied on EndpointSlices: the rule names `watch`; the pod
    selector takes over."""
    fake.allow("discovery.k8s.io", "endpointslices", "list")
    fake.allow("", "pods", "list", "watch")
    fake.put("endpointslices", endpoint_slice("a", "sup", [ep(1)]))
    fake.put("pods", pod("sup-1", "10.1.0.1", {"app": "sup"}))
    fake.put("pods", pod("sup-2", "10.1.0.2", {"app": "sup"}))
    fake.put("pods", pod("web-1", "10.1.0.50", {"app": "web"}))
    got = Peers()
    src = source(client, selector="app=sup")
    with capture_logs() as logs:
        async with running(src.run(got)):
            await async_wait_for(got.becomes({peer(1), peer(2)}), 5, what="pods")
            fake.mark_pod_deleting(NS, "sup-2")
            await async_wait_for(got.becomes({peer(1)}), 5, what="deleting pod skipped")
            relabel = pod("sup-1", "10.1.0.1", {"app": "other"})
            fake.put("pods", relabel)
            await async_wait_for(got.becomes(set()), 5, what="pod no longer selected")
    assert src.mode == "pods"
    forb = [e for e in logs if e["event"] == "discovery.forbidden"]
    assert forb[0]["rule"].endswith('resources: ["endpointslices"], verbs: ["watch"]')


async def test_endpointslice_api_absent_falls_back_to_pods(
    fake: FakeKube, client: KubeClient
) -> None:
    fake.disable_api("discovery.k8s.io")
    fake.put("pods", pod("sup-1", "10.1.0.1", {"app": "sup"}))
    got = Peers()
    src = source(client, selector="app=sup")
    async with running(src.run(got)):
        await async_wait_for(got.becomes({peer(1)}), 5)
    assert src.mode == "pods"


async def test_everything_forbidden_without_fallback_is_standalone(
    fake: FakeKube, client: KubeClient
) -> None:
    fake.allow("coordination.k8s.io", "leases", "get")
    src = KubernetesPeerSource(
        client, NS, service="sup", selector="app=sup", forbidden_retry_s=0.05, tuning=FAST
    )
    got = Peers()
    with capture_logs() as logs:
        async with running(src.run(got)) as task:

            async def retried() -> bool:
                return sum(1 for e in logs if e["event"] == "discovery.standalone") >= 2

            await async_wait_for(retried, 5)
            assert not task.done()
    rules = {e["rule"] for e in logs if e["event"] == "discovery.forbidden"}
    assert 'apiGroups: [""], resources: ["pods"], verbs: ["list"]' in rules
    fake.allow_all()


# ---------------------------------------------------------------------------------------------
# client and fake fidelity


async def test_list_pages_and_status_bodies(fake: FakeKube, client: KubeClient) -> None:
    for i in range(7):
        fake.put("endpointslices", endpoint_slice(f"s{i}", "sup", [ep(i)]))
    small = KubeClient(client.config, list_page_size=3)
    try:
        lst = await small.list(SLICES, {"labelSelector": "kubernetes.io/service-name=sup"})
    finally:
        await small.close()
    assert lst["kind"] == "EndpointSliceList"
    assert [o["metadata"]["name"] for o in lst["items"]] == [f"s{i}" for i in range(7)]
    assert lst["metadata"] == {"resourceVersion": str(fake.rv)}
    assert sum(1 for (m, p, _) in fake.requests if p == SLICES) == 3
    with pytest.raises(KubeNotFound):
        await client.get(f"{LEASES}/missing")
    with pytest.raises(KubeGone):
        async for _ in client.watch(SLICES, {"resourceVersion": "1"}):
            pass
    fake.deny("coordination.k8s.io", "leases", "update")
    body = {"metadata": {"name": "x", "namespace": NS}, "spec": {}}
    await client.create(LEASES, body)
    with pytest.raises(KubeConflict) as exists:
        await client.create(LEASES, body)
    assert exists.value.reason == "AlreadyExists"
    with pytest.raises(KubeForbidden) as forb:
        await client.replace(f"{LEASES}/x", body)
    assert forb.value.verb == "update"
    assert forb.value.rule() == (
        'apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["update"]'
    )


# ---------------------------------------------------------------------------------------------
# Lease election


def elector(client: KubeClient, ident: str, **kw: Any) -> LeaseElector:
    kw.setdefault("lease_duration_s", 1.0)
    kw.setdefault("renew_s", 0.1)
    return LeaseElector(client, NS, "sup-leader", ident, rng=random.Random(ident), **kw)


async def test_two_electors_one_leader(fake: FakeKube, client: KubeClient) -> None:
    changes: list[tuple[str, bool, str | None]] = []
    a = elector(client, "a", on_change=lambda le, who: changes.append(("a", le, who)))
    b = elector(client, "b", on_change=lambda le, who: changes.append(("b", le, who)))
    async with running(a.run()), running(b.run()):

        async def settled() -> bool:
            return a.leader_identity is not None and a.leader_identity == b.leader_identity

        await async_wait_for(settled, 5)
        for _ in range(10):  # stays settled over several renewals
            assert [a.is_leader, b.is_leader].count(True) == 1
            assert a.leader_identity == b.leader_identity
            await asyncio.sleep(0.05)
        lease = fake.get_object("leases", NS, "sup-leader")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == a.leader_identity
        assert lease["spec"]["leaseDurationSeconds"] == 1
        assert lease["spec"]["renewTime"].endswith("Z") and len(lease["spec"]["renewTime"]) == 27


async def test_silent_holder_is_taken_over_after_duration(
    fake: FakeKube, client: KubeClient
) -> None:
    a = elector(client, "a", release_on_stop=False)
    assert (await a.step()).value == "acquire"
    held = fake.get_object("leases", NS, "sup-leader")
    assert held is not None and held["spec"]["holderIdentity"] == "a"
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    b = elector(client, "b")
    async with running(b.run()):  # a never renews again (crashed)
        await async_wait_for(lambda: asyncio.sleep(0, b.leader_identity == "a"), 2)
        assert not b.is_leader
        await async_wait_for(lambda: asyncio.sleep(0, b.is_leader), 4, what="takeover")
    assert loop.time() - t0 >= 0.9  # not before leaseDurationSeconds
    lease = fake.get_object("leases", NS, "sup-leader")
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] == 1


async def test_stop_releases_for_a_fast_handover(fake: FakeKube, client: KubeClient) -> None:
    a = elector(client, "a", lease_duration_s=10.0)
    b = elector(client, "b", lease_duration_s=10.0)
    task_a = asyncio.create_task(a.run())
    await async_wait_for(lambda: asyncio.sleep(0, a.is_leader), 3)
    async with running(b.run()):
        await async_wait_for(lambda: asyncio.sleep(0, b.leader_identity == "a"), 3)
        a.stop()
        await asyncio.wait_for(task_a, 3)
        assert not a.is_leader
        # Well before the 10 s lease would have expired.
        await async_wait_for(lambda: asyncio.sleep(0, b.is_leader), 3, what="handover")


class RacingClient(KubeClient):
    """Lets another writer update the Lease between our read and our write, once."""

    def __init__(self, inner: KubeClient, fake: FakeKube, other: str) -> None:
        super().__init__(inner.config)
        self.fake, self.other, self.raced = fake, other, False

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self.raced:
            self.raced = True
            cur = self.fake.get_object("leases", NS, "sup-leader")
            assert cur is not None
            # A fresh holder with a long lease: after the 409 we must follow it.
            cur["spec"].update(
                holderIdentity=self.other,
                renewTime=format_micro_time(time.time()),
                leaseDurationSeconds=30,
            )
            self.fake.put("leases", cur)
        return await super().replace(path, body)


async def test_409_conflict_rereads_and_follows(fake: FakeKube, client: KubeClient) -> None:
    """Our takeover of an expired lease races with another candidate's: ours gets 409, we
    re-read, see a fresh holder and follow."""
    expired = {
        "metadata": {"name": "sup-leader", "namespace": NS},
        "spec": {
            "holderIdentity": "old",
            "leaseDurationSeconds": 1,
            "renewTime": format_micro_time(1_000_000.0),
            "leaseTransitions": 4,
        },
    }
    fake.put("leases", expired)
    racing = RacingClient(client, fake, "winner")
    try:
        me = LeaseElector(racing, NS, "sup-leader", "me", 1.0, 0.1)
        with capture_logs() as logs:
            action = await me.step()
    finally:
        await racing.close()
    assert action.value == "follow"
    assert not me.is_leader and me.leader_identity == "winner"
    assert [e["reason"] for e in logs if e["event"] == "lease.conflict"] == ["Conflict"]
    lease = fake.get_object("leases", NS, "sup-leader")
    assert lease is not None and lease["spec"]["holderIdentity"] == "winner"


# ---------------------------------------------------------------------------------------------
# ConfigMap


async def test_configmap_changes_reach_the_callback(fake: FakeKube, client: KubeClient) -> None:
    seen: list[tuple[str | None, str | None]] = []
    w = ConfigMapWatcher(client, NS, "sup-config", tuning=FAST)
    fake.put("configmaps", config_map("unrelated", {"user.toml": "x = 0"}))
    async with running(w.run(lambda text, rv: seen.append((text, rv)))):
        await async_wait_for(lambda: asyncio.sleep(0, seen == [(None, None)]), 5, what="absent")
        fake.put("configmaps", config_map("sup-config", {"user.toml": "port = 1"}))
        await async_wait_for(lambda: asyncio.sleep(0, len(seen) == 2), 5)
        assert seen[1] == ("port = 1", str(fake.rv))
        fake.put("configmaps", config_map("sup-config", {"user.toml": "port = 2", "x": "y"}))
        await async_wait_for(lambda: asyncio.sleep(0, len(seen) == 3), 5)
        assert seen[2][0] == "port = 2"
        fake.put("configmaps", config_map("sup-config", {"user.toml": "port = 2", "x": "z"}))
        fake.put("configmaps", config_map("unrelated", {"user.toml": "x = 1"}))
        fake.remove("configmaps", NS, "sup-config")
        await async_wait_for(lambda: asyncio.sleep(0, len(seen) == 4), 5)
        assert seen[3] == (None, None)  # other keys and other ConfigMaps did not trigger
    assert any("fieldSelector=metadata.name" in q for (_, _, q) in fake.requests)


# ---------------------------------------------------------------------------------------------
# DNS


async def test_dns_resolves_again_until_joined() -> None:
    answers = [set(), {("10.2.0.1", 9638)}, {("10.2.0.1", 9638), ("10.2.0.2", 9638)}]
    calls = 0

    async def resolve(name: str, port: int) -> set[Peer]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("NXDOMAIN")
        return answers[min(calls // 2, 2)]

    got = Peers()
    src = DnsPeerSource(
        "sup.default.svc", 9638, interval_s=0.02, self_ip="10.2.0.2", resolve=resolve
    )
    task = asyncio.create_task(src.run(got))
    await async_wait_for(got.becomes({("10.2.0.1", 9638)}), 5)
    n = calls
    src.mark_joined()
    await asyncio.wait_for(task, 2)
    assert calls <= n + 1
    real = DnsPeerSource("localhost", 9638, interval_s=0.02)
    got2 = Peers()
    task2 = asyncio.create_task(real.run(got2))
    await async_wait_for(got2.becomes({("127.0.0.1", 9638)}), 5)
    real.mark_joined()
    await asyncio.wait_for(task2, 2)

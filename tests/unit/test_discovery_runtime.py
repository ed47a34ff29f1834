"""The daemon-facing Discovery: building it from settings and env, the split-brain rule
(`may_stand_alone`) on a manual clock, and `strangers` (the anti-partition merge). No I/O."""

from __future__ import annotations

import pytest

from pysup.butterfly.member import Health, Member
from pysup.discovery.kube_client import KubeConfigError
from pysup.discovery.runtime import (
    Discovery,
    DiscoveryConfigError,
    DiscoveryTuning,
    kube_config_from_env,
    required_rules,
)
from pysup.settings import Settings

P = 9638


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def disc(clock: Clock, **kw: object) -> Discovery:
    kw.setdefault("service", "pysup-gossip")
    kw.setdefault("self_ip", "10.0.0.5")
    kw.setdefault("gossip_port", P)
    kw.setdefault("tuning", DiscoveryTuning(stable_for_s=10.0, stranger_grace_s=5.0))
    return Discovery("kubernetes", clock=clock, **kw)  # type: ignore[arg-type]


def peers(*last_octets: int) -> frozenset[tuple[str, int]]:
    return frozenset((f"10.0.0.{i}", P) for i in last_octets)


def member(ip: str, health: Health = Health.ALIVE) -> Member:
    return Member(f"id-{ip}", 1, ip, P, health, False)


def test_off_finds_nothing_and_may_stand_alone() -> None:
    d = Discovery.from_settings(Settings(), {}, self_ip="10.0.0.1")
    assert not d.enabled and d.mode == "off"
    assert d.seeds() == []
    assert d.may_stand_alone()


def test_statefulset_ordinal_zero_only() -> None:
    c = Clock()
    zero = disc(c, pod_name="pysup-0")
    one = disc(c, pod_name="pysup-1", self_ip="10.0.0.1")  # lowest address, but ordinal 1
    for d in (zero, one):
        d._on_peers(peers(1, 2, 3))
    assert zero.may_stand_alone(c.t)  # at once, no stable period needed
    c.t += 1e6
    assert not one.may_stand_alone(c.t)
    assert "ordinal 0" in one.founder_rule()


def test_statefulset_name_guards_against_deployment_suffixes() -> None:
    """PYSUP_STATEFULSET set and the pod is not one of its pods: no ordinal, lowest address."""
    c = Clock()
    d = disc(c, pod_name="web-7d9f8-24567", statefulset="pysup", self_ip="10.0.0.1")
    d._on_peers(peers(2, 3))
    assert not d.may_stand_alone(c.t + 9.9)
    assert d.may_stand_alone(c.t + 10.0)
    assert "lowest address" in d.founder_rule()


def test_lowest_address_after_stable_period_and_change_resets_it() -> None:
    c = Clock()
    low = disc(c, self_ip="10.0.0.9")
    high = disc(c, self_ip="10.0.0.20")
    for d in (low, high):
        d._on_peers(peers(10, 20, 30) if d is low else peers(9, 10, 30))
    c.t += 9.0
    assert not low.may_stand_alone(c.t)
    c.t += 1.0
    assert low.may_stand_alone(c.t)  # 10.0.0.9 < 10.0.0.10 numerically
    assert not high.may_stand_alone(c.t + 1e6)
    low._on_peers(peers(10, 20))  # the set changed: wait for a new stable period
    assert not low.may_stand_alone(c.t)
    assert low.may_stand_alone(c.t + 10.0)


def test_nothing_discovered_counts_from_start() -> None:
    """No API answer at all: the lone member may stand alone after a stable period from start
    (it still joins whatever turns up)."""
    c = Clock()
    d = disc(c)
    assert not d.may_stand_alone(c.t + 5)
    assert d.may_stand_alone(c.t + 10)


def test_self_is_never_a_seed_and_changes_wake_the_daemon() -> None:
    c = Clock()
    woke: list[int] = []
    d = disc(c, on_change=lambda: woke.append(1))
    d._on_peers(frozenset({("10.0.0.5", P), ("10.0.0.5", P + 1), ("10.0.0.6", P)}))
    assert d.seeds() == [("10.0.0.5", P + 1), ("10.0.0.6", P)]
    d._on_peers(frozenset({("10.0.0.6", P), ("10.0.0.5", P)}))
    assert len(woke) == 2  # the same set again is not a change
    assert d.seeds() == [("10.0.0.6", P)]


def test_strangers_after_grace_with_backoff() -> None:
    c = Clock()
    d = disc(c)
    d._on_peers(peers(1, 2, 3, 4, 6))
    ring = [
        member("10.0.0.1"),
        member("10.0.0.2", Health.SUSPECT),
        member("10.0.0.3", Health.CONFIRMED),  # maybe partitioned: still worth a try
        member("10.0.0.6", Health.DEPARTED),  # left for good: never
    ]
    assert d.strangers(ring, c.t) == []  # inside the grace period
    c.t += 5.0
    assert d.strangers(ring, c.t) == [("10.0.0.3", P), ("10.0.0.4", P)]
    assert d.strangers(ring, c.t + 0.5) == []  # tried: wait 1 s
    c.t += 1.0
    assert d.strangers(ring, c.t) == [("10.0.0.3", P), ("10.0.0.4", P)]
    c.t += 1.0
    assert d.strangers(ring, c.t) == []  # the delay doubled to 2 s
    c.t += 1.0
    assert d.strangers(ring, c.t) == [("10.0.0.3", P), ("10.0.0.4", P)]
    # .4 joined us; .3's endpoint was deleted: neither is tried again.
    d._on_peers(peers(1, 2, 4, 6))
    ring.append(member("10.0.0.4"))
    c.t += 100.0
    assert d.strangers(ring, c.t) == []
    # A newly listed address gets its own grace period.
    d._on_peers(peers(1, 2, 4, 6, 7))
    assert d.strangers(ring, c.t) == []
    assert d.strangers(ring, c.t + 5.0) == [("10.0.0.7", P)]


def test_backoff_is_capped() -> None:
    c = Clock()
    d = disc(c, tuning=DiscoveryTuning(stranger_grace_s=0.0, stranger_retry_max_s=8.0))
    d._on_peers(peers(1))
    tries = 0
    for _ in range(400):
        tries += len(d.strangers([], c.t))
        c.t += 0.5
    # 200 s: 1+2+4+8 s, then every 8 s.
    assert 25 <= tries <= 28


def test_mark_joined_and_seeds() -> None:
    c = Clock()
    d = disc(c)
    d.mark_joined()
    assert d._joined
    d.seeds()  # the daemon asks only while alone
    assert not d._joined


def test_from_settings_and_env() -> None:
    s = Settings(
        peer_discovery="kubernetes",
        kubernetes_service="pysup-gossip",
        listen_gossip="0.0.0.0:7000",
    )
    env = {
        "POD_IP": "10.1.2.3",
        "POD_NAME": "pysup-2",
        "PYSUP_STATEFULSET": "pysup",
        "PYSUP_DISCOVERY_STABLE_S": "2.5",
        "PYSUP_DISCOVERY_RETRY_S": "3",
        "PYSUP_DISCOVERY_STRANGER_GRACE_S": "0.5",
    }
    d = Discovery.from_settings(s, env, self_ip="127.0.0.1")
    assert (d.kind, d.self_ip, d.gossip_port, d.service) == (
        "kubernetes",
        "10.1.2.3",
        7000,
        "pysup-gossip",
    )
    assert (d.pod_name, d.statefulset) == ("pysup-2", "pysup")
    assert (d.tuning.stable_for_s, d.tuning.retry_s, d.tuning.stranger_grace_s) == (2.5, 3.0, 0.5)
    dns = Discovery.from_settings(Settings(peer_discovery="dns:sup.ns.svc:7001"), {}, self_ip="x")
    assert (dns.kind, dns.dns_spec) == ("dns", "sup.ns.svc:7001")
    with pytest.raises(DiscoveryConfigError, match="kubernetes-service"):
        Discovery.from_settings(Settings(peer_discovery="kubernetes"), {}, self_ip="x")
    with pytest.raises(DiscoveryConfigError, match="PYSUP_DISCOVERY_STABLE_S"):
        Discovery.from_settings(s, {"PYSUP_DISCOVERY_STABLE_S": "soon"}, self_ip="x")


def test_kube_config_overrides_for_the_fake() -> None:
    with pytest.raises(KubeConfigError):
        kube_config_from_env({})
    cfg = kube_config_from_env(
        {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": "8081",
            "PYSUP_KUBE_SCHEME": "http",
            "PYSUP_KUBE_TOKEN_PATH": "/tmp/t",
            "PYSUP_KUBE_CA_PATH": "/tmp/ca",
            "PYSUP_KUBE_NAMESPACE_PATH": "/tmp/ns",
            "POD_NAMESPACE": "prod",
        }
    )
    assert cfg.base_url == "http://127.0.0.1:8081"
    assert (cfg.token_path, cfg.ca_path, cfg.namespace_path) == ("/tmp/t", "/tmp/ca", "/tmp/ns")
    assert cfg.namespace() == "prod"


def test_required_rules_follow_the_flags() -> None:
    es = {("discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")}
    pods = {("", "pods", v) for v in ("list", "watch")}
    assert required_rules(Settings()) == frozenset()
    assert required_rules(Settings(peer_discovery="dns:x")) == frozenset()
    k = Settings(peer_discovery="kubernetes", kubernetes_service="s")
    assert required_rules(k) == es
    ks = Settings(peer_discovery="kubernetes", kubernetes_service="s", kubernetes_selector="a=b")
    assert required_rules(ks) == es | pods
    native = required_rules(Settings(mode="kubernetes", kubernetes_service="s"))
    assert native == es | {
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("", "configmaps", "list"),
        ("", "configmaps", "watch"),
    }

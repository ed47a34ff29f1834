"""Pure Kubernetes discovery rules: endpoint filtering, census health, ordinals, the split-brain
rule, the lease decision table, and the client's path/verb/rule/token helpers. Deterministic, no
I/O except a temporary token file."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysup.discovery.dns import DnsPeerSource
from pysup.discovery.kube_client import (
    InClusterConfig,
    KubeConfigError,
    KubeForbidden,
    ResourceRef,
    TokenSource,
    parse_resource_path,
    verb_for,
)
from pysup.discovery.kubernetes import (
    EndpointHealth,
    StableSet,
    census_from_slices,
    endpoints_from_pods,
    endpoints_from_slices,
    ordinal_of,
    should_bootstrap,
)
from pysup.discovery.lease import (
    Action,
    decide,
    format_micro_time,
    lease_body,
    parse_micro_time,
)
from pysup.discovery.reflector import next_backoff
from pysup.testing.fake_kube import FakeEndpoint, endpoint_slice, pod

# ---------------------------------------------------------------------------------------------
# endpoints


def test_slices_keep_not_ready_skip_terminating_and_self() -> None:
    s = endpoint_slice(
        "svc-abc",
        "svc",
        [
            FakeEndpoint("10.0.0.1", "web-0", ready=True),
            FakeEndpoint("10.0.0.2", "web-1", ready=False),  # bootstrap: not ready is a peer
            FakeEndpoint("10.0.0.3", "web-2", ready=None),  # unset ready means ready
            FakeEndpoint("10.0.0.4", "web-3", ready=False, serving=True, terminating=True),
            FakeEndpoint("10.0.0.5", "web-4"),  # me by IP
            FakeEndpoint("10.0.0.6", "web-5"),  # me by pod name
        ],
        port=7000,
    )
    got = endpoints_from_slices([s], "10.0.0.5", self_pod="web-5")
    assert got == {("10.0.0.1", 7000), ("10.0.0.2", 7000), ("10.0.0.3", 7000)}


def test_slice_port_by_name_else_default_and_fqdn_ignored() -> None:
    s = endpoint_slice("a", "svc", [FakeEndpoint("10.0.0.1")], port=7000, port_name="http")
    assert endpoints_from_slices([s], None) == {("10.0.0.1", 9638)}
    assert endpoints_from_slices([s], None, port_name="http") == {("10.0.0.1", 7000)}
    fqdn = {**s, "addressType": "FQDN"}
    assert endpoints_from_slices([fqdn], None) == set()


def test_pods_skip_deleting_finished_ipless_and_self() -> None:
    lab = {"app": "x"}
    deleting = pod("d", "10.0.0.9", lab)
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    pods = [
        pod("a", "10.0.0.1", lab),
        pod("b", "10.0.0.2", lab, phase="Pending", ready=False),
        pod("c", None, lab, phase="Pending"),
        pod("e", "10.0.0.5", lab, phase="Failed"),
        pod("f", "10.0.0.6", lab, phase="Succeeded"),
        pod("me", "10.0.0.7", lab),
        deleting,
    ]
    got = endpoints_from_pods(pods, "10.0.0.7", port=1234)
    assert got == {("10.0.0.1", 1234), ("10.0.0.2", 1234)}


def test_census_maps_conditions_to_health() -> None:
    s = endpoint_slice(
        "a",
        "svc",
        [
            FakeEndpoint("10.0.0.1", "p1", ready=True, node="n1"),
            FakeEndpoint("10.0.0.2", "p2", ready=False),
            FakeEndpoint("10.0.0.3", "p3", ready=True, serving=True, terminating=True),
            FakeEndpoint("10.0.0.4", "p4", ready=None),
        ],
    )
    # The same address in a second slice (rebalancing) with worse health: best health wins.
    s2 = endpoint_slice("b", "svc", [FakeEndpoint("10.0.0.1", "p1", ready=False)])
    c = census_from_slices([s2, s])
    assert {ip: e.health for ip, e in c.items()} == {
        "10.0.0.1": EndpointHealth.ALIVE,
        "10.0.0.2": EndpointHealth.SUSPECT,
        "10.0.0.3": EndpointHealth.DEPARTED,
        "10.0.0.4": EndpointHealth.ALIVE,
    }
    assert c["10.0.0.1"].pod == "p1"
    assert c["10.0.0.1"].node == "n1"


# ---------------------------------------------------------------------------------------------
# ordinals and bootstrap


@pytest.mark.parametrize(
    ("name", "sts", "want"),
    [
        ("web-0", None, 0),
        ("web-12", None, 12),
        ("my-db-3", None, 3),
        ("my-db-3", "my-db", 3),
        ("my-db-3", "web", None),
        ("web-7d9f8-24567", "web", None),  # Deployment pod with an all-digit suffix
        ("web-01", None, None),  # StatefulSets never zero-pad
        ("web", None, None),
        ("", None, None),
        (None, None, None),
    ],
)
def test_ordinal_of(name: str | None, sts: str | None, want: int | None) -> None:
    assert ordinal_of(name, sts) == want


def test_ordinal_zero_bootstraps_at_once_others_never() -> None:
    assert should_bootstrap("web-0", "10.0.0.9", ["10.0.0.1"], 10.0, now=0.0, changed_at=0.0)
    assert not should_bootstrap("web-1", "10.0.0.1", [], 10.0, now=1e9, changed_at=0.0)


def test_without_ordinals_lowest_address_after_stable_period() -> None:
    cands = ["10.0.0.10", "10.0.0.20"]
    # 10.0.0.9 < 10.0.0.10 numerically (not as strings).
    assert not should_bootstrap(None, "10.0.0.9", cands, 10.0, now=109.9, changed_at=100.0)
    assert should_bootstrap(None, "10.0.0.9", cands, 10.0, now=110.0, changed_at=100.0)
    assert not should_bootstrap(None, "10.0.0.20", ["10.0.0.9"], 10.0, now=1e9, changed_at=0.0)
    # A Deployment pod name gives no ordinal.
    assert should_bootstrap("web-5d8f-xk2l9", "10.0.0.1", cands, 10.0, now=20.0, changed_at=0.0)


def test_stable_set_tracks_last_change() -> None:
    s = StableSet()
    assert s.observe(["a", "b"], 5.0) == 5.0
    assert s.observe(["b", "a"], 9.0) == 5.0
    assert s.observe(["a"], 12.0) == 12.0


@given(st.sets(st.ip_addresses(v=4).map(str), min_size=1, max_size=20))
def test_no_split_brain_one_bootstrapper_among_equal_views(ips: set[str]) -> None:
    """Every node sees the same stable set: exactly one of them may form the ring."""
    formers = [
        ip for ip in ips if should_bootstrap(None, ip, ips - {ip}, 5.0, now=10.0, changed_at=0.0)
    ]
    assert len(formers) == 1


@given(st.integers(min_value=1, max_value=30))
def test_no_split_brain_statefulset(n: int) -> None:
    formers = [
        i for i in range(n) if should_bootstrap(f"sup-{i}", f"10.0.0.{i}", [], 5.0, 0.0, 0.0)
    ]
    assert formers == [0]


# ---------------------------------------------------------------------------------------------
# lease decision table

T0 = 1_700_000_000.0


def _lease(holder: str | None, renew: float | None, duration: int = 10) -> dict[str, object]:
    spec: dict[str, object] = {"leaseDurationSeconds": duration, "leaseTransitions": 2}
    if holder is not None:
        spec["holderIdentity"] = holder
    if renew is not None:
        spec["renewTime"] = format_micro_time(renew)
        spec["acquireTime"] = format_micro_time(renew - 100)
    return {"metadata": {"name": "l", "namespace": "ns", "resourceVersion": "7"}, "spec": spec}


@pytest.mark.parametrize(
    ("lease", "now", "want"),
    [
        (None, T0, Action.ACQUIRE),  # no lease: create it
        (_lease(None, T0), T0, Action.ACQUIRE),  # released (no holder)
        (_lease("", T0), T0, Action.ACQUIRE),  # released (empty holder)
        (_lease("me", T0), T0 + 1, Action.RENEW),
        (_lease("me", T0), T0 + 1000, Action.RENEW),  # still mine: renew, nobody took it
        (_lease("other", T0), T0 + 9.999, Action.FOLLOW),
        (_lease("other", T0), T0 + 10, Action.ACQUIRE),  # expired exactly at renew + duration
        (_lease("other", None), T0, Action.ACQUIRE),  # no times at all
    ],
)
def test_decide(lease: dict[str, object] | None, now: float, want: Action) -> None:
    assert decide(lease, "me", now) is want


def test_lease_body_create_takeover_renew() -> None:
    new = lease_body(
        None, Action.ACQUIRE, name="l", namespace="ns", identity="me", duration_s=5, now=T0
    )
    assert new["spec"] == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 5,
        "acquireTime": format_micro_time(T0),
        "renewTime": format_micro_time(T0),
        "leaseTransitions": 0,
    }
    assert new["apiVersion"] == "coordination.k8s.io/v1"
    assert "resourceVersion" not in new["metadata"]
    old = _lease("other", T0 - 50)
    took = lease_body(
        old, Action.ACQUIRE, name="l", namespace="ns", identity="me", duration_s=5, now=T0
    )
    assert took["metadata"]["resourceVersion"] == "7"  # conditional update
    assert took["spec"]["holderIdentity"] == "me"
    assert took["spec"]["leaseTransitions"] == 3
    assert took["spec"]["acquireTime"] == format_micro_time(T0)
    mine = _lease("me", T0 - 3)
    ren = lease_body(
        mine, Action.RENEW, name="l", namespace="ns", identity="me", duration_s=5, now=T0
    )
    assert ren["spec"]["leaseTransitions"] == 2
    assert ren["spec"]["acquireTime"] == format_micro_time(T0 - 103)
    assert ren["spec"]["renewTime"] == format_micro_time(T0)


def test_micro_time_format() -> None:
    assert format_micro_time(0.25) == "1970-01-01T00:00:00.250000Z"
    assert parse_micro_time("2006-01-02T15:04:05.000000Z") == 1136214245.0
    assert parse_micro_time("2006-01-02T15:04:05Z") == 1136214245.0


# ---------------------------------------------------------------------------------------------
# client helpers


@pytest.mark.parametrize(
    ("method", "path", "watch", "ref", "verb"),
    [
        (
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices",
            False,
            ResourceRef("discovery.k8s.io", "v1", "endpointslices", "ns"),
            "list",
        ),
        (
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices",
            True,
            ResourceRef("discovery.k8s.io", "v1", "endpointslices", "ns"),
            "watch",
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods/p",
            False,
            ResourceRef("", "v1", "pods", "ns", "p"),
            "get",
        ),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
            False,
            ResourceRef("coordination.k8s.io", "v1", "leases", "ns", "l"),
            "update",
        ),
        (
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases",
            False,
            ResourceRef("coordination.k8s.io", "v1", "leases", "ns"),
            "create",
        ),
    ],
)
def test_path_and_verb(method: str, path: str, watch: bool, ref: ResourceRef, verb: str) -> None:
    assert parse_resource_path(path) == ref
    assert verb_for(method, ref, watch) == verb


def test_forbidden_names_the_role_rule() -> None:
    ref = parse_resource_path("/api/v1/namespaces/ns/pods")
    e = KubeForbidden("nope", verb="watch", ref=ref)
    assert e.rule() == 'apiGroups: [""], resources: ["pods"], verbs: ["watch"]'
    assert e.rule(("list", "watch")).endswith('verbs: ["list", "watch"]')


def test_token_reread_every_refresh_and_on_invalidate(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("t1\n")
    now = [0.0]
    ts = TokenSource(str(path), 60.0, clock=lambda: now[0])
    assert ts.get() == "t1"
    path.write_text("t2")
    now[0] = 59.9
    assert ts.get() == "t1"  # cached
    now[0] = 60.0
    assert ts.get() == "t2"  # refreshed after a minute
    path.write_text("t3")
    assert ts.get() == "t2"
    ts.invalidate()  # what the client does on 401
    assert ts.get() == "t3"
    path.unlink()
    now[0] = 500.0
    assert ts.get() == "t3"  # a vanished file keeps the last token rather than failing
    with pytest.raises(KubeConfigError):
        TokenSource(str(path), 60.0).get()


def test_in_cluster_config_from_env() -> None:
    with pytest.raises(KubeConfigError):
        InClusterConfig.from_env({})
    c = InClusterConfig.from_env(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    )
    assert c.base_url == "https://[fd00::1]:6443"
    assert c.token_path.endswith("serviceaccount/token")
    c2 = InClusterConfig.from_env({}, host="127.0.0.1", port=8080, scheme="http")
    assert c2.base_url == "http://127.0.0.1:8080"
    assert InClusterConfig("h", namespace_override="x").namespace() == "x"


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(7)
    d = 0.5
    seen = []
    for _ in range(50):
        d = next_backoff(d, 0.5, 30.0, rng)
        assert 0.5 <= d <= 30.0
        seen.append(d)
    assert len(set(seen)) > 40
    assert max(seen) == 30.0


def test_dns_spec_parsing() -> None:
    a = DnsPeerSource.from_spec("sup.ns.svc.cluster.local", 9638)
    assert (a.name, a.port) == ("sup.ns.svc.cluster.local", 9638)
    b = DnsPeerSource.from_spec("sup:7000", 9638)
    assert (b.name, b.port) == ("sup", 7000)

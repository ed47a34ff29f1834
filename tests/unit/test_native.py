"""The pure parts of the Kubernetes-native mode (`pysup/native.py`): member ids from pod names, the
member table and rumors synthesized from EndpointSlices + Lease + ConfigMap, the census they make,
the events a change produces, and the external-leader switch of the services' election code."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from pysup.butterfly.effects import MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.member import Health, is_member_id
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    ServiceConfigRumor,
    ServiceRumor,
)
from pysup.butterfly.rumors import RumorStore
from pysup.census import ElectionState, census_json
from pysup.census_build import build_census
from pysup.discovery.kube_client import InClusterConfig, KubeClient
from pysup.discovery.kubernetes import census_from_slices
from pysup.native import NativeConfigError, NativeRing, NativeTuning
from pysup.native_state import (
    NativeInputs,
    me_of,
    member_id_for,
    members_of,
    next_config_incarnation,
    rumors_of,
)
from pysup.service.coordination import Coordinator, ElectionTuning, leader_gate
from pysup.service.spec import Topology, UpdateStrategy
from pysup.testing.fake_kube import FakeEndpoint, endpoint_slice

SVC = "pysup-native"
LEADER = "redis.default"
PLAIN = "web.default"


def slices(*eps: FakeEndpoint) -> dict[str, Any]:
    return census_from_slices([endpoint_slice("s1", SVC, eps)])


def my_rumor(group: str, ip: str = "10.0.0.1") -> ServiceRumor:
    sys = {"ip": ip, "hostname": "pod-0", "http_gateway_ip": ip, "http_gateway_port": 9631}
    return ServiceRumor(
        member_id=member_id_for("pod-0"),
        service_group=group,
        incarnation=7,
        pkg="core/redis/1.0.0/1",
        initialized=True,
        cfg={"port": 6379},
        sys=sys,
        health_check="Ok",
    )


def inputs(**kw: Any) -> NativeInputs:
    base: dict[str, Any] = {
        "pod": "pod-0",
        "ip": "10.0.0.1",
        "gossip_port": 9638,
        "entries": slices(
            FakeEndpoint("10.0.0.1", "pod-0"),
            FakeEndpoint("10.0.0.2", "pod-1"),
            FakeEndpoint("10.0.0.3", "pod-2", ready=False),
        ),
        "groups": {LEADER: True, PLAIN: False},
        "local": {LEADER: my_rumor(LEADER), PLAIN: my_rumor(PLAIN)},
    }
    base.update(kw)
    return NativeInputs(**base)


def test_member_id_is_a_stable_hex_digest_of_the_pod_name() -> None:
    a = member_id_for("pysup-native-0")
    assert a == hashlib.sha256(b"pysup-native-0").hexdigest()[:32]
    assert is_member_id(a) and a == member_id_for("pysup-native-0")
    assert len({member_id_for(f"pysup-native-{i}") for i in range(100)}) == 100


def test_members_come_from_the_slices_with_their_health_and_without_me() -> None:
    got = members_of(
        inputs(
            entries=slices(
                FakeEndpoint("10.0.0.1", "pod-0"),  # me: not in my own table
                FakeEndpoint("10.0.0.2", "pod-1"),
                FakeEndpoint("10.0.0.3", "pod-2", ready=False),
                FakeEndpoint("10.0.0.4", "pod-3", ready=True, terminating=True),
                FakeEndpoint("10.0.0.9"),  # no pod reference: known by its address
            )
        )
    )
    health = {name: m.health for m, name in got.values()}
    assert health == {
        "pod-1": Health.ALIVE,
        "pod-2": Health.SUSPECT,
        "pod-3": Health.DEPARTED,
        "10.0.0.9": Health.ALIVE,
    }
    for mid, (m, name) in got.items():
        assert mid == m.id == member_id_for(name)
    assert got[member_id_for("pod-1")][0].addr == ("10.0.0.2", 9638)
    me = me_of(inputs())
    assert (me.id, me.health) == (member_id_for("pod-0"), Health.ALIVE)
    assert me_of(inputs(left=True)).health is Health.DEPARTED


def test_a_pod_listed_twice_keeps_its_best_health() -> None:
    """Slices being rebalanced may list one pod under two addresses for a moment."""
    entries = census_from_slices(
        [
            endpoint_slice("a", SVC, [FakeEndpoint("10.0.0.2", "pod-1", ready=False)]),
            endpoint_slice("b", SVC, [FakeEndpoint("10.0.0.7", "pod-1")]),
        ]
    )
    (got,) = members_of(inputs(entries=entries)).values()
    assert got[0].health is Health.ALIVE and got[0].address == "10.0.0.7"


def test_census_from_slices_lease_and_configmap() -> None:
    """Three pods, the Lease held by pod-1, a ConfigMap: both groups have all three members; the
    leader group's election is Finished with pod-1 leading; the standalone group has no
    election; both carry the ConfigMap as their gossiped config; derived members carry their own
    IP and name and my exports (the homogeneous-StatefulSet assumption)."""
    i = inputs(lease_known=True, holder="pod-1", term=3, config=b"x = 1\n", config_incarnation=42)
    store_rumors = rumors_of(i)
    store = RumorStore()
    for r in store_rumors:
        assert store.merge(r) is not None  # no two synthesized rumors share an identity
    census = build_census(me_of(i), [m for m, _ in members_of(i).values()], store)
    leader_id = member_id_for("pod-1")
    g = census.group(LEADER)
    assert g is not None
    assert [m.member_id for m in g.members] == sorted(member_id_for(f"pod-{n}") for n in range(3))
    assert g.election_status is ElectionState.FINISHED and g.leader_id == leader_id
    assert [m.member_id for m in g.members if m.leader] == [leader_id]
    assert g.service_config is not None and dict(g.service_config.value) == {"x": 1}
    assert g.service_config.incarnation == 42
    pod2 = g.member(member_id_for("pod-2"))
    assert pod2 is not None
    assert (pod2.sys["ip"], pod2.sys["hostname"], pod2.sys["http_gateway_ip"]) == (
        "10.0.0.3",
        "pod-2",
        "10.0.0.3",
    )
    assert pod2.suspect and not pod2.initialized and dict(pod2.cfg) == {"port": 6379}
    assert pod2.health_check is None  # not known here
    me = g.me
    assert me is not None and me.health_check == "Ok" and me.initialized and me.follower
    plain = census.group(PLAIN)
    assert plain is not None and plain.election_status is ElectionState.NONE
    assert len(plain.members) == 3
    assert census_json(census)["census_groups"][LEADER]["leader_id"] == leader_id


def test_election_rumor_follows_the_lease() -> None:
    def election(i: NativeInputs) -> ElectionRumor | None:
        found = [r for r in rumors_of(i) if isinstance(r, ElectionRumor)]
        assert all(r.service_group == LEADER for r in found)
        return found[0] if found else None

    assert election(inputs()) is None  # the Lease not read yet: the election hasn't started
    free = election(inputs(lease_known=True, holder=None))
    assert free is not None and free.status is ElectionStatus.RUNNING and free.member_id == ""
    held = election(inputs(lease_known=True, holder="pod-2", term=5))
    assert held is not None and held.status is ElectionStatus.FINISHED
    assert (held.member_id, held.term) == (member_id_for("pod-2"), 5)


def test_only_loaded_groups_appear_and_only_once_my_service_published() -> None:
    i = inputs(groups={PLAIN: False}, local={}, config=b"", config_incarnation=1)
    rumors = rumors_of(i)
    # no Service rumor before my service published its own, but its config is there already
    assert [type(r) for r in rumors] == [ServiceConfigRumor]
    i = inputs(groups={}, config=b"a = 1")
    assert rumors_of(i) == []


def test_config_incarnation_only_grows() -> None:
    assert next_config_incarnation(0, "105") == 105
    assert next_config_incarnation(105, "105") == 106
    assert next_config_incarnation(106, "99") == 107
    assert next_config_incarnation(7, "opaque-rv") == 8
    assert next_config_incarnation(7, None) == 8


def test_tuning_from_env_checks_its_values() -> None:
    t = NativeTuning.from_env({"PYSUP_LEASE_DURATION_S": "3", "PYSUP_LEASE_RENEW_S": "0.5"})
    assert (t.lease_duration_s, t.renew_s) == (3.0, 0.5)
    with pytest.raises(NativeConfigError, match="PYSUP_LEASE_RENEW_S"):
        NativeTuning.from_env({"PYSUP_LEASE_RENEW_S": "soon"})
    with pytest.raises(NativeConfigError, match="shorter"):
        NativeTuning.from_env({"PYSUP_LEASE_DURATION_S": "2", "PYSUP_LEASE_RENEW_S": "2"})


def runtime(events: list[Any], groups: dict[str, bool]) -> NativeRing:
    """A runtime whose inputs the test feeds by hand (its client is never used)."""
    client = KubeClient(InClusterConfig(host="127.0.0.1", port=1, scheme="http"))
    return NativeRing(
        client=client,
        namespace="default",
        service=SVC,
        pod="pod-0",
        ip="10.0.0.1",
        gossip_port=9638,
        groups=lambda: groups,
        listener=events.append,
    )


def test_changes_reach_the_listener_as_gossip_events() -> None:
    """What ServiceManager reacts to: a new pod is a MemberChanged, my Service rumor brings the
    derived ones, a ConfigMap change is a newer ServiceConfigRumor, a pod gone from the slices
    is announced Departed and its rumors leave the store; rumors this mode cannot carry
    (config apply, elections) are dropped."""
    events: list[Any] = []
    rt = runtime(events, {PLAIN: False})
    rt._on_config("x = 1\n", "200")
    assert [type(e) for e in events] == [RumorChanged]
    assert events[0].rumor == ServiceConfigRumor(PLAIN, 200, b"x = 1\n")
    events.clear()
    rt._update(entries=slices(FakeEndpoint("10.0.0.1", "pod-0"), FakeEndpoint("10.0.0.2", "pod-1")))
    pod1 = rt.member(member_id_for("pod-1"))
    assert pod1 is not None and events == [MemberChanged(pod1, None)]
    assert not rt.is_alone() and rt.num_members() == 2
    events.clear()
    rt.publish(my_rumor(PLAIN))
    got = {e.rumor.member_id for e in events if isinstance(e.rumor, ServiceRumor)}
    assert got == {member_id_for("pod-0"), member_id_for("pod-1")}
    events.clear()
    rt._on_config("x = 2\n", "150")  # an older-looking resourceVersion: still newer
    assert [e.rumor.incarnation for e in events] == [201]
    events.clear()
    rt._update(entries=slices(FakeEndpoint("10.0.0.1", "pod-0")))
    departed = [e for e in events if isinstance(e, MemberChanged)]
    assert [(e.member.health, e.previous) for e in departed] == [(Health.DEPARTED, Health.ALIVE)]
    assert rt.is_alone() and list(rt.members()) == []
    census = build_census(rt.me, rt.members(), rt.store)
    group = census.group(PLAIN)
    assert group is not None and [m.member_id for m in group.members] == [member_id_for("pod-0")]
    events.clear()
    rt.publish(ServiceConfigRumor(PLAIN, 999, b"x = 3"))
    rt.publish(ElectionRumor(PLAIN, "a" * 32, 1, 0, ElectionStatus.RUNNING))
    assert events == [] and rt.persistent_rumors() == []
    rt._on_config(None, "300")  # the ConfigMap deleted: an empty config replaces it
    assert [e.rumor for e in events] == [ServiceConfigRumor(PLAIN, 300, b"")]


async def test_leave_shows_me_departed() -> None:
    events: list[Any] = []
    rt = runtime(events, {})
    await rt.leave()
    assert rt.departed and rt.me.health is Health.DEPARTED
    assert [type(e) for e in events] == [SelfChanged]
    await rt.leave()  # idempotent
    assert len(events) == 1
    await rt.close()


def test_a_group_loaded_now_sees_its_config_when_it_reads_the_census() -> None:
    """A service takes its group's config from the census as it loads (before any event): the
    daemon's census calls `sync_groups` first, which takes newly loaded groups in, silently.
    Reading the ring changes nothing by itself."""
    events: list[Any] = []
    groups: dict[str, bool] = {}
    rt = runtime(events, groups)
    rt._on_config("x = 1\n", "200")
    assert events == []  # nothing loaded: no group to configure
    groups[PLAIN] = False
    version = rt.version
    assert build_census(rt.me, rt.members(), rt.store).service_config(PLAIN) is None
    assert rt.version == version  # a read is only a read
    rt.sync_groups()  # what Supervisor.census does before it reads
    assert rt.version != version
    census = build_census(rt.me, rt.members(), rt.store)
    config = census.service_config(PLAIN)
    assert config is not None and dict(config.value) == {"x": 1} and events == []


async def test_external_leader_runs_no_election_and_never_fences() -> None:
    """Native mode's switch: the Coordinator takes part in nothing and publishes nothing, and
    the gate opens on the Lease holder's Finished election even with most of the group gone
    (the Lease, not a quorum, keeps two leaders apart)."""
    i = inputs(
        lease_known=True,
        holder="pod-0",
        entries=slices(
            FakeEndpoint("10.0.0.2", "pod-1", terminating=True),
            FakeEndpoint("10.0.0.3", "pod-2", terminating=True),
            FakeEndpoint("10.0.0.4", "pod-3", terminating=True),
            FakeEndpoint("10.0.0.5", "pod-4", terminating=True),
        ),
    )
    store = RumorStore()
    for r in rumors_of(i):
        store.merge(r)
    members = [m.with_health(Health.CONFIRMED) for m, _ in members_of(i).values()]
    census = build_census(me_of(i), members, store)
    group = census.group(LEADER)
    assert group is not None
    gossip = leader_gate(group, census, ElectionTuning())
    assert gossip.fence  # gossip mode would stop the service: no quorum
    assert leader_gate(group, census, ElectionTuning(external_leader=True)).reason is None

    published: list[Any] = []

    async def suitability() -> int | None:
        raise AssertionError("no suitability hook in native mode")

    coord = Coordinator(
        sg=group.service_group,
        topology=Topology.LEADER,
        strategy=UpdateStrategy.ROLLING,
        census=lambda: census,
        publish=published.append,
        suitability=suitability,
        tuning=ElectionTuning(external_leader=True),
    )
    assert not coord.active
    await coord.step()
    assert published == []

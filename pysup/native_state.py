"""The pure part of the Kubernetes-native mode (`pysup.native`): Kubernetes objects in, the
synthesized member table and rumors out. No I/O; `NativeRing` applies what these return.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import ElectionRumor, ElectionStatus, ServiceConfigRumor, ServiceRumor
from pysup.butterfly.rumors import StoredRumor
from pysup.discovery.kubernetes import CensusEntry


def member_id_for(name: str) -> str:
    """A pod's member id: 32 lowercase hex, the same on every member and across restarts."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class NativeInputs:
    """Everything the synthesized member table and rumor store are made of."""

    pod: str
    ip: str
    gossip_port: int
    entries: Mapping[str, CensusEntry] = field(default_factory=dict)
    """`census_from_slices` of the Service's EndpointSlices: address -> entry."""
    groups: Mapping[str, bool] = field(default_factory=dict)
    local: Mapping[str, ServiceRumor] = field(default_factory=dict)
    """My own Service rumors by group, as my services published them."""
    lease_known: bool = False
    """The Lease has been read at least once since campaigning began."""
    holder: str | None = None
    """The Lease holder's identity (pod name); None: the Lease is free."""
    term: int = 0
    """Counts holder changes seen here (the Election rumor's term; informational)."""
    config: bytes | None = None
    """The ConfigMap's TOML; None: never seen, or gone without ever being seen."""
    config_incarnation: int = 0
    left: bool = False


def me_of(inputs: NativeInputs) -> Member:
    health = Health.DEPARTED if inputs.left else Health.ALIVE
    return Member(member_id_for(inputs.pod), 1, inputs.ip, inputs.gossip_port, health)


def members_of(inputs: NativeInputs) -> dict[str, tuple[Member, str]]:
    """The other pods: member id -> (member, pod name). A pod listed under several addresses
    keeps its best health (and the first address with it)."""
    out: dict[str, tuple[Member, str]] = {}
    for addr, e in sorted(inputs.entries.items()):
        name = e.pod or addr  # an endpoint without a pod reference is known by its address
        if name == inputs.pod or (e.pod is None and addr == inputs.ip):
            continue
        mid = member_id_for(name)
        m = Member(mid, 1, addr, inputs.gossip_port, Health(int(e.health)))
        old = out.get(mid)
        if old is None or m.health < old[0].health:
            out[mid] = (m, name)
    return out


def _pod_sys(mine: Mapping[str, Any], my_ip: str, ip: str, name: str) -> dict[str, Any]:
    sys = {k: (ip if v == my_ip else v) for k, v in mine.items()}
    sys["ip"], sys["hostname"] = ip, name
    return sys


def rumors_of(inputs: NativeInputs) -> list[StoredRumor]:
    """Service rumors (mine and the derived ones), config and election rumors of loaded groups."""
    out: list[StoredRumor] = []
    others = members_of(inputs)
    for group, leader in sorted(inputs.groups.items()):
        mine = inputs.local.get(group)
        if mine is not None:
            out.append(mine)
            for member, name in others.values():
                out.append(
                    replace(
                        mine,
                        member_id=member.id,
                        initialized=member.health is Health.ALIVE,
                        sys=_pod_sys(mine.sys, inputs.ip, member.address, name),
                        health_check="",
                    )
                )
        if inputs.config is not None:
            out.append(ServiceConfigRumor(group, inputs.config_incarnation, inputs.config))
        if leader and inputs.lease_known:
            if inputs.holder:
                hid = member_id_for(inputs.holder)
                out.append(
                    ElectionRumor(group, hid, inputs.term, 0, ElectionStatus.FINISHED, (hid,))
                )
            else:
                out.append(ElectionRumor(group, "", inputs.term, 0, ElectionStatus.RUNNING))
    return out


def next_config_incarnation(previous: int, resource_version: str | None) -> int:
    """The ConfigMap's resourceVersion when it is a number above `previous`, else previous + 1
    (resourceVersions are opaque strings; etcd's happen to be increasing integers)."""
    if resource_version is not None and resource_version.isdigit():
        rv = int(resource_version)
        if rv > previous:
            return rv
    return previous + 1

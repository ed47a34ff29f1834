"""The census: every service group across the ring, built from rumors and the member table (pure).

A ``Census`` is an immutable snapshot rebuilt from scratch whenever the ring changed (Habitat
rebuilds its whole census whenever any rumor store or the member list changed; so do we, which keeps
it consistent by construction): ``pysup.census_build`` builds it, and its ``CensusCache`` keeps
the last one for the ring's version; this module is the data model and its JSON. The census is the
only route by which gossiped configuration and files reach services. Inputs:

- ``ServiceRumor``s make groups and their members (service, group, org, pkg, sys, exported cfg,
  initialized);
- the member table gives each member's health (alive/suspect/confirmed/departed), whether it is
  a permanent peer (``persistent``) and its observed gossip address (``sys.gossip_ip`` and
  ``sys.gossip_port``, as Habitat overwrites them). A member absent from the table is treated
  as alive only if it is the local member; a ``DepartureRumor`` marks a member departed
  whatever the table says;
- ``ElectionRumor``s (plain and update) give each group's election status and, once Finished, its
  leader (``leader``/``follower`` flags on every member). The election *logic* lives elsewhere;
  this module only reads the rumors;
- ``ServiceConfigRumor``s and ``ServiceFileRumor``s give the group's gossiped config (parsed) and
  files. They are kept for every service group, also ones with no member yet (a service loading
  here needs its group's config before its own Service rumor is out), but, as in Habitat, only
  groups with members or files appear in ``/census``.

``census_json`` renders Habitat's ``/census`` shape (``CensusRingProxy``/``CensusGroup``/
``CensusMemberProxy`` field names); ``member_json`` is the member shape shared with templates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
)
from pysup.butterfly.validate import GROUP_PART_RE, check_service_group_parts, split_service_group


class ServiceGroup(NamedTuple):
    """``service.group[@org]``. The group and org hold letters, digits, ``_`` and ``-``; the service
    may also hold dots (plan names may), so the group is whatever follows the *last* dot."""

    service: str
    group: str
    org: str | None = None

    def __str__(self) -> str:
        base = f"{self.service}.{self.group}"
        return f"{base}@{self.org}" if self.org else base

    @classmethod
    def parse(cls, text: str) -> ServiceGroup:
        """Parse ``svc.group[@org]``; ``ValueError`` says what is wrong (the rule gossip uses:
        `pysup.butterfly.validate`)."""
        return cls(*split_service_group(text))

    @classmethod
    def of(cls, service: str, group: str, org: str | None = None) -> ServiceGroup:
        """Validate the parts; ``ValueError`` names the bad one."""
        check_service_group_parts(service, group, org)
        return cls(service, group, org)


def valid_group_name(group: str) -> bool:
    """A group (or org) name: letters, digits, ``_`` and ``-``; not starting with ``-``."""
    return GROUP_PART_RE.fullmatch(group) is not None


class ElectionState(StrEnum):
    """A group's election status as Habitat's census and ``/services`` spell it."""

    NONE = "None"
    IN_PROGRESS = "ElectionInProgress"
    NO_QUORUM = "ElectionNoQuorum"
    FINISHED = "ElectionFinished"

    @classmethod
    def of(cls, status: ElectionStatus) -> ElectionState:
        return {
            ElectionStatus.RUNNING: cls.IN_PROGRESS,
            ElectionStatus.NO_QUORUM: cls.NO_QUORUM,
            ElectionStatus.FINISHED: cls.FINISHED,
        }[status]


class PkgIdent(NamedTuple):
    """``origin/name[/version[/release]]``."""

    origin: str
    name: str
    version: str | None = None
    release: str | None = None

    @classmethod
    def parse(cls, text: str) -> PkgIdent | None:
        parts = text.split("/")
        if not 2 <= len(parts) <= 4 or not all(parts):
            return None
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(p for p in self if p)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "release": self.release,
            "version": self.version,
        }


@dataclass(frozen=True)
class CensusMember:
    """One member of one service group (Habitat's ``CensusMember``)."""

    member_id: str
    service: str
    group: str
    org: str | None
    pkg: PkgIdent | None
    sys: Mapping[str, Any]
    cfg: Mapping[str, Any]
    """Only the keys the member's plan exports (from its Service rumor)."""
    initialized: bool = False
    persistent: bool = False
    alive: bool = False
    suspect: bool = False
    confirmed: bool = False
    departed: bool = False
    leader: bool = False
    follower: bool = False
    update_leader: bool = False
    update_follower: bool = False
    election_is_running: bool = False
    election_is_no_quorum: bool = False
    election_is_finished: bool = False
    update_election_is_running: bool = False
    update_election_is_no_quorum: bool = False
    update_election_is_finished: bool = False
    health_check: str | None = None
    """The member's last health-check result as it gossips it (``Ok|Warning|Critical|Unknown``;
    None: not checked yet, or not gossiped)."""
    plan_fingerprint: str = ""
    """The fingerprint of the plan the member runs (rolling updates compare them)."""

    @property
    def active(self) -> bool:
        """Alive or suspect: a member we reasonably interact with."""
        return self.alive or self.suspect

    @property
    def member_health(self) -> Health | None:
        """The member's health in the ring (None: not in the member table)."""
        if self.departed:
            return Health.DEPARTED
        if self.confirmed:
            return Health.CONFIRMED
        if self.suspect:
            return Health.SUSPECT
        return Health.ALIVE if self.alive else None


@dataclass(frozen=True)
class ServiceConfig:
    """The config applied to a group through gossip: its version and parsed TOML."""

    incarnation: int
    value: Mapping[str, Any]


@dataclass(frozen=True)
class ServiceFile:
    """A file uploaded to a group through gossip."""

    filename: str
    incarnation: int
    body: bytes


@dataclass(frozen=True)
class GossipProblem:
    """A gossiped config (`item` "config") or file (`item` its name) a service cannot use."""

    item: str
    incarnation: int
    message: str
    sealed: bool = False
    """Encrypted and not opened here (yet: the key may arrive)."""


@dataclass(frozen=True)
class CensusGroup:
    """One service group across the ring."""

    service_group: ServiceGroup
    local_member_id: str
    members: tuple[CensusMember, ...] = ()
    """Sorted by member id (Habitat's population is a BTreeMap)."""
    election_status: ElectionState = ElectionState.NONE
    leader_id: str | None = None
    update_election_status: ElectionState = ElectionState.NONE
    update_leader_id: str | None = None
    service_config: ServiceConfig | None = None
    service_files: Mapping[str, ServiceFile] = field(default_factory=lambda: MappingProxyType({}))
    election: ElectionRumor | None = None
    """The stored Election rumor itself (term, votes), for the election logic."""
    update_election: ElectionRumor | None = None
    """The stored ElectionUpdate rumor itself."""

    def member(self, member_id: str) -> CensusMember | None:
        for m in self.members:
            if m.member_id == member_id:
                return m
        return None

    @property
    def me(self) -> CensusMember | None:
        return self.member(self.local_member_id)

    @property
    def leader(self) -> CensusMember | None:
        return self.member(self.leader_id) if self.leader_id else None

    @property
    def update_leader(self) -> CensusMember | None:
        return self.member(self.update_leader_id) if self.update_leader_id else None

    @property
    def active_members(self) -> tuple[CensusMember, ...]:
        return tuple(m for m in self.members if m.active)

    @property
    def first(self) -> CensusMember | None:
        """Habitat's ``svc.first``/``bind.x.first``: the leader if any, else the first active
        member (by member id)."""
        leader = self.leader
        if leader is not None:
            return leader
        active = self.active_members
        return active[0] if active else None


@dataclass(frozen=True)
class Census:
    """A snapshot of every service group across the ring."""

    local_member_id: str
    groups: Mapping[str, CensusGroup] = field(default_factory=lambda: MappingProxyType({}))
    """``str(ServiceGroup)`` -> group, for groups with members or files."""
    ring: tuple[Member, ...] = ()
    """The member table (local member included), sorted by id."""
    configs: Mapping[str, ServiceConfig] = field(default_factory=lambda: MappingProxyType({}))
    """Gossiped config of every service group, with or without members."""
    files: Mapping[str, Mapping[str, ServiceFile]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Gossiped files of every service group: group -> filename -> file."""
    problems: Mapping[str, tuple[GossipProblem, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Gossiped config and files that cannot be used (not parsable, encrypted), by group."""
    sealed: bool = False
    """Some encrypted config or file could not be opened (``CensusCache`` rebuilds next time)."""

    def group(self, service_group: str | ServiceGroup) -> CensusGroup | None:
        return self.groups.get(str(service_group))

    def service_config(self, service_group: str | ServiceGroup) -> ServiceConfig | None:
        return self.configs.get(str(service_group))

    def service_files(self, service_group: str | ServiceGroup) -> Mapping[str, ServiceFile]:
        return self.files.get(str(service_group), MappingProxyType({}))

    def gossip_problems(self, service_group: str | ServiceGroup) -> tuple[GossipProblem, ...]:
        return self.problems.get(str(service_group), ())


def empty_census(local_member_id: str) -> Census:
    return Census(local_member_id=local_member_id)


# --- JSON -----------------------------------------------------------------------------------------


def member_json(m: CensusMember) -> dict[str, Any]:
    """Habitat's ``CensusMemberProxy`` shape (``/census`` population entries, template members)."""
    return {
        "alive": m.alive,
        "cfg": _plain(m.cfg),
        "confirmed": m.confirmed,
        "departed": m.departed,
        "election_is_finished": m.election_is_finished,
        "election_is_no_quorum": m.election_is_no_quorum,
        "election_is_running": m.election_is_running,
        "follower": m.follower,
        "group": m.group,
        "initialized": m.initialized,
        "leader": m.leader,
        "member_id": m.member_id,
        "org": m.org,
        "package": str(m.pkg) if m.pkg is not None else None,
        "persistent": m.persistent,
        "pkg": m.pkg.to_json() if m.pkg is not None else None,
        "service": m.service,
        "suspect": m.suspect,
        "sys": _plain(m.sys),
        "update_election_is_finished": m.update_election_is_finished,
        "update_election_is_no_quorum": m.update_election_is_no_quorum,
        "update_election_is_running": m.update_election_is_running,
        "update_follower": m.update_follower,
        "update_leader": m.update_leader,
    }


def group_json(g: CensusGroup) -> dict[str, Any]:
    """Habitat's ``CensusGroup`` serialization."""
    return {
        "changed_service_files": [],
        "election_status": g.election_status.value,
        "leader_id": g.leader_id,
        "local_member_id": g.local_member_id,
        "population": {m.member_id: member_json(m) for m in g.members},
        "service_config": (
            {"incarnation": g.service_config.incarnation, "value": _plain(g.service_config.value)}
            if g.service_config is not None
            else None
        ),
        "service_files": {
            name: {"body": list(f.body), "filename": f.filename, "incarnation": f.incarnation}
            for name, f in g.service_files.items()
        },
        "service_group": str(g.service_group),
        "update_election_status": g.update_election_status.value,
        "update_leader_id": g.update_leader_id,
    }


def ring_member_json(m: Member) -> dict[str, Any]:
    return {
        "member_id": m.id,
        "address": m.address,
        "gossip_port": m.gossip_port,
        "incarnation": m.incarnation,
        "health": m.health.label,
        "persistent": m.persistent,
    }


def census_json(census: Census) -> dict[str, Any]:
    """Habitat's ``/census`` (``CensusRingProxy``) shape, plus ``members``: the ring's member table.

    Habitat's ``last_*_counter`` fields count store updates; a snapshot has no history, so they hold
    the current number of rumors of each kind (and members), which grows as Habitat's do.
    """
    services = sum(len(g.members) for g in census.groups.values())
    return {
        "census_groups": {name: group_json(g) for name, g in census.groups.items()},
        "changed": True,
        "last_election_counter": sum(
            1 for g in census.groups.values() if g.election_status is not ElectionState.NONE
        ),
        "last_election_update_counter": sum(
            1 for g in census.groups.values() if g.update_election_status is not ElectionState.NONE
        ),
        "last_membership_counter": len(census.ring),
        "last_service_config_counter": len(census.configs),
        "last_service_counter": services,
        "last_service_file_counter": sum(len(f) for f in census.files.values()),
        "local_member_id": census.local_member_id,
        "members": [ring_member_json(m) for m in census.ring],
    }


def _plain(value: Any) -> Any:
    """Mappings (also read-only views) and tuples -> dict/list, for JSON and templates."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


plain_data = _plain
"""Public alias: deep-convert read-only mappings and tuples to plain dicts and lists."""

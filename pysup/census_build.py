"""Building the census from a ring's view, and the cache that rebuilds it only when the ring
changed (pure: the data model and its JSON are in ``pysup.census``).

``build_census`` reads ``ServiceRumor``s (groups and members), the member table (health, gossip
address, persistent), ``ElectionRumor``s (status, leader flags), and ``ServiceConfigRumor``s /
``ServiceFileRumor``s (gossiped config and files, opened through an ``Opener`` when encrypted).
``CensusCache`` keeps the last census for the ring's version; each config rumor's TOML is parsed
once across rebuilds (``pysup.gossipcfg``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

import structlog

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    RumorKind,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)
from pysup.census import (
    Census,
    CensusGroup,
    CensusMember,
    ElectionState,
    GossipProblem,
    PkgIdent,
    ServiceConfig,
    ServiceFile,
    ServiceGroup,
)
from pysup.gossipcfg import GossipConfigs
from pysup.ring import RumorView

log = structlog.get_logger(__name__)


Opener = Callable[[ServiceConfigRumor | ServiceFileRumor], bytes | None]
"""An encrypted rumor's plain payload, or None when it cannot be opened here
(``pysup.crypto.sealed.RumorOpener.plain``, which also says why)."""


class CensusCache:
    """The last census and the version of the ring it was built from: `get` rebuilds only when
    the version or the local member changed. Config rumors are parsed once across rebuilds."""

    def __init__(self, opener: Opener | None = None) -> None:
        self._key: tuple[Member, int] | None = None
        self._census: Census | None = None
        self._configs = GossipConfigs()
        self._opener = opener

    def get(
        self, local: Member, members: Iterable[Member], store: RumorView, version: int
    ) -> Census:
        """`members` is only iterated on a rebuild; `version` must change whenever the member
        table or the store does (`SwimCore.version`)."""
        key = (local, version)
        if self._census is None or key != self._key:
            self._census = build_census(local, members, store, self._opener, self._configs)
            # A sealed rumor we could not open may open at the next call (its group's key was
            # put in the key cache): keep rebuilding until every one is open.
            self._key = None if self._census.sealed else key
        return self._census


def build_census(
    local: Member,
    members: Iterable[Member],
    store: RumorView,
    opener: Opener | None = None,
    parsed: GossipConfigs | None = None,
) -> Census:
    """The census of `store` as seen by `local`, with health from the member table `members`;
    encrypted configs and files are read through `opener` (without one they are left out).
    `parsed`: config rumors parsed by an earlier build (a fresh cache parses every one)."""
    table: dict[str, Member] = {m.id: m for m in members}
    table.setdefault(local.id, local)
    problems: dict[str, list[GossipProblem]] = {}
    configs = _configs(store, opener, parsed or GossipConfigs(), problems)
    files = _files(store, opener, problems)
    by_group: dict[ServiceGroup, list[ServiceRumor]] = {}
    for rumor in store.of_kind(RumorKind.SERVICE):
        assert isinstance(rumor, ServiceRumor)
        try:
            sg = ServiceGroup.parse(rumor.service_group)
        except ValueError as e:
            log.warning("census.bad_service_group", member_id=rumor.member_id, error=str(e))
            continue
        by_group.setdefault(sg, []).append(rumor)
    for name in files:
        try:
            by_group.setdefault(ServiceGroup.parse(name), [])
        except ValueError:
            continue
    groups: dict[str, CensusGroup] = {}
    for sg, rumors in by_group.items():
        key = str(sg)
        groups[key] = _group(sg, local.id, rumors, table, store, configs.get(key), files.get(key))
    return Census(
        local_member_id=local.id,
        groups=MappingProxyType(dict(sorted(groups.items()))),
        ring=tuple(sorted(table.values(), key=lambda m: m.id)),
        configs=MappingProxyType(configs),
        files=MappingProxyType({k: MappingProxyType(v) for k, v in files.items()}),
        problems=MappingProxyType({k: tuple(v) for k, v in problems.items()}),
        sealed=any(p.sealed for ps in problems.values() for p in ps),
    )


def _payload(rumor: ServiceConfigRumor | ServiceFileRumor, opener: Opener | None) -> bytes | None:
    if not rumor.encrypted:
        return rumor.config if isinstance(rumor, ServiceConfigRumor) else rumor.body
    return None if opener is None else opener(rumor)


def _sealed(rumor: ServiceConfigRumor | ServiceFileRumor, what: str) -> GossipProblem:
    item = "config" if isinstance(rumor, ServiceConfigRumor) else rumor.filename
    message = f"{what} {rumor.incarnation} is encrypted and cannot be opened here"
    return GossipProblem(item, rumor.incarnation, message, sealed=True)


def _configs(
    store: RumorView,
    opener: Opener | None,
    parsed: GossipConfigs,
    problems: dict[str, list[GossipProblem]],
) -> dict[str, ServiceConfig]:
    out: dict[str, ServiceConfig] = {}
    for rumor in store.of_kind(RumorKind.SERVICE_CONFIG):
        assert isinstance(rumor, ServiceConfigRumor)
        data = _payload(rumor, opener)
        if data is None:
            problems.setdefault(rumor.service_group, []).append(_sealed(rumor, "gossip config"))
            continue
        value = parsed.parse(rumor, data)
        if isinstance(value, str):
            problem = GossipProblem("config", rumor.incarnation, value)
            problems.setdefault(rumor.service_group, []).append(problem)
            continue
        out[rumor.service_group] = ServiceConfig(rumor.incarnation, value)
    parsed.keep_only({r.identity[1] for r in store.of_kind(RumorKind.SERVICE_CONFIG)})
    return out


def _files(
    store: RumorView, opener: Opener | None, problems: dict[str, list[GossipProblem]]
) -> dict[str, dict[str, ServiceFile]]:
    out: dict[str, dict[str, ServiceFile]] = {}
    for rumor in store.of_kind(RumorKind.SERVICE_FILE):
        assert isinstance(rumor, ServiceFileRumor)
        data = _payload(rumor, opener)
        if data is None:
            what = f"gossiped file {rumor.filename}"
            problems.setdefault(rumor.service_group, []).append(_sealed(rumor, what))
            continue
        out.setdefault(rumor.service_group, {})[rumor.filename] = ServiceFile(
            rumor.filename, rumor.incarnation, data
        )
    return out


def _election(store: RumorView, kind: RumorKind, key: str) -> ElectionRumor | None:
    rumor = store.get(kind, key, "election")
    return rumor if isinstance(rumor, ElectionRumor) else None


def _group(
    sg: ServiceGroup,
    local_id: str,
    rumors: list[ServiceRumor],
    table: Mapping[str, Member],
    store: RumorView,
    config: ServiceConfig | None,
    files: Mapping[str, ServiceFile] | None,
) -> CensusGroup:
    key = str(sg)
    election = _election(store, RumorKind.ELECTION, key)
    update = _election(store, RumorKind.ELECTION_UPDATE, key)
    ids = {r.member_id for r in rumors}
    leader_id = _winner(election, ids)
    update_leader_id = _winner(update, ids)
    members = tuple(
        _member(sg, r, local_id, table.get(r.member_id), store, election, update)
        for r in sorted(rumors, key=lambda r: r.member_id)
    )
    return CensusGroup(
        service_group=sg,
        local_member_id=local_id,
        members=members,
        election_status=ElectionState.of(election.status) if election else ElectionState.NONE,
        leader_id=leader_id,
        update_election_status=ElectionState.of(update.status) if update else ElectionState.NONE,
        update_leader_id=update_leader_id,
        service_config=config,
        service_files=MappingProxyType(dict(sorted((files or {}).items()))),
        election=election,
        update_election=update,
    )


def _winner(election: ElectionRumor | None, ids: set[str]) -> str | None:
    """The leader of a Finished election, if that member is in the group."""
    if election is None or election.status != ElectionStatus.FINISHED:
        return None
    return election.member_id if election.member_id in ids else None


def _member(
    sg: ServiceGroup,
    rumor: ServiceRumor,
    local_id: str,
    member: Member | None,
    store: RumorView,
    election: ElectionRumor | None,
    update: ElectionRumor | None,
) -> CensusMember:
    sys = dict(rumor.sys)
    if member is not None:
        health: Health | None = member.health
        sys["gossip_ip"] = member.address
        sys["gossip_port"] = member.gossip_port
    else:
        health = Health.ALIVE if rumor.member_id == local_id else None
    if store.is_departed(rumor.member_id):
        health = Health.DEPARTED
    flags = _election_flags(rumor.member_id, election, "")
    flags.update(_election_flags(rumor.member_id, update, "update_"))
    return CensusMember(
        member_id=rumor.member_id,
        service=sg.service,
        group=sg.group,
        org=sg.org,
        pkg=PkgIdent.parse(rumor.pkg),
        sys=MappingProxyType(sys),
        cfg=MappingProxyType(dict(rumor.cfg)),
        initialized=rumor.initialized,
        persistent=member.persistent if member is not None else False,
        alive=health is Health.ALIVE,
        suspect=health is Health.SUSPECT,
        confirmed=health is Health.CONFIRMED,
        departed=health is Health.DEPARTED,
        health_check=rumor.health_check or None,
        plan_fingerprint=rumor.plan_fingerprint,
        **flags,
    )


def _election_flags(member_id: str, election: ElectionRumor | None, prefix: str) -> dict[str, bool]:
    status = election.status if election is not None else None
    finished = status == ElectionStatus.FINISHED
    is_winner = finished and election is not None and election.member_id == member_id
    return {
        f"{prefix}election_is_running": status == ElectionStatus.RUNNING,
        f"{prefix}election_is_no_quorum": status == ElectionStatus.NO_QUORUM,
        f"{prefix}election_is_finished": finished,
        f"{prefix}leader": is_winner,
        f"{prefix}follower": finished and not is_winner,
    }

"""Events from what the ring and the election logic report (pure).

The shell calls these where it already handles the sources: the gossip core's ``MemberChanged``,
``RumorChanged`` and ``SelfChanged`` effects, an election ``Decision`` about to be published, and a
leader group's size notices. Service-layer events (hooks, state, restarts, health, applies) are
built directly from the payload classes in ``model.py``: their sources hold the values already.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pysup.butterfly.effects import MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    RumorKind,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
    by_kind,
    kind_of,
)
from pysup.election import Decision, GroupSize, Quorum, members_needed, quorum
from pysup.events.model import (
    MAX_LISTED_IDS,
    ConfigRumorEvent,
    DepartureRumorEvent,
    ElectionEvenPopulation,
    ElectionFinish,
    ElectionNoQuorum,
    ElectionRumorEvent,
    ElectionStart,
    ElectionVote,
    FileRumorEvent,
    MemberHealth,
    MemberRefuted,
    Payload,
    ServiceRumorEvent,
)


def effect_event(e: MemberChanged | RumorChanged | SelfChanged) -> Payload:
    """The event for one of the ring's effects (what the daemon's listener receives)."""
    if isinstance(e, MemberChanged):
        return member_event(e)
    if isinstance(e, RumorChanged):
        return rumor_event(e)
    return self_event(e)


def member_event(e: MemberChanged) -> MemberHealth:
    """``member.health`` for a changed member record (``suspected_by`` when Suspect and known)."""
    m = e.member
    by = (e.suspected_by or None) if m.health is Health.SUSPECT else None
    return _member_health(m, e.previous, by)


def self_event(e: SelfChanged) -> Payload:
    """This member refuted a suspicion (``member.refuted``) or was departed (``member.health``)."""
    m = e.member
    if e.reason == "refuted":
        return MemberRefuted(member_id=m.id, incarnation=m.incarnation)
    return _member_health(m, Health.ALIVE, None)  # a member is Alive to itself until it departs


def _member_health(m: Member, previous: Health | None, suspected_by: str | None) -> MemberHealth:
    return MemberHealth(
        member_id=m.id,
        address=m.address,
        gossip_port=m.gossip_port,
        incarnation=m.incarnation,
        health=m.health.label,
        previous=previous.label if previous is not None else None,
        suspected_by=suspected_by,
        persistent=m.persistent,
    )


def _service_event(r: ServiceRumor) -> Payload:
    return ServiceRumorEvent(
        service_group=r.service_group,
        member_id=r.member_id,
        incarnation=r.incarnation,
        pkg=r.pkg,
        initialized=r.initialized,
        health_check=r.health_check or None,
    )


def _config_event(r: ServiceConfigRumor) -> Payload:
    return ConfigRumorEvent(r.service_group, r.incarnation, r.encrypted, len(r.config))


def _file_event(r: ServiceFileRumor) -> Payload:
    return FileRumorEvent(r.service_group, r.filename, r.incarnation, r.encrypted, len(r.body))


def _election_event(r: ElectionRumor) -> Payload:
    return ElectionRumorEvent(
        service_group=r.service_group,
        update=r.update,
        member_id=r.member_id,
        term=r.term,
        suitability=r.suitability,
        status=r.status.value,
        votes=r.votes[:MAX_LISTED_IDS],
        vote_count=len(r.votes),
    )


def _departure_event(r: DepartureRumor) -> Payload:
    return DepartureRumorEvent(r.member_id)


_EVENTS: Mapping[RumorKind, Callable[[Any], Payload] | None] = by_kind(
    "rumor event",
    {
        RumorKind.MEMBER: None,  # membership news is `member_event`, from MemberChanged
        RumorKind.SERVICE: _service_event,
        RumorKind.SERVICE_CONFIG: _config_event,
        RumorKind.SERVICE_FILE: _file_event,
        RumorKind.DEPARTURE: _departure_event,
        RumorKind.ELECTION: _election_event,
        RumorKind.ELECTION_UPDATE: _election_event,
    },
)


def rumor_event(e: RumorChanged) -> Payload:
    """``rumor.<kind>`` for a new or newer rumor in the store."""
    make = _EVENTS[kind_of(e.rumor)]
    if make is None:
        raise TypeError("member rumors are not stored; their news is member_event")
    return make(e.rumor)


def decision_event(decision: Decision, quorum: Quorum, needed: int) -> Payload | None:
    """The event for an election decision this member is about to publish (None: nothing to
    publish). `quorum` and `needed` (``election.members_needed``) are what the decision saw."""
    rumor = decision.publish
    if rumor is None:
        return None
    sg, update, why = rumor.service_group, rumor.update, decision.why
    if why == "start" or why.startswith("restart_"):
        if rumor.status is ElectionStatus.NO_QUORUM:
            return no_quorum_event(sg, update, rumor.term, quorum, needed)
        return ElectionStart(sg, update, rumor.term, rumor.member_id, rumor.status.value, why)
    if why == "vote":
        # A vote is the voter's own candidacy at the stored term; the merge hands the vote to
        # the stronger candidate, whom this member does not know here.
        voter = rumor.member_id
        return ElectionVote(sg, update, rumor.term, voter, voter, rumor.status.value)
    if why in ("finish", "finish_timeout"):
        return ElectionFinish(sg, update, rumor.term, rumor.member_id, len(rumor.votes), why)
    if why == "no_quorum":
        return no_quorum_event(sg, update, rumor.term, quorum, needed)
    return None


def election_event(
    members: Mapping[str, Health | None],
    stored: ElectionRumor | None,
    rumor: ElectionRumor,
    why: str,
    update: bool,
) -> Payload | None:
    """``decision_event`` for what the coordinator publishes, from the group's member health and
    the stored election it decided on."""
    needed = members_needed(members, stored, update=update)
    return decision_event(Decision(rumor, why), quorum(members), needed)


def no_quorum_event(
    service_group: str, update: bool, term: int | None, quorum: Quorum, needed: int
) -> ElectionNoQuorum:
    """Why the group cannot elect, and what it waits for."""
    if needed > 0:
        return ElectionNoQuorum(
            service_group,
            update,
            term,
            "waiting_for_members",
            quorum.alive,
            quorum.population,
            needed,
        )
    missing = max(0, quorum.population // 2 + 1 - quorum.alive)
    return ElectionNoQuorum(
        service_group, update, term, "lost_quorum", quorum.alive, quorum.population, missing
    )


def size_events(
    service_group: str, notices: tuple[str, ...], size: GroupSize, quorum: Quorum
) -> list[Payload]:
    """Events for ``election.size_notices`` (a leader group's size changed); `quorum` is the
    group's (``election.quorum`` of the same members)."""
    out: list[Payload] = []
    for notice in notices:
        if notice == "election.waiting_for_members":
            out.append(no_quorum_event(service_group, False, 0, quorum, size.needed))
        elif notice == "election.even_population":
            out.append(ElectionEvenPopulation(service_group, size.population))
    return out


__all__ = [
    "decision_event",
    "effect_event",
    "election_event",
    "member_event",
    "no_quorum_event",
    "rumor_event",
    "self_event",
    "size_events",
]

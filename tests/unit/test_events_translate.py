"""Events built from the gossip core's effects and from real election decisions."""

from __future__ import annotations

from pysup.butterfly.effects import MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)
from pysup.election import GroupView, decide, group_size, members_needed, quorum, size_notices
from pysup.events.model import (
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
    ServiceRumorEvent,
)
from pysup.events.translate import (
    decision_event,
    member_event,
    rumor_event,
    self_event,
    size_events,
)

A, B, C, D = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
SG = "redis.default"


def test_member_event_names_the_suspecter_only_for_a_suspicion() -> None:
    m = Member(B, 4, "10.0.0.2", 9638, Health.SUSPECT)
    e = member_event(MemberChanged(m, Health.ALIVE, suspected_by=A))
    assert e == MemberHealth(B, "10.0.0.2", 9638, 4, "Suspect", "Alive", A, False)
    confirmed = member_event(MemberChanged(m.with_health(Health.CONFIRMED), Health.SUSPECT, A))
    assert (confirmed.health, confirmed.suspected_by) == ("Confirmed", None)
    new = member_event(MemberChanged(m.with_health(Health.ALIVE), None))
    assert new.previous is None


def test_self_events() -> None:
    me = Member(A, 7, "10.0.0.1", 9638)
    assert self_event(SelfChanged(me, "refuted")) == MemberRefuted(A, 7)
    gone = self_event(SelfChanged(me.with_health(Health.DEPARTED), "departed"))
    assert isinstance(gone, MemberHealth)
    assert (gone.health, gone.previous) == ("Departed", "Alive")


def test_rumor_events() -> None:
    svc = ServiceRumor(B, SG, 3, "core/redis/4.0/1", True, {}, {}, "Critical")
    assert rumor_event(RumorChanged(svc)) == ServiceRumorEvent(
        SG, B, 3, "core/redis/4.0/1", True, "Critical"
    )
    not_checked = ServiceRumor(B, SG, 3, "core/redis/4.0/1")
    assert rumor_event(RumorChanged(not_checked)).data()["health_check"] is None
    cfg = ServiceConfigRumor(SG, 9, b"port = 1\n")
    assert rumor_event(RumorChanged(cfg)) == ConfigRumorEvent(SG, 9, False, 9)
    f = ServiceFileRumor(SG, "a.txt", 2, b"xyz", True)
    assert rumor_event(RumorChanged(f)) == FileRumorEvent(SG, "a.txt", 2, True, 3)
    assert rumor_event(RumorChanged(DepartureRumor(C))) == DepartureRumorEvent(C)


def test_election_rumor_lists_at_most_64_votes_and_counts_all() -> None:
    votes = tuple(f"{i:032x}" for i in range(100))
    r = ElectionRumor(SG, A, 2, 10, ElectionStatus.RUNNING, votes)
    e = rumor_event(RumorChanged(r))
    assert isinstance(e, ElectionRumorEvent)
    assert (len(e.votes), e.vote_count, e.status, e.term) == (64, 100, "Running", 2)


def view(me: str, health: dict[str, Health | None]) -> GroupView:
    return GroupView(member_id=me, service_group=SG, members=health)


def event_for(v: GroupView, stored: ElectionRumor | None) -> object:
    decision = decide(v, stored, suitability=0)
    return decision_event(decision, quorum(v.members), members_needed(v.members, stored))


def test_a_first_election_with_three_members_starts() -> None:
    v = view(A, {A: Health.ALIVE, B: Health.ALIVE, C: Health.ALIVE})
    assert event_for(v, None) == ElectionStart(SG, False, 0, A, "Running", "start")


def test_two_members_wait_for_a_third() -> None:
    v = view(A, {A: Health.ALIVE, B: Health.ALIVE})
    assert event_for(v, None) == ElectionNoQuorum(
        SG, False, 0, "waiting_for_members", alive=2, population=2, waiting_for=1
    )


def test_a_vote() -> None:
    v = view(B, {A: Health.ALIVE, B: Health.ALIVE, C: Health.ALIVE})
    stored = ElectionRumor(SG, A, 0, 5, ElectionStatus.RUNNING, (A,))
    assert event_for(v, stored) == ElectionVote(SG, False, 0, B, B, "Running")


def test_the_candidate_finishes_when_everyone_voted() -> None:
    v = view(A, {A: Health.ALIVE, B: Health.ALIVE, C: Health.ALIVE})
    stored = ElectionRumor(SG, A, 0, 5, ElectionStatus.RUNNING, (A, B, C))
    assert event_for(v, stored) == ElectionFinish(SG, False, 0, A, 3, "finish")


def test_a_leader_that_lost_quorum_reports_what_it_waits_for() -> None:
    v = view(A, {A: Health.ALIVE, B: Health.CONFIRMED, C: Health.CONFIRMED})
    stored = ElectionRumor(SG, A, 1, 5, ElectionStatus.FINISHED, (A, B, C))
    assert event_for(v, stored) == ElectionNoQuorum(
        SG, False, 2, "lost_quorum", alive=1, population=3, waiting_for=1
    )


def test_a_decision_that_publishes_nothing_has_no_event() -> None:
    v = view(A, {A: Health.ALIVE, B: Health.ALIVE, C: Health.ALIVE})
    stored = ElectionRumor(SG, A, 0, 5, ElectionStatus.FINISHED, (A, B, C))
    assert event_for(v, stored) is None


def test_size_events() -> None:
    members: dict[str, Health | None] = {A: Health.ALIVE}
    size = group_size(members, None)
    events = size_events(SG, size_notices(None, size), size, quorum(members))
    assert events == [ElectionNoQuorum(SG, False, 0, "waiting_for_members", 1, 1, 2)]
    four: dict[str, Health | None] = {m: Health.ALIVE for m in (A, B, C, D)}
    stored = ElectionRumor(SG, A, 0, 5, ElectionStatus.FINISHED, (A, B, C, D))
    size4 = group_size(four, stored)
    assert size_events(SG, size_notices(size, size4), size4, quorum(four)) == [
        ElectionEvenPopulation(SG, 4)
    ]

"""A leader group's first election waits for three members (issue 14, item 7).

Habitat documents that "the first Supervisor will block until it has quorum" and that a leader
group needs at least three members, and warns about an even number of members. Proves, with the
pure election logic (deterministic, instant gossip through one shared store) and the Coordinator
shell driven step by step:

- 1 and 2 members: no leader, status NoQuorum, hooks held with a reason saying how many members
  are missing; the 3rd member's arrival gives exactly one leader (the most suitable);
- 4 members elect and are warned about (``election.even_population``), once per change of size;
- a group that shrinks below three after its first election keeps its leader while a majority is
  alive, and re-elects by majority when the leader leaves (as Habitat, whose minimum only ever
  guarded the start);
- a member left alone with a departed member's waiting standing does not elect itself;
- the rolling-update election has no minimum.

On the code before this change a lone member elected itself at once: the tests of 1 and 2
members, the waiting reason and the log events fail there.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from structlog.testing import capture_logs

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import ElectionRumor, ElectionStatus, Rumor, ServiceRumor
from pysup.butterfly.rumors import RumorKind, RumorStore
from pysup.census import Census, ElectionState, ServiceGroup
from pysup.census_build import build_census
from pysup.election import (
    MIN_QUORUM,
    GroupSize,
    decide,
    group_size,
    leader_of,
    members_needed,
    size_notices,
)
from pysup.service.coordination import EVEN_POPULATION, Coordinator, ElectionTuning, leader_gate
from pysup.service.spec import Topology, UpdateStrategy
from tests.unit.test_election import IDS, SG, everyone, rumor, run_group, view

A, B, C, D = IDS[:4]
ALIVE, CONFIRMED, DEPARTED = Health.ALIVE, Health.CONFIRMED, Health.DEPARTED
R, F, NQ = ElectionStatus.RUNNING, ElectionStatus.FINISHED, ElectionStatus.NO_QUORUM
SUITS = dict.fromkeys(IDS, 0)


def test_the_minimum_is_three() -> None:
    assert MIN_QUORUM == 3


def test_a_lone_member_stands_at_term_zero_without_quorum_and_waits() -> None:
    alone = view(A, a=ALIVE)
    first = decide(alone, None, suitability=5)
    assert first.why == "start" and first.publish == ElectionRumor(SG, A, 0, 5, NQ, (A,))
    again = decide(alone, first.publish, suitability=5)
    assert again.publish is None and again.why == "wait_members"
    assert leader_of(first.publish) is None
    assert members_needed(alone.members, first.publish) == 2


def test_one_and_two_members_never_elect() -> None:
    for n in (1, 2):
        final, _ = run_group(everyone(n), SUITS, random.Random(n))
        assert final is not None and final.status is NQ and final.term == 0, n
        assert leader_of(final) is None
        assert set(final.votes) == set(IDS[:n])  # each member stood (voted) while waiting


def test_the_third_member_arriving_elects_exactly_one_leader() -> None:
    rng = random.Random(3)
    suits = {**SUITS, B: 2}
    one, _ = run_group(everyone(1), suits, rng)
    two, _ = run_group(everyone(2), suits, rng, stored=one)
    assert two is not None and leader_of(two) is None and two.status is NQ
    three, _ = run_group(everyone(3), suits, rng, stored=two)
    assert three is not None and three.status is F and leader_of(three) == B
    assert three.term == 1 and set(three.votes) == {A, B, C}


def test_three_members_at_once_elect_directly() -> None:
    final, _ = run_group(everyone(3), SUITS, random.Random(4))
    assert final is not None and final.status is F and final.member_id == C


def test_four_members_elect_and_are_an_even_group() -> None:
    final, _ = run_group(everyone(4), SUITS, random.Random(5))
    assert final is not None and final.status is F and final.member_id == D
    members = {IDS[i]: ALIVE for i in range(4)}
    assert group_size(members, final) == GroupSize(4, 0) and GroupSize(4, 0).even


def test_a_shrinking_group_keeps_its_leader_while_a_majority_lives() -> None:
    rng = random.Random(6)
    first, _ = run_group(everyone(3), SUITS, rng)
    assert first is not None and first.member_id == C and first.status is F
    # A follower leaves for good: two of two alive, the leader stays, nothing is published.
    after, published = run_group(everyone(3, a=DEPARTED), SUITS, rng, stored=first)
    assert after == first and published == 0
    # Then the leader leaves: the last two re-elect by majority (no minimum after the start).
    again, _ = run_group(everyone(3, a=DEPARTED, c=DEPARTED), SUITS, rng, stored=after)
    assert again is not None and again.status is F and again.member_id == B
    assert again.term == first.term + 1


def test_a_crashed_leader_of_three_is_replaced_by_the_two_left() -> None:
    rng = random.Random(7)
    first, _ = run_group(everyone(3), SUITS, rng)
    after, _ = run_group(everyone(3, c=CONFIRMED), SUITS, rng, stored=first)
    assert after is not None and after.status is F and after.member_id == B


def test_a_member_left_alone_with_a_departed_members_standing_does_not_elect_itself() -> None:
    standing = rumor(A, 0, NQ, (A, B))
    for a in (DEPARTED, None):
        d = decide(view(B, a=a, b=ALIVE), standing, suitability=9)
        assert d.publish is None and d.why == "wait_members"
    # ... and once three members count, the group elects at the next term.
    d = decide(view(B, a=DEPARTED, b=ALIVE, c=ALIVE, d=ALIVE), standing, suitability=9)
    assert d.why == "restart_quorum_back" and d.publish is not None
    assert (d.publish.term, d.publish.status) == (1, R)


def test_the_update_election_has_no_minimum() -> None:
    two = view(A, a=ALIVE, b=ALIVE)
    d = decide(two, None, suitability=0, update=True)
    assert d.publish is not None and d.publish.status is R and d.publish.update
    assert members_needed(two.members, None, update=True) == 0


def test_size_notices_once_per_change() -> None:
    sizes = [(1, 2), (1, 2), (2, 1), (2, 1), (3, 0), (4, 0), (4, 0), (3, 0), (2, 0), (5, 0)]
    seen: list[tuple[str, ...]] = []
    previous: GroupSize | None = None
    for pop, needed in sizes:
        current = GroupSize(pop, needed)
        seen.append(size_notices(previous, current))
        previous = current
    assert seen == [
        ("election.waiting_for_members",),
        (),
        ("election.waiting_for_members",),
        (),
        ("election.enough_members",),
        ("election.even_population",),
        (),
        (),
        ("election.even_population",),
        (),
    ]
    # Two members still waiting: waiting, not (yet) an even group's warning; but two that learn
    # their group already ran its first election (a later term arrived) are an even group.
    assert not GroupSize(2, 1).even
    assert size_notices(GroupSize(2, 1), GroupSize(2, 0)) == (
        "election.enough_members",
        "election.even_population",
    )


# --- the shell: gate reason and log lines ---------------------------------------------------------


class SharedRing:
    """Members seeing one rumor store at once (instant gossip), each with its own census."""

    def __init__(self) -> None:
        self.store = RumorStore()
        self.members: list[Member] = []
        self.coordinators: dict[str, Coordinator] = {}

    def census(self, member_id: str) -> Census:
        me = next(m for m in self.members if m.id == member_id)
        return build_census(me, self.members, self.store)

    def join(self, member_id: str, suitability: int = 0) -> Coordinator:
        self.members.append(Member(member_id, 0, "127.0.0.1", 9638))
        self.store.merge(ServiceRumor(member_id, SG, 1, "core/redis/1/1", False))

        async def suit() -> int:
            return suitability

        coord = Coordinator(
            sg=ServiceGroup("redis", "default"),
            topology=Topology.LEADER,
            strategy=UpdateStrategy.NONE,
            census=lambda: self.census(member_id),
            publish=self.publish,
            suitability=suit,
            tuning=ElectionTuning(),
            clock=lambda: 0.0,
        )
        self.coordinators[member_id] = coord
        return coord

    def publish(self, rumor: Rumor) -> None:
        assert isinstance(rumor, ElectionRumor)
        self.store.merge(rumor)

    async def settle(self, rounds: int = 10) -> None:
        for _ in range(rounds):
            for coord in self.coordinators.values():
                await coord.step()

    def election(self) -> ElectionRumor | None:
        stored = self.store.get(RumorKind.ELECTION, SG, "election")
        return stored if isinstance(stored, ElectionRumor) else None

    def reason(self, member_id: str) -> str | None:
        census = self.census(member_id)
        return leader_gate(census.group(SG), census, ElectionTuning()).reason


def events(logs: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == name]


async def test_coordinators_wait_for_the_third_member_saying_so_once_per_change() -> None:
    ring = SharedRing()
    with capture_logs() as logs:
        ring.join(A)
        await ring.settle()
        stored = ring.election()
        assert stored is not None and stored.status is NQ and leader_of(stored) is None
        group = ring.census(A).group(SG)
        assert group is not None and group.election_status is ElectionState.NO_QUORUM
        assert ring.reason(A) == (
            "Waiting to execute hooks; election in progress, and we have no quorum: "
            "1 of the 3 members a leader group needs for its first election; waiting for 2 more"
        )
        ring.join(B)
        await ring.settle()
        assert leader_of(ring.election()) is None
        assert (ring.reason(B) or "").endswith(
            "2 of the 3 members a leader group needs for its first election; waiting for 1 more"
        )
        ring.join(C, suitability=7)
        await ring.settle()
        final = ring.election()
        assert final is not None and final.status is F and final.member_id == C
        assert all(ring.reason(m) is None for m in (A, B, C))
        ring.join(D)
        await ring.settle()
        assert ring.election() == final  # a fourth member follows; nothing is re-elected
    waiting = events(logs, "election.waiting_for_members")
    # A logged 1 then 2 members; B logged 2: one line per change, not one per step.
    assert [(e["members"], e["waiting_for"]) for e in waiting] == [(1, 2), (2, 1), (2, 1)]
    assert all(e["needed"] == 3 for e in waiting)
    # A and B saw the group reach three (C joined a group of three: nothing to wait for).
    assert [e["members"] for e in events(logs, "election.enough_members")] == [3, 3]
    even = events(logs, "election.even_population")
    assert len(even) == 4 and {e["members"] for e in even} == {4}  # each member, once
    assert even[0]["message"] == EVEN_POPULATION and even[0]["log_level"] == "warning"

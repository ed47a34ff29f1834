"""The election state machine of one member (pysup/election.py), and groups of members driven
over a shared view: Habitat's rules where users rely on them (quorum, suitability, votes, finish
when every alive member voted, restart when the leader is dead) and the fixes (minority without a
leader, elections never stuck, terms only grow). Deterministic: no clock but the `now` argument."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pysup.butterfly.member import Health
from pysup.butterfly.messages import ElectionRumor, ElectionStatus
from pysup.butterfly.rumors import merge_election
from pysup.census import Census, CensusGroup, CensusMember, ElectionState, ServiceGroup
from pysup.election import (
    INCUMBENT,
    MIN_QUORUM,
    GroupView,
    Participant,
    decide,
    leader_of,
    quorum,
    reachable_quorum,
)
from pysup.service.coordination import ElectionTuning, Gate, leader_gate
from pysup.service.spec import UpdateStrategy
from pysup.service.updates import plan_turn, rolling_order, rolling_turn

SG = "redis.default"
IDS = [f"{i:032x}" for i in range(1, 8)]
A, B, C, D, E = IDS[:5]
R, F, NQ = ElectionStatus.RUNNING, ElectionStatus.FINISHED, ElectionStatus.NO_QUORUM
ALIVE, SUSPECT, CONFIRMED, DEPARTED = (
    Health.ALIVE,
    Health.SUSPECT,
    Health.CONFIRMED,
    Health.DEPARTED,
)


def view(me: str, **health: Health | None) -> GroupView:
    members = {IDS["abcdefg".index(k)]: h for k, h in health.items()}
    return GroupView(me, SG, members)


def everyone(n: int, **overrides: Health | None) -> dict[str, Health | None]:
    out: dict[str, Health | None] = {k: ALIVE for k in "abcdefg"[:n]}
    out.update(overrides)
    return out


def rumor(
    mid: str, term: int, status: ElectionStatus, votes: tuple[str, ...] = (), suit: int = 0
) -> ElectionRumor:
    return ElectionRumor(SG, mid, term, suit, status, tuple(sorted(votes or (mid,))))


# --- quorum ---------------------------------------------------------------------------------------


def test_quorum_is_habitats_alive_over_half_the_non_departed_population() -> None:
    assert quorum({A: ALIVE, B: ALIVE, C: CONFIRMED}).has_quorum  # 2 > 3 // 2
    assert not quorum({A: ALIVE, B: CONFIRMED, C: CONFIRMED}).has_quorum
    assert not quorum({A: ALIVE, B: ALIVE, C: SUSPECT, D: SUSPECT}).has_quorum  # 2 > 2 fails
    assert quorum({A: ALIVE, B: DEPARTED, C: DEPARTED}).has_quorum  # departed do not count
    assert not quorum({A: ALIVE, B: ALIVE, C: CONFIRMED, D: CONFIRMED, E: SUSPECT}).has_quorum
    assert str(quorum({A: ALIVE, B: CONFIRMED})) == "1 of 2 members alive"


def test_reachable_quorum_counts_suspects_so_a_short_suspicion_stops_nothing() -> None:
    members = {A: ALIVE, B: SUSPECT, C: SUSPECT}
    assert not quorum(members).has_quorum
    assert reachable_quorum(members).has_quorum
    assert not reachable_quorum({A: ALIVE, B: SUSPECT, C: CONFIRMED, D: CONFIRMED}).has_quorum


# --- single steps ---------------------------------------------------------------------------------


def test_a_member_not_yet_in_its_group_waits() -> None:
    d = decide(view(A, b=ALIVE), None, suitability=1)
    assert d.publish is None and d.why == "wait_not_a_member"


def test_first_member_starts_term_zero_voting_for_itself() -> None:
    d = decide(view(A, a=ALIVE, b=ALIVE, c=ALIVE), None, suitability=7)
    assert d.publish == ElectionRumor(SG, A, 0, 7, R, (A,))
    assert d.why == "start"


def test_without_quorum_the_candidacy_says_no_quorum() -> None:
    d = decide(view(A, a=ALIVE, b=CONFIRMED, c=CONFIRMED), None, suitability=0)
    assert d.publish is not None and d.publish.status is NQ


def test_a_member_votes_by_standing_at_the_stored_term() -> None:
    stored = rumor(C, 3, R)
    d = decide(view(A, a=ALIVE, b=ALIVE, c=ALIVE), stored, suitability=1)
    assert d.why == "vote" and d.publish == ElectionRumor(SG, A, 3, 1, R, (A,))
    merged = merge_election(stored, d.publish)
    assert merged.member_id == A and set(merged.votes) == {A, C}  # more suitable: A takes C's vote


def test_candidate_finishes_when_every_alive_member_voted() -> None:
    v = view(C, a=ALIVE, b=ALIVE, c=ALIVE, d=CONFIRMED)
    assert decide(v, rumor(C, 1, R, (B, C)), suitability=0).why == "wait_votes"
    d = decide(v, rumor(C, 1, R, (A, B, C)), suitability=0)
    assert d.why == "finish" and d.publish == rumor(C, 1, F, (A, B, C))


def test_only_the_candidate_finishes() -> None:
    d = decide(view(A, a=ALIVE, b=ALIVE, c=ALIVE), rumor(C, 1, R, (A, B, C)), suitability=0)
    assert d.publish is None and d.why == "wait_candidate"


def test_candidate_losing_quorum_marks_its_election_no_quorum() -> None:
    v = view(C, a=CONFIRMED, b=CONFIRMED, c=ALIVE)
    d = decide(v, rumor(C, 1, R, (A, B, C)), suitability=0)
    assert d.why == "no_quorum" and d.publish == rumor(C, 1, NQ, (A, B, C))
    assert decide(v, d.publish, suitability=0).publish is None


def test_finished_election_with_live_leader_and_quorum_is_left_alone() -> None:
    d = decide(view(A, a=ALIVE, b=ALIVE, c=SUSPECT), rumor(C, 4, F, (A, B, C)), suitability=0)
    assert d.publish is None and d.why == "finished"


def test_dead_or_unknown_leader_restarts_with_the_next_term() -> None:
    for health in (CONFIRMED, DEPARTED, None):
        d = decide(view(A, a=ALIVE, b=ALIVE, c=health), rumor(C, 4, F, (A, B, C)), suitability=2)
        assert d.why == "restart_leader_gone"
        assert d.publish == ElectionRumor(SG, A, 5, 2, R, (A,))


def test_a_leader_only_known_to_the_member_table_is_not_taken_for_dead() -> None:
    v = GroupView(A, SG, {A: ALIVE, B: ALIVE}, ring={C: ALIVE})
    assert decide(v, rumor(C, 4, F, (A, B, C)), suitability=0).publish is None


def test_leader_losing_quorum_restarts_without_quorum_keeping_its_claim() -> None:
    v = view(C, a=CONFIRMED, b=CONFIRMED, c=ALIVE)
    d = decide(v, rumor(C, 4, F, (A, B, C)), suitability=0, incumbent_term=4)
    assert d.why == "restart_no_quorum"
    assert d.publish == ElectionRumor(SG, C, 5, INCUMBENT + 4, NQ, (C,))
    assert leader_of(d.publish) is None


def test_a_follower_in_a_minority_drops_the_leader_too() -> None:
    # Habitat only restarts on the leader's side; a follower cut off with the leader kept
    # showing it as leader (split brain, #2315).
    v = view(A, a=ALIVE, b=ALIVE, c=SUSPECT, d=SUSPECT, e=SUSPECT)
    d = decide(v, rumor(B, 2, F, (A, B, C, D, E)), suitability=0)
    assert d.why == "restart_no_quorum" and d.publish is not None and d.publish.status is NQ


def test_no_quorum_election_restarts_once_quorum_is_back() -> None:
    d = decide(view(A, a=ALIVE, b=ALIVE, c=ALIVE), rumor(C, 5, NQ, (C,)), suitability=0)
    assert d.why == "restart_quorum_back" and d.publish is not None
    assert (d.publish.term, d.publish.status) == (6, R)


def test_running_election_whose_candidate_died_restarts() -> None:
    d = decide(view(A, a=ALIVE, b=ALIVE, c=CONFIRMED), rumor(C, 5, R, (A, C)), suitability=0)
    assert d.why == "restart_candidate_gone" and d.publish is not None and d.publish.term == 6


def test_candidate_missing_a_voter_finishes_with_a_majority_after_the_stuck_timeout() -> None:
    # D is alive in the group but never votes (its service runs standalone, or was unloaded).
    v = view(C, a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE)
    stored = rumor(C, 1, R, (A, B, C))
    assert decide(v, stored, suitability=0, since=0.0, now=29.9, stuck_after_s=30).publish is None
    d = decide(v, stored, suitability=0, since=0.0, now=30.0, stuck_after_s=30)
    assert d.why == "finish_timeout" and d.publish is not None and d.publish.status is F
    # Without a majority of the population it does not finish, however long it waits.
    few = rumor(C, 1, R, (B, C))
    assert decide(v, few, suitability=0, since=0.0, now=1e6, stuck_after_s=30).publish is None


def test_any_member_restarts_an_election_stuck_for_twice_the_timeout_only_with_quorum() -> None:
    stored = rumor(C, 1, R, (A, C))
    v = view(A, a=ALIVE, b=ALIVE, c=ALIVE)
    assert decide(v, stored, suitability=0, since=0, now=59, stuck_after_s=30).publish is None
    d = decide(v, stored, suitability=0, since=0, now=60, stuck_after_s=30)
    assert d.why == "restart_stuck" and d.publish is not None and d.publish.term == 2
    lonely = view(A, a=ALIVE, b=CONFIRMED, c=ALIVE, d=CONFIRMED, e=CONFIRMED)
    stuck = rumor(C, 1, NQ, (A, C))
    assert decide(lonely, stuck, suitability=0, since=0, now=1e6, stuck_after_s=30).publish is None


def test_incumbent_of_a_later_term_beats_an_older_incumbent() -> None:
    old = decide(view(A, a=ALIVE, b=ALIVE, c=ALIVE), rumor(C, 9, NQ), suitability=0,
                 incumbent_term=3).publish  # fmt: skip
    new = decide(view(B, a=ALIVE, b=ALIVE, c=ALIVE), rumor(C, 9, NQ), suitability=0,
                 incumbent_term=8).publish  # fmt: skip
    assert old is not None and new is not None
    assert merge_election(old, new).member_id == B == merge_election(new, old).member_id


def test_participant_tracks_since_and_incumbency() -> None:
    p = Participant(stuck_after_s=10)
    v = view(C, a=ALIVE, b=ALIVE, c=ALIVE, d=ALIVE)
    assert p.step(v, rumor(C, 1, F, (A, B, C, D)), suitability=0, now=0).publish is None
    assert p.last_leader == (C, 1)
    lost = view(C, a=CONFIRMED, b=CONFIRMED, c=ALIVE, d=CONFIRMED)
    d = p.step(lost, rumor(C, 1, F, (A, B, C, D)), suitability=5, now=1)
    assert d.publish is not None and d.publish.suitability == INCUMBENT + 1
    stored = rumor(C, 2, R, (A, B, C))
    assert p.step(v, stored, suitability=0, now=2).publish is None
    assert p.since == (2, 2)
    assert p.step(v, stored, suitability=0, now=12).why == "finish_timeout"


# --- groups over a shared view --------------------------------------------------------------------


def run_group(
    health: dict[str, Health | None],
    suits: dict[str, int],
    rng: random.Random,
    stored: ElectionRumor | None = None,
    max_steps: int = 500,
) -> tuple[ElectionRumor | None, int]:
    """Every live member steps in a random order against one shared store (instant gossip)
    until nobody publishes; returns the final rumor and how many rumors were published."""
    members = {IDS["abcdefg".index(k)]: h for k, h in health.items()}
    live = [m for m, h in members.items() if h is Health.ALIVE]
    parts = {m: Participant() for m in live}
    published = 0
    for _ in range(max_steps):
        quiet = True
        for m in rng.sample(live, len(live)):
            d = parts[m].step(GroupView(m, SG, members), stored, suitability=suits[m], now=0)
            if d.publish is not None:
                published += 1
                quiet = False
                stored = d.publish if stored is None else merge_election(stored, d.publish)
        if quiet:
            return stored, published
    raise AssertionError(f"no fixed point after {max_steps} rounds: {stored}")


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 7),
    st.lists(st.sampled_from([ALIVE, ALIVE, SUSPECT, CONFIRMED, DEPARTED]), min_size=7, max_size=7),
    st.lists(st.integers(0, 3), min_size=7, max_size=7),
    st.integers(0, 2**32),
)
def test_a_group_reaches_one_outcome_the_most_suitable_live_member_leads_iff_quorum(
    n: int, healths: list[Health], suits: list[int], seed: int
) -> None:
    """From nothing: a leader iff quorum and at least MIN_QUORUM members count toward it."""
    health: dict[str, Health | None] = {k: healths[i] for i, k in enumerate("abcdefg"[:n])}
    health["a"] = ALIVE
    members = {IDS["abcdefg".index(k)]: h for k, h in health.items()}
    suit = {IDS[i]: suits[i] for i in range(7)}
    final, _ = run_group(health, suit, random.Random(seed))
    assert final is not None
    q = quorum(members)
    if q.has_quorum and q.population >= MIN_QUORUM:
        alive = [m for m, h in members.items() if h is ALIVE]
        best = max(alive, key=lambda m: (suit[m], m))
        assert final.status is F and final.member_id == best
    else:
        assert final.status is NQ and leader_of(final) is None


def test_kill_the_leader_then_the_survivors_elect_one_new_leader_with_a_higher_term() -> None:
    rng = random.Random(1)
    suits = dict.fromkeys(IDS, 0)
    first, _ = run_group(everyone(5), suits, rng)
    assert first is not None and first.status is F and first.member_id == E
    after, _ = run_group(everyone(5, e=CONFIRMED), suits, rng, stored=first)
    assert after is not None and after.status is F and after.member_id == D
    assert after.term > first.term


def test_minority_of_a_partition_loses_its_leader_and_the_heal_keeps_the_majoritys() -> None:
    rng = random.Random(2)
    suits = dict.fromkeys(IDS, 0)
    first, _ = run_group(everyone(5), suits, rng)
    assert first is not None and first.member_id == E
    # 2|3 with the leader E on the minority side {d, e}; each side has its own store.
    minority = {"a": CONFIRMED, "b": CONFIRMED, "c": CONFIRMED, "d": ALIVE, "e": ALIVE}
    majority = {"a": ALIVE, "b": ALIVE, "c": ALIVE, "d": CONFIRMED, "e": CONFIRMED}
    small, _ = run_group(minority, suits, rng, stored=first)
    big, _ = run_group(majority, suits, rng, stored=first)
    assert small is not None and leader_of(small) is None and small.status is NQ
    assert big is not None and leader_of(big) == C
    healed = merge_election(small, big)
    assert healed == merge_election(big, small)
    final, _ = run_group(everyone(5), suits, rng, stored=healed)
    assert final is not None and final.status is F and final.member_id == C


# --- the service side: hooks gate and rolling-update turns ----------------------------------------


def member(mid: str, health: Health = ALIVE, fp: str = "new", check: str | None = "Ok") -> Any:
    return CensusMember(
        member_id=mid,
        service="redis",
        group="default",
        org=None,
        pkg=None,
        sys={},
        cfg={},
        alive=health is ALIVE,
        suspect=health is SUSPECT,
        confirmed=health is CONFIRMED,
        departed=health is DEPARTED,
        health_check=check,
        plan_fingerprint=fp,
    )


def group(me: str, members: list[Any], **kw: Any) -> CensusGroup:
    return CensusGroup(ServiceGroup("redis", "default"), me, tuple(members), **kw)


def census_of(g: CensusGroup) -> Census:
    return Census(g.local_member_id, {str(g.service_group): g})


def test_leader_gate_says_why_hooks_wait_and_fences_without_quorum() -> None:
    tuning = ElectionTuning()
    three = [member(A), member(B), member(C)]
    g = group(A, three)
    assert leader_gate(g, census_of(g), tuning) == Gate(
        "Waiting to execute hooks; election hasn't started"
    )
    g = group(A, three, election_status=ElectionState.IN_PROGRESS)
    assert leader_gate(g, census_of(g), tuning).reason == (
        "Waiting to execute hooks; election in progress"
    )
    g = group(A, three, election_status=ElectionState.FINISHED, leader_id=C)
    assert leader_gate(g, census_of(g), tuning) == Gate(None)
    # A suspect is still reachable: no fence; two Confirmed of three: fence, saying why.
    g = group(A, [member(A), member(B, SUSPECT), member(C, SUSPECT)],
              election_status=ElectionState.FINISHED, leader_id=C)  # fmt: skip
    assert leader_gate(g, census_of(g), tuning) == Gate(None)
    g = group(A, [member(A), member(B, CONFIRMED), member(C, CONFIRMED)],
              election_status=ElectionState.NO_QUORUM)  # fmt: skip
    gate = leader_gate(g, census_of(g), tuning)
    assert gate.fence and gate.reason is not None
    assert gate.reason.startswith("No quorum: 1 of 3 members alive of redis.default")
    keep = ElectionTuning(stop_without_quorum=False)
    assert not leader_gate(g, census_of(g), keep).fence


def test_rolling_order_is_update_leader_then_ids_with_the_topology_leader_last() -> None:
    g = group(A, [member(A), member(B), member(C), member(D), member(E, CONFIRMED)],
              update_election_status=ElectionState.FINISHED, update_leader_id=C,
              leader_id=B)  # fmt: skip
    assert [m.member_id for m in rolling_order(g)] == [C, A, D, B]


def test_rolling_turn_waits_for_every_member_before_to_run_the_new_plan_healthy() -> None:
    finished = {"update_election_status": ElectionState.FINISHED, "update_leader_id": B}
    old = [member(A, fp="old"), member(B, fp="old"), member(C, fp="old")]
    assert rolling_turn(group(B, old, **finished), B, "new").go  # the update leader goes first
    turn = rolling_turn(group(A, old, **finished), A, "new")
    assert not turn.go and B[:8] in turn.reason and "runs plan old" in turn.reason
    warming = [member(A, fp="old"), member(B, check="Critical"), member(C, fp="old")]
    turn = rolling_turn(group(A, warming, **finished), A, "new")
    assert not turn.go and "not healthy yet" in turn.reason
    done = [member(A, fp="old"), member(B), member(C, fp="old")]
    assert rolling_turn(group(A, done, **finished), A, "new").go
    assert not rolling_turn(group(C, done, **finished), C, "new").go  # A is before C
    dead = [member(A, CONFIRMED, fp="old"), member(B), member(C, fp="old")]
    assert rolling_turn(group(C, dead, **finished), C, "new").go  # the dead are skipped
    running = rolling_turn(group(A, old), A, "new")
    assert not running.go and "update election" in running.reason


def test_plan_turn_per_strategy() -> None:
    g = group(A, [member(A, fp="old"), member(B, fp="old")])
    assert plan_turn(UpdateStrategy.ROLLING, g, A, "old", "old") is None
    assert plan_turn(UpdateStrategy.NONE, g, A, "old", "new") is None
    at_once = plan_turn(UpdateStrategy.AT_ONCE, g, A, "old", "new")
    assert at_once is not None and at_once.go
    rolling = plan_turn(UpdateStrategy.ROLLING, g, A, "old", "new")
    assert rolling is not None and not rolling.go


def test_a_member_leaving_the_ring_stands_for_nothing() -> None:
    # Our own record says Departed while we leave: never restart elections for ourselves.
    v = view(A, a=DEPARTED, b=ALIVE, c=ALIVE)
    for stored in (None, rumor(A, 0, NQ), rumor(B, 2, F, (A, B, C))):
        assert decide(v, stored, suitability=0).publish is None

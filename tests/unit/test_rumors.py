"""The rumor store's merges form a join semilattice (commutative, idempotent, associative), so
every member ends with the same store whatever order gossip delivers rumors in; and Habitat's
specific rules hold (higher incarnation wins, departures insert once, election precedence)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysup.butterfly.member import Member
from pysup.butterfly.messages import (
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    MemberRumor,
    Rumor,
    RumorId,
    RumorKind,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)
from pysup.butterfly.rumors import RumorStore, StoredRumor, merge_election

# A deliberately small domain so random rumors collide on identity and on rank.
IDS = ["1" * 32, "2" * 32, "3" * 32]
GROUPS = ["redis.default", "web.prod"]
small = st.integers(0, 3)
ids = st.sampled_from(IDS)
groups = st.sampled_from(GROUPS)
statuses = st.sampled_from(list(ElectionStatus))

services = st.builds(
    ServiceRumor,
    member_id=ids,
    service_group=groups,
    incarnation=small,
    pkg=st.sampled_from(["core/redis/1", "core/redis/2"]),
    initialized=st.booleans(),
    cfg=st.dictionaries(st.sampled_from("ab"), st.integers(0, 2), max_size=2),
)
configs = st.builds(ServiceConfigRumor, groups, small, st.sampled_from([b"x", b"y"]), st.booleans())
files = st.builds(
    ServiceFileRumor,
    groups,
    st.sampled_from(["a.pem", "b.pem"]),
    small,
    st.sampled_from([b"1", b"2"]),
)
departures = st.builds(DepartureRumor, ids)


def elections_for(group: st.SearchStrategy[str]) -> st.SearchStrategy[ElectionRumor]:
    return st.builds(
        ElectionRumor,
        service_group=group,
        member_id=ids,
        term=st.integers(0, 2),
        suitability=st.integers(0, 2),
        status=statuses,
        votes=st.lists(ids, max_size=3, unique=True).map(lambda v: tuple(sorted(v))),
        update=st.booleans(),
    )


elections = elections_for(groups)
stored_rumors = st.one_of(services, configs, files, departures, elections)
LAWS = settings(max_examples=300, deadline=None)


def snapshot(store: RumorStore) -> dict[RumorId, StoredRumor]:
    return {r.identity: r for r in store}


def build(rumors: Iterable[Rumor]) -> dict[RumorId, StoredRumor]:
    store = RumorStore()
    for r in rumors:
        store.merge(r)
    return snapshot(store)


def join(a: StoredRumor, b: StoredRumor) -> StoredRumor:
    """The stored result of merging b into a store holding a (same identity)."""
    store = RumorStore()
    store.merge(a)
    store.merge(b)
    (out,) = list(store)
    return out


# --- laws ---------------------------------------------------------------------------------


@LAWS
@given(st.lists(stored_rumors, max_size=12), st.randoms(use_true_random=False))
def test_final_store_is_independent_of_order(rs: list[StoredRumor], rnd: object) -> None:
    shuffled = list(rs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert build(rs) == build(shuffled)
    assert build(rs) == build(reversed(rs))


@LAWS
@given(st.lists(stored_rumors, max_size=12))
def test_merging_is_idempotent(rs: list[StoredRumor]) -> None:
    store = RumorStore()
    for r in rs:
        store.merge(r)
    before = snapshot(store)
    for r in [*rs, *reversed(rs)]:
        assert store.merge(r) is None  # nothing new the second time
    assert snapshot(store) == before


@st.composite
def same_identity_pairs(draw: st.DrawFn, n: int) -> list[StoredRumor]:
    """n rumors of one identity (one kind, one key, one id)."""
    kind = draw(st.sampled_from(["service", "config", "file", "election", "update"]))
    group = st.just(draw(groups))
    mid = st.just(draw(ids))
    if kind == "service":
        strat: st.SearchStrategy[StoredRumor] = st.builds(
            ServiceRumor, mid, group, small, st.sampled_from(["p1", "p2"]), st.booleans()
        )
    elif kind == "config":
        strat = st.builds(ServiceConfigRumor, group, small, st.sampled_from([b"x", b"y"]))
    elif kind == "file":
        strat = st.builds(
            ServiceFileRumor, group, st.just("f"), small, st.sampled_from([b"1", b"2"])
        )
    else:
        update = kind == "update"
        strat = elections_for(group).map(
            lambda e: ElectionRumor(
                e.service_group, e.member_id, e.term, e.suitability, e.status, e.votes, update
            )
        )
    return [draw(strat) for _ in range(n)]


@LAWS
@given(same_identity_pairs(2))
def test_merge_is_commutative(pair: list[StoredRumor]) -> None:
    a, b = pair
    assert join(a, b) == join(b, a)


@LAWS
@given(same_identity_pairs(3))
def test_merge_is_associative(triple: list[StoredRumor]) -> None:
    a, b, c = triple
    assert join(join(a, b), c) == join(a, join(b, c))


def test_election_merge_is_associative_when_a_candidate_is_re_ranked() -> None:
    # Found by hypothesis: the same member, once NoQuorum at suitability 0 and once Running at
    # suitability 1, must not pick up the stale NoQuorum depending on the order of merges.
    g, m1, m2 = "redis.default", "1" * 32, "2" * 32
    a = ElectionRumor(g, m1, 1, 0, ElectionStatus.NO_QUORUM, ())
    b = ElectionRumor(g, m2, 1, 0, ElectionStatus.RUNNING, ())
    c = ElectionRumor(g, m1, 1, 1, ElectionStatus.RUNNING, ())
    assert join(join(a, b), c) == join(a, join(b, c))
    assert join(a, join(b, c)).status is ElectionStatus.RUNNING


@LAWS
@given(same_identity_pairs(2))
def test_merge_reports_change_exactly_when_content_changes(pair: list[StoredRumor]) -> None:
    a, b = pair
    store = RumorStore()
    store.merge(a)
    changed = store.merge(b)
    (now,) = list(store)
    assert (changed is not None) == (now != a)
    if changed is not None:
        assert changed == now


# --- Habitat's rules ----------------------------------------------------------------------


def test_higher_incarnation_wins_for_versioned_rumors() -> None:
    for old, new in [
        (
            ServiceRumor(IDS[0], "redis.default", 1, "p"),
            ServiceRumor(IDS[0], "redis.default", 2, "q"),
        ),
        (
            ServiceConfigRumor("redis.default", 4, b"a"),
            ServiceConfigRumor("redis.default", 5, b"b"),
        ),
        (ServiceFileRumor("g.d", "f", 1, b"a"), ServiceFileRumor("g.d", "f", 2, b"b")),
    ]:
        store = RumorStore()
        assert store.merge(old) == old
        assert store.merge(new) == new
        assert store.merge(old) is None  # the older never comes back
        assert list(store) == [new]


def test_identities_keep_rumors_apart() -> None:
    store = RumorStore()
    store.merge(ServiceRumor(IDS[0], "redis.default", 1, "p"))
    store.merge(ServiceRumor(IDS[1], "redis.default", 1, "p"))  # other member, same group
    store.merge(ServiceFileRumor("redis.default", "a", 1, b""))
    store.merge(ServiceFileRumor("redis.default", "b", 1, b""))
    store.merge(ElectionRumor("redis.default", IDS[0], 1, 1, ElectionStatus.RUNNING))
    store.merge(ElectionRumor("redis.default", IDS[0], 1, 1, ElectionStatus.RUNNING, update=True))
    assert len(store) == 6
    assert set(store.by_key(RumorKind.SERVICE, "redis.default")) == {IDS[0], IDS[1]}


def test_departure_is_inserted_once() -> None:
    store = RumorStore()
    assert store.merge(DepartureRumor(IDS[0])) == DepartureRumor(IDS[0])
    assert store.merge(DepartureRumor(IDS[0])) is None
    assert store.is_departed(IDS[0]) and not store.is_departed(IDS[1])


def test_member_rumors_do_not_belong_in_the_store() -> None:
    with pytest.raises(TypeError):
        RumorStore().merge(MemberRumor(Member(IDS[0], 1, "10.0.0.1", 9638)))


def test_remove_member_services() -> None:
    store = RumorStore()
    store.merge(ServiceRumor(IDS[0], "a.default", 1, "p"))
    store.merge(ServiceRumor(IDS[0], "b.default", 1, "p"))
    store.merge(ServiceRumor(IDS[1], "a.default", 1, "p"))
    assert store.remove_member_services(IDS[0]) == 2
    assert [r.member_id for r in store.of_kind(RumorKind.SERVICE)] == [IDS[1]]  # type: ignore[union-attr]


def el(
    mid: str, term: int, suit: int, status: ElectionStatus, votes: tuple[str, ...] = ()
) -> ElectionRumor:
    return ElectionRumor("redis.default", mid, term, suit, status, votes)


R, F, NQ = ElectionStatus.RUNNING, ElectionStatus.FINISHED, ElectionStatus.NO_QUORUM


def test_election_higher_term_wins() -> None:
    old = el(IDS[2], 1, 9, F, (IDS[2],))
    new = el(IDS[0], 2, 0, R)
    assert merge_election(old, new) == new
    assert merge_election(new, old) == new


def test_election_finished_beats_running_at_same_term() -> None:
    running = el(IDS[2], 3, 9, R, (IDS[0], IDS[2]))
    done = el(IDS[0], 3, 1, F, (IDS[0],))
    assert merge_election(running, done) == done
    assert merge_election(done, running) == done


def test_election_higher_suitability_wins_and_takes_votes() -> None:
    weak = el(IDS[2], 1, 1, R, (IDS[2],))
    strong = el(IDS[0], 1, 5, R, (IDS[0],))
    merged = merge_election(weak, strong)
    assert (merged.member_id, merged.suitability) == (IDS[0], 5)
    assert set(merged.votes) == {IDS[0], IDS[2]}
    assert merge_election(strong, weak) == merged


def test_election_tie_goes_to_larger_member_id() -> None:
    small_id = el(IDS[0], 1, 5, R, (IDS[0],))
    large_id = el(IDS[1], 1, 5, R, (IDS[1],))
    merged = merge_election(small_id, large_id)
    assert merged.member_id == IDS[1]
    assert set(merged.votes) == {IDS[0], IDS[1]}
    assert merge_election(large_id, small_id) == merged


def test_election_equal_is_a_no_op() -> None:
    e = el(IDS[0], 1, 5, R, (IDS[0],))
    store = RumorStore()
    store.merge(e)
    assert store.merge(el(IDS[0], 1, 5, R, (IDS[0],))) is None

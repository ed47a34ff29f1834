"""The piggyback queue: each rumor goes out at most `limit` times, packets respect the byte
budget, a newer rumor replaces an older one with the same identity (and starts its count again),
and the least-transmitted rumors go first."""

from __future__ import annotations

from pysup.butterfly.broadcast import BroadcastQueue
from pysup.butterfly.messages import DepartureRumor, ServiceConfigRumor


def dep(i: int) -> DepartureRumor:
    return DepartureRumor(f"{i:032x}")


def test_each_rumor_is_sent_exactly_limit_times() -> None:
    q = BroadcastQueue()
    q.enqueue(dep(1), 10)
    sent = 0
    for _ in range(20):
        sent += len(q.take(budget=1000, limit=4))
    assert sent == 4
    assert len(q) == 0 and dep(1).identity not in q


def test_byte_budget_is_respected_and_counts_only_what_was_taken() -> None:
    q = BroadcastQueue()
    for i in range(10):
        q.enqueue(dep(i), 30)
    first = q.take(budget=100, limit=5)
    assert len(first) == 3  # 3 * 30 <= 100 < 4 * 30
    for r in first:
        assert q.transmits_of(r.identity) == 1
    untouched = [i for i in range(10) if dep(i) not in first]
    assert all(q.transmits_of(dep(i).identity) == 0 for i in untouched)


def test_small_rumors_fill_the_room_a_big_one_leaves() -> None:
    q = BroadcastQueue()
    q.enqueue(dep(1), 10)
    q.enqueue(dep(2), 96)
    q.enqueue(dep(3), 5)
    # Newest first: dep(3) (5 bytes), dep(2) would overflow (101), dep(1) still fits (15).
    assert q.take(budget=100, limit=5) == [dep(3), dep(1)]
    assert q.take(budget=100, limit=5) == [dep(2)]


def test_nothing_larger_than_the_budget_is_ever_taken() -> None:
    q = BroadcastQueue()
    q.enqueue(dep(1), 500)
    assert q.take(budget=100, limit=3) == []
    assert q.transmits_of(dep(1).identity) == 0


def test_newer_rumor_with_same_identity_replaces_and_resets_count() -> None:
    q = BroadcastQueue()
    old = ServiceConfigRumor("redis.default", 1, b"a")
    new = ServiceConfigRumor("redis.default", 2, b"b")
    q.enqueue(old, 10)
    q.take(budget=100, limit=4)
    q.take(budget=100, limit=4)
    assert q.transmits_of(old.identity) == 2
    q.enqueue(new, 10)
    assert len(q) == 1
    assert q.transmits_of(new.identity) == 0
    out = [q.take(budget=100, limit=4) for _ in range(5)]
    assert out[:4] == [[new]] * 4 and out[4] == []


def test_least_transmitted_first_then_newest() -> None:
    q = BroadcastQueue()
    q.enqueue(dep(1), 40)
    assert q.take(budget=50, limit=10) == [dep(1)]  # dep(1) now sent once
    q.enqueue(dep(2), 40)
    q.enqueue(dep(3), 40)
    # dep(2) and dep(3) were never sent: they go before dep(1), newest (3) first.
    assert q.take(budget=50, limit=10) == [dep(3)]
    assert q.take(budget=50, limit=10) == [dep(2)]
    # All at one transmission now: three more packets send each once more, none twice.
    again = [q.take(budget=50, limit=10)[0] for _ in range(3)]
    assert sorted(r.member_id for r in again) == [dep(i).member_id for i in (1, 2, 3)]
    assert [q.transmits_of(dep(i).identity) for i in (1, 2, 3)] == [2, 2, 2]


def test_discard() -> None:
    q = BroadcastQueue()
    q.enqueue(dep(1), 10)
    q.enqueue(dep(2), 10)
    q.take(budget=10, limit=5)
    q.discard(dep(2).identity)
    q.discard(dep(9).identity)  # unknown: no error
    assert len(q) == 1
    assert q.take(budget=100, limit=5) == [dep(1)]

"""The bounded event history: consecutive ids, eviction by count and bytes, resume cursors."""

from __future__ import annotations

import pytest

from pysup.events.history import EventHistory


def fill(h: EventHistory, n: int, size: int = 10, t0: float = 0.0) -> None:
    for i in range(n):
        h.append("e", t0 + i, b"x" * size)


def test_ids_are_consecutive_from_the_first_id() -> None:
    h = EventHistory(10, 1000, first_id=500)
    assert (h.oldest_id, h.last_id, len(h)) == (500, 499, 0)  # empty: last = oldest - 1
    ids = [h.append("e", 0.0, b"f").id for _ in range(3)]
    assert ids == [500, 501, 502]
    assert (h.oldest_id, h.last_id) == (500, 502)


def test_evicts_by_count() -> None:
    h = EventHistory(3, 1000)
    fill(h, 5)
    assert [e.id for e in h] == [3, 4, 5]
    assert h.evicted == 2


def test_evicts_by_bytes() -> None:
    h = EventHistory(100, 25)
    fill(h, 5, size=10)
    assert [e.id for e in h] == [4, 5]
    assert h.size_bytes == 20


def test_storage_stays_bounded_over_many_appends() -> None:
    """The moving start is compacted: 10,000 appends into a 10-event history keep the backing
    list short (it would hold 10,000 frames without compaction)."""
    h = EventHistory(10, 10_000)
    fill(h, 10_000)
    assert len(h) == 10
    assert len(h._events) <= 2 * 10 + 1
    assert [e.id for e in h] == list(range(9991, 10_001))


def test_lost_cursors() -> None:
    h = EventHistory(3, 1000)
    fill(h, 5)  # retains 3, 4, 5
    assert not h.lost(2)  # saw 2: gets 3, 4, 5
    assert not h.lost(5)  # up to date
    assert h.lost(1)  # 2 was evicted
    assert h.lost(6)  # an id this run never gave out


def test_after_respects_the_byte_budget_but_returns_at_least_one() -> None:
    h = EventHistory(100, 10_000)
    fill(h, 10, size=10)
    assert [e.id for e in h.after(3, 25)] == [4, 5]
    assert [e.id for e in h.after(3, 1)] == [4]
    assert h.after(10, 100) == []


def test_cursor_for_age() -> None:
    h = EventHistory(3, 1000)
    for t in (10.0, 20.0, 30.0):
        h.append("e", t, b"f")
    assert h.cursor_for_age(15.0) == (1, False)  # delivers events 2 and 3
    assert h.cursor_for_age(31.0) == (3, False)  # nothing that recent
    h.append("e", 40.0, b"f")  # evicts the event of t=10
    assert h.cursor_for_age(15.0) == (1, False)  # the evicted one was older than asked
    h.append("e", 50.0, b"f")  # evicts t=20, which a 15 s cutoff asked for
    assert h.cursor_for_age(15.0) == (2, True)


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventHistory(0, 10)

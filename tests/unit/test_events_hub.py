"""The event hub: what each client is sent, resumption, heartbeats, slow clients, bounds.

Deterministic: wall and monotonic times are plain numbers passed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from pysup.events.hub import EventHub, EventLimits, Subscription, TooManyClients
from pysup.events.model import MemberRefuted, Payload
from pysup.events.sse import ResumePoint, SseMessage, SseParser

LIMITS = EventLimits(history_events=5, history_bytes=1 << 20, heartbeat_s=15.0)


def refuted(n: int) -> MemberRefuted:
    return MemberRefuted(member_id="a" * 32, incarnation=n)


def read(sub: Subscription, mono: float = 0.0, wall: float = 1000.0) -> list[SseMessage]:
    """Every message the subscription has to send now."""
    parser = SseParser()
    out: list[SseMessage] = []
    while (chunk := sub.next_chunk(mono, wall)) is not None:
        out += parser.feed(chunk)
    return out


def names(messages: list[SseMessage]) -> list[str]:
    return [m.event for m in messages]


def test_frame_format() -> None:
    """One event is exactly `id:`, `event:` and one `data:` line of JSON, then a blank line."""
    hub = EventHub(LIMITS, first_id=7)
    event = hub.publish(refuted(3), wall=1712000000.25)
    assert event.frame == (
        b"id: 7\nevent: member.refuted\ndata: "
        b'{"id":7,"event":"member.refuted","time":1712000000.25,'
        b'"data":{"member_id":"' + b"a" * 32 + b'","incarnation":3}}\n\n'
    )


def test_a_new_client_gets_retry_hello_then_live_events_only() -> None:
    hub = EventHub(LIMITS, member_id="m" * 32)
    hub.publish(refuted(1), wall=1.0)
    sub = hub.open(ResumePoint(), wall=2.0, mono=0.0)
    parser = SseParser()
    first = parser.feed(sub.next_chunk(0.0, 2.0) or b"")
    assert parser.retry_ms == LIMITS.retry_ms
    assert names(first) == ["stream.hello"]
    hello = first[0].json()["data"]
    assert hello == {
        "member_id": "m" * 32,
        "server_time": 2.0,
        "last_id": 1,
        "oldest_id": 1,
        "heartbeat_s": 15.0,
    }
    assert first[0].id is None  # control events do not move the client's Last-Event-ID
    assert sub.next_chunk(0.0, 2.0) is None  # the event before it connected is not replayed
    hub.publish(refuted(2), wall=3.0)
    live = read(sub)
    assert [(m.id, m.json()["data"]["incarnation"]) for m in live] == [("2", 2)]


def test_resume_after_an_id_replays_what_followed_it() -> None:
    hub = EventHub(LIMITS)
    for n in range(1, 5):
        hub.publish(refuted(n), wall=float(n))
    sub = hub.open(ResumePoint(after_id=2), wall=10.0, mono=0.0)
    messages = read(sub)
    assert names(messages) == ["stream.hello", "member.refuted", "member.refuted"]
    assert [m.id for m in messages[1:]] == ["3", "4"]


def test_resume_from_an_evicted_id_resets_then_replays_what_is_left() -> None:
    hub = EventHub(LIMITS)  # keeps 5 events
    for n in range(1, 9):
        hub.publish(refuted(n), wall=float(n))  # retains 4..8
    sub = hub.open(ResumePoint(after_id=2), wall=10.0, mono=0.0)
    messages = read(sub)
    assert names(messages)[:2] == ["stream.hello", "stream.reset"]
    reset = messages[1]
    assert reset.json()["data"] == {"reason": "history_exceeded", "oldest_id": 4, "last_id": 8}
    assert reset.id == "3"  # the position the replay starts after
    assert [m.id for m in messages[2:]] == ["4", "5", "6", "7", "8"]
    assert hub.stats.resets == 1


@pytest.mark.parametrize(
    "resume", [ResumePoint(after_id=99), ResumePoint(unknown_id=True)], ids=["future", "garbage"]
)
def test_an_id_this_run_never_gave_out_resets(resume: ResumePoint) -> None:
    hub = EventHub(LIMITS)
    hub.publish(refuted(1), wall=1.0)
    messages = read(hub.open(resume, wall=2.0, mono=0.0))
    assert names(messages) == ["stream.hello", "stream.reset", "member.refuted"]
    assert messages[1].json()["data"]["reason"] == "unknown_id"


def test_a_previous_runs_id_resets_because_ids_start_at_the_boot_time() -> None:
    """Run 1 gave out ids from its start time in microseconds; run 2 starts later, so a client's
    id from run 1 is below run 2's first id and cannot be mistaken for one of run 2's events."""
    run1 = EventHub(LIMITS, first_id=1_700_000_000_000_000)
    old = run1.publish(refuted(1), wall=1.0).id
    run2 = EventHub(LIMITS, first_id=1_700_000_060_000_000)
    run2.publish(refuted(2), wall=61.0)
    messages = read(run2.open(ResumePoint(after_id=old), wall=62.0, mono=0.0))
    assert messages[1].event == "stream.reset"
    assert messages[1].json()["data"]["reason"] == "history_exceeded"


def test_resume_by_age() -> None:
    hub = EventHub(LIMITS)
    for wall in (100.0, 150.0, 200.0):
        hub.publish(refuted(int(wall)), wall=wall)
    messages = read(hub.open(ResumePoint(age_s=60.0), wall=210.0, mono=0.0))
    assert [m.json()["data"]["incarnation"] for m in messages[1:]] == [150, 200]


def test_resume_by_age_beyond_the_history_resets() -> None:
    hub = EventHub(LIMITS)
    for n in range(8):
        hub.publish(refuted(n), wall=100.0 + n)  # the first three are evicted
    messages = read(hub.open(ResumePoint(age_s=60.0), wall=110.0, mono=0.0))
    assert names(messages)[:2] == ["stream.hello", "stream.reset"]
    assert len(messages) == 2 + 5


def test_heartbeat_after_idle_time() -> None:
    hub = EventHub(LIMITS)
    sub = hub.open(ResumePoint(), wall=0.0, mono=100.0)
    assert sub.next_chunk(100.0, 0.0) is not None  # retry + hello
    assert sub.deadline() == 115.0
    assert sub.next_chunk(114.9, 0.0) is None
    assert sub.next_chunk(115.0, 0.0) == b": keepalive\n\n"
    assert sub.deadline() == 130.0
    hub.publish(refuted(1), wall=0.0)
    assert sub.next_chunk(120.0, 0.0) is not None
    assert sub.deadline() == 135.0  # an event resets the idle timer


def test_a_slow_client_is_dropped_and_the_others_are_not() -> None:
    hub = EventHub(LIMITS)
    slow = hub.open(ResumePoint(), wall=0.0, mono=0.0)
    fast = hub.open(ResumePoint(), wall=0.0, mono=0.0)
    read(slow)
    read(fast)
    got: list[str | None] = []
    for n in range(1, 9):  # more than the history holds while `slow` reads nothing
        hub.publish(refuted(n), wall=float(n))
        got += [m.id for m in read(fast)]
    assert got == [str(n) for n in range(1, 9)]
    final = read(slow)
    assert names(final) == ["stream.dropped"]
    assert final[0].json()["data"] == {"reason": "slow_client", "last_id": 0}
    assert slow.finished and slow.next_chunk(0.0, 0.0) is None
    assert hub.stats.dropped == 1
    slow.close()
    slow.close()  # idempotent
    assert hub.stats.clients == 1


def test_clients_never_hold_copies_of_events() -> None:
    """200 clients that read nothing while 10,000 events are published: the history stays
    within its byte bound and no client holds anything (each is only a cursor)."""
    limits = EventLimits(history_events=100, history_bytes=64 << 10)
    hub = EventHub(limits)
    subs = [hub.open(ResumePoint(), wall=0.0, mono=0.0) for _ in range(200)]
    for sub in subs:
        sub.next_chunk(0.0, 0.0)  # retry + hello
    for n in range(10_000):
        hub.publish(refuted(n), wall=float(n))
    assert len(hub.history) == 100
    assert hub.history.size_bytes <= 64 << 10
    assert all(not sub._pending for sub in subs)
    assert all(names(read(sub)) == ["stream.dropped"] for sub in subs)


def test_replay_comes_in_chunks() -> None:
    limits = EventLimits(history_events=100, chunk_bytes=300)
    hub = EventHub(limits)
    for n in range(20):
        hub.publish(refuted(n), wall=0.0)
    sub = hub.open(ResumePoint(after_id=0), wall=0.0, mono=0.0)
    sub.next_chunk(0.0, 0.0)  # retry + hello
    sizes = []
    while (chunk := sub.next_chunk(0.0, 0.0)) is not None:
        sizes.append(len(chunk))
    assert len(sizes) > 1
    assert max(sizes) <= 300


def test_max_clients() -> None:
    hub = EventHub(EventLimits(max_clients=2))
    a = hub.open(ResumePoint(), wall=0.0, mono=0.0)
    hub.open(ResumePoint(), wall=0.0, mono=0.0)
    with pytest.raises(TooManyClients):
        hub.open(ResumePoint(), wall=0.0, mono=0.0)
    assert hub.stats.refused == 1
    a.close()
    hub.open(ResumePoint(), wall=0.0, mono=0.0)


def test_close_ends_every_stream_with_a_closing_event() -> None:
    hub = EventHub(LIMITS)
    sub = hub.open(ResumePoint(), wall=0.0, mono=0.0)
    read(sub)
    hub.close()
    assert names(read(sub)) == ["stream.closing"]
    assert sub.finished


@dataclass(frozen=True, slots=True)
class Huge(Payload):
    NAME: ClassVar[str] = "test.huge"
    blob: tuple[str, ...]


def test_an_oversize_event_is_replaced_by_a_stub_and_counted() -> None:
    hub = EventHub(EventLimits(max_event_bytes=1000))
    hub.publish(Huge(("x" * 1000,) * 5), wall=0.0)  # strings are clipped; lists are not
    messages = read(hub.open(ResumePoint(after_id=0), wall=0.0, mono=0.0))
    stub = messages[-1].json()
    assert stub["event"] == "test.huge"
    assert stub["data"]["truncated"] is True and stub["data"]["bytes"] > 5000
    assert hub.stats.oversize == 1


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        EventLimits(history_bytes=100, max_event_bytes=200)
    with pytest.raises(ValueError):
        EventLimits(heartbeat_s=0)

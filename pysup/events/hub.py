"""The event hub: publish events into the history; each client reads it through a cursor (pure).

The history is every client's queue. A client is a cursor into it (the id of the last event it
was handed), so a publish costs the same for 1 client or 200, never waits for any of them, and a
client holds no copy of an event: its backlog is bounded by the history's own bounds. A client so
slow that the event after its cursor was evicted has lost events: it gets a final
``stream.dropped`` event and its stream ends (it may reconnect with ``Last-Event-ID`` and resync).

Time comes in as arguments: `wall` (Unix seconds, stamped on events, used for ``?since=90s``) and
`mono` (a monotonic clock, for heartbeats). The asyncio adapter is ``stream.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from pysup.events.history import EventHistory, StoredEvent
from pysup.events.model import (
    Payload,
    StreamClosing,
    StreamDropped,
    StreamHello,
    StreamReset,
)
from pysup.events.sse import ResumePoint, comment, envelope, event_frame, retry_frame

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EventLimits:
    """Bounds of the event stream. Memory: the history (``history_bytes``) plus, per connected
    client, a cursor and what the HTTP layer buffers for it (at most ``chunk_bytes`` plus
    aiohttp's 64 KiB write-buffer limit)."""

    history_events: int = 2048
    """Events kept for resumption. A 5-member ring with services publishes a few events a
    minute when calm and a few hundred in a burst (a member kill: every member reports it,
    elections restart): 2,048 covers a burst with room, and minutes of calm."""
    history_bytes: int = 1 << 20
    """Bytes of encoded frames kept (1 MiB; an event is 200-400 bytes, so the event count
    usually binds first). Bounds the history's memory however large the events are."""
    max_event_bytes: int = 16 << 10
    """An event encoded larger than this (16 KiB) is replaced by a stub saying so and counted:
    the largest honest event (an election with 64 listed votes, a 1 KiB error) is under 4 KiB."""
    chunk_bytes: int = 16 << 10
    """Most bytes handed to one write (a replay is sent in chunks of this size, each awaited),
    so a resuming client cannot make one huge write."""
    max_clients: int = 256
    """Connected clients at most; one more gets 503. Each costs a socket and up to about
    80 KiB of buffers when it stops reading, so 256 bound that at about 20 MiB."""
    heartbeat_s: float = 15.0
    """A comment is sent after this many idle seconds: proxies commonly drop idle connections
    after 30-60 s, and a client that hears nothing for 2-3 heartbeats knows the stream is dead."""
    retry_ms: int = 2000
    """The reconnect delay advised to EventSource clients (``retry:``)."""
    send_buffer_bytes: int = 64 << 10
    """The kernel send buffer of each event connection (``SO_SNDBUF``; Linux doubles it). Left
    alone, Linux autotunes it up to ``tcp_wmem``'s 4 MiB: 256 clients that stop reading would pin
    1 GiB of kernel memory that no RSS shows, and a slow client would never look slow. 64 KiB
    carries a burst of a few hundred events to a reader that keeps up."""
    write_timeout_s: float = 30.0
    """A client that accepts no bytes for this long is disconnected: its socket buffers are
    full, it is gone or stalled; two heartbeats' worth of patience."""

    def __post_init__(self) -> None:
        if self.max_event_bytes > self.history_bytes:
            raise ValueError("max_event_bytes must fit in history_bytes")
        if (
            min(
                self.history_events,
                self.max_clients,
                self.chunk_bytes,
                self.retry_ms,
                self.send_buffer_bytes,
            )
            < 1
        ):
            raise ValueError("event limits must be positive")
        if self.heartbeat_s <= 0 or self.write_timeout_s <= 0:
            raise ValueError("event timeouts must be positive")


@dataclass
class HubStats:
    """Counters for metrics (the wiring exports them)."""

    published: int = 0
    oversize: int = 0
    """Events replaced by a stub because they exceeded ``max_event_bytes``."""
    resets: int = 0
    """Clients told to resync (resume point no longer in the history)."""
    dropped: int = 0
    """Slow clients dropped."""
    refused: int = 0
    """Connections refused over ``max_clients``."""
    stalled: int = 0
    """Clients disconnected because they accepted no bytes for ``write_timeout_s``."""
    clients: int = 0
    """Clients connected now."""


@dataclass
class Throttle:
    """At most one log line per `interval_s` for one kind of event; counts what it held back."""

    interval_s: float = 10.0
    _last: float | None = None
    suppressed: int = 0

    def allow(self, now: float) -> bool:
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        return True

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


class TooManyClients(Exception):
    """``max_clients`` are connected."""


@dataclass
class EventHub:
    """Publishes events and serves them to subscriptions."""

    limits: EventLimits = field(default_factory=EventLimits)
    first_id: int = 1
    """Id of the first event. The daemon passes its start time in microseconds, so the ids of a
    restarted supervisor are above any id of its previous run and an old ``Last-Event-ID`` is
    recognised as unknown (a reset) instead of silently naming a different event."""
    member_id: str | None = None
    stats: HubStats = field(default_factory=HubStats)

    def __post_init__(self) -> None:
        self.history = EventHistory(
            self.limits.history_events, self.limits.history_bytes, self.first_id
        )
        self.closed = False
        self._throttles = {"oversize": Throttle(), "dropped": Throttle(), "stalled": Throttle()}

    def publish(self, payload: Payload, wall: float) -> StoredEvent:
        """Add an event to the history (every subscription will read it)."""
        name, event_id = payload.NAME, self.history.next_id
        line = envelope(event_id, name, wall, payload.data())
        if len(line) > self.limits.max_event_bytes:
            self.stats.oversize += 1
            self._notice("oversize", wall, "events.oversize", name=name, bytes=len(line))
            line = envelope(event_id, name, wall, {"truncated": True, "bytes": len(line)})
        self.stats.published += 1
        frame = event_frame(name, line, event_id)
        return self.history.append(name, wall, frame)

    def open(self, resume: ResumePoint, wall: float, mono: float) -> Subscription:
        """A new client's subscription, positioned at its resume point."""
        if self.stats.clients >= self.limits.max_clients:
            self.stats.refused += 1
            raise TooManyClients(f"{self.stats.clients} event clients are connected")
        h = self.history
        hello = StreamHello(
            self.member_id, round(wall, 3), h.last_id, h.oldest_id, self.limits.heartbeat_s
        )
        frames = [retry_frame(self.limits.retry_ms), _control(hello, wall)]
        cursor, reset = self._position(resume, wall)
        if reset is not None:
            self.stats.resets += 1
            cursor = h.oldest_id - 1
            frames.append(_control(StreamReset(reset, h.oldest_id, h.last_id), wall, cursor))
        self.stats.clients += 1
        return Subscription(self, cursor, frames, mono)

    def _position(self, resume: ResumePoint, wall: float) -> tuple[int, str | None]:
        """(cursor, reset reason or None) for a resume point."""
        h = self.history
        if resume.unknown_id:
            return h.last_id, "unknown_id"
        if resume.after_id is not None:
            if resume.after_id > h.last_id:
                return h.last_id, "unknown_id"
            if h.lost(resume.after_id):
                return h.last_id, "history_exceeded"
            return resume.after_id, None
        if resume.age_s is not None:
            cursor, lost = h.cursor_for_age(wall - resume.age_s)
            return cursor, "history_exceeded" if lost else None
        return h.last_id, None

    def close(self) -> None:
        """Shutting down: every subscription sends ``stream.closing`` and ends."""
        self.closed = True

    def _release(self) -> None:
        self.stats.clients -= 1

    def _dropped(self, wall: float) -> None:
        self.stats.dropped += 1
        self._notice("dropped", wall, "events.client_dropped", reason="slow_client")

    def stalled(self, wall: float) -> None:
        """The HTTP layer disconnected a client that stopped reading."""
        self.stats.stalled += 1
        timeout = self.limits.write_timeout_s
        self._notice("stalled", wall, "events.client_stalled", write_timeout_s=timeout)

    def _notice(self, kind: str, now: float, log_event: str, **fields: object) -> None:
        throttle = self._throttles[kind]
        if throttle.allow(now):
            log.warning(log_event, suppressed=throttle.take_suppressed(), **fields)


class Subscription:
    """One client's view of the hub: hand it chunks with ``next_chunk`` until ``finished``."""

    def __init__(self, hub: EventHub, cursor: int, frames: list[bytes], mono: float) -> None:
        self._hub = hub
        self.cursor = cursor
        """Id of the last event handed out."""
        self._pending = frames
        self._last_sent = mono
        self.finished = False
        self._released = False

    def next_chunk(self, mono: float, wall: float) -> bytes | None:
        """The next bytes to send, or None: nothing now (wait until ``deadline`` or a publish)."""
        if self._pending:
            out = b"".join(self._pending)
            self._pending.clear()
            return self._sent(out, mono)
        if self.finished:
            return None
        hub, h = self._hub, self._hub.history
        if hub.closed:
            return self._finish(_control(StreamClosing("shutdown"), wall), mono)
        if h.lost(self.cursor):
            hub._dropped(wall)
            return self._finish(_control(StreamDropped("slow_client", self.cursor), wall), mono)
        events = h.after(self.cursor, hub.limits.chunk_bytes)
        if events:
            self.cursor = events[-1].id
            return self._sent(b"".join(e.frame for e in events), mono)
        if mono - self._last_sent >= hub.limits.heartbeat_s:
            return self._sent(comment("keepalive"), mono)
        return None

    def deadline(self) -> float:
        """When a heartbeat is due if nothing is published (monotonic clock)."""
        return self._last_sent + self._hub.limits.heartbeat_s

    def close(self) -> None:
        """The client is gone (or the stream ended): free its slot. Idempotent."""
        if not self._released:
            self._released = True
            self.finished = True
            self._hub._release()

    def _sent(self, chunk: bytes, mono: float) -> bytes:
        self._last_sent = mono
        return chunk

    def _finish(self, frame: bytes, mono: float) -> bytes:
        self.finished = True
        return self._sent(frame, mono)


def _control(payload: Payload, wall: float, event_id: int | None = None) -> bytes:
    """A stream-control frame: not in the history; only a reset carries an id (the position
    the client resumes from)."""
    return event_frame(
        payload.NAME, envelope(event_id, payload.NAME, wall, payload.data()), event_id
    )

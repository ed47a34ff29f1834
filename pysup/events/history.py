"""The bounded history of published events, by count and by bytes (pure).

Ids are consecutive integers, so the history is a list with a moving start: an id maps to its
index by subtraction, and appending or evicting costs O(1) (amortized: the list is compacted when
half of it is evicted). Each event is kept as its encoded SSE frame, encoded once for every client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    name: str
    time: float
    """Wall clock (Unix seconds) when it was published."""
    frame: bytes
    """The complete SSE frame (``id:``, ``event:``, ``data:``)."""


class EventHistory:
    """The newest events, at most `max_events` of them and `max_bytes` of frames."""

    def __init__(self, max_events: int, max_bytes: int, first_id: int = 1) -> None:
        if max_events < 1 or max_bytes < 1 or first_id < 1:
            raise ValueError("history bounds and the first id must be positive")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: list[StoredEvent] = []
        self._start = 0
        """Index in `_events` of the oldest retained event."""
        self._next_id = first_id
        self._bytes = 0
        self.evicted = 0
        """Events evicted so far."""
        self._evicted_time: float | None = None
        """Publication time of the newest evicted event (for resume by age)."""

    def __len__(self) -> int:
        return len(self._events) - self._start

    def __iter__(self) -> Iterator[StoredEvent]:
        return iter(self._events[self._start :])

    @property
    def size_bytes(self) -> int:
        """Bytes of the retained frames."""
        return self._bytes

    @property
    def last_id(self) -> int:
        """Id of the newest event; ``oldest_id - 1`` when the history is empty."""
        return self._next_id - 1

    @property
    def oldest_id(self) -> int:
        """Id of the oldest retained event; ``last_id + 1`` when the history is empty."""
        return self._next_id - len(self)

    @property
    def next_id(self) -> int:
        """The id the next appended event gets."""
        return self._next_id

    def append(self, name: str, time: float, frame: bytes) -> StoredEvent:
        """Add the next event, encoded as `frame` (which carries ``next_id``)."""
        event = StoredEvent(self._next_id, name, time, frame)
        self._next_id += 1
        self._events.append(event)
        self._bytes += len(event.frame)
        while len(self) > self.max_events or (self._bytes > self.max_bytes and len(self) > 1):
            self._evict()
        return event

    def _evict(self) -> None:
        old = self._events[self._start]
        self._start += 1
        self._bytes -= len(old.frame)
        self.evicted += 1
        self._evicted_time = old.time
        if self._start > len(self._events) // 2:
            del self._events[: self._start]
            self._start = 0

    def lost(self, cursor: int) -> bool:
        """Would a client that has seen every event up to `cursor` miss events? True when an
        event after `cursor` was evicted, or `cursor` is not an id of this history's run."""
        return cursor < self.oldest_id - 1 or cursor > self.last_id

    def after(self, cursor: int, max_bytes: int) -> list[StoredEvent]:
        """The retained events after `cursor`, at most `max_bytes` of frames (at least one event
        when there is one). `cursor` must not be ``lost``."""
        start = self._start + max(0, cursor + 1 - self.oldest_id)
        out: list[StoredEvent] = []
        size = 0
        for i in range(start, len(self._events)):
            event = self._events[i]
            size += len(event.frame)
            if out and size > max_bytes:
                break
            out.append(event)
        return out

    def cursor_for_age(self, cutoff: float) -> tuple[int, bool]:
        """The cursor that delivers the events published at or after `cutoff` (wall clock), and
        whether some such events were already evicted."""
        cursor = self.last_id
        for i in range(len(self._events) - 1, self._start - 1, -1):
            event = self._events[i]
            if event.time < cutoff:
                break
            cursor = event.id - 1
        lost = self._evicted_time is not None and self._evicted_time >= cutoff
        return cursor, lost

"""The SWIM core's timers: one-shot deadlines named by (kind, key), on one heap (pure).

Scheduling a name again replaces its deadline and cancelling forgets it; both are O(1) because
a heap entry carries a token and stale entries are skipped when they reach the top, instead of
being searched for and removed. The shell asks `next_deadline()` when to call the core again.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str, str]] = []
        self._tokens: dict[tuple[str, str], int] = {}
        self._counter = 0

    def schedule(self, kind: str, key: str, when: float) -> None:
        """Fire (kind, key) at `when`, replacing its earlier deadline if it had one."""
        self._counter += 1
        self._tokens[(kind, key)] = self._counter
        heapq.heappush(self._heap, (when, self._counter, kind, key))

    def cancel(self, kind: str, key: str) -> None:
        self._tokens.pop((kind, key), None)

    def pending(self, kind: str, key: str) -> bool:
        return (kind, key) in self._tokens

    def next_deadline(self) -> float:
        while self._heap:
            when, counter, kind, key = self._heap[0]
            if self._tokens.get((kind, key)) == counter:
                return when
            heapq.heappop(self._heap)
        return float("inf")

    def due(self, now: float) -> Iterator[tuple[str, str]]:
        """The timers due at `now`, earliest first, each forgotten as it is yielded. Lazy: one
        scheduled while the caller handles another, and due by `now`, is yielded too."""
        while self._heap and self._heap[0][0] <= now:
            _when, counter, kind, key = heapq.heappop(self._heap)
            if self._tokens.get((kind, key)) != counter:
                continue
            del self._tokens[(kind, key)]
            yield kind, key

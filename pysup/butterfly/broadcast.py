"""The retransmit-limited piggyback queue (pure).

Each rumor is handed out at most `limit` times (the caller passes
`RetransmitMult * ceil(log10(N+1))`), least-transmitted first, as memberlist does; among equals,
the one that reached that count most recently goes first (so a fresh rumor beats older ones).
A rumor with the same identity as a queued one replaces it (and starts its count again), so the
queue never carries two versions of one fact.
"""

from __future__ import annotations

from dataclasses import dataclass

from pysup.butterfly.messages import Rumor, RumorId


@dataclass(slots=True)
class _Item:
    rumor: Rumor
    size: int
    transmits: int
    identity: RumorId  # cached: `rumor.identity` builds a tuple per call, and take() is hot


class BroadcastQueue:
    def __init__(self) -> None:
        self._items: dict[RumorId, _Item] = {}
        # transmits -> identity -> item; dicts keep insertion order, so reversed() is newest first
        self._buckets: dict[int, dict[RumorId, _Item]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, identity: RumorId) -> bool:
        return identity in self._items

    def enqueue(self, rumor: Rumor, size: int) -> None:
        identity = rumor.identity
        old = self._items.pop(identity, None)
        if old is not None:
            del self._buckets[old.transmits][identity]
        item = _Item(rumor, size, 0, identity)
        self._items[identity] = item
        self._buckets.setdefault(0, {})[identity] = item

    def discard(self, identity: RumorId) -> None:
        item = self._items.pop(identity, None)
        if item is not None:
            del self._buckets[item.transmits][identity]

    def take(self, budget: int, limit: int) -> list[Rumor]:
        """Rumors that fit in `budget` bytes; each taken one counts a transmission and is dropped
        once it reaches `limit` transmissions."""
        taken: list[_Item] = []
        used = 0
        misses = 0  # stop scanning once several items in a row did not fit: the packet is full
        for transmits in sorted(self._buckets):
            for item in reversed(self._buckets[transmits].values()):
                if used + item.size <= budget:
                    taken.append(item)
                    used += item.size
                    misses = 0
                else:
                    misses += 1
                    if misses >= 8:
                        break
            if misses >= 8:
                break
        for item in taken:
            identity = item.identity
            del self._buckets[item.transmits][identity]
            item.transmits += 1
            if item.transmits >= limit:
                del self._items[identity]
            else:
                self._buckets.setdefault(item.transmits, {})[identity] = item
        for transmits in [t for t, b in self._buckets.items() if not b]:
            del self._buckets[transmits]
        return [item.rumor for item in taken]

    def transmits_of(self, identity: RumorId) -> int | None:
        item = self._items.get(identity)
        return None if item is None else item.transmits

"""Choosing whom to probe, ask and gossip to, so that invented members cannot starve real ones
(pure).

A member is *proven* once we had direct contact with it: it acked one of our probes, or reached
us over TCP (whose handshake proves its address). Members we only heard of through others are
unproven; a real newcomer is proven within a few probe rounds, an invented one never is. Probes
go round-robin (each round shuffled, as in SWIM) over the proven members, and every
`unproven_every`-th probe over the unproven ones, so a flood of invented members takes at most
that share of the probes (before, 2,000 of them left a killed member unsuspected for 90 s).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator


class IndexedSet:
    """A set with O(1) add, discard and uniform random choice (a list and each item's position)."""

    __slots__ = ("_items", "_pos")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._pos: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __contains__(self, item: str) -> bool:
        return item in self._pos

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def add(self, item: str) -> None:
        if item not in self._pos:
            self._pos[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: str) -> None:
        pos = self._pos.pop(item, None)
        if pos is None:
            return
        last = self._items.pop()
        if last != item:
            self._items[pos] = last
            self._pos[last] = pos

    def choice(self, rng: random.Random) -> str:
        return self._items[rng.randrange(len(self._items))]

    def sample(self, rng: random.Random, k: int) -> list[str]:
        if len(self._items) <= k:
            return list(self._items)
        return rng.sample(self._items, k)


class _Round:
    __slots__ = ("exhausted", "idx", "order")

    def __init__(self) -> None:
        self.order: list[str] = []
        self.idx = 0
        self.exhausted = False  # rebuilt empty: no candidate until the table changes


class ProbeRounds:
    """The probe order: one shuffled round-robin per kind (proven, unproven)."""

    def __init__(self, unproven_every: int) -> None:
        self.unproven_every = unproven_every
        self._rounds = {True: _Round(), False: _Round()}
        self._slot = 0

    def insert(self, member_id: str, proven: bool, rng: random.Random) -> None:
        """A new member goes to a random place in its round (memberlist does this too)."""
        r = self._rounds[proven]
        r.order.insert(rng.randint(r.idx, len(r.order)), member_id)
        r.exhausted = False

    def changed(self) -> None:
        """The table changed (a member became eligible or proven): rounds found empty may have
        candidates now."""
        for r in self._rounds.values():
            r.exhausted = False

    def next(
        self,
        candidates: Callable[[bool], Iterable[str]],
        accept: Callable[[str, bool], bool],
        rng: random.Random,
    ) -> str | None:
        """The next member to probe. `candidates(proven)` lists the eligible members of a kind
        (for a new round); `accept(id, proven)` says whether a queued id still qualifies."""
        self._slot += 1
        first = self._slot % self.unproven_every != 0
        for proven in (first, not first):
            found = self._next_of(proven, candidates, accept, rng)
            if found is not None:
                return found
        return None

    def _next_of(
        self,
        proven: bool,
        candidates: Callable[[bool], Iterable[str]],
        accept: Callable[[str, bool], bool],
        rng: random.Random,
    ) -> str | None:
        r = self._rounds[proven]
        for fresh in (False, True):
            while r.idx < len(r.order):
                member_id = r.order[r.idx]
                r.idx += 1
                if accept(member_id, proven):
                    return member_id
            if fresh or r.exhausted:
                break
            r.order = list(candidates(proven))
            rng.shuffle(r.order)
            r.idx = 0
            r.exhausted = not r.order
        return None

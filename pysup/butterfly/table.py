"""The member table (every other member we know) and the choice of whom to probe, ask and gossip
to, made so that invented members cannot starve real ones (pure).

A member is *proven* once we had direct contact with it: it acked one of our probes, or reached
us over TCP (whose handshake proves its address). Members we only heard of through others are
unproven; a real newcomer is proven within a few probe rounds, an invented one never is. Probes
go round-robin (each round shuffled, as in SWIM) over the proven members, and every
`unproven_every`-th probe over the unproven ones (those heard of first-hand, below, before the
rest), so a flood of invented members takes at most
that share of the probes (before, 2,000 of them left a killed member unsuspected for 90 s).

Gossip goes to members we have *heard* of first-hand: a message of theirs reached us, or a
push-pull over TCP introduced them. That is weaker than proven (a datagram's source can be forged, a
TCP peer can list anyone) but it is what a joining ring has at once, and members invented in
datagram rumors never have it, so fanout is not spent on them (one round in `unproven_every`
still reaches an unheard member). Uniform gossip failed the flood test; gossip to proven members
only slowed a 100-member bootstrap by 40%.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

from pysup.butterfly.member import Health, Member
from pysup.butterfly.version import next_version

_POSITIONS: list[int] = []
"""Shared int objects for IndexedSet positions: a position above 256 is otherwise a new 28-byte
int per entry per set, and a converged simulated ring of N members holds 3 N^2 of them."""


def _positions(start: int, stop: int) -> list[int]:
    if len(_POSITIONS) < stop:
        _POSITIONS.extend(range(len(_POSITIONS), max(stop, 2 * len(_POSITIONS))))
    return _POSITIONS[start:stop]


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
            n = len(self._items)
            self._pos[item] = _POSITIONS[n] if n < len(_POSITIONS) else _positions(n, n + 1)[0]
            self._items.append(item)

    def update(self, items: Iterable[str]) -> None:
        """`add` each of `items`, in bulk (C loops: a converged ring of 10,000 adds 10^8)."""
        new = [i for i in dict.fromkeys(items) if i not in self._pos]
        start = len(self._items)
        self._pos.update(zip(new, _positions(start, start + len(new)), strict=True))
        self._items.extend(new)

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


PROVEN, HEARD, UNHEARD = 0, 1, 2
"""Probe tiers: direct contact (acked our probe, or reached us over TCP); not proven but it sent
us a message from its address or a push-pull introduced it; known only from datagram rumors
(where invented members stay). A real member not yet proven, killed seconds after joining, was
one of 129 in the unproven slot behind 128 invented ones: never probed by the one other real
member, whose confirmation then never shortened the suspicion (38 s to Confirmed, not 6 s)."""


class ProbeRounds:
    """The probe order: one shuffled round-robin per tier (`PROVEN`, `HEARD`, `UNHEARD`). Every
    `unproven_every`-th probe goes to the unproven tiers, heard before unheard; sooner when the
    proven round is shorter than that (one unproven probe per pass of the proven members), so
    in a small ring a newcomer is proven, and probed, as often as its one or two peers. With
    every 4th slot, a member killed seconds after joining a 3-member ring waited behind three
    probes of the other one (each slower as Lifeguard's local health rose): suspected 9 s
    after it, and Confirmed past the test's bound, with nobody left to confirm sooner."""

    def __init__(self, unproven_every: int) -> None:
        self.unproven_every = unproven_every
        self._rounds = (_Round(), _Round(), _Round())
        self._since_unproven = 0  # probes since the last unproven slot

    def insert(self, member_id: str, tier: int, rng: random.Random) -> None:
        """A new member goes to a random place in its round (memberlist does this too)."""
        r = self._rounds[tier]
        r.order.insert(rng.randint(r.idx, len(r.order)), member_id)
        r.exhausted = False

    def insert_many(self, member_ids: list[str], tier: int, rng: random.Random) -> None:
        """`insert` each; into a round with nothing left to probe, as one shuffled round (the
        same distribution: inserting each at a uniform place makes a uniform permutation)."""
        r = self._rounds[tier]
        if r.idx >= len(r.order):
            r.order = list(member_ids)
            rng.shuffle(r.order)
            r.idx = 0
        else:
            for member_id in member_ids:
                r.order.insert(rng.randint(r.idx, len(r.order)), member_id)
        r.exhausted = not r.order

    def changed(self) -> None:
        """The table changed (a member became eligible, heard or proven): rounds found empty
        may have candidates now."""
        for r in self._rounds:
            r.exhausted = False

    def next(
        self,
        candidates: Callable[[int], Iterable[str]],
        accept: Callable[[str, int], bool],
        rng: random.Random,
    ) -> str | None:
        """The next member to probe. `candidates(tier)` lists the eligible members of a tier
        (for a new round); `accept(id, tier)` says whether a queued id still qualifies."""
        pass_len = max(1, len(self._rounds[PROVEN].order))
        unproven_slot = self._since_unproven >= min(self.unproven_every - 1, pass_len)
        self._since_unproven = 0 if unproven_slot else self._since_unproven + 1
        for tier in (HEARD, UNHEARD, PROVEN) if unproven_slot else (PROVEN, HEARD, UNHEARD):
            found = self._next_of(tier, candidates, accept, rng)
            if found is not None:
                return found
        return None

    def _next_of(
        self,
        tier: int,
        candidates: Callable[[int], Iterable[str]],
        accept: Callable[[str, int], bool],
        rng: random.Random,
    ) -> str | None:
        r = self._rounds[tier]
        for fresh in (False, True):
            while r.idx < len(r.order):
                member_id = r.order[r.idx]
                r.idx += 1
                if accept(member_id, tier):
                    return member_id
            if fresh or r.exhausted:
                break
            r.order = list(candidates(tier))
            rng.shuffle(r.order)
            r.idx = 0
            r.exhausted = not r.order
        return None


def probe_eligible(m: Member) -> bool:
    """Alive and Suspect members are probed; Confirmed ones only when they are permanent peers."""
    if m.health in (Health.ALIVE, Health.SUSPECT):
        return True
    return m.persistent and m.health == Health.CONFIRMED


class MemberTable:
    """Members by id, with the indexes the core chooses from: live (Alive or Suspect), proven,
    proven and live, Confirmed and Departed (oldest first), and the probe rounds."""

    def __init__(self, unproven_every: int) -> None:
        self.by_id: dict[str, Member] = {}
        self.live = IndexedSet()
        self.proven: set[str] = set()
        self.proven_live = IndexedSet()
        self.heard: set[str] = set()  # proven, or sent us a message from its address
        self.heard_live = IndexedSet()
        self.confirmed: dict[str, None] = {}  # Confirmed, not Departed: reconnect targets
        self.departed: dict[str, None] = {}  # Departed, oldest first: evicted first at the cap
        self.unproven_every = unproven_every
        self._rounds = ProbeRounds(unproven_every)
        self.version = next_version()
        """Changes whenever a member is added, replaced or removed (`pysup.butterfly.version`)."""

    def __len__(self) -> int:
        return len(self.by_id)

    def put(self, m: Member, stored: Member | None, rng: random.Random) -> None:
        """Record `m` (which replaces `stored`) and keep every index up to date."""
        self.by_id[m.id] = m
        self.version = next_version()
        proven = m.id in self.proven
        if stored is None:
            self._rounds.insert(m.id, self._tier(m.id), rng)
        elif probe_eligible(m) != probe_eligible(stored):
            self._rounds.changed()
        if m.health in (Health.ALIVE, Health.SUSPECT):
            self.live.add(m.id)
            if proven:
                self.proven_live.add(m.id)
            if m.id in self.heard:
                self.heard_live.add(m.id)
        else:
            self.live.discard(m.id)
            self.proven_live.discard(m.id)
            self.heard_live.discard(m.id)
        _flag(self.departed, m.id, m.health == Health.DEPARTED)
        _flag(self.confirmed, m.id, m.health == Health.CONFIRMED)

    def put_proven_alive(self, members: list[Member], rng: random.Random) -> None:
        """Members new to the table, Alive, proven: what `put` then `mark_proven` make of each
        (a converged ring's start, `Membership.add_known`), in bulk. Each `put` would insert
        the member at a random place in the unproven round (not proven yet at that moment),
        which skips it once proven, and `mark_proven` at a random place in the proven round;
        here it goes straight into the proven round, once (built now, not at the first probe,
        so a simulator can freeze it with the table: `bench/sim.py`)."""
        ids = [m.id for m in members]
        if not self.by_id.keys().isdisjoint(ids) or len(set(ids)) != len(ids):
            raise ValueError("put_proven_alive takes members new to the table, once each")
        self.by_id.update(zip(ids, members, strict=True))
        self.proven.update(ids)
        self.heard.update(ids)
        for index in (self.live, self.proven_live, self.heard_live):
            index.update(ids)
        self._rounds.insert_many(ids, PROVEN, rng)
        self._rounds.changed()
        self.version = next_version()

    def readdress(self, member_id: str, address: str) -> None:
        """The member now sends from `address` (no index depends on addresses)."""
        self.by_id[member_id] = self.by_id[member_id]._replace(address=address)
        self.version = next_version()

    def remove(self, member_id: str) -> None:
        if self.by_id.pop(member_id, None) is not None:
            self.version = next_version()
        self.live.discard(member_id)
        self.proven.discard(member_id)
        self.proven_live.discard(member_id)
        self.heard.discard(member_id)
        self.heard_live.discard(member_id)
        self.confirmed.pop(member_id, None)
        self.departed.pop(member_id, None)

    def mark_proven(self, member_id: str, rng: random.Random) -> None:
        if member_id in self.proven:
            return
        self._add_heard(member_id)
        self.proven.add(member_id)
        if member_id in self.live:
            self.proven_live.add(member_id)
        self._promote(member_id, PROVEN, rng)

    def mark_heard(self, member_id: str, rng: random.Random) -> None:
        if member_id not in self.heard:
            self._add_heard(member_id)
            self._promote(member_id, HEARD, rng)

    def _add_heard(self, member_id: str) -> None:
        self.heard.add(member_id)
        if member_id in self.live:
            self.heard_live.add(member_id)

    def _promote(self, member_id: str, tier: int, rng: random.Random) -> None:
        """A known member moved up to `tier`: its old round skips it from now on, so it joins
        the rest of `tier`'s round at a random place, as a new member would. Before, it waited
        for that round's next rebuild: a newcomer proven by a 100-member ring's first probes
        then went unprobed until those members' 99-probe rounds ran out (killed 4 s after
        joining, first suspected 2-26 s later in the simulator, Confirmed everywhere 10-35 s
        after the kill against ~10 s for an old member)."""
        if member_id in self.by_id:  # else `put` will queue it in `tier`'s round
            self._rounds.insert(member_id, tier, rng)  # also clears that round's `exhausted`

    def eviction_candidate(self) -> str | None:
        """Who makes room at the cap: the oldest Departed member, else a Confirmed one we never
        had direct contact with (an invented member, most likely), else nobody."""
        victim = next(iter(self.departed), None)
        if victim is None:
            victim = next((mid for mid in self.confirmed if mid not in self.proven), None)
        return victim

    def next_probe(self, rng: random.Random) -> str | None:
        return self._rounds.next(self._candidates, self._accept, rng)

    def _tier(self, member_id: str) -> int:
        if member_id in self.proven:
            return PROVEN
        return HEARD if member_id in self.heard else UNHEARD

    def _candidates(self, tier: int) -> list[str]:
        return [
            mid for mid, m in self.by_id.items() if self._tier(mid) == tier and probe_eligible(m)
        ]

    def _accept(self, member_id: str, tier: int) -> bool:
        m = self.by_id.get(member_id)
        return m is not None and self._tier(member_id) == tier and probe_eligible(m)

    def proxies(self, k: int, target_id: str, rng: random.Random) -> list[str]:
        """`k` members to probe `target_id` for us: proven ones (an invented proxy never nacks,
        and Lifeguard would take the missing nacks for a fault of our own links)."""
        pool = self.proven_live if self.proven_live else self.live
        return [mid for mid in pool.sample(rng, k + 1) if mid != target_id][:k]

    def gossip_targets(self, k: int, rng: random.Random) -> list[str]:
        """`k` live members we have heard from; now and then (one round in `unproven_every`),
        or when too few, members we have not, so a real newcomer hears gossip too."""
        targets = self.heard_live.sample(rng, k)
        unheard = len(self.live) - len(self.heard_live)
        if unheard and len(targets) < k:
            targets += [m for m in self.live.sample(rng, k) if m not in self.heard]
            targets = targets[:k]
        elif unheard and targets and rng.randrange(self.unproven_every) == 0:
            for _ in range(8):  # a few tries: the unheard may be a small share of the live
                mid = self.live.choice(rng)
                if mid not in self.heard:
                    targets[-1] = mid
                    break
        return targets


def _flag(index: dict[str, None], member_id: str, on: bool) -> None:
    if on:
        index.setdefault(member_id, None)
    else:
        index.pop(member_id, None)

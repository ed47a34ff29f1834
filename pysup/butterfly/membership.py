"""What the SWIM core believes about members, and every change to it (pure).

`Membership` owns the local member (and its refutations), the member table, Lifeguard
suspicions, the recently Confirmed (for gossip to the dead) and admission of unknown members.
A member record changes only here: from a sender seen on the wire (`accept_sender`), a member
rumor (`merge_member`), a departure rumor (`on_departure`), or a verdict of the core's own
(`apply_member`, after a failed probe) or of a timer (`suspicion_expired`, `confirm_expired`).
Each change is queued for gossip and reported as an effect. `SwimCore` (`core.py`) owns probing,
dissemination and the timers' schedule, and calls in here.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from pysup.butterfly.admission import AdmissionBuckets
from pysup.butterfly.broadcast import BroadcastQueue
from pysup.butterfly.codec import rumor_size
from pysup.butterfly.config import MAX_INCARNATION, GossipConfig
from pysup.butterfly.effects import Addr, Effect, MemberChanged, Rejected, SelfChanged, Send
from pysup.butterfly.member import Health, Member, next_incarnation, supersedes
from pysup.butterfly.messages import DepartureRumor, Gossip, MemberRumor, Rumor
from pysup.butterfly.rumors import RumorStore
from pysup.butterfly.suspicion import Suspicion, expected_confirmations
from pysup.butterfly.table import MemberTable
from pysup.butterfly.timers import Timers


def beyond_bound(m: Member) -> bool:
    """A record no honest member makes: beyond MAX_INCARNATION, or a claim other than Alive at
    it (which its subject could not refute)."""
    return m.incarnation > MAX_INCARNATION or (
        m.incarnation == MAX_INCARNATION and m.health != Health.ALIVE
    )


class Membership:
    def __init__(
        self,
        config: GossipConfig,
        me: Member,
        rng: random.Random,
        queue: BroadcastQueue,
        store: RumorStore,
        timers: Timers,
    ) -> None:
        self.config = config
        self.me = me
        self.departed = False
        self.table = MemberTable(config.unproven_probe_every)
        self._recent_dead: dict[str, float] = {}  # confirmed at, for gossip to the dead
        self._members = self.table.by_id  # the same dict: read here, written by the table
        self._rng = rng
        self._queue = queue
        self._store = store
        self._timers = timers
        self._admission = AdmissionBuckets(config.admit_burst, config.admit_rate_per_s)
        self._suspicions: dict[str, Suspicion] = {}

    def num_members(self) -> int:
        """Our estimate of N: live members including ourselves."""
        return len(self.table.live) + 1

    def gossipable(self) -> Iterator[Member]:
        """Members whose records others accept: all but a local verdict (Suspect, Confirmed) on
        a member at MAX_INCARNATION, which every receiver refuses, with the whole message it
        comes in. Such a member is judged by each member's own probes only."""
        top = MAX_INCARNATION  # below it no record is beyond the bound: one compare per member
        return (m for m in self._members.values() if m.incarnation < top or not beyond_bound(m))

    def recently_dead(self, now: float) -> list[str]:
        """Members Confirmed within `gossip_to_dead_s`: gossip still goes to them now and then,
        so one that was only cut off learns the verdict and refutes it."""
        for mid, at in list(self._recent_dead.items()):
            if now - at > self.config.gossip_to_dead_s:
                del self._recent_dead[mid]
        return list(self._recent_dead)

    def _gossip(self, rumor: MemberRumor) -> None:
        self._queue.enqueue(rumor, rumor_size(rumor))

    def restore(self, rumors: Iterable[Rumor], now: float) -> None:
        """The on-disk snapshot, at start: its members quietly (no broadcast), its other rumors
        into the store."""
        for r in rumors:
            if not isinstance(r, MemberRumor):
                self._store.merge(r)
                continue
            m = r.member
            if m.id == self.me.id or beyond_bound(m) or not supersedes(self._members.get(m.id), m):
                continue
            if m.id in self._members or len(self._members) < self.config.max_members:
                if m.health in (Health.ALIVE, Health.SUSPECT):
                    # Restored from disk: a fresh start must not trust old liveness.
                    m = m.with_health(Health.SUSPECT)
                self.apply_member(m, self._members.get(m.id), now, "", [], broadcast=False)

    def add_known(self, members: Iterable[Member], now: float) -> None:
        """Learn members quietly (no broadcast), as proven (`SwimCore.add_known`). New Alive
        members, all of a converged ring's start, go into the table in bulk (they need no timer)."""
        effects: list[Effect] = []
        fresh: dict[str, Member] = {}
        for m in members:
            if m.id == self.me.id:
                continue
            if m.health == Health.ALIVE and m.id not in self._members and m.id not in fresh:
                fresh[m.id] = m
                continue
            if m.id in fresh:  # a second record of a new member: the first goes in before it
                self.table.put_proven_alive(list(fresh.values()), self._rng)
                fresh.clear()
            if supersedes(self._members.get(m.id), m):
                self.apply_member(m, self._members.get(m.id), now, "", effects, broadcast=False)
                self.table.mark_proven(m.id, self._rng)
        self.table.put_proven_alive(list(fresh.values()), self._rng)

    # --- evidence from the wire ---------------------------------------------------------

    def accept_sender(
        self, sender: Member, src: Addr, now: float, effects: list[Effect], stream: bool
    ) -> bool:
        """A message from a member proves it is alive (at the address it came from); one over a
        stream also proves the address (TCP), which makes the member proven."""
        if sender.id == self.me.id:
            return False  # our own packet, or an impostor
        if self._store.is_departed(sender.id):
            # Tell it, so a departed supervisor learns it must stop.
            effects.append(Send(src, Gossip(self.me, (DepartureRumor(sender.id),))))
            return False
        if sender.health != Health.ALIVE:
            return True  # a leaving member's farewell: its rumors say what it is
        seen = Member(
            sender.id,
            sender.incarnation,
            src[0],
            sender.gossip_port,
            Health.ALIVE,
            sender.persistent,
        )
        stored = self._members.get(sender.id)
        if stored is None and not self._admit(sender.id, None if stream else src, now, effects):
            return False
        # Before it is applied, so a new member joins the right probe round.
        if stream:
            self.table.mark_proven(sender.id, self._rng)
        else:
            self.table.mark_heard(sender.id, self._rng)
        if supersedes(stored, seen):
            self.apply_member(seen, stored, now, "", effects)
        elif (
            stored is not None
            and stored.incarnation == seen.incarnation
            and stored.health == Health.SUSPECT
        ):
            # Direct evidence beats hearsay locally; the member itself refutes for the ring.
            # Not for Confirmed: a late or duplicated packet from a dead member must not
            # resurrect it; coming back takes a higher incarnation (a refutation).
            self.apply_member(seen, stored, now, "", effects, broadcast=False)
        elif (
            stored is not None
            and stored.address != src[0]
            and stored.incarnation == seen.incarnation
        ):
            self.table.readdress(sender.id, src[0])
        return True

    def merge_member(
        self,
        m: Member,
        now: float,
        by: str,
        effects: list[Effect],
        via: Addr | None = None,
        broadcast: bool = True,
    ) -> None:
        """A member record `by` a member, from `via` (a datagram source; None: a stream, or
        made here); gossiped on if it changed something, unless `broadcast` is False."""
        if m.incarnation >= MAX_INCARNATION and beyond_bound(m):
            effects.append(Rejected("incarnation", via, f"member {m.id} at {m.incarnation}"))
            return  # the codec refuses these; a core fed directly must too
        if m.id == self.me.id:
            self._about_me(m, effects)
            return
        stored = self._members.get(m.id)
        if (
            stored is not None
            and m.health == Health.SUSPECT
            and stored.health == Health.SUSPECT
            and m.incarnation == stored.incarnation
        ):
            # Checked before the equality shortcut: a repeated suspicion from another member is
            # the same record but an independent confirmation (Lifeguard).
            suspicion = self._suspicions.get(m.id)
            if suspicion is not None and suspicion.confirm(by):
                self._timers.schedule("suspect", m.id, suspicion.deadline)
                self._gossip(MemberRumor(stored, by))
            return
        if stored == m:
            return  # the common case in push-pull and gossip: nothing new
        if self._store.is_departed(m.id):
            if stored is not None:
                return
            m = m.with_health(Health.DEPARTED)
        if stored is None and not self._admit(m.id, via, now, effects):
            return
        if supersedes(stored, m):
            self.apply_member(m, stored, now, by, effects, broadcast)

    def _about_me(self, m: Member, effects: list[Effect]) -> None:
        if self.departed:
            return
        me = self.me
        if m.incarnation < me.incarnation:
            return
        if m.incarnation == me.incarnation and m.health == Health.ALIVE:
            return
        # Refute: someone thinks we are worse off (or knows a later life of ours). Saturates at
        # MAX_INCARNATION: a claim at it is an Alive one (the codec refuses the others), which
        # our record at the bound then equals.
        self.me = me._replace(incarnation=next_incarnation(m.incarnation), health=Health.ALIVE)
        self._gossip(MemberRumor(self.me))
        effects.append(SelfChanged(self.me, "refuted"))

    def on_departure(self, member_id: str, now: float, effects: list[Effect]) -> None:
        """A DepartureRumor was merged: the member is Departed, whatever the table says."""
        if member_id == self.me.id:
            self.me = self.me.with_health(Health.DEPARTED)
            self.departed = True
            effects.append(SelfChanged(self.me, "departed"))
            return
        m = self._members.get(member_id)
        if m is not None and m.health != Health.DEPARTED:
            self.apply_member(m.with_health(Health.DEPARTED), m, now, "", effects)

    def collected(self, member_id: str) -> bool:
        """A Departed member whose service rumors we garbage-collected. A member that has not
        collected them yet (its timer runs a little later) still sends them in push-pull and
        gossip; merging those would bring them back for good, as our "gc" timer has fired."""
        m = self._members.get(member_id)
        return (
            m is not None
            and m.health == Health.DEPARTED
            and not self._timers.pending("gc", member_id)
        )

    # --- admission ----------------------------------------------------------------------

    def _admit(self, member_id: str, via: Addr | None, now: float, effects: list[Effect]) -> bool:
        """May a member we do not know enter the table? Refused when its datagram source has
        introduced too many lately (`admit_burst`, `admit_rate_per_s`), or when the table is at
        `max_members` and no Departed or unproven Confirmed member can make room."""
        if via is not None and not self._admission.allow(via, now):
            effects.append(Rejected("member_rate", via, f"new member {member_id} refused"))
            return False
        if len(self._members) >= self.config.max_members and not self._evict_one():
            detail = (
                f"member table full ({self.config.max_members} members, max_members): "
                f"new member {member_id} refused"
            )
            effects.append(Rejected("member_cap", via, detail))
            return False
        return True

    def _evict_one(self) -> bool:
        """Make room at the cap (`MemberTable.eviction_candidate`). A member forgotten this way
        that is in fact alive comes back like a newcomer when it next speaks."""
        victim = self.table.eviction_candidate()
        if victim is None:
            return False
        self.table.remove(victim)
        self._recent_dead.pop(victim, None)
        for kind in ("depart", "gc"):
            self._timers.cancel(kind, victim)
        self._store.remove_member_services(victim)
        return True

    # --- changes and their timers -------------------------------------------------------

    def apply_member(
        self,
        m: Member,
        stored: Member | None,
        now: float,
        by: str,
        effects: list[Effect],
        broadcast: bool = True,
        confirmations: int = -1,
    ) -> None:
        """Make `m` the table's record (it superseded `stored`), with the timers its health
        needs; gossip it unless `broadcast` is False, and report it."""
        self.table.put(m, stored, self._rng)
        if m.health != Health.SUSPECT:
            self._suspicions.pop(m.id, None)
            self._timers.cancel("suspect", m.id)
        if m.health != Health.CONFIRMED:
            self._recent_dead.pop(m.id, None)
            self._timers.cancel("depart", m.id)
        if m.health == Health.SUSPECT:
            self._start_suspicion(m, now, by)
        elif m.health == Health.CONFIRMED:
            self._recent_dead[m.id] = now
            self._timers.schedule("depart", m.id, now + self.config.departure_timeout_s)
        elif m.health == Health.DEPARTED:
            self._timers.schedule("gc", m.id, now + self.config.departure_timeout_s)
        by = by if m.health == Health.SUSPECT else ""
        if broadcast and not beyond_bound(m):
            self._gossip(MemberRumor(m, by))
        previous = None if stored is None else stored.health
        effects.append(MemberChanged(m, previous, by, confirmations))

    def _start_suspicion(self, m: Member, now: float, by: str) -> None:
        n = self.num_members()
        k = expected_confirmations(self.config.suspicion_mult, n)
        suspicion = Suspicion(
            m.id,
            m.incarnation,
            now,
            self.config.suspicion_min_s(n),
            self.config.suspicion_max_s(n),
            k,
            origin=by,
        )
        self._suspicions[m.id] = suspicion
        self._timers.schedule("suspect", m.id, suspicion.deadline)

    def suspicion_expired(self, member_id: str, now: float, effects: list[Effect]) -> None:
        """The "suspect" timer: a suspicion nobody refuted in time makes the member Confirmed."""
        suspicion = self._suspicions.pop(member_id, None)
        m = self._members.get(member_id)
        if suspicion is None or m is None or m.health != Health.SUSPECT:
            return
        if m.incarnation != suspicion.incarnation:
            return
        confirmed = m.with_health(Health.CONFIRMED)
        self.apply_member(confirmed, m, now, self.me.id, effects, True, suspicion.confirmations)

    def confirm_expired(self, member_id: str, now: float, effects: list[Effect]) -> None:
        """The "depart" timer: a member Confirmed for `departure_timeout_s` becomes Departed."""
        m = self._members.get(member_id)
        if m is not None and m.health == Health.CONFIRMED:
            self.apply_member(m.with_health(Health.DEPARTED), m, now, "", effects, False)

    def collect(self, member_id: str) -> None:
        """The "gc" timer: a member Departed for `departure_timeout_s` loses its service rumors."""
        m = self._members.get(member_id)
        if m is not None and m.health == Health.DEPARTED:
            self._store.remove_member_services(member_id)

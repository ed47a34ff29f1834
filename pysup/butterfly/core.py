"""SwimCore: the sans-IO SWIM state machine with Lifeguard and Habitat's rumors.

The shell feeds it decoded messages (`receive`, `receive_stream`) and the time (`tick` at
`next_deadline()`), and carries out the effects it returns (`effects.py`). It never reads a clock,
a socket or the global random module, so thousands of cores run deterministically in the
simulator (`pysup.testing.simnet`).

Failure detection: one probe per (scaled) probe interval over a shuffled round-robin list; a
missed ack after `probe_timeout_s` asks `indirect_checks` proxies (ping-req), which nack when they
get no answer either; a probe still unanswered at the end of its period makes the target Suspect.
Suspicions time out into Confirmed after Lifeguard's shrinking timeout; Confirmed members become
Departed after `departure_timeout_s`. Dissemination piggybacks the broadcast queue on every packet
and gossips to `gossip_nodes` members every gossip interval; push-pull repairs the rest.

This module is probing and dissemination; what the core believes about members, and every change
to it (suspicion, refutation, admission), is `membership.Membership`; its timers are `timers.py`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pysup.butterfly.broadcast import BroadcastQueue
from pysup.butterfly.codec import rumor_problem, rumor_size
from pysup.butterfly.config import MAX_INCARNATION, GossipConfig
from pysup.butterfly.effects import (
    Addr,
    Effect,
    ProbeFailed,
    ProbeRtt,
    Rejected,
    RumorChanged,
    SelfChanged,
    Send,
    StreamSend,
)
from pysup.butterfly.member import Health, Member, next_incarnation
from pysup.butterfly.membership import Membership, beyond_bound
from pysup.butterfly.messages import (
    Ack,
    DepartureRumor,
    Gossip,
    MemberRumor,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Rumor,
    RumorPush,
    ServiceRumor,
    StreamMessage,
)
from pysup.butterfly.rumors import RumorStore
from pysup.butterfly.suspicion import LocalHealth
from pysup.butterfly.timers import Timers
from pysup.butterfly.validate import is_ip_literal
from pysup.butterfly.version import next_version

PACKET_OVERHEAD = 160
"""Bytes reserved in a datagram for the message header, sender record and encryption."""
STREAM_BUDGET = 4 * 1024 * 1024
"""Bytes of large rumors pushed in one stream message."""
CATCHUP_EXCHANGES = 3
"""Push-pulls with random members after a join, at CATCHUP_FIRST_S, then doubling."""
CATCHUP_FIRST_S = 1.0
"""Seconds from joining to the first catch-up exchange. While the catch-up exchanges are
pending (our first ~7 s in the ring) a member that a push-pull introduces Alive is taken quietly,
not gossiped on (`_merge_state`): the ring knows it already (it introduced itself to its seed,
which gossips it), and a joiner that re-gossiped the whole ring its seed sent put N records x
`retransmits(N)` sends through every member at once in an all-at-once join (N=1000: ~16 million
records decoded). Changes (Suspect, a refutation, a departure) and members heard of by gossip
are gossiped on as always."""
LATE_TICK_FRACTION = 0.5
"""A failed probe says nothing about its target when one of our own timers fired later than this
fraction of the (local-health scaled) probe timeout while the probe was out: our host was too busy
to read the ack in time (an event loop that lags behind a burst of work), so the ack may be
waiting in our socket. Such a probe raises our local health (Lifeguard: we are the slow one)
instead of suspecting the target. Half the timeout (0.25 s on LAN at health 0) is well above a
quiet loop's timer jitter (under a millisecond) and below the delay that loses a real ack."""
_SEQ_MOD = 1 << 32


@dataclass(slots=True)
class _Probe:
    seq: int
    target_id: str
    incarnation: int
    sent_at: float
    acked: bool = False
    expected_nacks: int = 0
    nacks: int = 0
    late: float = 0.0
    """The most any of our timers was overdue when it fired while this probe was out (s)."""


@dataclass(slots=True)
class _Relay:
    asker: Addr
    asker_seq: int
    nacked: bool = False


class SwimCore:
    def __init__(
        self,
        config: GossipConfig,
        me: Member,
        rng: random.Random,
        now: float,
        rumors: Iterable[Rumor] = (),
    ) -> None:
        if not is_ip_literal(me.address):
            raise ValueError(f"a member's address must be an IP literal, not {me.address!r}")
        self.config = config
        self._rng = rng
        self._store = RumorStore()
        self._queue = BroadcastQueue()
        self._stream_queue = BroadcastQueue()
        self._timers = Timers()
        me = me._replace(incarnation=min(me.incarnation, MAX_INCARNATION))
        self._m = Membership(config, me, rng, self._queue, self._store, self._timers)
        self._versioned_me, self._me_version = me, next_version()
        self._table = self._m.table
        self._members = self._table.by_id  # the same dict: read here, written by the table
        self._live = self._table.live  # Alive or Suspect, for O(1) random choice
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._health = LocalHealth(config.awareness_max_multiplier)
        self._seq = rng.randrange(_SEQ_MOD)
        self._catchups = 0
        self._gossip_idle = False
        self._m.restore(rumors, now)
        self._queue.enqueue(MemberRumor(me), rumor_size(MemberRumor(me)))
        self._timers.schedule("probe", "", now + self._rng.uniform(0, config.probe_interval_s))
        self._timers.schedule("gossip", "", now + self._rng.uniform(0, config.gossip_interval_s))
        self._timers.schedule("pushpull", "", now + self._pushpull_delay())

    # --- queries ------------------------------------------------------------------------

    @property
    def me(self) -> Member:
        return self._m.me

    @property
    def departed(self) -> bool:
        """Left, or told by the ring that we departed: the core then sends and merges nothing."""
        return self._m.departed

    @property
    def store(self) -> RumorStore:
        return self._store

    @property
    def version(self) -> int:
        """Changes whenever the local member, the member table or the rumor store does."""
        if self.me is not self._versioned_me:
            self._versioned_me, self._me_version = self.me, next_version()
        return max(self._me_version, self._table.version, self._store.version)

    @property
    def local_health(self) -> int:
        return self._health.score

    def member(self, member_id: str) -> Member | None:
        if member_id == self.me.id:
            return self.me
        return self._members.get(member_id)

    def members(self) -> Iterator[Member]:
        """Every known member except ourselves."""
        return iter(self._members.values())

    def num_members(self) -> int:
        """Our estimate of N: live members including ourselves."""
        return self._m.num_members()

    def is_proven(self, member_id: str) -> bool:
        """Had direct contact with this member (an ack to our probe, or a stream from it)."""
        return member_id in self._table.proven

    def is_alone(self) -> bool:
        return not self._live

    def queue_depth(self) -> int:
        return len(self._queue) + len(self._stream_queue)

    def next_deadline(self) -> float:
        return self._timers.next_deadline()

    def all_rumors(self) -> list[Rumor]:
        """State for the on-disk snapshot: members (those a receiver would take) and the store."""
        out: list[Rumor] = [MemberRumor(m) for m in self._m.gossipable()]
        out.extend(self._store)
        return out

    # --- commands from the shell --------------------------------------------------------

    def join(self, addrs: Iterable[Addr], now: float) -> list[Effect]:
        """Push-pull our state to each seed; their replies bring us the ring."""
        msg = self._push_pull(join=True, reply=False)
        # Catch-up exchanges shortly after joining: members that join together (a parallel
        # start) each learn only part of the ring from their seed; a few early push-pulls with
        # random members fill in what gossip would take many rounds to bring.
        self._catchups = CATCHUP_EXCHANGES
        self._timers.schedule("catchup", "", now + CATCHUP_FIRST_S * self._rng.uniform(0.8, 1.2))
        return [StreamSend(addr, msg) for addr in addrs]

    def leave(self, now: float) -> list[Effect]:
        """Depart gracefully: a higher incarnation marked Departed, told to every live member
        at once (up to 64, then the rest by gossip), so nobody waits out a suspicion."""
        if self.departed:
            return []
        self._m.departed = True
        inc = next_incarnation(self.me.incarnation)
        self._m.me = self.me._replace(incarnation=inc, health=Health.DEPARTED)
        rumor = MemberRumor(self.me)
        effects: list[Effect] = [SelfChanged(self.me, "left")]
        if beyond_bound(self.me):
            return effects  # Departed at the bound is refused by all: our silence tells them
        self._queue.enqueue(rumor, rumor_size(rumor))
        for mid in self._live.sample(self._rng, 64):
            effects.append(Send(self._members[mid].addr, Gossip(self.me, (rumor,))))
        return effects

    def add_known(self, members: Iterable[Member], now: float) -> None:
        """Learn members quietly (no broadcast), as proven: for tests and simulations that
        start from an already converged ring."""
        self._m.add_known(members, now)

    def steady_pushpull(self, now: float) -> None:
        """The push-pull phase of a long-formed ring's member (uniform over one interval at
        today's N), not the first one drawn alone for N=1 (`SimNetwork.converge_instantly`)."""
        base = self.config.push_pull_s(self.num_members())
        self._timers.schedule("pushpull", "", now + self._rng.uniform(0, base))

    def publish(self, rumor: Rumor, now: float) -> list[Effect]:
        """A rumor made here (a service, a config apply, a departure, an election). One that
        the ring would refuse (a cfg value TOML and JSON cannot both hold, a bad name, a number
        beyond the bound) is refused here too, and reported, rather than gossiped or saved."""
        problem = rumor_problem(rumor)
        if problem is not None:
            return [Rejected("local_rumor", None, f"{problem.reason}: {problem.detail}")]
        effects: list[Effect] = []
        self._merge_rumors((rumor,), now, effects)
        if not self.departed and (self._queue or self._stream_queue):
            # Our own news goes out in a gossip round now rather than at the next tick (on
            # average half an interval later): it is the first hop of every path to the ring.
            self._gossip_idle = False
            self._gossip(now, effects)
            self._timers.schedule("gossip", "", now + self.config.gossip_interval_s)
        return effects

    def stream_failed(self, addr: Addr, now: float) -> list[Effect]:
        """A stream to `addr` could not be opened or broke; anti-entropy simply tries another
        member next time, and a join is retried by the shell while we are alone."""
        return []

    # --- input --------------------------------------------------------------------------

    def receive(self, src: Addr, msg: Message, now: float) -> list[Effect]:
        effects = self._receive(src, msg, now)
        self._wake_gossip(now)
        return effects

    def _receive(self, src: Addr, msg: Message, now: float) -> list[Effect]:
        effects: list[Effect] = []
        stream = isinstance(msg, PushPull | RumorPush)
        if self.departed or not self._m.accept_sender(msg.sender, src, now, effects, stream):
            return effects
        probe = self._probe
        if stream and probe is not None and msg.sender.id == probe.target_id:
            probe.acked = True  # it answered over a stream: alive (the TCP fallback's ack)
        # What a datagram source may introduce is rate-limited by source; a stream's is not.
        via = None if stream else src
        if isinstance(msg, Ping):
            self._on_ping(src, msg, now, effects)
        elif isinstance(msg, Ack):
            self._on_ack(src, msg, now, effects)
        elif isinstance(msg, PingReq):
            self._on_ping_req(src, msg, now, effects)
        elif isinstance(msg, Nack):
            if self._probe is not None and self._probe.seq == msg.seq:
                self._probe.nacks += 1
        elif isinstance(msg, Gossip | RumorPush):
            self._merge_rumors(msg.rumors, now, effects, via)
        else:
            self._merge_state(msg, now, effects, via)
        return effects

    def receive_stream(
        self, src: Addr, msg: StreamMessage, now: float
    ) -> tuple[StreamMessage | None, list[Effect]]:
        """A stream request; returns the reply to write back (a PushPull answers a PushPull)."""
        effects = self.receive(src, msg, now)
        if msg.sender.id == self.me.id:
            return None, effects
        if isinstance(msg, PushPull) and not msg.reply and not self.departed:
            return self._push_pull_reply(msg), effects
        return None, effects

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        if self._probe is not None:
            # How late the shell calls us is how far our host lags (`LATE_TICK_FRACTION`).
            late = now - self._timers.next_deadline()
            if late > self._probe.late:
                self._probe.late = late
        for kind, key in self._timers.due(now):
            self._fire(kind, key, now, effects)
        self._wake_gossip(now)
        return effects

    # --- timers -------------------------------------------------------------------------

    def _fire(self, kind: str, key: str, now: float, effects: list[Effect]) -> None:
        if self.departed:
            return
        if kind == "probe":
            probe = self._probe
            if probe is not None and not probe.acked:
                # An unanswered probe runs for the interval scaled by local health (more time
                # for indirect acks); an answered one does not slow the next (memberlist).
                end = probe.sent_at + self._health.scale(self.config.probe_interval_s)
                if now < end:
                    self._timers.schedule("probe", "", end)
                    return
            self._finish_probe(now, effects)
            self._start_probe(now, effects)
            self._timers.schedule("probe", "", now + self.config.probe_interval_s)
        elif kind == "probe_timeout":
            self._indirect_probe(now, effects)
        elif kind == "gossip":
            self._gossip(now, effects)
            if self._queue or self._stream_queue:
                self._timers.schedule("gossip", "", now + self.config.gossip_interval_s)
            else:
                self._gossip_idle = True
        elif kind == "pushpull":
            if self._live:
                target = self._members[self._live.choice(self._rng)]
                effects.append(self._request(target.addr))
            if self._table.confirmed:
                # Reconnect (Serf's): also push-pull with one Confirmed member. Gossip to the
                # dead stops after `gossip_to_dead_s`, so without this two sides of a partition
                # that outlasted it never speak again once the network heals. Each side learns
                # the other's verdict about itself and refutes it. A member that is really gone
                # costs one failed connection per interval until it becomes Departed.
                target = self._members[self._rng.choice(list(self._table.confirmed))]
                effects.append(self._request(target.addr))
            self._timers.schedule("pushpull", "", now + self._pushpull_delay())
        elif kind == "catchup":
            if self._live:
                target = self._members[self._live.choice(self._rng)]
                effects.append(self._request(target.addr))
            self._catchups -= 1
            if self._catchups > 0:
                delay = CATCHUP_FIRST_S * 2 ** (CATCHUP_EXCHANGES - self._catchups)
                self._timers.schedule("catchup", "", now + delay * self._rng.uniform(0.8, 1.2))
        elif kind == "suspect":
            self._m.suspicion_expired(key, now, effects)
        elif kind == "relay":
            relay = self._relays.get(int(key))
            if relay is None or relay.nacked:
                self._relays.pop(int(key), None)
            else:
                # Nack in time for the asker's period, but still relay an ack that comes
                # later, up to probe_timeout_s (as memberlist does).
                effects.append(Send(relay.asker, Nack(relay.asker_seq, self.me)))
                relay.nacked = True
                rest = self.config.probe_timeout_s - self.config.relay_nack_s()
                self._timers.schedule("relay", key, now + max(rest, 0.0))
        elif kind == "depart":
            self._m.confirm_expired(key, now, effects)
        elif kind == "gc":
            self._m.collect(key)

    def _wake_gossip(self, now: float) -> None:
        """Restart the gossip timer once something is queued again. An idle member does not
        tick every gossip interval just to find nothing to send (at 0.2 s that was most of an
        idle member's timer work); restarting at a random phase of the interval gives a new rumor
        the same wait as a free-running ticker would: uniform in [0, interval)."""
        if self._gossip_idle and (self._queue or self._stream_queue) and not self.departed:
            self._gossip_idle = False
            interval = self.config.gossip_interval_s
            self._timers.schedule("gossip", "", now + self._rng.uniform(0, interval))

    def _pushpull_delay(self) -> float:
        base = self.config.push_pull_s(self.num_members())
        return base * self._rng.uniform(0.75, 1.25)

    # --- probing ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) % _SEQ_MOD
        return self._seq

    def _start_probe(self, now: float, effects: list[Effect]) -> None:
        target_id = self._table.next_probe(self._rng)
        if target_id is None:
            self._probe = None
            return
        target = self._members[target_id]
        seq = self._next_seq()
        self._probe = _Probe(seq, target.id, target.incarnation, now)
        effects.append(Send(target.addr, Ping(seq, self.me, target.id, self._piggyback())))
        timeout = self._health.scale(self.config.probe_timeout_s)
        self._timers.schedule("probe_timeout", "", now + timeout)

    def _indirect_probe(self, now: float, effects: list[Effect]) -> None:
        probe = self._probe
        if probe is None or probe.acked:
            return
        target = self._members.get(probe.target_id)
        if target is None:
            return
        proxies = self._table.proxies(self.config.indirect_checks, target.id, self._rng)
        for mid in proxies:
            msg = PingReq(probe.seq, self.me, target, self._piggyback())
            effects.append(Send(self._members[mid].addr, msg))
        probe.expected_nacks = len(proxies)
        if self.config.tcp_fallback:
            # memberlist's TCP fallback, in parallel with the indirect probes: a stream retries
            # lost segments, so a member behind a lossy path still answers within the period.
            # A push-pull is our stream request that the member answers (see `_receive`).
            effects.append(self._request(target.addr))

    def _finish_probe(self, now: float, effects: list[Effect]) -> None:
        probe, self._probe = self._probe, None
        self._timers.cancel("probe_timeout", "")
        if probe is None:
            return
        if probe.acked:
            self._health.apply(-1)
            return
        if self._lagged(probe):
            self._health.apply(1)
            return
        # Lifeguard: missed nacks mean our own links are bad, so slow ourselves down.
        missed = probe.expected_nacks - probe.nacks if probe.expected_nacks else 1
        self._health.apply(max(missed, 0))
        target = self._members.get(probe.target_id)
        if target is None or target.incarnation != probe.incarnation:
            return
        if target.health in (Health.ALIVE, Health.SUSPECT):
            effects.append(ProbeFailed(target.id, probe.nacks, probe.expected_nacks))
        if target.health == Health.ALIVE:
            self._m.apply_member(
                target.with_health(Health.SUSPECT), target, now, self.me.id, effects
            )
        elif target.health == Health.SUSPECT and target.incarnation < MAX_INCARNATION:
            # Our own failed probe of a member already suspected by others is an independent
            # confirmation: count it and gossip it so the others' timeouts shrink too.
            self._m.merge_member(target, now, self.me.id, effects)

    def _lagged(self, probe: _Probe) -> bool:
        """Our own timers ran late while the probe was out: its failure is ours, not the
        target's (an unread ack, not a missing one), so it neither suspects nor confirms."""
        limit = LATE_TICK_FRACTION * self._health.scale(self.config.probe_timeout_s)
        return probe.late > limit

    def _on_ping(self, src: Addr, msg: Ping, now: float, effects: list[Effect]) -> None:
        if msg.target_id != self.me.id:
            return  # meant for a member that used to live at this address
        effects.append(Send(src, Ack(msg.seq, self.me, self._piggyback())))

    def _on_ack(self, src: Addr, msg: Ack, now: float, effects: list[Effect]) -> None:
        probe = self._probe
        if probe is not None and probe.seq == msg.seq:
            if not probe.acked and msg.sender.id == probe.target_id:
                effects.append(ProbeRtt(now - probe.sent_at))
                self._table.mark_proven(msg.sender.id, self._rng)
            probe.acked = True
            self._timers.cancel("probe_timeout", "")  # no indirect probe needed: spare the wakeup
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            self._timers.cancel("relay", str(msg.seq))
            effects.append(Send(relay.asker, Ack(relay.asker_seq, self.me, self._piggyback())))
        self._merge_rumors(msg.rumors, now, effects, src)

    def _on_ping_req(self, src: Addr, msg: PingReq, now: float, effects: list[Effect]) -> None:
        seq = self._next_seq()
        self._relays[seq] = _Relay(src, msg.seq)
        effects.append(Send(msg.target.addr, Ping(seq, self.me, msg.target.id, self._piggyback())))
        self._timers.schedule("relay", str(seq), now + self.config.relay_nack_s())
        self._merge_rumors(msg.rumors, now, effects, src)

    # --- dissemination ------------------------------------------------------------------

    def _piggyback(self) -> tuple[Rumor, ...]:
        budget = self.config.udp_budget_bytes - PACKET_OVERHEAD
        return tuple(self._queue.take(budget, self.config.retransmits(self.num_members())))

    def _gossip(self, now: float, effects: list[Effect]) -> None:
        k = self.config.gossip_nodes
        targets = self._table.gossip_targets(k, self._rng)
        dead = self._m.recently_dead(now)
        if dead and targets:
            pool = len(self._live) + len(dead)
            if self._rng.random() < len(dead) / pool:
                targets[-1] = self._rng.choice(dead)
        limit = self.config.retransmits(self.num_members())
        for mid in targets:
            addr = self._members[mid].addr
            if self._queue:
                rumors = self._queue.take(self.config.udp_budget_bytes - PACKET_OVERHEAD, limit)
                if rumors:
                    effects.append(Send(addr, Gossip(self.me, tuple(rumors))))
            if self._stream_queue:
                big = self._stream_queue.take(STREAM_BUDGET, limit)
                if big:
                    effects.append(StreamSend(addr, RumorPush(self.me, tuple(big))))

    def _enqueue(self, rumor: Rumor) -> None:
        size = rumor_size(rumor)
        if size > self.config.stream_rumor_bytes:
            self._stream_queue.enqueue(rumor, size)
        else:
            self._queue.enqueue(rumor, size)

    def _push_pull(self, join: bool, reply: bool) -> PushPull:
        members = (self.me, *self._m.gossipable())
        return PushPull(self.me, members, tuple(self._store), join, reply)

    def _request(self, addr: Addr) -> StreamSend:
        return StreamSend(addr, self._push_pull(join=False, reply=False))

    def _push_pull_reply(self, request: PushPull) -> PushPull:
        """Our state, less what the requester just sent us that we hold the same (merged
        already): it has those, so only records it lacks or holds differently go back. The
        reply keeps the request's format (a peer of any version reads it); in a converged ring
        it is nearly empty instead of a second copy of the whole ring."""
        theirs = {m.id: m for m in request.members}
        members = (self.me, *(m for m in self._m.gossipable() if theirs.get(m.id) != m))
        their_rumors = {r.identity: r for r in request.rumors}
        rumors = tuple(r for r in self._store if their_rumors.get(r.identity) != r)
        return PushPull(self.me, members, rumors, False, True)

    # --- merging ------------------------------------------------------------------------

    def _merge_state(
        self, msg: PushPull, now: float, effects: list[Effect], via: Addr | None
    ) -> None:
        members = self._members
        for m in msg.members:
            if members.get(m.id) is m and m.health == Health.ALIVE:
                continue  # not news (see `_merge_rumors`)
            if m.health == Health.CONFIRMED and m.id != self.me.id:
                # One member's stale verdict only raises suspicion here (memberlist does the same).
                m = m.with_health(Health.SUSPECT)
            known = m.id in members
            quiet = self._catchups > 0 and not known and m.health == Health.ALIVE
            self._m.merge_member(m, now, msg.sender.id, effects, via, broadcast=not quiet)
            if via is None and not known and m.id in members:
                # A push-pull over TCP vouches for the members it introduces enough for gossip
                # (not probing): a joiner then gossips across the ring it was given, not only to
                # its seed. Only those it introduces: members invented in datagrams that reached
                # the peer first would otherwise be vouched for by the next anti-entropy round,
                # and a small ring's fanout went to them (a killed member's Confirmed never
                # reached the one other real member: Confirmed at the 38 s maximum, not 6 s).
                self._table.mark_heard(m.id, self._rng)
        self._merge_rumors(msg.rumors, now, effects, via)

    def _merge_rumors(
        self, rumors: Iterable[Rumor], now: float, effects: list[Effect], via: Addr | None = None
    ) -> None:
        """Merge rumors that came from `via` (a datagram source; None: a stream, or made here)."""
        members = self._members
        for r in rumors:
            if type(r) is MemberRumor:
                m = r.member
                # Not news, skipped before any other check: the very record we hold (the codec
                # hands out one object per record it has seen, so most of a join burst's
                # repeats are this). Alive only: a repeated suspicion is a confirmation.
                if members.get(m.id) is not m or m.health != Health.ALIVE:
                    self._m.merge_member(m, now, r.by, effects, via)
                continue
            if isinstance(r, ServiceRumor) and self._m.collected(r.member_id):
                continue
            stored = self._store.merge(r)
            if stored is None:
                continue
            self._enqueue(stored)
            effects.append(RumorChanged(stored))
            if isinstance(stored, DepartureRumor):
                self._m.on_departure(stored.member_id, now, effects)

"""A seeded simulated network that runs many SwimCores in virtual time, deterministically.

Every datagram is really encoded and decoded by the codec (optionally encrypted), then lost,
duplicated, delayed (base latency plus an exponential tail, which also reorders) or cut by a
partition, all drawn from one seeded `random.Random`: the same seed gives the same run. Members
can crash (drop everything, no timers) and restart with the same id and a higher incarnation.
`inject` delivers bytes from any address (a hostile sender that is not a member); what the codec
refuses is counted by reason in `rejected`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from pysup.butterfly import codec
from pysup.butterfly.config import GossipConfig
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import Addr, Effect, Send, StreamSend
from pysup.butterfly.member import Member, new_member_id
from pysup.butterfly.messages import Rumor, StreamMessage


@dataclass
class NetProfile:
    loss: float = 0.0
    """Probability that one datagram is dropped."""
    duplicate: float = 0.0
    """Probability that one datagram is delivered twice."""
    latency_s: float = 0.0005
    """Fixed one-way delay."""
    jitter_s: float = 0.0005
    """Mean of the exponential extra delay (reorders packets)."""
    stream_timeout_s: float = 1.0
    """How long a stream to an unreachable member takes to fail."""
    stream_loss: bool = False
    """Streams see `loss` too, as TCP does: each packet (the handshake's two, one of data each
    way) is lost with probability `loss` and resent after a retransmission timeout that doubles
    each time (Linux: 1 s in the handshake, 0.2 s after it). Off: a stream is as fast as a
    datagram and never slowed (no random draws, so older seeded runs are unchanged)."""


@dataclass
class Stats:
    datagrams: int = 0
    datagram_bytes: int = 0
    streams: int = 0
    stream_bytes: int = 0
    dropped: int = 0


@dataclass(eq=False)
class SimNode:
    core: SwimCore
    addr: Addr
    up: bool = True
    armed: float = float("inf")
    token: int = 0
    generation: int = 0
    incarnation_floor: int = 0
    sent: Stats = field(default_factory=Stats)

    @property
    def id(self) -> str:
        return self.core.me.id


Observer = Callable[[SimNode, Effect, float], None]


class SimNetwork:
    def __init__(
        self,
        seed: int,
        config: GossipConfig,
        profile: NetProfile | None = None,
        key: codec.Cipher | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.profile = profile or NetProfile()
        self.key = key
        self.now = 0.0
        self.nodes: dict[Addr, SimNode] = {}
        self.stats = Stats()
        self.observers: list[Observer] = []
        self._events: list[tuple[float, int, int, tuple[Any, ...]]] = []
        self._seq = 0
        self._blocked: set[tuple[str, str]] = set()
        self.rejected: dict[str, int] = {}
        """Datagrams the codec refused, by reason."""

    # --- members ------------------------------------------------------------------------

    def add_member(self, persistent: bool = False, rumors: Iterable[Rumor] = ()) -> SimNode:
        i = len(self.nodes) + 1
        addr = (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 9638)
        me = Member(new_member_id(self.rng), 1, addr[0], addr[1], persistent=persistent)
        core = SwimCore(self.config, me, random.Random(self.rng.getrandbits(64)), self.now, rumors)
        node = SimNode(core, addr)
        self.nodes[addr] = node
        self._rearm(node)
        return node

    def join(self, node: SimNode, seeds: Iterable[SimNode]) -> None:
        self._handle(node, node.core.join([s.addr for s in seeds], self.now))

    def converge_instantly(self) -> None:
        """Make every live member know every other one, as if the ring had long formed. Its
        push-pulls too (`SwimCore.steady_pushpull`): each core drew its first one alone, for N=1,
        and they would all fall in that first window (at N=10,000: 10,000 exchanges of 10,000
        records within 15 s, where a formed ring spreads them over 300 s)."""
        everyone = [n.core.me for n in self.nodes.values() if n.up]
        for node in self.nodes.values():
            if node.up:
                node.core.add_known(everyone, self.now)
                node.core.steady_pushpull(self.now)
                self._rearm(node)

    def crash(self, node: SimNode) -> None:
        node.up = False
        node.generation += 1
        node.armed = float("inf")

    def restart(self, node: SimNode, seeds: Iterable[SimNode]) -> None:
        """The same member id and a higher incarnation, its rumors restored, like a supervisor
        restarted with its state dir."""
        old = node.core.me
        rumors = node.core.all_rumors()
        me = Member(
            old.id, old.incarnation + 1, old.address, old.gossip_port, persistent=old.persistent
        )
        rng = random.Random(self.rng.getrandbits(64))
        node.core = SwimCore(self.config, me, rng, self.now, rumors)
        node.up = True
        node.generation += 1
        self._rearm(node)
        self.join(node, seeds)

    def leave(self, node: SimNode) -> None:
        self._handle(node, node.core.leave(self.now))

    def publish(self, node: SimNode, rumor: Rumor) -> None:
        self._handle(node, node.core.publish(rumor, self.now))

    def inject(self, src: Addr, dst: SimNode, data: bytes, after_s: float = 0.0) -> None:
        """A datagram from `src` (anyone, member or not) to `dst`, `after_s` from now."""
        self._push(self.now + after_s, _DATAGRAM, (src, dst.addr, data))

    # --- faults -------------------------------------------------------------------------

    def partition(self, *groups: Iterable[SimNode]) -> None:
        """Cut every link between different groups (both directions)."""
        sets = [{n.addr[0] for n in g} for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self._blocked.add((x, y))
                        self._blocked.add((y, x))

    def heal(self) -> None:
        self._blocked.clear()

    def reachable(self, src: Addr, dst: Addr) -> bool:
        node = self.nodes.get(dst)
        return node is not None and node.up and (src[0], dst[0]) not in self._blocked

    # --- the event loop -----------------------------------------------------------------

    def run_until(self, when: float, stop: Callable[[], bool] | None = None) -> bool:
        """Advance virtual time to `when`; return True early if `stop()` becomes true."""
        while self._events and self._events[0][0] <= when:
            t, _, kind, payload = heapq.heappop(self._events)
            self.now = t
            self._dispatch(kind, payload)
            if stop is not None and stop():
                return True
        self.now = max(self.now, when)
        return stop() if stop is not None else False

    def run_for(self, seconds: float, stop: Callable[[], bool] | None = None) -> bool:
        return self.run_until(self.now + seconds, stop)

    def _push(self, when: float, kind: int, payload: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, kind, payload))

    def _rearm(self, node: SimNode) -> None:
        if not node.up:
            return
        deadline = node.core.next_deadline()
        if deadline < node.armed:
            node.armed = deadline
            node.token += 1
            self._push(deadline, _TICK, (node, node.token))

    def _delay(self) -> float:
        return self.profile.latency_s + self.rng.expovariate(1.0 / max(self.profile.jitter_s, 1e-9))

    def _resends(self, *rto_s: float) -> float:
        """Extra seconds a stream's packets (one retransmission timeout each) spend being resent
        (`NetProfile.stream_loss`)."""
        extra = 0.0
        if self.profile.stream_loss:
            for rto in rto_s:
                while self.rng.random() < self.profile.loss:
                    extra += rto
                    rto *= 2
        return extra

    def _dispatch(self, kind: int, p: tuple[Any, ...]) -> None:
        if kind == _TICK:
            node, token = cast(tuple[SimNode, int], p)
            if not node.up or token != node.token:
                return
            node.armed = float("inf")
            self._handle(node, node.core.tick(self.now))
        elif kind == _DATAGRAM:
            src, dst, data = cast(tuple[Addr, Addr, bytes], p)
            target = self.nodes.get(dst)
            if target is None or not target.up:
                return
            try:
                msg = codec.decode(data, self.key, codec.MAX_DATAGRAM)
            except codec.CodecError as e:
                self.stats.dropped += 1
                self.rejected[e.reason] = self.rejected.get(e.reason, 0) + 1
                return
            self._handle(target, target.core.receive(src, msg, self.now))
        elif kind == _STREAM:
            src, dst, data, generation = cast(tuple[Addr, Addr, bytes, int], p)
            self._deliver_stream(src, dst, data, generation)
        elif kind == _STREAM_REPLY:
            src, dst, data, generation = cast(tuple[Addr, Addr, bytes, int], p)
            target = self.nodes.get(dst)
            if target is None or not target.up or target.generation != generation:
                return
            self._handle(target, target.core.receive(src, codec.decode(data, self.key), self.now))
        elif kind == _STREAM_FAIL:
            src, dst, generation = cast(tuple[Addr, Addr, int], p)
            target = self.nodes.get(src)
            if target is not None and target.up and target.generation == generation:
                self._handle(target, target.core.stream_failed(dst, self.now))

    def _deliver_stream(self, src: Addr, dst: Addr, data: bytes, generation: int) -> None:
        node = self.nodes.get(dst)
        if node is None or not node.up or not self.reachable(src, dst):
            self._push(
                self.now + self.profile.stream_timeout_s, _STREAM_FAIL, (src, dst, generation)
            )
            return
        msg = codec.decode(data, self.key)
        assert isinstance(msg, StreamMessage)
        reply, effects = node.core.receive_stream(src, msg, self.now)
        self._handle(node, effects)
        if reply is not None:
            out = codec.encode(reply, self.key)
            self.stats.streams += 1
            self.stats.stream_bytes += len(out)
            node.sent.streams += 1
            node.sent.stream_bytes += len(out)
            when = self.now + self._delay() + self._resends(0.2)
            self._push(when, _STREAM_REPLY, (dst, src, out, generation))

    def _handle(self, node: SimNode, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Send):
                self._send(node, e)
            elif isinstance(e, StreamSend):
                data = codec.encode(e.msg, self.key)
                self.stats.streams += 1
                self.stats.stream_bytes += len(data)
                node.sent.streams += 1
                node.sent.stream_bytes += len(data)
                when = self.now + self._delay() + self._resends(1.0, 1.0, 0.2)
                self._push(when, _STREAM, (node.addr, e.addr, data, node.generation))
            else:
                for observe in self.observers:
                    observe(node, e, self.now)
        self._rearm(node)

    def _send(self, node: SimNode, e: Send) -> None:
        data = codec.encode(e.msg, self.key)
        self.stats.datagrams += 1
        self.stats.datagram_bytes += len(data)
        node.sent.datagrams += 1
        node.sent.datagram_bytes += len(data)
        if not self.reachable(node.addr, e.addr) or self.rng.random() < self.profile.loss:
            self.stats.dropped += 1
            return
        copies = 2 if self.rng.random() < self.profile.duplicate else 1
        for _ in range(copies):
            self._push(self.now + self._delay(), _DATAGRAM, (node.addr, e.addr, data))


_TICK, _DATAGRAM, _STREAM, _STREAM_REPLY, _STREAM_FAIL = range(5)

"""Gossip timing and sizing, as data with reasons, and the named presets.

Every field says its unit, what it trades off, and where it enters a formula. Presets mirror
memberlist's `DefaultLANConfig`/`DefaultWANConfig`/`DefaultLocalConfig`, plus `habitat` (butterfly's
own timings) so the cost of Habitat's defaults can be measured on the same core.

The bounds on what the network can make a member hold are here too (`MAX_INCARNATION`,
`MAX_DATAGRAM`, `MAX_FRAME`, `STREAM_BYTES_BUDGET`, and the `max_members`/`admit_*` fields);
the ones that only mean something next to their code stay there, each with its reason: msgpack
length limits and the frame object budget (`codec.DATAGRAM_LIMITS`, `FRAME_LIMITS`,
`FRAME_MAX_OBJECTS`, `MAX_BLOB`), value nesting and name rules (`validate.py`), sources tracked
for admission (`admission.py`). README, "Reliability: limits", lists them all with what happens
at each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final

MAX_INCARNATION: Final = 2**63 - 1
"""The largest incarnation (and election term, and config/file version) anything in the ring may
carry. Rumors beyond it are dropped and counted at decode (reason `incarnation`); our own
increments saturate at it (`member.next_incarnation`), so nothing unpackable is ever made, saved
or gossiped (an incarnation of 2^64 killed a member's receive and timer tasks, and every restart
after it).

Why 2^63 - 1: it is the largest integer that signed 64-bit fields hold, which is what TOML, most
JSON consumers and the INCARNATION file's readers can represent, and the control gateway already
accepts config/file versions up to it. No honest member reaches it: an incarnation grows by one
per restart or refutation, and a million a second would take 292,000 years.

A Suspect, Confirmed or Departed claim *at* the bound is dropped too: its subject could not
refute it (that takes the incarnation after it), so accepting one would let a single datagram
silence a member for good. A member pushed to the bound by a hostile rumor (one below it) stays
Alive there; the ring can then no longer suspect it by gossip, only each member by its own
probes (`pysup/butterfly/core.py`, `_about_me`)."""

MAX_DATAGRAM: Final = 8_972
"""Largest datagram accepted, in bytes. The largest honest one is `udp_budget_bytes` (1400 in
every preset; `GossipConfig` refuses a budget above this), and 8,972 = 9,000 (a jumbo-frame MTU)
- 20 (IPv4 header) - 8 (UDP header) is the largest budget a member on a jumbo-frame network
could use. Anything bigger is refused by its size before it is parsed: 65 KB datagrams of
msgpack at 200/s used to cost half a core."""

MAX_FRAME: Final = 32 * 1024 * 1024
"""Largest stream frame, in bytes: a full-state push-pull of a ring at `max_members` with a few
services each and its configs and files (10,000 members x (45 B record + ~2 KiB of Service
rumors) plus up to 64 KiB per config and file). A longer length prefix is refused before a byte
of the body is read."""

STREAM_BYTES_BUDGET: Final = 2 * MAX_FRAME
"""Bytes that all inbound stream frames being read or decoded may hold together (a frame holds
its announced length from its header until it is decoded). Honest frames are small (a push-pull
of a 100-member ring is ~40 KB) and few at a time, so this only bites under attack: it admits
two frames of the largest size at once, and refuses (`stream_budget`) a frame that would exceed
it. Before, each of 256 connections could buffer 32 MiB (20 stalled streams held 682 MB)."""


@dataclass(frozen=True, slots=True)
class GossipConfig:
    probe_interval_s: float = 1.0
    """Seconds between failure-detection probes of one member (SWIM protocol period). Shorter
    finds failures sooner at the cost of more packets: each member sends ~1 ping a period, so
    traffic is O(1) per member."""

    probe_timeout_s: float = 0.5
    """Seconds to wait for an ack to a direct ping before asking `indirect_checks` proxies. Should
    exceed the 99th percentile round-trip time; must be below `probe_interval_s`."""

    indirect_checks: int = 3
    """Number of proxies asked to ping a member that missed its direct ping (SWIM ping-req `k`).
    More proxies lower false positives from one lossy path at k extra packets per miss."""

    suspicion_mult: int = 4
    """Lifeguard: the minimum suspicion timeout is
    `suspicion_mult * max(1, log10(N)) * probe_interval_s`. Higher gives a suspected member more
    time to refute (fewer false positives) but slows failure detection."""

    suspicion_max_timeout_mult: int = 6
    """Lifeguard: a fresh suspicion starts at `suspicion_max_timeout_mult` times the minimum and
    shrinks logarithmically towards the minimum as independent confirmations arrive."""

    awareness_max_multiplier: int = 8
    """Lifeguard local health: a member that misses acks (likely itself slow or partitioned)
    stretches its own probe interval and timeout by up to this factor (score 0..max-1)."""

    gossip_interval_s: float = 0.2
    """Seconds between gossip rounds to `gossip_nodes` random members. Shorter spreads rumors
    faster (floor: ceil(log_(1+fanout) N) rounds) at more packets per second."""

    gossip_nodes: int = 3
    """Fanout: random members sent a gossip packet each round."""

    retransmit_mult: int = 4
    """Each rumor is sent `retransmit_mult * ceil(log10(N+1))` times, so dissemination costs
    O(N log N) messages in total. Higher tolerates more loss at more traffic."""

    push_pull_interval_s: float = 30.0
    """Seconds between full-state TCP exchanges with one random member (anti-entropy), before
    scaling: the interval grows by `push_pull_scale(N)` so total TCP load stays bounded."""

    departure_timeout_s: float = 3 * 24 * 3600.0
    """Seconds a Confirmed member is kept before it becomes Departed (Habitat: 3 days). Also
    how long departed members' rumors are kept before they are garbage-collected."""

    gossip_to_dead_s: float = 30.0
    """Seconds after a member is Confirmed that it still receives gossip, so a falsely
    confirmed member learns of it and refutes (memberlist's GossipToTheDeadTime)."""

    udp_budget_bytes: int = 1400
    """Largest datagram we send: piggybacked rumors fill the ping/ack up to this many bytes.
    1400 stays under a 1500-byte Ethernet MTU with IP/UDP headers and encryption overhead."""

    stream_rumor_bytes: int = 1024
    """A rumor whose encoding exceeds this travels over the stream (TCP) path instead of being
    piggybacked, so large config/file rumors (up to 64 KiB) don't crowd out membership."""

    join_retry_base_s: float = 1.0
    """A member that is alone retries its seeds starting at this delay (jittered backoff)."""

    join_retry_max_s: float = 30.0
    """Cap on the join retry delay."""

    max_members: int = 10_000
    """Most members the table holds (any health). A new member beyond it displaces a Departed
    one, else a Confirmed one we never had direct contact with, else it is refused (counted as
    `member_cap`, logged). Twice the largest ring the simulator benchmarks (5,000): it bounds
    what invented members can cost (memory, push-pull size) without limiting real rings."""

    admit_burst: int = 128
    """New members one datagram source (IP and port) may introduce at once: the burst of a
    token bucket refilled at `admit_rate_per_s`. A datagram's source can be forged, so what one
    source may add is bounded (2,000 invented members in 80 datagrams used to starve probing of
    real members). An honest member relays each new member it learns at most
    `retransmits(N)` times, spread over several gossip rounds; rumors refused here arrive again
    from other members, and push-pull (TCP, not limited here) brings a joiner the whole ring."""

    admit_rate_per_s: float = 32.0
    """Refill rate of each source's admission bucket (members per second)."""

    unproven_probe_every: int = 4
    """Every this-many-th probe goes to a member we have not yet had direct contact with (one
    that never acked our ping nor reached us over TCP), the others to proven members; when one
    kind has no candidate the other takes the slot. Invented members can then take at most this
    share of probes, so a killed real member is still probed about as often as without them,
    while a real newcomer is proven within a few rounds. Proxies for indirect probes are proven
    members only (an invented proxy never nacks, which Lifeguard would blame on our own links)."""

    tcp_fallback: bool = False
    """When a direct ping goes unanswered for `probe_timeout_s`, also send the member a
    push-pull over a stream, in parallel with the indirect probes; its reply within the probe
    period counts as an ack (memberlist's TCP fallback ping). TCP retransmits lost segments, so
    under datagram loss fewer live members are suspected. Cost: one stream carrying our member
    list (~45 B a member) per missed direct ack; the reply is nearly empty (it leaves out what
    we sent). Off in the memberlist-number presets so their traffic stays comparable at any N;
    on in `FAST`, measured at N=10 (`bench.frontier`)."""

    def __post_init__(self) -> None:
        if not 0 < self.udp_budget_bytes <= MAX_DATAGRAM:
            raise ValueError(f"udp_budget_bytes must be in 1..{MAX_DATAGRAM}")
        if self.max_members < 1 or self.admit_burst < 1 or self.admit_rate_per_s <= 0:
            raise ValueError("max_members, admit_burst and admit_rate_per_s must be positive")
        if self.unproven_probe_every < 2:
            raise ValueError("unproven_probe_every must be at least 2")

    def suspicion_min_s(self, n: int) -> float:
        """`SuspicionMult * max(1, log10 N) * ProbeInterval` (Lifeguard's lower bound)."""
        return self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval_s

    def relay_nack_s(self) -> float:
        """Seconds a proxy waits for the target's ack before it nacks a ping-req: 80% of the
        time the asker has left after sending it, `min(probe_timeout_s, probe_interval_s -
        probe_timeout_s)` (the asker sends ping-reqs at `probe_timeout_s` and decides at
        `probe_interval_s`; both stretch alike with its local health). A nack after the full
        `probe_timeout_s` (memberlist's timing) reached a LAN asker one network latency after
        its period had ended, every time: Lifeguard then counted each failed probe of a dead
        member as missed nacks, our own fault (+`indirect_checks` to local health), which
        slowed the probers of the next failure. 20% is the margin for latency and scheduling.
        A target's ack that comes after the nack is still relayed, up to `probe_timeout_s`."""
        return 0.8 * min(self.probe_timeout_s, self.probe_interval_s - self.probe_timeout_s)

    def suspicion_max_s(self, n: int) -> float:
        return self.suspicion_max_timeout_mult * self.suspicion_min_s(n)

    def retransmits(self, n: int) -> int:
        """`RetransmitMult * ceil(log10(N+1))`."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def push_pull_s(self, n: int) -> float:
        """Push-pull interval scaled like memberlist: doubles per doubling of N above 32."""
        if n <= 32:
            return self.push_pull_interval_s
        return self.push_pull_interval_s * (1.0 + math.ceil(math.log2(n) - math.log2(32)))

    def with_(self, **changes: object) -> GossipConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


LAN = GossipConfig()
"""LAN: memberlist's DefaultLANConfig numbers."""

WAN = GossipConfig(
    probe_interval_s=5.0,
    probe_timeout_s=3.0,
    suspicion_mult=6,
    gossip_interval_s=0.5,
    gossip_nodes=4,
    push_pull_interval_s=60.0,
)
"""WAN: slower, more tolerant of latency and loss (memberlist's DefaultWANConfig)."""

LOCAL = GossipConfig(
    probe_interval_s=1.0,
    probe_timeout_s=0.2,
    suspicion_mult=3,
    gossip_interval_s=0.1,
    push_pull_interval_s=15.0,
)
"""Local: one machine, loopback latency (memberlist's DefaultLocalConfig)."""

HABITAT = GossipConfig(
    probe_interval_s=3.1,
    probe_timeout_s=1.0,
    indirect_checks=5,
    suspicion_mult=3,
    suspicion_max_timeout_mult=1,
    awareness_max_multiplier=1,
    gossip_interval_s=1.0,
    gossip_nodes=5,
    retransmit_mult=3,
    push_pull_interval_s=30.0,
)
"""Habitat's butterfly timings: ping 1 s, ping-req via 5 proxies (a 3.1 s probe period), suspicion
after 3 periods (9.3 s at N <= 10), no Lifeguard, gossip every second. Butterfly pushes every
rumor to every member; this preset keeps our O(N log N) dissemination but with Habitat's clocks,
to measure what they cost."""

LAN_FAST = GossipConfig(suspicion_mult=3, tcp_fallback=True)
"""LAN clocks, failure detection about a second sooner, fewer false suspicions (issue 18, goal 3).

- `suspicion_mult` 3 (LAN: 4): the shortest suspicion is 3 probe periods at N <= 10, not 4,
  and Lifeguard then wants k = 1 independent confirmation instead of 2 (one other member's
  failed probe). A live member wrongly suspected still has >= 3 s to refute, and refuting takes
  one gossip round trip (well under a second on a LAN, even at 10% loss); the maximum, for a
  suspicion nobody confirms, stays 6x the minimum (18 s).
- `tcp_fallback` on: most false suspicions under datagram loss are a lost ping or ack plus all
  indirect paths failing; a stream, which resends lost segments, saves most of them. In the
  simulator at 10% loss (N=10, 30 seeds, `python -m bench.frontier_sim`), failed probes of live
  members fell from 29 to 5 per member-hour, so the shorter suspicion meets ~5x fewer chances to
  go wrong.

Same probe and gossip traffic as LAN, plus one stream per missed direct ack. Measured against
Serf's LAN profile on the same hosts in bench/README.md ("The frontier")."""

PRESETS: dict[str, GossipConfig] = {
    "lan": LAN,
    "wan": WAN,
    "local": LOCAL,
    "habitat": HABITAT,
    "lan-fast": LAN_FAST,
}

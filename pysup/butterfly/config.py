"""Gossip timing and sizing, as data with reasons, and the named presets.

Every field says its unit, what it trades off, and where it enters a formula. Presets mirror
memberlist's `DefaultLANConfig`/`DefaultWANConfig`/`DefaultLocalConfig`, plus `habitat` (butterfly's
own timings) so the cost of Habitat's defaults can be measured on the same core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


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

    def suspicion_min_s(self, n: int) -> float:
        """`SuspicionMult * max(1, log10 N) * ProbeInterval` (Lifeguard's lower bound)."""
        return self.suspicion_mult * max(1.0, math.log10(max(1, n))) * self.probe_interval_s

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

PRESETS: dict[str, GossipConfig] = {"lan": LAN, "wan": WAN, "local": LOCAL, "habitat": HABITAT}

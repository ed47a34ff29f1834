"""How many new members one datagram source may introduce: a token bucket per source (pure).

A datagram's source address is whatever the sender wrote, so without a ring key anyone can
invent members; what one source may add is bounded here (`GossipConfig.admit_burst`, refilled at
`admit_rate_per_s`), and the table as a whole by `max_members` (in the core). Sources are keyed
by IP *and* port: one host may run many members (the benchmarks run hundreds per process on
127.0.0.1), each with its own gossip port. Streams are not limited here: their source is a real
TCP peer, and a push-pull is how a joiner learns the whole ring at once.
"""

from __future__ import annotations

from typing import Final

Addr = tuple[str, int]

MAX_TRACKED_SOURCES: Final = 4096
"""Sources whose buckets are remembered; beyond it the least recently used is forgotten (and
starts again with a full bucket). Bounds the table when sources are forged by the thousand."""


class AdmissionBuckets:
    def __init__(self, burst: int, rate_per_s: float) -> None:
        self.burst = burst
        self.rate_per_s = rate_per_s
        self._buckets: dict[Addr, tuple[float, float]] = {}  # source -> (tokens, at), LRU order

    def allow(self, source: Addr, now: float) -> bool:
        """Take one admission from `source`'s bucket; False when it is empty."""
        entry = self._buckets.pop(source, None)
        if entry is None:
            tokens = float(self.burst)
            if len(self._buckets) >= MAX_TRACKED_SOURCES:
                del self._buckets[next(iter(self._buckets))]
        else:
            tokens = min(float(self.burst), entry[0] + (now - entry[1]) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

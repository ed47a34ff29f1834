"""Lifeguard timing: the suspicion timeout and the local-health multiplier (pure).

A suspicion starts at `max_s` and shrinks logarithmically towards `min_s` as `k` independent
members confirm it (memberlist's `suspicion.go`, Lifeguard paper section IV-B):

    timeout = max(min_s, max_s - (max_s - min_s) * log(c + 1) / log(k + 1))

where c is the number of confirmations so far. With k = 0 (a tiny ring) the timeout is `min_s`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(slots=True)
class Suspicion:
    """One running suspicion. The member that started it (`origin`) is remembered so it cannot
    also count as a confirmation; `confirmations` counts the other independent suspectors."""

    member_id: str
    incarnation: int
    start: float
    min_s: float
    max_s: float
    k: int
    origin: str = ""
    seen: set[str] = field(default_factory=set)
    confirmations: int = 0

    def __post_init__(self) -> None:
        if self.origin:
            self.seen.add(self.origin)

    def confirm(self, from_id: str) -> bool:
        """Count an independent suspicion; True if it was new (and shortened the timeout)."""
        if not from_id or from_id in self.seen or self.confirmations >= self.k:
            return False
        self.seen.add(from_id)
        self.confirmations += 1
        return True

    def timeout(self) -> float:
        if self.k < 1:
            return self.min_s
        frac = math.log(self.confirmations + 1) / math.log(self.k + 1)
        return max(self.min_s, self.max_s - frac * (self.max_s - self.min_s))

    @property
    def deadline(self) -> float:
        return self.start + self.timeout()


def expected_confirmations(suspicion_mult: int, n: int) -> int:
    """memberlist: k = SuspicionMult - 2, or 0 when the ring is too small to supply that many
    independent suspectors."""
    k = suspicion_mult - 2
    return 0 if n - 2 < k else max(0, k)


@dataclass(slots=True)
class LocalHealth:
    """Lifeguard's local health awareness: a score in [0, max_multiplier - 1] that goes up when
    this member misses acks or nacks (it is probably the slow one) and down on success. Probe
    interval and probe timeout are scaled by `score + 1`."""

    max_multiplier: int
    score: int = 0

    def apply(self, delta: int) -> None:
        self.score = min(max(self.score + delta, 0), max(0, self.max_multiplier - 1))

    def scale(self, seconds: float) -> float:
        return seconds * (self.score + 1)

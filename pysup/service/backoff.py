"""Restart backoff for a crashing service: Habitat's decorrelated jitter with a cooldown reset.

Pure (sans-IO): callers pass `now` (any monotonic clock, seconds) and a `random.Random`.

Semantics (Habitat's `flowcontrol::Backoff` as used by the Supervisor's service restarts):

- The first restart after a clean slate waits exactly `base_s`.
- Every further restart waits `min(max_s, rng.uniform(base_s, prev * 3))`, where `prev` is the
  previous delay ("decorrelated jitter": spreads a fleet of crash-looping services apart while the
  expected delay still grows geometrically until it reaches `max_s`; once at the cap the delays stay
  randomly spread in `[base_s, max_s]` instead of collapsing onto the cap).
- When a process that was started ran for at least `cooldown_s` before it exited, the state is
  wiped: the next restart waits `base_s` again and `attempts` is 0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: Habitat multiplies the previous delay by 3 for the upper bound of the next one.
JITTER_MULTIPLIER = 3.0


@dataclass
class RestartBackoff:
    """Delay before restarting a process that exited unexpectedly."""

    base_s: float = 1.0
    """Seconds. The first restart delay and the lower bound of every later one. Smaller restarts a
    flapping service sooner; larger protects the host (and its dependencies) from a crash loop.
    Habitat's `--service-min-backoff-period` (its default 0 means "restart immediately")."""

    max_s: float = 60.0
    """Seconds. Upper bound of a delay. Habitat's `--service-max-backoff-period`; its docs suggest
    180 s. We pick 60 s: in a pod a service that recovers (a dependency came back) should not stay
    down for minutes, while 60 s still throttles a hard crash loop to about one start a minute."""

    cooldown_s: float = 300.0
    """Seconds a process must stay up for its exit to count as a fresh failure (resets the backoff).
    Habitat's `--service-restart-cooldown-period` (300 s). Too short and a service that crashes a
    few minutes after start never backs off; too long and one old crash penalises a later one."""

    attempts: int = field(default=0, init=False)
    """Restarts delayed since the last reset (how many times `next_delay` was called)."""

    _prev_s: float | None = field(default=None, init=False, repr=False)
    _started_at: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.max_s < 0 or self.cooldown_s < 0:
            raise ValueError("backoff periods must be >= 0")
        # Like Habitat: a base above the cap is clamped to the cap.
        self.base_s = min(self.base_s, self.max_s)

    def next_delay(self, rng: random.Random) -> float:
        """Seconds to wait before the next restart; records the attempt."""
        if self._prev_s is None:
            delay = self.base_s
        else:
            upper = max(self.base_s, self._prev_s * JITTER_MULTIPLIER)
            delay = min(self.max_s, rng.uniform(self.base_s, upper))
        self._prev_s = delay
        self.attempts += 1
        return delay

    def record_start(self, now: float) -> None:
        """The process was (re)started at `now`."""
        self._started_at = now

    def record_exit(self, now: float) -> None:
        """The process exited at `now`; resets the backoff if it ran for at least `cooldown_s`."""
        started, self._started_at = self._started_at, None
        if started is not None and now - started >= self.cooldown_s:
            self.reset()

    def reset(self) -> None:
        """Forget all attempts: the next delay is `base_s` again."""
        self._prev_s = None
        self.attempts = 0

    @property
    def last_delay(self) -> float | None:
        """The delay most recently returned by `next_delay` since the last reset, if any."""
        return self._prev_s

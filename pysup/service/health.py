"""Health-check results and the schedule of health-check runs. Pure (sans-IO).

Schedule semantics, read from Habitat's Supervisor (`manager/service/health.rs`, `check_repeatedly`)
and its lifecycle-hooks docs:

- The first check runs as soon as the service is up (`last is None` -> `now`).
- After the *first* OK result the next check runs after a random splay drawn uniformly from
  `[0, interval)`. This spreads the checks of many services (and of many members of a group started
  together) across the interval instead of firing them in lockstep. It is a one-off phase shift, not
  a permanent jitter.
- After every later OK the next check runs exactly `interval` later (the phase chosen by the splay
  is kept).
- After a non-OK result (WARNING, CRITICAL, UNKNOWN) the next check runs after
  `min(interval, failure_recheck_s)` (30 s, Habitat's default interval): a failing service is
  re-examined at least every 30 s even when the configured interval is long, and never *later* than
  the configured interval when that is shorter. No splay: rechecks of a failing service should be
  predictable. (Habitat has an open TODO for exponential backoff here; we keep its behaviour.)
- Before the first OK, a non-OK result is retried sooner: after `startup_recheck_s` (1 s),
  doubling up to the normal recheck. The first check usually runs before the service listens;
  Habitat would then report it down for a whole interval.
- `reset()` forgets the first OK (call it when the service restarts), so a restarted service gets a
  fresh splay after its first OK again.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

#: Habitat's default `--health-check-interval` and the cap on a recheck after a non-OK result.
DEFAULT_INTERVAL_S = 30.0


class HealthStatus(enum.Enum):
    """The result of a health check (Habitat's `HealthCheckResult`)."""

    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def from_exit_code(cls, code: int | None) -> HealthStatus:
        """Map a health-check hook's exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.

        Anything else, including `None` (the hook timed out or could not run) and negative codes
        (killed by a signal), is UNKNOWN.
        """
        return _BY_EXIT_CODE.get(code, cls.UNKNOWN) if code is not None else cls.UNKNOWN

    @classmethod
    def from_process_up(cls, up: bool) -> HealthStatus:
        """Health of a service without a health-check hook: process up = OK, down = CRITICAL."""
        return cls.OK if up else cls.CRITICAL

    @property
    def api_name(self) -> str:
        """The spelling in `/services` JSON `health_check`: Ok, Warning, Critical, Unknown."""
        return self.value.capitalize()

    @property
    def status_name(self) -> str:
        """The spelling in the `/services/.../health` JSON `status` field: OK, WARNING, ..."""
        return self.value

    @property
    def http_status(self) -> int:
        """The HTTP status of `/services/.../health`: 200 OK/WARNING, 503 CRITICAL, 500 UNKNOWN."""
        return _HTTP_STATUS[self]


_BY_EXIT_CODE: dict[int | None, HealthStatus] = {
    0: HealthStatus.OK,
    1: HealthStatus.WARNING,
    2: HealthStatus.CRITICAL,
    3: HealthStatus.UNKNOWN,
}

_HTTP_STATUS: dict[HealthStatus, int] = {
    HealthStatus.OK: 200,
    HealthStatus.WARNING: 200,
    HealthStatus.CRITICAL: 503,
    HealthStatus.UNKNOWN: 500,
}


@dataclass
class HealthSchedule:
    """When to run the next health check of one service (see the module docstring)."""

    interval_s: float = DEFAULT_INTERVAL_S
    """Seconds between checks of a healthy service (`--health-check-interval`, Habitat: 30 s).
    Shorter notices failures sooner at the cost of running the hook more often."""

    failure_recheck_s: float = DEFAULT_INTERVAL_S
    """Seconds. Upper bound of the delay before rechecking after a non-OK result (Habitat: 30 s)."""

    startup_recheck_s: float = 1.0
    """Seconds. Until a service's first OK, a failed check is retried after this, doubling each
    time up to the normal recheck: a check that ran before the service finished starting (the
    usual case: the first check runs as soon as the process is up) should not leave it reported
    down for a whole interval."""

    _seen_ok: bool = field(default=False, init=False, repr=False)
    _startup_fails: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.failure_recheck_s <= 0:
            raise ValueError("health-check intervals must be > 0")

    def next_check(self, now: float, last: HealthStatus | None, rng: random.Random) -> float:
        """The time (same clock as `now`) of the next check, given the result just obtained."""
        if last is None:
            return now
        if last is HealthStatus.OK:
            if not self._seen_ok:
                self._seen_ok = True
                return now + rng.uniform(0.0, self.interval_s)
            return now + self.interval_s
        normal = min(self.interval_s, self.failure_recheck_s)
        if not self._seen_ok:
            delay = self.startup_recheck_s * float(2 ** min(self._startup_fails, 30))
            self._startup_fails += 1
            return now + min(normal, delay)
        return now + normal

    def reset(self) -> None:
        """The service restarted: the next first OK gets a fresh splay."""
        self._seen_ok = False
        self._startup_fails = 0

"""The readiness policy of `--readiness` (GET /readyz): ready or not, and why (pure).

- ``api``: ready once the API serves;
- ``ring``: also joined (a member with seeds to try is not ready while alone; with peer discovery
  a lone member is ready only as the founder: the split-brain rule of ``pysup.discovery``);
- ``services``: also every loaded service up and healthy (OK or WARNING), no load error.

A departing supervisor is never ready.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pysup.ring import RingView

if TYPE_CHECKING:
    from pysup.service.manager import ServiceManager


class FounderRule(Protocol):
    """What discovery says about standing alone (``pysup.discovery.runtime.Discovery``)."""

    def may_stand_alone(self) -> bool: ...

    def founder_rule(self) -> str: ...


def readiness(
    mode: str,
    *,
    departing: bool,
    ring: RingView | None,
    has_seeds: bool,
    discovery: FounderRule | None,
    services: ServiceManager | None,
) -> tuple[bool, str]:
    if departing:
        return False, "departing"
    if mode == "api":
        return True, "the API is serving"
    if ring is None:
        return False, "the gossip ring is not started yet"
    joining = mode in ("ring", "services") and ring.is_alone()
    if joining and has_seeds:
        return False, "not joined: no seed has answered yet"
    if joining and discovery is not None and not discovery.may_stand_alone():
        return False, f"not joined: waiting for peers ({discovery.founder_rule()})"
    if mode == "services" and services is not None:
        # Loaded with the first service (issue 18); with none loaded the loop does not run.
        from pysup.service.health import HealthStatus
        from pysup.service.process import ProcessState

        for svc in services.services():
            if svc.process.state is not ProcessState.UP:
                return False, f"{svc.service_group}: not up"
            if svc.health_status() not in (HealthStatus.OK, HealthStatus.WARNING):
                return False, f"{svc.service_group}: health {svc.health_status().api_name}"
        if services.load_errors:
            return False, "; ".join(services.load_errors.values())
    return True, "joined" if not ring.is_alone() else "standalone ring"

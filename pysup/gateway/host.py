"""What each gateway reads from the process that hosts it, and what it may ask of it.

The daemon (``pysup.daemon.Supervisor``) satisfies both protocols; tests and benchmarks pass small
fakes. A gateway owns nothing of the daemon's state: the daemon starts its servers and closes them
in its one ordered shutdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pysup.butterfly.member import Member
from pysup.butterfly.messages import Rumor
from pysup.metrics import Metrics
from pysup.ring import RumorView
from pysup.service.manager import ServiceManager
from pysup.statedir import StateDir


class RingReader(Protocol):
    """The ring as the gateways read it (``pysup.ring.RingView``, through the daemon)."""

    def local_member(self) -> Member: ...

    def ring_members(self) -> list[Member]:
        """Every known member except ourselves."""
        ...

    def rumor_store(self) -> RumorView: ...


class HttpHost(RingReader, Protocol):
    """What the HTTP gateway (``pysup.gateway.http``) reads and asks."""

    @property
    def metrics(self) -> Metrics: ...

    def readiness(self) -> tuple[bool, str]: ...

    def liveness(self) -> list[str]:
        """Why the supervisor is broken (a critical task died, the gossip timer stalled); empty
        when it is alive."""
        ...

    async def depart(self) -> None:
        """Leave the ring and stop services; the gateway stays up (POST /sup/depart)."""
        ...


class CtlHost(RingReader, Protocol):
    """What the control gateway (``pysup.gateway.ctl``) reads and asks."""

    @property
    def metrics(self) -> Metrics: ...

    @property
    def state(self) -> StateDir:
        """Where the control secret and the saved service specs live."""
        ...

    @property
    def services(self) -> ServiceManager | None:
        """None: this supervisor runs no services (yet)."""
        ...

    def persist_rumors(self, extra: Sequence[Rumor] = ()) -> None:
        """Save the rumor store with `extra` added; raises OSError when not saved."""
        ...

    def publish(self, rumor: Rumor) -> None:
        """Hand a rumor to the ring (after `persist_rumors` saved it)."""
        ...

    def terminate(self) -> None:
        """Stop the supervisor (``sup term``): the daemon runs its ordered shutdown."""
        ...

"""The gossip ring behind the `pysup.ring.Ring` interface: one `SwimCore` driven by one `Runner`.

The adapter adds no behaviour: queries read the core (`version` is `SwimCore.version`), commands go
through the runner (which feeds the core the loop's clock), and the core's member and rumor
effects reach the listener given here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pysup.butterfly import codec
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import Addr
from pysup.butterfly.member import Member
from pysup.butterfly.messages import Rumor
from pysup.butterfly.rumors import RumorStore
from pysup.butterfly.runner import Runner
from pysup.faults import Faults
from pysup.metrics import Metrics
from pysup.ring import RingListener


class GossipRing:
    """A `pysup.ring.Ring` over SWIM gossip (``runner`` and ``core`` stay reachable for tests
    and benchmarks; the layers above use the interface only)."""

    def __init__(
        self,
        core: SwimCore,
        host: str,
        port: int,
        *,
        listener: RingListener,
        key: codec.Cipher | None = None,
        metrics: Metrics | None = None,
        udp_backend: str = "asyncio-dgram",
        faults: Faults | None = None,
    ) -> None:
        self.core = core
        self.runner = Runner(
            core,
            host,
            port,
            key=key,
            metrics=metrics,
            listener=listener,
            udp_backend=udp_backend,
            faults=faults,
        )

    # --- the view -------------------------------------------------------------------------

    @property
    def me(self) -> Member:
        return self.core.me

    @property
    def store(self) -> RumorStore:
        return self.core.store

    @property
    def version(self) -> int:
        return self.core.version

    @property
    def departed(self) -> bool:
        return self.core.departed

    def members(self) -> Iterator[Member]:
        return self.core.members()

    def member(self, member_id: str) -> Member | None:
        return self.core.member(member_id)

    def num_members(self) -> int:
        return self.core.num_members()

    def is_alone(self) -> bool:
        return self.core.is_alone()

    # --- the commands ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.runner.transport.port

    async def start(self) -> None:
        await self.runner.start()

    def join(self, addrs: Iterable[Addr]) -> None:
        self.runner.join(addrs)

    def publish(self, rumor: Rumor) -> None:
        self.runner.publish(rumor)

    async def leave(self) -> None:
        await self.runner.leave()

    async def close(self) -> None:
        await self.runner.close()

    def persistent_rumors(self) -> list[Rumor]:
        return self.core.all_rumors()

    def problems(self) -> list[str]:
        return self.runner.problems()

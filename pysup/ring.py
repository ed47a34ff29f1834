"""The ring as the layers above it see it: one interface, two implementations.

Everything above the gossip core (the census, the services, the gateways, the daemon) learns about
members and rumors only through a `Ring`:

- `pysup.butterfly.ring.GossipRing`: the SWIM gossip ring (a `SwimCore` driven by a `Runner`);
- `pysup.native.NativeRing`: `--mode kubernetes`, where the Kubernetes API stands in for gossip.

A ring reports changes as typed events (`RingEvent`) to the one listener it was built with (the
daemon's, ``pysup.ringlisten``), in the order they happened; `version` changes whenever the local
member, the member table or the rumor store does, so readers can cache what they derive from it
(the census). `store` is read-only for everyone but the ring: what the layers above want changed
they `publish`.

Imports go one way: this module knows the butterfly types and nothing above them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from pysup.butterfly.effects import Addr, MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.member import Member
from pysup.butterfly.messages import Rumor, RumorKind
from pysup.butterfly.rumors import StoredRumor

RingEvent = MemberChanged | RumorChanged | SelfChanged
"""What a ring tells its listener: a member's health, a rumor, or the local member changed."""
RingListener = Callable[[RingEvent], None]


class RumorView(Protocol):
    """The rumor store, read-only (``pysup.butterfly.rumors.RumorStore`` satisfies it)."""

    def get(self, kind: RumorKind, key: str, rid: str) -> StoredRumor | None: ...

    def by_key(self, kind: RumorKind, key: str) -> dict[str, StoredRumor]: ...

    def of_kind(self, kind: RumorKind) -> Iterator[StoredRumor]: ...

    def is_departed(self, member_id: str) -> bool: ...

    def counts(self) -> dict[RumorKind, int]: ...

    def __iter__(self) -> Iterator[StoredRumor]: ...

    def __len__(self) -> int: ...


class RingView(Protocol):
    """What may be read of a ring."""

    @property
    def me(self) -> Member:
        """The local member."""
        ...

    @property
    def store(self) -> RumorView: ...

    @property
    def version(self) -> int:
        """Changes whenever the local member, the member table or the rumor store does."""
        ...

    @property
    def departed(self) -> bool:
        """We left the ring (or the ring departed us): nothing more is gossiped."""
        ...

    def members(self) -> Iterator[Member]:
        """Every known member except ourselves."""
        ...

    def member(self, member_id: str) -> Member | None:
        """A member by id (ourselves included), None when unknown."""
        ...

    def num_members(self) -> int:
        """Members counted alive (Alive or Suspect), ourselves included."""
        ...

    def is_alone(self) -> bool: ...


class Ring(RingView, Protocol):
    """A ring the daemon runs: the view, plus what it may be asked to do."""

    @property
    def port(self) -> int:
        """The gossip port (bound, or only reported where nothing listens)."""
        ...

    async def start(self) -> None:
        """Start listening (or watching); raises OSError when the address cannot be bound."""
        ...

    def join(self, addrs: Iterable[Addr]) -> None:
        """Ask these addresses to let us in (no-op where membership comes from elsewhere)."""
        ...

    def publish(self, rumor: Rumor) -> None: ...

    async def leave(self) -> None:
        """Tell the ring we are going: others see us Departed at once."""
        ...

    async def close(self) -> None:
        """Stop everything the ring runs and release its sockets."""
        ...

    def persistent_rumors(self) -> list[Rumor]:
        """What is saved across restarts (nothing where the state is read back at start)."""
        ...

    def problems(self) -> list[str]:
        """Why the ring no longer works although the process runs (for /healthz)."""
        ...

"""Members of the ring: ids, incarnations, health, and Habitat's precedence rules (pure)."""

from __future__ import annotations

import random
import re
from enum import IntEnum
from typing import NamedTuple

from pysup.butterfly.config import MAX_INCARNATION

_MEMBER_ID = re.compile(r"^[0-9a-f]{32}$")


class Health(IntEnum):
    """Habitat's order: a rumor of worse health at the same incarnation wins."""

    ALIVE = 1
    SUSPECT = 2
    CONFIRMED = 3
    DEPARTED = 4

    @property
    def label(self) -> str:
        """The name Habitat's JSON uses (`Alive`, `Suspect`, ...)."""
        return self.name.capitalize()


def is_member_id(value: object) -> bool:
    return isinstance(value, str) and _MEMBER_ID.match(value) is not None


def next_incarnation(n: int) -> int:
    """The incarnation after `n`, saturating at `MAX_INCARNATION` (see its docstring): a
    refutation, a restart or a departure never makes a number the wire and disk cannot hold."""
    return min(n + 1, MAX_INCARNATION)


def new_member_id(rng: random.Random) -> str:
    """A UUIDv4 rendered as 32 lowercase hex digits, like Habitat's MEMBER_ID."""
    bits = rng.getrandbits(128)
    bits &= ~(0xF << 76)
    bits |= 0x4 << 76  # version 4
    bits &= ~(0x3 << 62)
    bits |= 0x2 << 62  # RFC 4122 variant
    return f"{bits:032x}"


class Member(NamedTuple):
    """What the ring knows about one supervisor.

    `address` is the IP others reach it at: it is taken from the observed UDP source address, not
    from what the member says about itself. A NamedTuple rather than a dataclass because the
    codec builds one per member record received, millions of times in a large simulation.
    """

    id: str
    incarnation: int
    address: str
    gossip_port: int
    health: Health = Health.ALIVE
    persistent: bool = False

    @property
    def addr(self) -> tuple[str, int]:
        return (self.address, self.gossip_port)

    def with_health(self, health: Health) -> Member:
        return self._replace(health=health)


def supersedes(stored: Member | None, incoming: Member) -> bool:
    """Habitat's accept rule: take the incoming record if we know nothing, or it has a higher
    incarnation, or the same incarnation and strictly worse health."""
    if stored is None:
        return True
    if incoming.incarnation != stored.incarnation:
        return incoming.incarnation > stored.incarnation
    return incoming.health > stored.health

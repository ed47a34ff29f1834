"""Every message on the wire, as frozen dataclasses (pure).

Datagram messages (UDP): Ping, Ack, PingReq, Nack, Gossip. Stream messages (TCP): PushPull (the
anti-entropy full-state exchange, also used at join) and RumorPush (rumors too big for a datagram).
Rumors are Habitat's kinds; each has an identity `(kind, key, id)` used by the rumor store and the
broadcast queue, where a newer rumor with the same identity replaces the older.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from pysup.butterfly.member import Member


class RumorKind(StrEnum):
    """Habitat's rumor kinds: the key of every table that handles rumors kind by kind.

    A new kind: a member here, a rumor class below (its `identity` names the kind), then one
    entry in each `by_kind` table, which refuses at import to be built without it:
    the wire format (`records._WIRE`), the store's merge rule (`rumors._MERGE`), the `/butterfly`
    view (`gateway.http._BUTTERFLY`), the services' reaction (`service.manager._REACTIONS`),
    the event (`events.translate._EVENTS`), the Kubernetes-native mode (`native._PUBLISH`) and
    the generators of the tests and the fuzzer (`tests/unit/gossip_strategies.py`,
    `bench/fuzz.py`). The census reads the store by kind (`census_build.build_census`).
    `tests/unit/test_rumor_kinds.py` checks that every table is there and complete.
    """

    MEMBER = "member"
    SERVICE = "service"
    SERVICE_CONFIG = "service_config"
    SERVICE_FILE = "service_file"
    DEPARTURE = "departure"
    ELECTION = "election"
    ELECTION_UPDATE = "election_update"


RumorId = tuple[RumorKind, str, str]


@dataclass(frozen=True, slots=True)
class MemberRumor:
    """Membership news: a member's incarnation and health. `by` names the member that declared
    a suspicion, so Lifeguard can count independent confirmations."""

    member: Member
    by: str = ""

    @property
    def identity(self) -> RumorId:
        return (RumorKind.MEMBER, "member", self.member.id)


@dataclass(frozen=True, slots=True)
class ServiceRumor:
    """One member runs one service group; `cfg` holds only the plan's exported keys.
    `health_check` (``Ok|Warning|Critical|Unknown``, "" before the first check) and
    `plan_fingerprint` (the plan it runs) let rolling updates wait for the previous member."""

    member_id: str
    service_group: str
    incarnation: int
    pkg: str
    initialized: bool = False
    cfg: Mapping[str, Any] = field(default_factory=dict)
    sys: Mapping[str, Any] = field(default_factory=dict)
    health_check: str = ""
    plan_fingerprint: str = ""

    @property
    def identity(self) -> RumorId:
        return (RumorKind.SERVICE, self.service_group, self.member_id)


@dataclass(frozen=True, slots=True)
class ServiceConfigRumor:
    """`config apply`: TOML text for a whole service group, versioned by `incarnation`."""

    service_group: str
    incarnation: int
    config: bytes
    encrypted: bool = False

    @property
    def identity(self) -> RumorId:
        return (RumorKind.SERVICE_CONFIG, self.service_group, "config")


@dataclass(frozen=True, slots=True)
class ServiceFileRumor:
    """`file upload`: one file for a service group, versioned by `incarnation`."""

    service_group: str
    filename: str
    incarnation: int
    body: bytes
    encrypted: bool = False

    @property
    def identity(self) -> RumorId:
        return (RumorKind.SERVICE_FILE, self.service_group, self.filename)


@dataclass(frozen=True, slots=True)
class DepartureRumor:
    """`sup depart`: the member is permanently out of the ring."""

    member_id: str

    @property
    def identity(self) -> RumorId:
        return (RumorKind.DEPARTURE, "departure", self.member_id)


class ElectionStatus(StrEnum):
    RUNNING = "Running"
    NO_QUORUM = "NoQuorum"
    FINISHED = "Finished"


@dataclass(frozen=True, slots=True)
class ElectionRumor:
    """A leader election for a service group (`update=True`: the update-strategy election)."""

    service_group: str
    member_id: str
    term: int
    suitability: int
    status: ElectionStatus
    votes: tuple[str, ...] = ()
    update: bool = False

    @property
    def identity(self) -> RumorId:
        kind = RumorKind.ELECTION_UPDATE if self.update else RumorKind.ELECTION
        return (kind, self.service_group, "election")


Rumor = (
    MemberRumor
    | ServiceRumor
    | ServiceConfigRumor
    | ServiceFileRumor
    | DepartureRumor
    | ElectionRumor
)


def kind_of(rumor: Rumor) -> RumorKind:
    return rumor.identity[0]


_T = TypeVar("_T")

KIND_TABLES: dict[str, Mapping[RumorKind, Any]] = {}
"""Every `by_kind` table by name (what `tests/unit/test_rumor_kinds.py` checks)."""


def by_kind(name: str, table: Mapping[RumorKind, _T]) -> Mapping[RumorKind, _T]:
    """A read-only table with an entry for every rumor kind: raises `TypeError` (at import,
    where tables are built) when a kind has none, so a new kind cannot be half handled."""
    missing = [k.value for k in RumorKind if k not in table]
    if missing:
        raise TypeError(f"{name}: no entry for rumor kind(s) {', '.join(missing)}")
    frozen = MappingProxyType(dict(table))
    KIND_TABLES[name] = frozen
    return frozen


@dataclass(frozen=True, slots=True)
class Ping:
    """SWIM direct probe. `on_behalf` is set when sent by a ping-req proxy (the asker's addr)."""

    seq: int
    sender: Member
    target_id: str
    rumors: tuple[Rumor, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    sender: Member
    rumors: tuple[Rumor, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to probe `target` for us and relay the outcome."""

    seq: int
    sender: Member
    target: Member
    rumors: tuple[Rumor, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    """Lifeguard: a ping-req proxy tells the asker that the target did not answer it either,
    which proves the asker's own path to the proxy works (so the asker is not the slow one)."""

    seq: int
    sender: Member


@dataclass(frozen=True, slots=True)
class Gossip:
    """A pure dissemination packet, sent each gossip interval to `gossip_nodes` members."""

    sender: Member
    rumors: tuple[Rumor, ...] = ()


@dataclass(frozen=True, slots=True)
class PushPull:
    """Full-state exchange over a stream. `join` marks the first exchange of a joiner; `reply`
    marks the answer, which is not answered again."""

    sender: Member
    members: tuple[Member, ...]
    rumors: tuple[Rumor, ...]
    join: bool = False
    reply: bool = False


@dataclass(frozen=True, slots=True)
class RumorPush:
    """Rumors too large for a datagram, pushed one-way over a stream."""

    sender: Member
    rumors: tuple[Rumor, ...]


DatagramMessage = Ping | Ack | PingReq | Nack | Gossip
StreamMessage = PushPull | RumorPush
Message = DatagramMessage | StreamMessage

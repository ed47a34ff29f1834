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
from typing import Any

from pysup.butterfly.member import Member


class RumorKind(StrEnum):
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

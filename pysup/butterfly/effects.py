"""What the SWIM core asks its shell to do, and what it tells the shell happened (pure data)."""

from __future__ import annotations

from dataclasses import dataclass

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import DatagramMessage, StreamMessage
from pysup.butterfly.rumors import StoredRumor

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Send:
    """Send one datagram."""

    addr: Addr
    msg: DatagramMessage


@dataclass(frozen=True, slots=True)
class StreamSend:
    """Open a stream to `addr` and send `msg`. A PushPull that is not a reply expects a reply,
    which the shell feeds back through `receive`; a failure goes to `stream_failed`."""

    addr: Addr
    msg: StreamMessage


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """A member's record changed (`previous` is None for a new member)."""

    member: Member
    previous: Health | None
    suspected_by: str = ""
    """For a Suspect record: the member that declared the suspicion (us after a failed probe,
    or the suspecter the gossiped rumor names); "" otherwise."""
    confirmations: int = -1
    """For a Confirmed record made by our own suspicion timeout: how many independent
    confirmations (Lifeguard) that suspicion had counted; -1 otherwise (Confirmed by gossip)."""


@dataclass(frozen=True, slots=True)
class RumorChanged:
    """A service, config, file, departure or election rumor is new or newer."""

    rumor: StoredRumor


@dataclass(frozen=True, slots=True)
class SelfChanged:
    """Our own record changed: refuted a suspicion (persist the incarnation), or departed."""

    member: Member
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeRtt:
    """A direct probe was acknowledged after `seconds` (for the RTT histogram)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ProbeFailed:
    """Our probe of `member_id` got no ack, direct or indirect, within its period: the member
    is now suspected by us (a new suspicion, or a confirmation of one we held). For logs and
    metrics: the frontier benchmark counts these against memberlist's "Suspect X has failed"."""

    member_id: str
    nacks: int
    """Proxies that answered with a nack (they could not reach the member either)."""
    expected_nacks: int


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input the core refused: the shell counts it with the codec's rejects (`reason` is a
    stable label: `member_cap`, `member_rate`, `incarnation`, `local_rumor`) and logs it at a
    bounded rate. `source` is where it came from (None: made here)."""

    reason: str
    source: Addr | None
    detail: str = ""


Effect = (
    Send
    | StreamSend
    | MemberChanged
    | RumorChanged
    | SelfChanged
    | ProbeRtt
    | ProbeFailed
    | Rejected
)

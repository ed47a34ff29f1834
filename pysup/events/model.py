"""The events a supervisor streams on ``/events``: stable names and typed payloads (pure).

Every event is a frozen dataclass whose ``NAME`` is its stable SSE event name and whose fields are
its JSON payload (``data()``). The part of the name before the first dot is its *category*
(``member``, ``rumor``, ``election``, ``config``, ``file``, ``service``, ``stream``), which clients
filter on. ``docs/events.md`` documents every name and field; a unit test fails when they drift.

Field names follow Habitat's JSON where one exists: ``member_id``, ``incarnation``, ``health``
(``Alive|Suspect|Confirmed|Departed``), ``service_group``, ``health_check``
(``Ok|Warning|Critical|Unknown``), an election's ``member_id``/``term``/``suitability``/``status``/
``votes``. Sources: the gossip core's effects (``butterfly/effects.py``), the election state
machine's decisions (``election.py``) and the service layer (hook results, state transitions,
restarts, health checks, config and file applies); ``translate.py`` builds the ring and election
ones.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final

MAX_TEXT_CHARS: Final = 1024
"""Longest free text (an error, a health check's output tail) an event carries, in characters:
enough for a useful message or the last lines of output, and it keeps one event far below the
hub's ``max_event_bytes`` so a chatty hook cannot crowd the history out."""

MAX_LISTED_IDS: Final = 64
"""Most member ids an event lists (an election's votes); the count field always has the total.
64 ids are about 2.3 KB of JSON: a whole typical group, without letting a 1,000-member group
make each election event 35 KB."""


def clip(text: str | None, limit: int = MAX_TEXT_CHARS) -> str | None:
    """The last `limit` characters of `text` (the tail of output is what explains a failure)."""
    if text is None or len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]


@dataclass(frozen=True, slots=True)
class Payload:
    """Base of every event payload."""

    NAME: ClassVar[str]
    """The stable SSE event name."""

    def __post_init__(self) -> None:
        # Free text (errors, hook output) comes from hooks and config: keep its tail only.
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
                object.__setattr__(self, name, clip(value))

    @classmethod
    def category(cls) -> str:
        return cls.NAME.partition(".")[0]

    def data(self) -> dict[str, Any]:
        """The JSON payload (tuples become lists when encoded). Shallow: every field is a
        scalar or a tuple of them (a unit test holds every payload to that), so this equals
        `dataclasses.asdict`, which deep-copies each value at ~10x the cost. It runs for every
        ring event, on the loop that answers probes: with asdict, encoding events was a third
        of a member's CPU while 100 members loaded a plan at once (bench/README.md, goal 6)."""
        return {name: getattr(self, name) for name in _field_names(type(self))}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: Any) -> tuple[str, ...]:
    """A payload class's field names, looked up once per class (`fields` is not free)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


# --- the ring's members ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberHealth(Payload):
    """A member's record changed: new member, new incarnation, or new health."""

    NAME: ClassVar[str] = "member.health"
    member_id: str
    address: str
    gossip_port: int
    incarnation: int
    health: str
    previous: str | None
    """Health before this change; None for a member seen for the first time."""
    suspected_by: str | None
    """The member that declared the suspicion (Suspect only; None when the source does not say)."""
    persistent: bool


@dataclass(frozen=True, slots=True)
class MemberRefuted(Payload):
    """This supervisor refuted a rumor that it was Suspect or Confirmed."""

    NAME: ClassVar[str] = "member.refuted"
    member_id: str
    incarnation: int
    """Its new incarnation."""


# --- rumors learned from the ring -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceRumorEvent(Payload):
    """A member's Service rumor is new or newer (package, health, initialized)."""

    NAME: ClassVar[str] = "rumor.service"
    service_group: str
    member_id: str
    incarnation: int
    pkg: str
    initialized: bool
    health_check: str | None


@dataclass(frozen=True, slots=True)
class ConfigRumorEvent(Payload):
    """A group's gossiped config is new or newer; ``incarnation`` is its version."""

    NAME: ClassVar[str] = "rumor.config"
    service_group: str
    incarnation: int
    encrypted: bool
    size: int


@dataclass(frozen=True, slots=True)
class FileRumorEvent(Payload):
    """A file uploaded to a group is new or newer."""

    NAME: ClassVar[str] = "rumor.file"
    service_group: str
    filename: str
    incarnation: int
    encrypted: bool
    size: int


@dataclass(frozen=True, slots=True)
class ElectionRumorEvent(Payload):
    """A group's election rumor changed (what the ring says, whoever published it)."""

    NAME: ClassVar[str] = "rumor.election"
    service_group: str
    update: bool
    member_id: str
    """The candidate (the leader once Finished)."""
    term: int
    suitability: int
    status: str
    votes: tuple[str, ...]
    """At most ``MAX_LISTED_IDS`` voters."""
    vote_count: int


@dataclass(frozen=True, slots=True)
class DepartureRumorEvent(Payload):
    """A member was departed from the ring (``sup depart``)."""

    NAME: ClassVar[str] = "rumor.departure"
    member_id: str


# --- this member's steps in elections -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ElectionStart(Payload):
    """This member started (term 0) or restarted (term + 1) its group's election."""

    NAME: ClassVar[str] = "election.start"
    service_group: str
    update: bool
    term: int
    candidate: str
    status: str
    why: str
    """``start`` or ``restart_<reason>`` (``election.Decision.why``)."""


@dataclass(frozen=True, slots=True)
class ElectionVote(Payload):
    """This member voted for the stored candidate."""

    NAME: ClassVar[str] = "election.vote"
    service_group: str
    update: bool
    term: int
    candidate: str
    voter: str
    status: str


@dataclass(frozen=True, slots=True)
class ElectionFinish(Payload):
    """This member, the candidate, finished the election: it leads the group."""

    NAME: ClassVar[str] = "election.finish"
    service_group: str
    update: bool
    term: int
    leader: str
    votes: int
    why: str
    """``finish`` (every alive member voted) or ``finish_timeout`` (a majority after the wait)."""


@dataclass(frozen=True, slots=True)
class ElectionNoQuorum(Payload):
    """The group cannot elect: too few members alive, or too few members for a first election."""

    NAME: ClassVar[str] = "election.no_quorum"
    service_group: str
    update: bool
    term: int | None
    why: str
    """``lost_quorum`` or ``waiting_for_members``."""
    alive: int
    population: int
    waiting_for: int
    """More members (waiting_for_members) or more alive members (lost_quorum) it needs."""


@dataclass(frozen=True, slots=True)
class ElectionEvenPopulation(Payload):
    """Habitat's warning: an even group can split evenly and leave no side with a quorum."""

    NAME: ClassVar[str] = "election.even_population"
    service_group: str
    members: int


# --- config and files applied to this member's services -------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigApplied(Payload):
    """A service here took a new config layer."""

    NAME: ClassVar[str] = "config.applied"
    service_group: str
    source: str
    """``gossip`` (``config apply``) or ``user`` (user.toml)."""
    incarnation: int | None
    """The gossiped version; None for user.toml."""


@dataclass(frozen=True, slots=True)
class ConfigRejected(Payload):
    """A config layer was refused (invalid TOML, too large, cannot decrypt)."""

    NAME: ClassVar[str] = "config.rejected"
    service_group: str
    source: str
    incarnation: int | None
    error: str


@dataclass(frozen=True, slots=True)
class FileApplied(Payload):
    """Gossiped files were written to a service's ``files/``."""

    NAME: ClassVar[str] = "file.applied"
    service_group: str
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FileRejected(Payload):
    """A gossiped file was refused or could not be written."""

    NAME: ClassVar[str] = "file.rejected"
    service_group: str
    filename: str | None
    incarnation: int | None
    error: str


# --- this member's services -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceStateChanged(Payload):
    """A service here changed state (``loaded|waiting|initializing|up|stopping|stopped|failed|
    unloaded``)."""

    NAME: ClassVar[str] = "service.state"
    service_group: str
    state: str
    previous: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class ServiceHook(Payload):
    """A lifecycle hook finished (or could not start: ``error``)."""

    NAME: ClassVar[str] = "service.hook"
    service_group: str
    hook: str
    exit_code: int | None
    """Negative: killed by that signal; None: timed out or did not start."""
    timed_out: bool
    duration_s: float
    error: str | None


@dataclass(frozen=True, slots=True)
class ServiceExited(Payload):
    """A service's run process exited unexpectedly; it restarts after ``restart_in_s``."""

    NAME: ClassVar[str] = "service.exited"
    service_group: str
    exit_code: int | None
    restart_in_s: float
    attempt: int


@dataclass(frozen=True, slots=True)
class ServiceRestart(Payload):
    """A service is restarted on purpose (hooks or config changed without a reconfigure hook)."""

    NAME: ClassVar[str] = "service.restart"
    service_group: str
    reason: str


@dataclass(frozen=True, slots=True)
class ServiceHealth(Payload):
    """A health check of a service here ran."""

    NAME: ClassVar[str] = "service.health"
    service_group: str
    health_check: str
    previous: str | None
    exit_code: int | None
    """The health-check hook's exit code; None without a hook (process up/down) or on timeout."""
    stdout: str | None
    stderr: str | None


# --- the stream itself (no event id, except reset) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamHello(Payload):
    """First event of every connection."""

    NAME: ClassVar[str] = "stream.hello"
    member_id: str | None
    """The supervisor serving the stream."""
    server_time: float
    """Its wall clock (Unix seconds), to turn event times into ages."""
    last_id: int
    """Id of the newest event (``oldest_id - 1`` when there is none yet)."""
    oldest_id: int
    """Id of the oldest event still in the history."""
    heartbeat_s: float
    """A comment line comes at least this often: silence for longer means the stream is dead."""


@dataclass(frozen=True, slots=True)
class StreamReset(Payload):
    """Events after the client's resume point are no longer (or never were) in the history:
    resync from ``/census`` and ``/butterfly``. Every retained event follows."""

    NAME: ClassVar[str] = "stream.reset"
    reason: str
    """``history_exceeded`` (too old, or from an earlier run) or ``unknown_id`` (newer than any)."""
    oldest_id: int
    last_id: int


@dataclass(frozen=True, slots=True)
class StreamDropped(Payload):
    """The client fell so far behind that its next event left the history; the server closes the
    stream. Reconnect (with ``Last-Event-ID``) and resync."""

    NAME: ClassVar[str] = "stream.dropped"
    reason: str
    """``slow_client``."""
    last_id: int


@dataclass(frozen=True, slots=True)
class StreamClosing(Payload):
    """The supervisor is shutting down; the stream ends."""

    NAME: ClassVar[str] = "stream.closing"
    reason: str


EVENT_TYPES: Final[tuple[type[Payload], ...]] = (
    MemberHealth,
    MemberRefuted,
    ServiceRumorEvent,
    ConfigRumorEvent,
    FileRumorEvent,
    ElectionRumorEvent,
    DepartureRumorEvent,
    ElectionStart,
    ElectionVote,
    ElectionFinish,
    ElectionNoQuorum,
    ElectionEvenPopulation,
    ConfigApplied,
    ConfigRejected,
    FileApplied,
    FileRejected,
    ServiceStateChanged,
    ServiceHook,
    ServiceExited,
    ServiceRestart,
    ServiceHealth,
    StreamHello,
    StreamReset,
    StreamDropped,
    StreamClosing,
)
"""Every event, in the order docs/events.md lists them."""

BY_NAME: Final[dict[str, type[Payload]]] = {t.NAME: t for t in EVENT_TYPES}

CATEGORIES: Final[tuple[str, ...]] = tuple(dict.fromkeys(t.category() for t in EVENT_TYPES))


def field_names(event_type: type[Payload]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(event_type))

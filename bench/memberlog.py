"""What members say in their own logs, as membership events: pysup's JSON lines and Serf's text.

The harnesses observe rings through the logs the members write anyway (files, never pipes, so a
slow reader never blocks a member), not by polling them:

- pysup (``--json-logging``): ``member.alive|suspect|confirmed|departed`` with ``member_id`` and
  a microsecond UTC ``timestamp``; ``supervisor.started`` (our id), ``ring.joined``,
  ``member.refuted``, and any other event the caller asks for (``config.gossip_applied``,
  ``health.changed``, ``service.state``...).
- Serf (``-log-level=info``): ``serf: EventMemberJoin: NAME ADDR`` (alive), ``EventMemberFailed``
  (confirmed), ``EventMemberLeave`` (departed), ``memberlist: Suspect NAME has failed`` (a local
  suspicion: logged by the prober at every failed probe, first or confirming), ``Marking NAME as
  failed, suspect timeout reached (N peer confirmations)`` (the timer that decided). Its
  timestamps have one-second resolution, so a Serf line is stamped with the time the tailer read
  it (``LogTail`` is read every ~50 ms: that is the resolution).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MEMBERSHIP = ("alive", "suspect", "confirmed", "departed")
"""Health kinds, in Habitat's order."""


@dataclass(frozen=True)
class LogEvent:
    t: float
    """Wall-clock seconds since the epoch (the member's own stamp, or when the line was read)."""
    kind: str
    """A membership kind (``MEMBERSHIP``), ``started``, ``joined``, ``refuted``, or the dotted
    event name of any other line the parser was asked to keep."""
    target: str | None = None
    """The member a membership event is about (pysup member id, Serf node name)."""
    fields: dict[str, Any] = field(default_factory=dict)


def iso_to_epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


_ALWAYS = (b'"member.', b'"supervisor.started', b'"ring.joined')


def parse_pysup_line(line: bytes, keep: Iterable[str] = ()) -> LogEvent | None:
    """One JSON log line of a pysup member; None for lines of no interest or not JSON."""
    keep = tuple(keep)
    if not any(k in line for k in _ALWAYS) and not any(k.encode() in line for k in keep):
        return None
    try:
        rec = json.loads(line)
        event = str(rec["event"])
        t = iso_to_epoch(str(rec["timestamp"]))
    except (ValueError, KeyError, TypeError):
        return None
    if event == "supervisor.started":
        return LogEvent(t, "started", rec.get("member_id"), rec)
    if event == "ring.joined":
        return LogEvent(t, "joined", None, rec)
    if event == "member.refuted":
        return LogEvent(t, "refuted", None, rec)
    if event.startswith("member."):
        kind = event.split(".", 1)[1]
        mid = rec.get("member_id")
        if kind in MEMBERSHIP and isinstance(mid, str):
            return LogEvent(t, kind, mid, rec)
        return None
    if event in keep:
        return LogEvent(t, event, None, rec)
    return None


_SERF = (
    (re.compile(r"serf: EventMemberJoin: (\S+)"), "alive"),
    (re.compile(r"serf: EventMemberFailed: (\S+)"), "confirmed"),
    (re.compile(r"serf: EventMemberLeave: (\S+)"), "departed"),
    (re.compile(r"memberlist: Suspect (\S+) has failed"), "suspect"),
    (re.compile(r"memberlist: Marking (\S+) as failed"), "marked_failed"),
)

_SERF_CONFIRMATIONS = re.compile(r"\((\d+) peer confirmations\)")
"""memberlist: "Marking X as failed, suspect timeout reached (N peer confirmations)"."""


def parse_serf_line(line: str, read_at: float) -> LogEvent | None:
    """One log line of a Serf agent, stamped `read_at`; None for lines of no interest."""
    for pattern, kind in _SERF:
        m = pattern.search(line)
        if m:
            fields: dict[str, Any] = {}
            c = _SERF_CONFIRMATIONS.search(line) if kind == "marked_failed" else None
            if c:
                fields["confirmations"] = int(c.group(1))
            return LogEvent(read_at, kind, m.group(1), fields)
    if "agent: Serf agent starting" in line:
        return LogEvent(read_at, "started")
    return None


class LogTail:
    """Follows one growing log file: complete lines added since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return []
        self.offset += len(chunk)
        parts = (self.partial + chunk).split(b"\n")
        self.partial = parts.pop()
        return parts


@dataclass
class Observer:
    """One member's view of the ring, rebuilt from its log events.

    ``full_at`` is when it first listed ``expect`` others Alive at once (bootstrap). Every
    membership event is kept in ``history`` so callers can ask for the first one after a time.
    """

    expect: int
    me: str | None = None
    started_at: float | None = None
    joined_at: float | None = None
    full_at: float | None = None
    alive: set[str] = field(default_factory=set)
    history: list[LogEvent] = field(default_factory=list)
    other: list[LogEvent] = field(default_factory=list)

    def feed(self, ev: LogEvent) -> None:
        if ev.kind == "started":
            self.me = self.me or ev.target
            self.started_at = self.started_at or ev.t
        elif ev.kind == "joined":
            self.joined_at = self.joined_at or ev.t
        elif ev.kind in MEMBERSHIP and ev.target is not None:
            if ev.target == self.me:
                return  # Serf logs its own join; pysup never reports itself
            self.history.append(ev)
            if ev.kind == "alive":
                self.alive.add(ev.target)
                if self.joined_at is None:
                    self.joined_at = ev.t
                if self.full_at is None and len(self.alive) >= self.expect:
                    self.full_at = ev.t
            else:
                self.alive.discard(ev.target)
        else:
            self.other.append(ev)

    def first(self, kind: str | tuple[str, ...], target: str, since: float = 0.0) -> float | None:
        """When this observer first logged `kind` (one or several) about `target` at or after
        `since`; None if never."""
        kinds = (kind,) if isinstance(kind, str) else kind
        for ev in self.history:
            if ev.t >= since and ev.target == target and ev.kind in kinds:
                return ev.t
        return None

    def first_other(self, event: str, since: float = 0.0, **match: Any) -> float | None:
        """When this observer first logged `event` with the given fields at or after `since`."""
        for ev in self.other:
            if (
                ev.kind == event
                and ev.t >= since
                and all(ev.fields.get(k) == v for k, v in match.items())
            ):
                return ev.t
        return None

    def events(self, kind: str, since: float = 0.0, until: float = float("inf")) -> list[LogEvent]:
        return [e for e in self.history if e.kind == kind and since <= e.t <= until]

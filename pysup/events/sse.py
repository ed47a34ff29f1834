"""Server-Sent Events framing, an incremental parser, and the resume point of a request (pure).

A frame is ``id: N`` (events in the history only), ``event: NAME`` and one ``data:`` line of
JSON, ended by a blank line (the WHATWG "server-sent events" format). Comments (``: ...``) are
heartbeats; ``retry:`` tells EventSource clients how long to wait before reconnecting.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

MAX_ID_DIGITS: Final = 20
"""Longest event id accepted from a client (ids are at most 19 digits: int64)."""
MAX_SINCE_S: Final = 7 * 24 * 3600.0
"""Largest ``?since=Ns`` age: a week, far beyond any history, so a typo cannot overflow."""
_SINCE_AGE: Final = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,6})?)s$")


def envelope(event_id: int | None, name: str, time: float, data: dict[str, Any]) -> str:
    """The one-line JSON of an event: ``{"id", "event", "time", "data"}``."""
    doc = {"id": event_id, "event": name, "time": round(time, 3), "data": data}
    # json.dumps escapes CR and LF inside strings, so the line cannot break the frame.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def event_frame(name: str, data_line: str, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {data_line}\n\n".encode()


def comment(text: str) -> bytes:
    """A comment line (clients ignore it; it keeps proxies and dead-peer detection happy)."""
    return f": {text.replace(chr(10), ' ').replace(chr(13), ' ')}\n\n".encode()


def retry_frame(ms: int) -> bytes:
    return f"retry: {ms}\n\n".encode()


# --- resume points --------------------------------------------------------------------------------


class BadResume(ValueError):
    """A ``?since=`` the server does not understand (the client gets a 400 saying why)."""


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """Where a client wants its stream to start. Neither set: live events only."""

    after_id: int | None = None
    """Deliver the events after this id (``Last-Event-ID`` or ``?since=<id>``)."""
    age_s: float | None = None
    """Deliver the events of the last `age_s` seconds (``?since=<N>s``)."""
    unknown_id: bool = False
    """The client sent a ``Last-Event-ID`` that is not an id of ours: it gets a reset."""


def parse_resume(last_event_id: str | None, since: str | None) -> ResumePoint:
    """``Last-Event-ID`` wins over ``?since=`` (a reconnecting EventSource sends the header while
    its URL still carries the first ``since``). ``since`` is an event id (digits) or an age
    (``90s``, ``2.5s``): ids are exact and survive clock differences; an age is what a person
    at a terminal knows. A bad header is not the client's fault (EventSource repeats whatever id
    it last saw), so it yields a reset; a bad ``since`` raises ``BadResume``."""
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if text.isdigit() and len(text) <= MAX_ID_DIGITS and text.isascii():
            return ResumePoint(after_id=int(text))
        return ResumePoint(unknown_id=True)
    if since is None or since == "":
        return ResumePoint()
    if since.isdigit() and since.isascii() and len(since) <= MAX_ID_DIGITS:
        return ResumePoint(after_id=int(since))
    m = _SINCE_AGE.match(since)
    if m is None:
        raise BadResume(f"since={since!r}: expected an event id (digits) or an age like 90s")
    age = float(m.group(1))
    if not 0 < age <= MAX_SINCE_S:
        raise BadResume(f"since={since!r}: the age must be above 0 and at most {MAX_SINCE_S:g}s")
    return ResumePoint(age_s=age)


# --- parsing (tests and clients) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SseMessage:
    event: str
    data: str
    id: str | None
    """The ``id:`` of this message, if it had one."""

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseParser:
    """Feed bytes as they arrive; get complete messages. Comments and ``retry:`` are kept in
    ``comments`` and ``retry_ms`` so tests can see heartbeats."""

    comments: list[str] = field(default_factory=list)
    retry_ms: int | None = None
    _buf: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, chunk: bytes) -> list[SseMessage]:
        self._buf += chunk.decode("utf-8")
        out: list[SseMessage] = []
        lines = self._buf.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._buf = lines.pop()
        for line in lines:
            message = self._line(line)
            if message is not None:
                out.append(message)
        return out

    def _line(self, line: str) -> SseMessage | None:
        if line == "":
            if not self._data and not self._event:
                return None
            message = SseMessage(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return message
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

"""Reading members' logs: pysup JSON lines and Serf text lines become membership events, and an
Observer rebuilt from them answers "when did this member first see X" correctly."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from bench.memberlog import LogTail, Observer, parse_pysup_line, parse_serf_line


def _line(event: str, t: float, **fields: object) -> bytes:
    stamp = dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({"event": event, "timestamp": stamp, "level": "info", **fields}).encode()


def test_pysup_lines_become_events_with_their_own_timestamps() -> None:
    ev = parse_pysup_line(_line("member.suspect", 1000.25, member_id="b"))
    assert ev is not None and (ev.kind, ev.target, ev.t) == ("suspect", "b", pytest.approx(1000.25))
    started = parse_pysup_line(_line("supervisor.started", 999.0, member_id="me"))
    assert started is not None and (started.kind, started.target) == ("started", "me")
    assert parse_pysup_line(_line("ring.joined", 1.0)) is not None
    # Other events only when asked for, with their fields.
    applied = _line("config.gossip_applied", 5.0, incarnation=3, service_group="s.default")
    assert parse_pysup_line(applied) is None
    got = parse_pysup_line(applied, keep=("config.gossip_applied",))
    assert got is not None and got.fields["incarnation"] == 3
    assert parse_pysup_line(b'{"event": "member.alive"') is None  # cut short
    assert parse_pysup_line(b"plain text member.alive") is None


def test_serf_lines_become_events_stamped_when_read() -> None:
    cases = {
        "    2026/12/05 01:22:51 [INFO] serf: EventMemberJoin: b 127.0.0.1": ("alive", "b"),
        "    2026/12/05 01:22:58 [INFO] serf: EventMemberFailed: b 127.0.0.1": ("confirmed", "b"),
        "    2026/12/05 01:22:58 [INFO] serf: EventMemberLeave: c 10.0.0.3": ("departed", "c"),
        "    2026/12/05 01:22:54 [INFO] memberlist: Suspect b has failed, no acks received": (
            "suspect",
            "b",
        ),
    }
    for line, (kind, target) in cases.items():
        ev = parse_serf_line(line, 42.0)
        assert ev is not None and (ev.kind, ev.target, ev.t) == (kind, target, 42.0)
    assert parse_serf_line("    2026/12/05 01:22:52 [INFO] agent: Received event", 1.0) is None


def test_observer_tracks_full_view_and_first_times_since() -> None:
    view = Observer(expect=2)
    for line in (
        _line("supervisor.started", 10.0, member_id="me"),
        _line("member.alive", 11.0, member_id="a"),
        _line("member.suspect", 12.0, member_id="a"),
        _line("member.alive", 13.0, member_id="a"),
        _line("member.alive", 14.0, member_id="b"),
        _line("member.confirmed", 20.0, member_id="b"),
    ):
        ev = parse_pysup_line(line)
        assert ev is not None
        view.feed(ev)
    assert view.me == "me" and view.started_at == 10.0
    assert view.joined_at == 11.0  # its first member Alive
    assert view.full_at == 14.0  # both others Alive at once only from t=14
    assert view.first("alive", "a") == 11.0
    assert view.first("alive", "a", since=12.0) == 13.0
    assert view.first(("confirmed", "departed"), "b", since=15.0) == 20.0
    assert view.first("confirmed", "a") is None
    assert [e.t for e in view.events("suspect", 0, 100)] == [12.0]
    assert view.alive == {"a"}


def test_observer_ignores_events_about_itself() -> None:
    view = Observer(expect=1, me="h0")
    view.feed(parse_serf_line("serf: EventMemberJoin: h0 10.0.0.1", 1.0))  # type: ignore[arg-type]
    assert view.full_at is None and view.history == []


def test_log_tail_returns_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.log"
    tail = LogTail(path)
    assert tail.lines() == []  # not there yet
    path.write_bytes(b"one\ntw")
    assert tail.lines() == [b"one"]
    with open(path, "ab") as f:
        f.write(b"o\nthree\n")
    assert tail.lines() == [b"two", b"three"]
    assert tail.lines() == []

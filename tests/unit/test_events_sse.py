"""SSE framing, the parser the tests use, and how a request's resume point is read."""

from __future__ import annotations

import json

import pytest

from pysup.events.sse import (
    BadResume,
    ResumePoint,
    SseParser,
    comment,
    envelope,
    event_frame,
    parse_resume,
)


def test_data_stays_one_line_whatever_the_strings_hold() -> None:
    line = envelope(1, "config.rejected", 5.0, {"error": "bad\nline\r\nhere\u2028"})
    assert "\n" not in line and "\r" not in line
    assert json.loads(line)["data"]["error"] == "bad\nline\r\nhere\u2028"


def test_comment_cannot_break_the_frame() -> None:
    assert comment("a\nb") == b": a b\n\n"


def test_parser_reassembles_frames_split_anywhere() -> None:
    stream = (
        b"retry: 2000\n\n"
        + comment("keepalive")
        + event_frame("member.health", '{"x":1}', 5)
        + event_frame("stream.hello", "{}")
    )
    for cut in range(len(stream)):
        parser = SseParser()
        messages = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        assert [(m.event, m.id, m.data) for m in messages] == [
            ("member.health", "5", '{"x":1}'),
            ("stream.hello", None, "{}"),
        ]
        assert parser.retry_ms == 2000
        assert parser.comments == ["keepalive"]


@pytest.mark.parametrize(
    ("header", "since", "expected"),
    [
        (None, None, ResumePoint()),
        (None, "", ResumePoint()),
        ("42", None, ResumePoint(after_id=42)),
        (" 42 ", "7", ResumePoint(after_id=42)),  # the header wins over ?since
        (None, "7", ResumePoint(after_id=7)),
        (None, "90s", ResumePoint(age_s=90.0)),
        (None, "2.5s", ResumePoint(age_s=2.5)),
        ("abc", None, ResumePoint(unknown_id=True)),
        ("-1", None, ResumePoint(unknown_id=True)),
        ("1" * 21, None, ResumePoint(unknown_id=True)),
        ("٣", None, ResumePoint(unknown_id=True)),  # a non-ASCII digit is not one of our ids
        ("", "7", ResumePoint(after_id=7)),
    ],
)
def test_parse_resume(header: str | None, since: str | None, expected: ResumePoint) -> None:
    assert parse_resume(header, since) == expected


@pytest.mark.parametrize("since", ["abc", "-5s", "0s", "1e3", "5m", "9999999999s", "1" * 21])
def test_a_bad_since_is_refused_with_a_reason(since: str) -> None:
    with pytest.raises(BadResume, match="since="):
        parse_resume(None, since)

"""The labels `pysup ring` puts in front of its members' lines: aligned, coloured only on a
terminal (and never with NO_COLOR), the newline added where a member's last line lacked one.
Three real members writing at once: tests/integration/test_ring_logs.py."""

from __future__ import annotations

import io
import os

import pytest

from pysup.ringlog import LineWriter, use_colour


def test_lines_are_labelled_and_aligned() -> None:
    out = io.BytesIO()
    w = LineWriter(out, ["member-0", "member-10"], colour=False)
    w.line("member-0", b"hello\n")
    w.line("member-10", b"no newline at the end")
    w.plain("pysup ring: member 0 exited")
    assert out.getvalue().decode().splitlines() == [
        "member-0  | hello",
        "member-10 | no newline at the end",
        "pysup ring: member 0 exited",
    ]


def test_labels_are_coloured_in_turn() -> None:
    out = io.BytesIO()
    w = LineWriter(out, ["a", "b"], colour=True)
    w.line("a", b"x\n")
    w.line("b", b"y\n")
    assert out.getvalue() == b"\x1b[36ma | \x1b[0mx\n\x1b[33mb | \x1b[0my\n"


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "wb", closefd=False) as tty:
            assert use_colour(tty)
            monkeypatch.setenv("NO_COLOR", "1")
            assert not use_colour(tty)
    finally:
        os.close(master)
        os.close(slave)
    monkeypatch.delenv("NO_COLOR")
    assert not use_colour(io.BytesIO())


def test_a_closed_reader_stops_the_output_not_the_ring() -> None:
    class Gone(io.BytesIO):
        def write(self, data: bytes) -> int:  # type: ignore[override]
            raise BrokenPipeError

    w = LineWriter(Gone(), ["m"], colour=False)
    w.line("m", b"first\n")  # no exception: the pumps keep draining the members' pipes
    w.line("m", b"second\n")

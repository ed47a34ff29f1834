"""The members' output of `pysup ring`, one labelled line at a time (like `docker compose up`).

Each member writes to a pipe of its own; a thread per member reads that pipe line by line and
writes each complete line, with the member's label in front, in one write under one lock. So a
line is never joined to another member's (which happened when all members shared the terminal
and a write of one line was interleaved with another's) and never split, however the member
chunks its writes. Labels are coloured when the output is a terminal and NO_COLOR is unset.
"""

from __future__ import annotations

import os
import threading
from typing import IO, Final

MAX_LINE_BYTES: Final = 64 * 1024
"""A line longer than this is passed on in pieces of this size, each labelled: a bound on what
one runaway member can make us hold. Log lines of a supervisor are far shorter (a traceback
arrives as many lines)."""
COLOURS: Final = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
"""ANSI foreground colours for member labels, in turn (cyan, yellow, green, magenta, blue, then
their bright forms), as docker compose does; red is left for errors."""


def use_colour(out: IO[bytes]) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return os.isatty(out.fileno())
    except (OSError, ValueError):
        return False


class LineWriter:
    """Writes whole labelled lines to `out`, one at a time."""

    def __init__(self, out: IO[bytes], labels: list[str], colour: bool) -> None:
        self._out = out
        self._lock = threading.Lock()
        self._broken = False
        width = max((len(label) for label in labels), default=0)
        self._prefix: dict[str, bytes] = {}
        for i, label in enumerate(labels):
            text = f"{label:<{width}} | "
            if colour:
                text = f"\x1b[{COLOURS[i % len(COLOURS)]}m{text}\x1b[0m"
            self._prefix[label] = text.encode()

    def line(self, label: str, data: bytes) -> None:
        """Write `data` (one line, with or without its newline) labelled with `label`."""
        if not data.endswith(b"\n"):
            data += b"\n"
        self._write(self._prefix.get(label, label.encode() + b" | ") + data)

    def plain(self, text: str) -> None:
        """One line of the ring's own (no label)."""
        self._write(text.rstrip("\n").encode() + b"\n")

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._broken:
                return
            try:
                self._out.write(data)
                self._out.flush()
            except OSError:
                # The reader went away (`pysup ring | head`): keep draining the members'
                # pipes so they never block on a full pipe, but write nothing more.
                self._broken = True


def pump(stream: IO[bytes], label: str, writer: LineWriter) -> threading.Thread:
    """Start a daemon thread copying `stream`'s lines to `writer` until end of file."""

    def run() -> None:
        with stream:
            while line := stream.readline(MAX_LINE_BYTES):
                writer.line(label, line)

    thread = threading.Thread(target=run, name=f"ringlog-{label}", daemon=True)
    thread.start()
    return thread

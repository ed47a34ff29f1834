"""Three real processes writing lines at once, through `pysup ring`'s log pumps: every line
arrives whole, labelled with its writer, once, in its writer's order.

The writers make the old failure likely: each line (up to 12 KiB, several pipe buffers) goes
out in two or three separate writes with no newline until the last, as a logger that writes a
message and then its newline does; three writers shared one terminal before, so another's line
could land between the pieces (`...user=hab2026-12-04T23:46:09...`). Through the pumps each
writer has its own pipe and each line is written whole, so no line can be joined or split.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from pysup.ringlog import LineWriter, pump

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LINES = 400
WRITER = r"""
import os, random, sys, zlib
me, lines = sys.argv[1], int(sys.argv[2])
rng = random.Random(me)
for k in range(lines):
    body = "x" * rng.choice([0, 10, 100, 3000, 5000, 12000])
    text = f"w{me} {k:05d} {body} {zlib.crc32(body.encode())}"
    cuts = sorted(rng.sample(range(1, len(text)), 2))
    for piece in (text[: cuts[0]], text[cuts[0] : cuts[1]], text[cuts[1] :] + "\n"):
        os.write(1, piece.encode())
"""
LINE = re.compile(r"^member-(\d) \| w(\d) (\d{5}) (x*) (\d+)$")


def test_three_members_writing_at_once_never_join_or_split_lines(tmp_path: Path) -> None:
    labels = [f"member-{i}" for i in range(3)]
    out_path = tmp_path / "ring.out"
    with open(out_path, "wb") as out:
        writer = LineWriter(out, labels, colour=False)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, str(i), str(LINES)], stdout=subprocess.PIPE
            )
            for i in range(3)
        ]
        threads = []
        for label, proc in zip(labels, procs, strict=True):
            assert proc.stdout is not None
            threads.append(pump(proc.stdout, label, writer))
        for proc in procs:
            assert proc.wait(timeout=60) == 0
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive()
    seen: dict[str, list[int]] = {str(i): [] for i in range(3)}
    lines = out_path.read_bytes().decode().split("\n")
    assert lines[-1] == ""  # the output ends with a newline
    for line in lines[:-1]:
        m = LINE.match(line)
        assert m, f"a joined or split line: {line[:120]!r}...{line[-60:]!r}"
        label, writer_id, k, body, crc = m.groups()
        assert label == writer_id, f"line of writer {writer_id} labelled member-{label}"
        assert zlib.crc32(body.encode()) == int(crc), f"line {k} of {writer_id} was cut"
        seen[writer_id].append(int(k))
    assert seen == {str(i): list(range(LINES)) for i in range(3)}

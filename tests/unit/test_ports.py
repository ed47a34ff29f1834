"""Test ports that cannot collide (issue 13, item 11; pysup/testing/ports.py).

Before this change `free_port` bound port 0 and closed the socket: the port came from the
kernel's ephemeral range, where any outgoing connection may take it as its source port before the
process under test binds it (a control gateway's reply once arrived on a member's HTTP port), and
nothing kept two callers from getting the same port. The first test fails on that code.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

from pysup.testing.ports import BLOCK, PortClaims, ephemeral_range, port_range
from tests.util import free_port


def test_ports_are_outside_the_ephemeral_range() -> None:
    lo, hi = ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert all(not lo <= p <= hi for p in ports), [p for p in ports if lo <= p <= hi]
    assert len(set(ports)) == len(ports), "a port is handed out once"


def test_a_port_is_free_for_tcp_and_udp() -> None:
    port = free_port()
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", port))


def test_a_port_bound_by_someone_else_is_skipped(tmp_path: Path) -> None:
    claims = PortClaims(random.Random(7), claim_dir=tmp_path)
    first = claims.port()
    claims.release()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", first))
        again = PortClaims(random.Random(7), claim_dir=tmp_path)  # the same block first
        try:
            assert again.port() != first
        finally:
            again.release()


CLAIM_IN_CHILD = """
import random, sys
from pathlib import Path
from pysup.testing.ports import PortClaims
claims = PortClaims(random.Random(7), claim_dir=Path(sys.argv[1]))
print(" ".join(str(claims.port()) for _ in range(int(sys.argv[2]))), flush=True)
sys.stdin.read()  # hold the claim until the parent is done
"""


def test_concurrent_processes_never_share_a_port(tmp_path: Path) -> None:
    """Two processes with the same random choices: the second skips the block the first holds."""
    n = BLOCK + 5  # more than one block each
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIM_IN_CHILD, str(tmp_path), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        got = [set(map(int, c.stdout.readline().split())) for c in children]  # type: ignore[union-attr]
    finally:
        for c in children:
            c.communicate("", timeout=10)
    assert len(got[0]) == len(got[1]) == n
    assert not got[0] & got[1]
    start, stop = port_range()
    assert all(start <= p < stop for p in got[0] | got[1])

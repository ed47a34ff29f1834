"""Ports for test processes that cannot collide.

Picking a port by binding port 0 and closing the socket (the usual ``free_port``) hands out a port
from the kernel's *ephemeral* range: until the process under test binds it, any outgoing
connection on the machine may take it as its source port, and a second call may return it again.
Both happened here (a control gateway's reply arrived on a member's HTTP port). So:

- ports come from below the ephemeral range (``/proc/sys/net/ipv4/ip_local_port_range``), where
  the kernel never picks a source port;
- a process claims a block of ``BLOCK`` ports with an exclusive ``flock`` on a file in
  ``CLAIM_DIR``, held until it exits (the kernel releases it even after a SIGKILL), so no two
  concurrent processes (pytest workers, a benchmark beside a test run) hand out the same port;
- within the process each port is handed out once, and only if TCP and UDP can bind it now.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

BLOCK = 64
"""Ports claimed at a time: one lock file descriptor per 64 ports handed out."""
CLAIM_DIR = Path(tempfile.gettempdir()) / "pysup-test-ports"
"""Where the block lock files live (shared by every process on the machine)."""
LOWEST = 10_000
"""Never hand out ports below this: well-known and registered services live there."""
_MIN_SPAN = 4 * BLOCK


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for source ports of outgoing connections (inclusive)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def port_range() -> tuple[int, int]:
    """[start, stop) of the ports handed out: below the ephemeral range, else above it."""
    lo, hi = ephemeral_range()
    if lo - LOWEST >= _MIN_SPAN:
        return LOWEST, lo
    if 65536 - (hi + 1) >= _MIN_SPAN:
        return hi + 1, 65536
    raise RuntimeError(f"no room for test ports outside the ephemeral range {lo}-{hi}")


def bindable(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


class PortClaims:
    """The blocks this process holds and the next port to hand out (see the module docstring)."""

    def __init__(self, rng: random.Random | None = None, claim_dir: Path = CLAIM_DIR) -> None:
        self._rng = rng or random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
        self._dir = claim_dir
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}  # block start -> fd of its lock file
        self._next: list[int] = []
        self.issued: set[int] = set()

    def _claim_block(self) -> None:
        start, stop = port_range()
        blocks = list(range(start, stop - BLOCK + 1, BLOCK))
        first = self._rng.randrange(len(blocks))
        self._dir.mkdir(parents=True, exist_ok=True)
        for i in range(len(blocks)):
            block = blocks[(first + i) % len(blocks)]
            if block in self._held:
                continue
            fd = os.open(self._dir / f"{block}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._held[block] = fd
            self._next = list(range(block + BLOCK - 1, block - 1, -1))  # popped from the end
            return
        raise RuntimeError(f"every block of test ports in {start}-{stop} is claimed")

    def port(self, host: str = "127.0.0.1") -> int:
        with self._lock:
            for _ in range(1000):
                if not self._next:
                    self._claim_block()
                port = self._next.pop()
                if port not in self.issued and bindable(host, port):
                    self.issued.add(port)
                    return port
        raise RuntimeError("no free test port")

    def release(self) -> None:
        """Give the blocks back (tests of this class; a process simply exits)."""
        with self._lock:
            for fd in self._held.values():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._held.clear()
            self._next = []


_CLAIMS = PortClaims()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for TCP and UDP on `host`, outside the ephemeral range, that no other caller
    in any process gets while this process lives."""
    return _CLAIMS.port(host)

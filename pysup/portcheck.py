"""Which local ports are taken, and by which process.

A test bind decides whether a port is free (the kernel's answer, nothing guessed). For a taken
port, `/proc/net/{tcp,tcp6,udp,udp6}` give the inode of the socket that holds it and
`/proc/<pid>/fd` the process that owns that inode: readable for our own processes, for all of
them as root. The parsing functions are pure; the rest is thin I/O.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Proto = Literal["tcp", "udp"]

TCP_LISTEN: Final = "0A"
"""`st` of a listening TCP socket in /proc/net/tcp (include/net/tcp_states.h)."""
WILDCARDS: Final = frozenset({"0.0.0.0", "::"})
CMDLINE_MAX: Final = 100
"""Characters of a holder's command line to show: enough to tell `python3 -m http.server 8080`
from another python3, short enough for one line."""


@dataclass(frozen=True)
class PortUse:
    """A port someone means to bind: `what` says who and why, for the message."""

    host: str
    port: int
    proto: Proto
    what: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}/{self.proto}"


@dataclass(frozen=True)
class Holder:
    pid: int
    name: str
    """`/proc/<pid>/comm`."""
    cmdline: str


@dataclass(frozen=True)
class Taken:
    use: PortUse
    reason: str
    """The bind error (`Address already in use`, `Permission denied`, ...)."""
    holders: tuple[Holder, ...]
    """Processes holding the port, where /proc lets us see them (may be empty)."""

    def describe(self) -> str:
        if self.holders:
            who = ", ".join(f"{h.name} (pid {h.pid}): {h.cmdline}" for h in self.holders)
            return f"{self.use} {self.use.what}: taken by {who}"
        if self.reason != os.strerror(errno.EADDRINUSE):
            return f"{self.use} {self.use.what}: {self.reason}"
        return (
            f"{self.use} {self.use.what}: taken by a process this user cannot see "
            "(`ss -ltnup` as root names it)"
        )


# --- pure: /proc/net parsing --------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSocket:
    ip: str
    port: int
    state: str
    inode: int


def decode_address(hex_addr: str) -> tuple[str, int]:
    """`0100007F:1F90` -> ("127.0.0.1", 8080); IPv6 too (four little-endian 32-bit words)."""
    hex_ip, _, hex_port = hex_addr.partition(":")
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    family = socket.AF_INET if len(words) == 4 else socket.AF_INET6
    ip = socket.inet_ntop(family, words)
    if ip.startswith("::ffff:") and "." in ip:
        ip = ip.removeprefix("::ffff:")
    return ip, int(hex_port, 16)


def parse_proc_net(text: str) -> list[ProcSocket]:
    """The sockets in one /proc/net/{tcp,udp}[6] table; malformed lines are skipped."""
    out: list[ProcSocket] = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            ip, port = decode_address(cols[1])
            out.append(ProcSocket(ip, port, cols[3], int(cols[9])))
        except ValueError:
            continue
    return out


def holding_inodes(sockets: Iterable[ProcSocket], use: PortUse) -> set[int]:
    """Inodes of the sockets that keep `use` from binding: same port, an overlapping address,
    listening (TCP) or bound (UDP)."""
    found = set()
    for s in sockets:
        if s.port != use.port or s.inode == 0:
            continue
        if use.proto == "tcp" and s.state != TCP_LISTEN:
            continue
        if use.host in WILDCARDS or s.ip in WILDCARDS or s.ip == use.host:
            found.add(s.inode)
    return found


# --- I/O ----------------------------------------------------------------------------------------


def bind_error(use: PortUse) -> str | None:
    """None when `use` can be bound right now, else the error's text."""
    family = socket.AF_INET6 if ":" in use.host else socket.AF_INET
    kind = socket.SOCK_STREAM if use.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as s:
        if use.proto == "tcp":
            # As servers bind: a port whose old connections linger in TIME_WAIT is free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((use.host, use.port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def _proc_sockets(proto: Proto, proc: Path) -> list[ProcSocket]:
    out: list[ProcSocket] = []
    for name in (proto, f"{proto}6"):
        try:
            out += parse_proc_net((proc / "net" / name).read_text())
        except OSError:
            continue
    return out


def _holders(inodes: set[int], proc: Path) -> tuple[Holder, ...]:
    if not inodes:
        return ()
    wanted = {f"socket:[{i}]" for i in inodes}
    found: list[Holder] = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (pid_dir / "fd").iterdir()}
        except OSError:
            continue  # not ours to read, or gone
        if links & wanted:
            found.append(_holder(pid_dir))
    return tuple(sorted(found, key=lambda h: h.pid))


def _holder(pid_dir: Path) -> Holder:
    try:
        name = (pid_dir / "comm").read_text().strip()
    except OSError:
        name = "?"
    try:
        argv = (pid_dir / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        cmdline = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv)
    except OSError:
        cmdline = ""
    if len(cmdline) > CMDLINE_MAX:
        cmdline = cmdline[: CMDLINE_MAX - 3] + "..."
    return Holder(int(pid_dir.name), name, cmdline)


def check_ports(uses: Sequence[PortUse], proc: Path = Path("/proc")) -> list[Taken]:
    """The uses that cannot bind now, each with who holds the port (where visible)."""
    taken: list[Taken] = []
    tables: dict[Proto, list[ProcSocket]] = {}
    for use in uses:
        reason = bind_error(use)
        if reason is None:
            continue
        if use.proto not in tables:
            tables[use.proto] = _proc_sockets(use.proto, proc)
        inodes = holding_inodes(tables[use.proto], use)
        taken.append(Taken(use, reason, _holders(inodes, proc)))
    return taken


def all_free(uses: Sequence[PortUse]) -> bool:
    return all(bind_error(u) is None for u in uses)

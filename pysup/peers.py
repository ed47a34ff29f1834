"""Seeds to join through: static --peer names (resolved again on every attempt, unlike Habitat,
which resolved them once: habitat#849) and the --peer-watch-file, re-read when it changes."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterable
from pathlib import Path

import structlog

from pysup.butterfly.effects import Addr
from pysup.settings import SettingsError, parse_peer

log = structlog.get_logger(__name__)


async def resolve(specs: Iterable[str], default_port: int = 9638) -> list[Addr]:
    """Every IPv4 address of every HOST[:PORT]; names that don't resolve now are skipped
    (and logged), so one dead name never stops a join."""
    loop = asyncio.get_running_loop()
    out: list[Addr] = []
    for spec in specs:
        try:
            host, port = parse_peer(spec, default_port)
        except SettingsError as e:
            log.warning("peer.invalid", peer=spec, error=str(e))
            continue
        try:
            infos = await loop.getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except (OSError, UnicodeError) as e:
            log.info("peer.unresolved", peer=spec, error=str(e))
            continue
        for info in infos:
            addr = (str(info[4][0]), int(info[4][1]))
            if addr not in out:
                out.append(addr)
    return out


class PeerWatchFile:
    """Habitat's --peer-watch-file: one IP[:PORT] a line, `#` comments; re-read on change."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._stamp: tuple[float, int] | None = None
        self.peers: list[str] = []

    def poll(self) -> bool:
        """Re-read the file if it changed; True when the peer list changed."""
        try:
            st = os.stat(self.path)
        except OSError:
            if self.peers:
                self.peers = []
                return True
            return False
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            lines = self.path.read_text().splitlines()
        except OSError as e:
            log.warning("peer_watch.unreadable", path=str(self.path), error=str(e))
            return False
        peers = [ln.split("#", 1)[0].strip() for ln in lines]
        peers = [p for p in peers if p]
        changed = peers != self.peers
        self.peers = peers
        if changed:
            log.info("peer_watch.changed", path=str(self.path), peers=peers)
        return changed

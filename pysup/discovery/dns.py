"""Peer discovery from the A records of a (headless) Service: `--peer-discovery dns:NAME[:PORT]`.

Habitat resolved a `--peer` name once at start; here the name is resolved again every
`interval_s` until the daemon says it has joined a ring, so pods that start before their peers'
records exist still find them (with `publishNotReadyAddresses: true` records exist before
readiness).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

Peer = tuple[str, int]
Resolver = Callable[[str, int], Awaitable[set[Peer]]]


async def resolve_a(name: str, port: int) -> set[Peer]:
    """IPv4 addresses of `name` (A records) paired with `port`."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, family=socket.AF_INET, type=socket.SOCK_STREAM)
    return {(str(info[4][0]), port) for info in infos}


class DnsPeerSource:
    """Resolves `name` every `interval_s` seconds until `mark_joined()`."""

    def __init__(
        self,
        name: str,
        port: int,
        *,
        interval_s: float = 5.0,
        self_ip: str | None = None,
        resolve: Resolver = resolve_a,
    ) -> None:
        self.name = name
        self.port = port
        self.interval_s = interval_s
        """Seconds between lookups: short enough to join quickly, long enough not to load DNS."""
        self.self_ip = self_ip
        self._resolve = resolve
        self._joined = asyncio.Event()
        self.peers: frozenset[Peer] | None = None

    @classmethod
    def from_spec(
        cls,
        spec: str,
        default_port: int,
        *,
        interval_s: float = 5.0,
        self_ip: str | None = None,
    ) -> DnsPeerSource:
        """`NAME` or `NAME:PORT` (the part after `dns:` in `--peer-discovery`)."""
        name, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "")
        return cls(
            name,
            int(port) if port else default_port,
            interval_s=interval_s,
            self_ip=self_ip,
        )

    def mark_joined(self) -> None:
        """Stop resolving: the daemon has joined a ring."""
        self._joined.set()

    @property
    def joined(self) -> bool:
        return self._joined.is_set()

    async def run(self, on_peers: Callable[[frozenset[Peer]], None]) -> None:
        """Call `on_peers` whenever the resolved set changes; return once joined."""
        while not self._joined.is_set():
            try:
                found = await self._resolve(self.name, self.port)
            except OSError as e:  # socket.gaierror: NXDOMAIN, no records yet, resolver down
                log.info("discovery.dns_failed", name=self.name, error=str(e))
            else:
                peers = frozenset(p for p in found if p[0] != self.self_ip)
                if peers != self.peers:
                    self.peers = peers
                    log.info("discovery.peers", mode="dns", name=self.name, count=len(peers))
                    on_peers(peers)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined.wait(), self.interval_s)

"""Joining the gossip ring: through the seeds while alone (jittered backoff), and, once joined,
through discovered strangers so partial rings merge (no split brain).

The seeds are `--peer` addresses, a `--peer-watch-file` (re-read on every attempt) and peer
discovery's; never our own address. A member event (`wake`) cuts the wait short.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import structlog

from pysup.butterfly.config import GossipConfig
from pysup.butterfly.effects import Addr
from pysup.discovery.runtime import Discovery
from pysup.peers import PeerWatchFile, resolve
from pysup.ring import Ring

log = structlog.get_logger(__name__)

JOINED_RECHECK_S = 1.0
"""Once joined, seconds between looks for discovered strangers (and for being alone again)."""


class Joiner:
    def __init__(
        self,
        ring: Ring,
        config: GossipConfig,
        *,
        peers: list[str],
        peer_watch: PeerWatchFile | None,
        default_port: int,
        discovery: Discovery | None,
        sys_ip: str,
        rng: random.Random,
        wake: asyncio.Event,
        stopping: asyncio.Event,
    ) -> None:
        self.ring = ring
        self.config = config
        self.peers = peers
        self.peer_watch = peer_watch
        self.default_port = default_port
        self.discovery = discovery
        self.sys_ip = sys_ip
        self.rng = rng
        self.wake = wake
        self.stopping = stopping
        self.joined = False

    async def seed_addrs(self) -> list[Addr]:
        specs = list(self.peers)
        if self.peer_watch is not None:
            self.peer_watch.poll()
            specs.extend(self.peer_watch.peers)
        addrs = await resolve(specs, self.default_port)
        if self.discovery is not None:
            addrs += self.discovery.seeds()
        port = self.ring.me.gossip_port
        mine = {(self.sys_ip, port), ("127.0.0.1", port)}
        return [a for a in addrs if a not in mine]

    async def run(self) -> None:
        """Join through the seeds; while alone, keep trying with jittered backoff."""
        cfg, ring = self.config, self.ring
        delay = cfg.join_retry_base_s
        while not self.stopping.is_set():
            if ring.departed:
                return
            if ring.is_alone():
                self.joined = False
                addrs = await self.seed_addrs()
                wait = delay * self.rng.uniform(0.5, 1.5)
                if addrs:
                    log.info("ring.join_attempt", seeds=[f"{h}:{p}" for h, p in addrs])
                    ring.join(addrs)
                    delay = min(cfg.join_retry_max_s, delay * 2)
                # No seed to try (an empty peer-watch file): nothing to back off from, so the
                # file is re-read at the base interval and a seed written later is used at once.
            else:
                if not self.joined:
                    self.joined = True
                    log.info("ring.joined", members=ring.num_members())
                    if self.discovery is not None:
                        self.discovery.mark_joined()
                # Discovered addresses outside our ring: merge partial rings (no split brain).
                strangers = self.discovery.strangers(ring.members()) if self.discovery else []
                if strangers:
                    ring.join(strangers)
                delay = cfg.join_retry_base_s
                wait = JOINED_RECHECK_S
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self.wake.wait()
                    if ring.is_alone():
                        # a member came and went; back off normally
                        await asyncio.sleep(0)

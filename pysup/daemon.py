"""The composition root of `pysup run`: state, ring, gateways, services, and ordered shutdown.

Signal handlers only record; the loop acts (uvicorn's model). Shutdown order: leave the ring (so
others see Departed at once), stop services, save state, close the gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from pysup import __version__
from pysup.butterfly import codec
from pysup.butterfly.config import PRESETS
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import Addr, MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.keys import RingKey, RingKeyError, default_key_cache, resolve_ring_key
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import Rumor
from pysup.butterfly.rumors import RumorStore
from pysup.butterfly.runner import Runner
from pysup.gateway.http import make_app
from pysup.metrics import Metrics
from pysup.peers import PeerWatchFile, resolve
from pysup.settings import Settings
from pysup.statedir import StateDir

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_DEPARTED = 3
"""Exit status when the ring departed us (`pysup sup depart`): a restart would be refused."""


class StartupError(Exception):
    """The supervisor cannot start (a port in use, an unreadable ring key ...)."""


def detect_ip(settings: Settings) -> str:
    if settings.sys_ip_address:
        return settings.sys_ip_address
    host = settings.gossip_addr()[0]
    if host not in ("0.0.0.0", "::", ""):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class Supervisor:
    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.metrics = Metrics()
        self.state = StateDir(Path(settings.state_dir))
        self.gossip_config = PRESETS[settings.gossip_profile]
        self.rng = random.SystemRandom()
        self.stopping = asyncio.Event()
        self.exit_code = EXIT_OK
        self.sys_ip = detect_ip(settings)
        self.key: RingKey | None = None
        self.runner: Runner | None = None
        self.http_runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self.services: Any = None  # the ServiceManager, once services are wired
        self.joined = False
        self._tasks: list[asyncio.Task[None]] = []
        self._peer_watch = (
            PeerWatchFile(settings.peer_watch_file) if settings.peer_watch_file else None
        )
        self._member_changed = asyncio.Event()
        self._departing = False
        self.extra_routes: list[Callable[[web.Application], None]] = []

    # --- views for the gateways ---------------------------------------------------------

    @property
    def core(self) -> SwimCore:
        assert self.runner is not None
        return self.runner.core

    def local_member(self) -> Member:
        return self.core.me

    def ring_members(self) -> list[Member]:
        return list(self.core.members())

    def rumor_store(self) -> RumorStore:
        return self.core.store

    def has_seeds(self) -> bool:
        return bool(self.settings.peers) or bool(self._peer_watch and self._peer_watch.peers)

    def readiness(self) -> tuple[bool, str]:
        mode = self.settings.readiness
        if self._departing:
            return False, "departing"
        if mode == "api":
            return True, "the API is serving"
        if self.runner is None:
            return False, "the gossip ring is not started yet"
        if mode in ("ring", "services") and self.core.is_alone() and self.has_seeds():
            return False, "not joined: no seed has answered yet"
        if mode == "services" and self.services is not None:
            ok, reason = self.services.readiness()
            if not ok:
                return False, str(reason)
        return True, "joined" if not self.core.is_alone() else "standalone ring"

    # --- start --------------------------------------------------------------------------

    def _load_key(self) -> RingKey | None:
        s = self.settings
        if not s.ring and not s.ring_key:
            return None
        cache = Path(s.key_cache) if s.key_cache else default_key_cache(self.env)
        try:
            return resolve_ring_key(s.ring, s.ring_key, cache)
        except RingKeyError as e:
            raise StartupError(f"ring key: {e}") from None

    def _load_rumors(self) -> list[Rumor]:
        data = self.state.load_rumors()
        if data is None:
            return []
        try:
            return codec.decode_rumors(data)
        except codec.CodecError as e:
            self.state.quarantine("rumors.dat", f"undecodable: {e}")
            return []

    async def start(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self.key = self._load_key()
        member_id = self.state.load_or_create_member_id(random.Random(self.rng.getrandbits(64)))
        incarnation = self.state.load_incarnation() + 1
        self.state.save_incarnation(incarnation)
        rumors = self._load_rumors()
        host, port = s.gossip_addr()
        me = Member(member_id, incarnation, self.sys_ip, port, Health.ALIVE, s.permanent_peer)
        core = SwimCore(
            self.gossip_config, me, random.Random(self.rng.getrandbits(64)), loop.time(), rumors
        )
        # The gateway comes first: probes must answer before any join attempt.
        if not s.http_disable:
            await self._start_http()
        self.runner = Runner(
            core, host, port, key=self.key, metrics=self.metrics, listener=self._on_event
        )
        try:
            await self.runner.start()
        except OSError as e:
            raise StartupError(f"cannot listen for gossip on {host}:{port}: {e.strerror}") from None
        log.info(
            "supervisor.started",
            member_id=member_id,
            incarnation=incarnation,
            gossip=f"{host}:{self.runner.transport.port}",
            http=None if s.http_disable else f"{s.http_addr()[0]}:{self.http_port}",
            ring=self.key.name_with_rev if self.key else None,
            restored_rumors=len(rumors),
            version=__version__,
        )
        self._spawn(self._join_loop())
        self._spawn(self._save_loop())

    async def _start_http(self) -> None:
        host, port = self.settings.http_addr()
        token = self.env.get("HAB_SUP_GATEWAY_AUTH_TOKEN") or None

        def routes(app: web.Application) -> None:
            for add in self.extra_routes:
                add(app)

        app = make_app(self, token, routes)
        self.http_runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.http_runner.setup()
        site = web.TCPSite(self.http_runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            raise StartupError(f"cannot listen for HTTP on {host}:{port}: {e.strerror}") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.http_port = int(sockets[0].getsockname()[1]) if sockets else port

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    # --- the ring -----------------------------------------------------------------------

    def _on_event(self, e: MemberChanged | RumorChanged | SelfChanged) -> None:
        if isinstance(e, MemberChanged):
            m = e.member
            log.info(
                f"member.{m.health.name.lower()}",
                member_id=m.id,
                address=f"{m.address}:{m.gossip_port}",
                incarnation=m.incarnation,
                previous=e.previous.label if e.previous else None,
            )
            self._member_changed.set()
            if self.services is not None:
                self.services.on_census_changed()
        elif isinstance(e, RumorChanged):
            if self.services is not None:
                self.services.on_rumor(e.rumor)
        elif e.reason == "refuted":
            log.info("member.refuted", incarnation=e.member.incarnation)
            self.state.save_incarnation(e.member.incarnation)
        elif e.reason == "departed":
            log.error(
                "supervisor.departed",
                message="this supervisor was departed from the ring (`sup depart`); "
                "it stops its services and exits. Remove MEMBER_ID from the state dir to rejoin "
                "as a new member.",
            )
            self.exit_code = EXIT_DEPARTED
            self.stopping.set()

    async def _seed_addrs(self) -> list[Addr]:
        specs = list(self.settings.peers)
        if self._peer_watch is not None:
            self._peer_watch.poll()
            specs.extend(self._peer_watch.peers)
        addrs = await resolve(specs, self.settings.gossip_addr()[1] or 9638)
        mine = {(self.sys_ip, self.core.me.gossip_port), ("127.0.0.1", self.core.me.gossip_port)}
        return [a for a in addrs if a not in mine]

    async def _join_loop(self) -> None:
        """Join through the seeds; while alone, keep trying with jittered backoff."""
        cfg = self.gossip_config
        delay = cfg.join_retry_base_s
        while not self.stopping.is_set():
            if self.core.departed:
                return
            if self.core.is_alone():
                self.joined = False
                addrs = await self._seed_addrs()
                if addrs:
                    log.info("ring.join_attempt", seeds=[f"{h}:{p}" for h, p in addrs])
                    assert self.runner is not None
                    self.runner.join(addrs)
                wait = delay * self.rng.uniform(0.5, 1.5)
                delay = min(cfg.join_retry_max_s, delay * 2)
            else:
                if not self.joined:
                    self.joined = True
                    log.info("ring.joined", members=self.core.num_members())
                delay = cfg.join_retry_base_s
                wait = 1.0
            self._member_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._member_changed.wait()
                    if self.core.is_alone():
                        # a member came and went; back off normally
                        await asyncio.sleep(0)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_save_interval_s)
            self.save_state()

    def save_state(self) -> None:
        if self.runner is None:
            return
        try:
            self.state.save_rumors(codec.encode_rumors(self.core.all_rumors()))
            self.state.save_incarnation(self.core.me.incarnation)
        except OSError as e:
            log.error("state.save_failed", error=str(e))

    # --- stop ---------------------------------------------------------------------------

    async def depart(self) -> None:
        """Leave the ring and stop services, but keep the HTTP gateway up until we are
        told to terminate (the container pre-stop hook's contract)."""
        if self._departing:
            return
        self._departing = True
        if self.runner is not None:
            await self.runner.leave()
        if self.services is not None:
            await self.services.stop_all()

    async def shutdown(self) -> None:
        log.info("supervisor.stopping")
        if self.runner is not None and not self.core.departed:
            await self.runner.leave()
        if self.services is not None:
            with contextlib.suppress(Exception):
                await self.services.stop_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.save_state()
        if self.runner is not None:
            await self.runner.close()
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        log.info("supervisor.stopped", exit_code=self.exit_code)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            await self.start()
            await self.stopping.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.shutdown()
        return self.exit_code

    def _on_signal(self, sig: signal.Signals) -> None:
        # Only record: the loop does the work.
        log.info("supervisor.signal", signal=sig.name)
        self.stopping.set()

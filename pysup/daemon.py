"""The composition root of `pysup run`: state, ring, gateways, services, and ordered shutdown.

The daemon wires the layers (docs/architecture.md, "Layers"): it builds a `pysup.ring.Ring` (the
gossip ring, or the Kubernetes-native one), the services above it, and the two gateways, which
see it only through their protocols (``pysup.gateway.host``). Signal handlers only record; the
loop acts (uvicorn's model). One ordered shutdown (`shutdown`): the control gateway stops
accepting, the event stream closes, we leave the ring (so others see Departed at once), the
services stop, the state is saved, the ring closes, and the HTTP gateway last (probes answer
through the whole shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from aiohttp import web

from pysup import __version__
from pysup.butterfly import codec
from pysup.butterfly.config import PRESETS
from pysup.butterfly.core import SwimCore
from pysup.butterfly.keys import RingKey, RingKeyError, default_key_cache, resolve_ring_key
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import Rumor
from pysup.butterfly.ring import GossipRing
from pysup.census import Census
from pysup.census_build import CensusCache
from pysup.crypto.sealed import RumorOpener
from pysup.crypto.tls import TlsConfigError
from pysup.discovery.runtime import Discovery, DiscoveryConfigError
from pysup.events import EventHub, EventStream
from pysup.faults import Faults, one_line
from pysup.gateway.ctl import start_ctl_server
from pysup.gateway.http import make_app
from pysup.gateway.http_server import HttpServer
from pysup.gateway.service_routes import add_service_routes
from pysup.gateway.tls_setup import ctl_tls, http_tls
from pysup.joining import Joiner
from pysup.listener import Listener, raise_fd_limit
from pysup.metrics import Metrics
from pysup.peers import PeerWatchFile
from pysup.readiness import readiness
from pysup.ring import Ring, RumorView
from pysup.ringlisten import RingListener
from pysup.ringstate import load_ring_state
from pysup.service.errors import ServiceLoadError
from pysup.service.lifecycle import OrphanPolicy, ServiceTuning
from pysup.service.manager import ServiceManager
from pysup.service.pkgpaths import PkgPaths
from pysup.service.reaper import Reaper
from pysup.service.saved import load_saved_specs
from pysup.service.spec import ServiceSpec, SpecError
from pysup.settings import Settings
from pysup.statedir import StateDir, describe_error
from pysup.sysinfo import detect_ip, sys_info

if TYPE_CHECKING:
    from pysup.native import NativeRing

log = structlog.get_logger(__name__)

T = TypeVar("T")

EXIT_OK = 0
EXIT_DEPARTED = 3
"""Exit status when the ring departed us (`pysup sup depart`): a restart would be refused."""
EXIT_TASK_DIED = 70
"""Exit status when a critical task died (EX_SOFTWARE): the process stops rather than run on as a
member that no longer gossips or answers; a restart (by its init system) starts it afresh."""


class StartupError(Exception):
    """The supervisor cannot start (a port in use, an unreadable ring key ...)."""


def _same_plan_loaded(services: ServiceManager, plan_dir: str) -> bool:
    """A plan given on the command line that a saved spec already loaded."""
    want = os.path.realpath(plan_dir)
    return any(os.path.realpath(svc.spec.plan_dir) == want for svc in services.services())


class Supervisor:
    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.metrics = Metrics()
        self.faults = Faults(self.metrics, on_fatal=self._task_died)
        try:
            self.state = StateDir(Path(settings.state_dir))
        except OSError as e:
            raise StartupError(describe_error(Path(settings.state_dir), e)) from None
        self.gossip_config = PRESETS[settings.gossip_profile]
        if settings.departure_timeout_s is not None:
            self.gossip_config = self.gossip_config.with_(
                departure_timeout_s=settings.departure_timeout_s
            )
        self.rng = random.SystemRandom()
        self.stopping = asyncio.Event()
        self.exit_code = EXIT_OK
        self.sys_ip = detect_ip(settings)
        self.key: RingKey | None = None
        self.ring: Ring | None = None  # GossipRing, or NativeRing in --mode kubernetes
        self._before_census: Callable[[], None] = lambda: None
        self.http: HttpServer | None = None
        self.ctl: Listener | None = None
        self.http_port: int | None = None
        self.services: ServiceManager | None = None
        self.joiner: Joiner | None = None
        self._incarnation_saved = False
        """Set once this start persisted its incarnation: a start that fails before that saves
        nothing at shutdown, so failed starts do not raise the stored incarnation each time."""
        self._tasks: list[asyncio.Task[None]] = []
        self._peer_watch = (
            PeerWatchFile(settings.peer_watch_file) if settings.peer_watch_file else None
        )
        self._member_changed = asyncio.Event()
        self._departing = False
        self.extra_routes: list[Callable[[web.Application], None]] = []
        self.discovery: Discovery | None = None  # --peer-discovery, built in start()
        self.events: EventStream | None = None  # GET /events, made in start() (needs our id)
        cache = Path(settings.key_cache) if settings.key_cache else default_key_cache(self.env)
        self.opener = RumorOpener(cache, self.metrics.reject)  # encrypted config and files
        self.listener = RingListener(
            opener=self.opener,
            state=self.state,
            on_member_changed=self._member_changed.set,
            on_departed=self._departed,
        )
        self._census = CensusCache(self.opener.plain)

    # --- views for the gateways (pysup.gateway.host) -----------------------------------

    def _ring(self) -> Ring:
        assert self.ring is not None, "the ring is not started yet"
        return self.ring

    def local_member(self) -> Member:
        return self._ring().me

    def ring_members(self) -> list[Member]:
        return list(self._ring().members())

    def rumor_store(self) -> RumorView:
        return self._ring().store

    def terminate(self) -> None:
        self.stopping.set()

    def has_seeds(self) -> bool:
        return bool(self.settings.peers) or bool(self._peer_watch and self._peer_watch.peers)

    def readiness(self) -> tuple[bool, str]:
        return readiness(
            self.settings.readiness,
            departing=self._departing,
            ring=self.ring,
            has_seeds=self.has_seeds(),
            discovery=self.discovery,
            services=self.services,
        )

    def liveness(self) -> list[str]:
        problems = self.faults.problems()
        if self.ring is not None:
            problems += self.ring.problems()
        return problems

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

    async def start(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        self.key = self._load_key()
        host, port = s.gossip_addr()
        rumors: list[Rumor] = []
        ring: Ring
        if s.mode == "kubernetes":  # no gossip ring: the Kubernetes API stands in for it
            ring = self._native_ring()
            member_id, incarnation = ring.me.id, 1
        else:
            seed = random.Random(self.rng.getrandbits(64))
            member_id, incarnation, rumors = self._persist(
                lambda: load_ring_state(self.state, seed)
            )
            me = Member(member_id, incarnation, self.sys_ip, port, Health.ALIVE, s.permanent_peer)
            core = SwimCore(
                self.gossip_config, me, random.Random(self.rng.getrandbits(64)), loop.time(), rumors
            )
            ring = GossipRing(
                core,
                host,
                port,
                key=self.key,
                metrics=self.metrics,
                listener=self.listener,
                udp_backend=s.udp_backend,
                faults=self.faults,
            )
        self.ring = ring
        # Ids start at our start time in µs: above any id of an earlier run (docs/events.md).
        hub = EventHub(first_id=int(time.time() * 1_000_000), member_id=member_id)
        self.events = self.listener.events = EventStream(hub)
        self.metrics.watch_events(hub.stats)
        self.services = self.listener.services = ServiceManager(
            events=self.events.publish,
            state=self.state,
            sys_info=sys_info(s, self.sys_ip),
            member_id=member_id,
            census=self.census,
            ring_size=ring.num_members,
            publish=self.publish,
            hook_timeout_s=s.hook_timeout_s,
            env=self.env,
            external_leader=s.mode == "kubernetes",  # the Lease decides (pysup/native.py)
            faults=self.faults,
            pkg_paths=PkgPaths.from_settings(
                s.pkg_paths, s.pkg_path_fallback, self.env.get("PATH")
            ),
            tuning=ServiceTuning(orphans=OrphanPolicy(s.orphans)),
        )
        services = self.services
        self.extra_routes.append(lambda app: add_service_routes(app, services, self.census))
        # The gateway comes first: probes must answer before any join attempt.
        if not s.http_disable:
            await self._start_http()
        try:
            await ring.start()
        except OSError as e:
            raise StartupError(f"cannot listen for gossip on {host}:{port}: {e.strerror}") from None
        if s.mode != "kubernetes":
            # Saved once the sockets are bound, so a start that fails (a port in use) does not
            # raise the stored incarnation each time; before the first packet goes out.
            self._persist(lambda: self.state.save_incarnation(incarnation))
        self._incarnation_saved = True
        log.info(
            "supervisor.started",
            member_id=member_id,
            incarnation=incarnation,
            gossip=f"{host}:{ring.port}",
            http=None if s.http_disable else f"{s.http_addr()[0]}:{self.http_port}",
            ring=self.key.name_with_rev if self.key else None,
            restored_rumors=len(rumors),
            version=__version__,
        )
        try:  # discovery: seeds while alone, strangers once joined (pysup/discovery/runtime.py)
            self.discovery = Discovery.from_settings(
                s, self.env, self_ip=self.sys_ip, on_change=self._member_changed.set
            )
        except DiscoveryConfigError as e:
            raise StartupError(str(e)) from None
        self._spawn("discovery", self.discovery.run())
        await self._load_services()
        await self._start_ctl()
        if s.mode != "kubernetes":
            self.joiner = Joiner(
                ring,
                self.gossip_config,
                peers=list(s.peers),
                peer_watch=self._peer_watch,
                default_port=s.gossip_addr()[1] or 9638,
                discovery=self.discovery,
                sys_ip=self.sys_ip,
                rng=self.rng,
                wake=self._member_changed,
                stopping=self.stopping,
            )
            self._spawn("ring.join", self.joiner.run())
        self._spawn("state.save", self._save_loop())

    def _persist(self, step: Callable[[], T]) -> T:
        """A state-dir step at start: what cannot be fixed is one line and exit status 1."""
        try:
            return step()
        except OSError as e:
            raise StartupError(describe_error(self.state.path, e)) from None

    def _native_ring(self) -> NativeRing:
        """`--mode kubernetes`: members, config and leader from the API (pysup/native.py)."""
        # The Kubernetes client and native mode load only in this mode (issue 18: start-up).
        from pysup.native import NativeConfigError, NativeRing, loaded_groups

        try:
            ring = NativeRing.from_settings(
                self.settings,
                self.env,
                sys_ip=self.sys_ip,
                groups=lambda: loaded_groups(self.services),
                listener=self.listener,
                faults=self.faults,
            )
        except NativeConfigError as e:
            raise StartupError(str(e)) from None
        self.sys_ip = ring.me.address  # POD_IP: what the other members list us as
        # A service loading now must see its group's ConfigMap config in its first render.
        self._before_census = ring.sync_groups
        return ring

    def census(self) -> Census:
        self._before_census()  # first: the native ring takes newly loaded groups in
        ring = self._ring()
        return self._census.get(ring.me, ring.members(), ring.store, ring.version)

    def publish(self, rumor: Rumor) -> None:
        self._ring().publish(rumor)

    async def _load_services(self) -> None:
        """Specs saved by `svc load` first, then the plans given on the command line (or
        PYSUP_DEFAULT_PLANS), skipping any whose service is already loaded."""
        assert self.services is not None
        s = self.settings
        for spec in load_saved_specs(self.state):
            with contextlib.suppress(ServiceLoadError):  # the manager logged it
                await self.services.load(spec)
        for plan_dir in s.plans:
            try:
                spec = ServiceSpec(
                    plan_dir=Path(plan_dir),
                    group=s.group,
                    topology=s.topology,  # type: ignore[arg-type]
                    strategy=s.strategy,  # type: ignore[arg-type]
                    binds=s.binds,  # type: ignore[arg-type]
                    binding_mode=s.binding_mode,  # type: ignore[arg-type]
                    health_check_interval_s=s.health_check_interval_s,
                    shutdown_timeout_s=s.shutdown_timeout_s,
                )
            except SpecError as e:
                log.error("service.load_failed", plan=plan_dir, error=str(e))
                continue
            if _same_plan_loaded(self.services, plan_dir):
                continue
            with contextlib.suppress(ServiceLoadError):
                await self.services.load(spec)

    async def _start_http(self) -> None:
        host, port = self.settings.http_addr()
        token = self.env.get("HAB_SUP_GATEWAY_AUTH_TOKEN") or None
        try:
            tls = http_tls(self.settings)
        except TlsConfigError as e:
            raise StartupError(f"HTTP gateway TLS: {e}") from None

        def routes(app: web.Application) -> None:
            for add in self.extra_routes:
                add(app)

        self.http = HttpServer(
            make_app(self, token, routes, self.events), self.metrics, self.faults
        )
        try:
            self.http_port = await self.http.start(host, port, tls.context if tls else None)
        except OSError as e:
            self.http = None
            raise StartupError(f"cannot listen for HTTP on {host}:{port}: {e.strerror}") from None

    async def _start_ctl(self) -> None:
        host, port = self.settings.ctl_addr()
        try:
            tls = ctl_tls(self.settings, self.env)
        except TlsConfigError as e:
            raise StartupError(f"control gateway TLS: {e}") from None
        try:
            self.ctl = await start_ctl_server(
                self, host, port, faults=self.faults, tls=tls.context if tls else None
            )
        except OSError as e:
            raise StartupError(
                f"cannot listen for control on {host}:{port}: {e.strerror}"
            ) from None

    def _spawn(self, name: str, coro: Any) -> None:
        """A critical long-lived task (pysup/faults.py): if it dies, the supervisor stops."""
        self._tasks.append(self.faults.spawn(name, coro))

    def _task_died(self, name: str, exc: BaseException) -> None:
        log.error(
            "supervisor.task_died",
            task=name,
            error=one_line(exc),
            message=f"{name} cannot continue; the supervisor stops (exit {EXIT_TASK_DIED}) "
            "rather than run on without it",
        )
        if self.exit_code == EXIT_OK:
            self.exit_code = EXIT_TASK_DIED
        self.stopping.set()

    # --- the ring -----------------------------------------------------------------------

    def _departed(self) -> None:
        """The ring departed us (`sup depart`): stop, with an exit status that says so."""
        self.exit_code = EXIT_DEPARTED
        self.stopping.set()

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_save_interval_s)
            with self.faults.guard("state.save"):
                self.save_state()

    def save_state(self) -> None:
        if self.ring is None or not self._incarnation_saved:
            return
        try:
            self.persist_rumors()
            self.state.save_incarnation(self.ring.me.incarnation)
        except OSError as e:
            log.error("state.save_failed", error=str(e))

    def persist_rumors(self, extra: Sequence[Rumor] = ()) -> None:
        """Save the rumor store, plus `extra` rumors about to be published (so what the control
        gateway acknowledges is on disk first). Raises OSError when it could not be saved."""
        if self.ring is None:
            return
        self.state.save_rumors(codec.encode_rumors([*self.ring.persistent_rumors(), *extra]))

    # --- stop ---------------------------------------------------------------------------

    async def depart(self) -> None:
        """Leave the ring and stop services, but keep the HTTP gateway up until we are
        told to terminate (the container pre-stop hook's contract)."""
        if self._departing:
            return
        self._departing = True
        if self.ring is not None:
            await self.ring.leave()
        if self.services is not None:
            await self.services.stop_all(self._stop_timeout())

    def _stop_timeout(self) -> float:
        """Long enough for every service's shutdown timeout and its post-stop hook."""
        assert self.services is not None
        longest = max((svc.shutdown_timeout_s for svc in self.services.services()), default=0.0)
        return longest + self.settings.hook_timeout_s + 5.0

    async def shutdown(self) -> None:
        log.info("supervisor.stopping")
        self.faults.closing = True  # tasks ending from here on are shutdown, not failures
        if self.ctl is not None:
            self.ctl.close()  # stop accepting commands: no `svc load` while services stop
            await self.ctl.wait_closed()
        if self.events is not None:
            self.events.close()  # an open /events stream must not hold the shutdown
        if self.ring is not None and not self.ring.departed:
            await self.ring.leave()
        if self.services is not None:
            try:
                await self.services.stop_all(self._stop_timeout())
            except Exception:
                log.exception("services.stop_failed")
            self.services.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.save_state()
        if self.ring is not None:
            await self.ring.close()
        if self.http is not None:
            await self.http.close()
        await self.faults.close()
        log.info("supervisor.stopped", exit_code=self.exit_code)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self.faults.loop_exception)
        raise_fd_limit()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        # PID 1 in a container: orphans of hooks and services are reparented to us; reap them.
        reaper = Reaper()
        reaper.install(make_subreaper=False)
        try:
            await self.start()
            await self.stopping.wait()
        finally:
            # Handlers stay installed through shutdown: a second TERM (compose and `timeout`
            # signal the whole process group, then the parent signals again) must not kill us
            # halfway, leaving services running without their supervisor.
            await self.shutdown()
            reaper.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return self.exit_code

    def _on_signal(self, sig: signal.Signals) -> None:
        # Only record: the loop does the work.
        log.info("supervisor.signal", signal=sig.name, already_stopping=self.stopping.is_set())
        self.stopping.set()

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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog
from aiohttp import web

from pysup import __version__
from pysup.butterfly import codec
from pysup.butterfly.config import PRESETS
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import Addr, MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.keys import RingKey, RingKeyError, default_key_cache, resolve_ring_key
from pysup.butterfly.member import Health, Member, next_incarnation
from pysup.butterfly.messages import Rumor
from pysup.butterfly.rumors import RumorStore
from pysup.butterfly.runner import Runner
from pysup.census import Census, CensusCache
from pysup.crypto.sealed import RumorOpener
from pysup.discovery.runtime import Discovery, DiscoveryConfigError
from pysup.events import EventHub, EventStream
from pysup.events.translate import effect_event
from pysup.faults import Faults, one_line
from pysup.gateway.http import make_app
from pysup.gateway.http_server import HttpServer
from pysup.gateway.service_routes import add_service_routes
from pysup.gateway.tls_setup import http_tls_or_fail
from pysup.listener import raise_fd_limit
from pysup.metrics import Metrics
from pysup.native import NativeConfigError, NativeCore, NativeRuntime, loaded_groups
from pysup.peers import PeerWatchFile, resolve
from pysup.service.health import HealthStatus
from pysup.service.lifecycle import OrphanPolicy, ServiceTuning
from pysup.service.manager import ServiceManager
from pysup.service.pkgpaths import PkgPaths
from pysup.service.process import ProcessState
from pysup.service.reaper import Reaper
from pysup.service.saved import load_saved_specs
from pysup.service.spec import ServiceSpec, SpecError
from pysup.service.svcdir import ServiceLoadError
from pysup.settings import Settings
from pysup.statedir import StateDir, describe_error

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
        self.runner: Runner | NativeRuntime | None = None  # NativeRuntime: --mode kubernetes
        self.http: HttpServer | None = None
        self.http_port: int | None = None
        self.services: ServiceManager | None = None
        self.joined = False
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
        self._census = CensusCache(self.opener.plain)

    # --- views for the gateways ---------------------------------------------------------

    @property
    def core(self) -> SwimCore | NativeCore:
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
        # Discovery: a lone member is ready only as the founder (split-brain rule).
        d = self.discovery
        if mode in ("ring", "services") and self.core.is_alone() and d and not d.may_stand_alone():
            return False, f"not joined: waiting for peers ({d.founder_rule()})"
        if mode == "services" and self.services is not None:
            for svc in self.services.services():
                if svc.process.state is not ProcessState.UP:
                    return False, f"{svc.service_group}: not up"
                if svc.health_status() not in (HealthStatus.OK, HealthStatus.WARNING):
                    return False, f"{svc.service_group}: health {svc.health_status().api_name}"
            if self.services.load_errors:
                return False, "; ".join(self.services.load_errors.values())
        return True, "joined" if not self.core.is_alone() else "standalone ring"

    def liveness(self) -> list[str]:
        problems = self.faults.problems()
        if isinstance(self.runner, Runner):
            problems += self.runner.problems()
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
        host, port = s.gossip_addr()
        rumors: list[Rumor] = []
        if s.mode == "kubernetes":  # no gossip ring: the Kubernetes API stands in for it
            self.runner = self._native_runtime()
            member_id, incarnation = self.runner.core.me.id, 1
        else:
            member_id, incarnation, rumors = self._load_state()
            me = Member(member_id, incarnation, self.sys_ip, port, Health.ALIVE, s.permanent_peer)
            core = SwimCore(
                self.gossip_config, me, random.Random(self.rng.getrandbits(64)), loop.time(), rumors
            )
            self.runner = Runner(
                core,
                host,
                port,
                key=self.key,
                metrics=self.metrics,
                listener=self._on_event,
                udp_backend=s.udp_backend,
                faults=self.faults,
            )
        # Ids start at our start time in µs: above any id of an earlier run (docs/events.md).
        hub = EventHub(first_id=int(time.time() * 1_000_000), member_id=member_id)
        self.events = EventStream(hub)
        self.metrics.watch_events(hub.stats)
        self.services = ServiceManager(
            events=self.events.publish,
            state=self.state,
            sys_info=self.sys_info(),
            member_id=member_id,
            census=self.census,
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
            await self.runner.start()
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
            gossip=f"{host}:{self.runner.transport.port}",
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
        from pysup.gateway.ctl import attach_ctl

        await attach_ctl(self, self.env)
        if s.mode != "kubernetes":
            self._spawn("ring.join", self._join_loop())
        self._spawn("state.save", self._save_loop())

    def _load_state(self) -> tuple[str, int, list[Rumor]]:
        """Member id, the incarnation to run with (one above the stored one), saved rumors."""
        self._persist(self.state.remove_stale_tmp)
        seed = random.Random(self.rng.getrandbits(64))
        member_id = self._persist(lambda: self.state.load_or_create_member_id(seed))
        incarnation = next_incarnation(self._persist(self.state.load_incarnation))
        return member_id, incarnation, self._persist(self._load_rumors)

    def _persist(self, step: Callable[[], T]) -> T:
        """A state-dir step at start: what cannot be fixed is one line and exit status 1."""
        try:
            return step()
        except OSError as e:
            raise StartupError(describe_error(self.state.path, e)) from None

    def _native_runtime(self) -> NativeRuntime:
        """`--mode kubernetes`: members, config and leader from the API (pysup/native.py)."""
        try:
            runtime = NativeRuntime.from_settings(
                self.settings,
                self.env,
                sys_ip=self.sys_ip,
                groups=lambda: loaded_groups(self.services),
                listener=self._on_event,
                faults=self.faults,
            )
        except NativeConfigError as e:
            raise StartupError(str(e)) from None
        self.sys_ip = runtime.core.me.address  # POD_IP: what the other members list us as
        return runtime

    def census(self) -> Census:
        store = self.core.store  # first: the native mode brings its state up to date when read
        return self._census.get(self.core.me, self.core.members(), store, self.core.version)

    def publish(self, rumor: Rumor) -> None:
        assert self.runner is not None
        self.runner.publish(rumor)

    def sys_info(self) -> dict[str, Any]:
        s = self.settings
        gossip_ip, gossip_port = s.gossip_addr()
        http_ip, http_port = s.http_addr()
        ctl_ip, ctl_port = s.ctl_addr()
        return {
            "ip": self.sys_ip,
            "hostname": socket.gethostname(),
            "gossip_ip": gossip_ip,
            "gossip_port": gossip_port,
            "http_gateway_ip": http_ip,
            "http_gateway_port": http_port,
            "ctl_gateway_ip": ctl_ip,
            "ctl_gateway_port": ctl_port,
            "permanent": s.permanent_peer,
            "version": __version__,
        }

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
        tls = http_tls_or_fail(self.settings)

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

    def _on_event(self, e: MemberChanged | RumorChanged | SelfChanged) -> None:
        if self.events is not None:
            self.events.publish(effect_event(e))
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
            opened = self.opener.opened(e.rumor)  # None: encrypted to a key we lack
            if self.services is not None and opened is not None:
                self.services.on_rumor(opened)
        elif e.reason == "refuted":
            log.info("member.refuted", incarnation=e.member.incarnation)
            try:
                self.state.save_incarnation(e.member.incarnation)
            except OSError as err:
                # The refutation is already on its way: gossip first, the disk when it can (the
                # save loop retries). A restart meanwhile refutes again, from the ring's value.
                log.error("state.save_failed", file="INCARNATION", error=str(err))
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
        if self.discovery is not None:
            addrs += self.discovery.seeds()
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
                wait = delay * self.rng.uniform(0.5, 1.5)
                if addrs:
                    log.info("ring.join_attempt", seeds=[f"{h}:{p}" for h, p in addrs])
                    assert self.runner is not None
                    self.runner.join(addrs)
                    delay = min(cfg.join_retry_max_s, delay * 2)
                # No seed to try (an empty peer-watch file): nothing to back off from, so the
                # file is re-read at the base interval and a seed written later is used at once.
            else:
                if not self.joined:
                    self.joined = True
                    log.info("ring.joined", members=self.core.num_members())
                    if self.discovery is not None:
                        self.discovery.mark_joined()
                # Discovered addresses outside our ring: merge partial rings (no split brain).
                strangers = self.discovery.strangers(self.core.members()) if self.discovery else []
                if strangers and self.runner is not None:
                    self.runner.join(strangers)
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
            with self.faults.guard("state.save"):
                self.save_state()

    def save_state(self) -> None:
        if self.runner is None or not self._incarnation_saved:
            return
        try:
            self.persist_rumors()
            self.state.save_incarnation(self.core.me.incarnation)
        except OSError as e:
            log.error("state.save_failed", error=str(e))

    def persist_rumors(self, extra: Sequence[Rumor] = ()) -> None:
        """Save the rumor store, plus `extra` rumors about to be published (so what the control
        gateway acknowledges is on disk first). Raises OSError when it could not be saved."""
        if self.runner is None:
            return
        self.state.save_rumors(codec.encode_rumors([*self.core.all_rumors(), *extra]))

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
            await self.services.stop_all(self._stop_timeout())

    def _stop_timeout(self) -> float:
        """Long enough for every service's shutdown timeout and its post-stop hook."""
        assert self.services is not None
        longest = max((svc.shutdown_timeout_s for svc in self.services.services()), default=0.0)
        return longest + self.settings.hook_timeout_s + 5.0

    async def shutdown(self) -> None:
        log.info("supervisor.stopping")
        self.faults.closing = True  # tasks ending from here on are shutdown, not failures
        if self.events is not None:
            self.events.close()  # first: an open /events stream must not hold the shutdown
        if self.runner is not None and not self.core.departed:
            await self.runner.leave()
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
        if self.runner is not None:
            await self.runner.close()
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

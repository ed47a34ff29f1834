"""The service manager: loads, starts, stops and unloads services; routes gossip to them.

One ``Service`` per plan name. A plan that cannot be read or a template that does not compile is
logged once (``service.load_failed``, the message naming file and line), recorded in
``load_errors`` and raised as ``ServiceLoadError``; the services already running are untouched.
Gossip reaches services through ``on_rumor`` (config and files for their group) and
``on_census_changed`` (debounced: a burst of rumors re-renders once; passes spaced by the ring's
size, ``censuspace``); both only wake the services' own tasks and never block the caller.
``user.toml`` files are watched by polling their mtime; plan directories of services with an
update strategy by polling their fingerprint (``planwatch.PlanWatcher``), and ``update``
restarts a service with its changed plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import random
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from pysup.butterfly.messages import Rumor, RumorKind, by_kind, kind_of
from pysup.census import Census
from pysup.events.sink import EventSink, no_events
from pysup.faults import Faults
from pysup.service.censuspace import CENSUS_DEBOUNCE_S, next_pass_at
from pysup.service.errors import ServiceLoadError
from pysup.service.lifecycle import ServiceTuning
from pysup.service.pkgpaths import PkgPaths
from pysup.service.planwatch import PlanWatcher
from pysup.service.reaper import CHILDREN
from pysup.service.spec import ServiceSpec
from pysup.statedir import StateDir

if TYPE_CHECKING:
    from pysup.service.service import Service

log = structlog.get_logger(__name__)

__all__ = ["ServiceLoadError", "ServiceManager"]


class ServiceManager:
    """Every service this supervisor runs. See the module docstring."""

    def __init__(
        self,
        *,
        state: StateDir,
        sys_info: Mapping[str, Any],
        member_id: str,
        census: Callable[[], Census],
        publish: Callable[[Rumor], None],
        hook_timeout_s: float = 60.0,
        rng: random.Random | None = None,
        tuning: ServiceTuning | None = None,
        env: Mapping[str, str] | None = None,
        user_toml_poll_s: float = 2.0,
        census_debounce_s: float = CENSUS_DEBOUNCE_S,
        ring_size: Callable[[], int] = lambda: 1,
        plan_poll_s: float = 1.0,
        external_leader: bool = False,
        faults: Faults | None = None,
        pkg_paths: PkgPaths | None = None,
        events: EventSink = no_events,
    ) -> None:
        """`hook_timeout_s` overrides ``tuning.hook_timeout_s``. `env` is the environment of hooks
        and run processes (and where ``HAB_<PKG>`` is read); default: ours. `user_toml_poll_s`:
        seconds between mtime checks of the user.toml files; `census_debounce_s`: how long a burst
        of census changes is collected before services re-render; `ring_size`: members in the
        ring (ourselves included), which spaces census-driven re-renders (``censuspace``);
        `plan_poll_s`: seconds between fingerprint checks of the plans of services with an
        update strategy; `external_leader`: leaders come from outside the ring
        (``ElectionTuning.external_leader``, native mode);
        `faults`: where the services' loops report what they survive (pysup/faults.py);
        `pkg_paths`: how plans' dependencies are found on this host (default: the PATH fallback
        over `env`'s PATH, ``pysup.service.pkgpaths``); `events`: where services publish their
        events (``/events``)."""
        self.faults = faults if faults is not None else Faults()
        self.state = state
        self.sys_info = dict(sys_info)
        self.member_id = member_id
        self._census = census
        self._publish = publish
        self._events = events
        self.tuning = replace(tuning or ServiceTuning(), hook_timeout_s=hook_timeout_s)
        if external_leader:
            election = replace(self.tuning.election, external_leader=True)
            self.tuning = replace(self.tuning, election=election)
        self._rng = rng if rng is not None else random.Random()
        self._env = dict(os.environ if env is None else env)
        self.pkg_paths = pkg_paths or PkgPaths.from_settings({}, True, self._env.get("PATH"))
        self.user_toml_poll_s = user_toml_poll_s
        self.census_debounce_s = census_debounce_s
        self._ring_size = ring_size
        self._census_last = float("-inf")
        self._services: dict[str, Service] = {}
        self.load_errors: dict[str, str] = {}
        """plan dir -> the last load error (cleared by a successful load)."""
        self._user_toml_seen: dict[str, tuple[int, int] | None] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._plan_watcher: asyncio.Task[None] | None = None
        self.plans = PlanWatcher(
            services=self.services,
            census=census,
            update=self.update,
            poll_s=plan_poll_s,
            faults=self.faults,
        )
        self._census_timer: asyncio.TimerHandle | None = None

    # --- queries ----------------------------------------------------------------------------------

    def services(self) -> list[Service]:
        return list(self._services.values())

    def get(self, service: str, group: str, org: str | None = None) -> Service | None:
        svc = self._services.get(service)
        if svc is None or svc.sg.group != group or svc.sg.org != org:
            return None
        return svc

    def by_name(self, name: str) -> Service | None:
        return self._services.get(name)

    # --- lifecycle --------------------------------------------------------------------------------

    async def load(self, spec: ServiceSpec) -> Service:
        """Load and activate the service of `spec` (it starts if its desired state is Up)."""
        # The plan loader and template engine load with the first plan (issue 18: start-up).
        from pysup.service.plan import PlanError
        from pysup.service.service import compile_templates

        where = str(spec.plan_dir)
        try:
            plan = await self._load_plan(spec.plan_dir)
            templates = compile_templates(plan)
            if plan.name in self._services:
                raise ServiceLoadError(f"{plan.plan_file}: service {plan.name} is already loaded")
            svc = self._new_service(plan, templates, spec)
        except (PlanError, ServiceLoadError) as e:
            message = str(e)
            self.load_errors[where] = message
            log.error("service.load_failed", plan_dir=where, error=message)
            raise ServiceLoadError(message) from e
        self.load_errors.pop(where, None)
        self._services[plan.name] = svc
        self._user_toml_seen[plan.name] = _stamp(svc.user_toml)
        log.info("service.loaded", service_group=str(svc.sg), ident=plan.ident)
        svc.activate()
        self._ensure_watcher()
        return svc

    async def _load_plan(self, plan_dir: Path) -> Any:
        from pysup.service.plan import load_plan

        # plan.sh is sourced by a bash child: keep the reaper off our children meanwhile.
        with CHILDREN.spawning():
            return await asyncio.to_thread(
                functools.partial(load_plan, pkg_paths=self.pkg_paths),
                plan_dir,
                self.state.svc_root,
            )

    def _require(self, name: str) -> Service:
        svc = self._services.get(name)
        if svc is None:
            raise KeyError(f"service {name!r} is not loaded")
        return svc

    async def update(self, old: Service) -> Service | None:
        """Restart `old` with its plan as it is on disk now (an update strategy's turn): the plan
        is loaded and compiled first, so a broken plan leaves the running service alone."""
        from pysup.service.plan import PlanError
        from pysup.service.service import compile_templates

        where = str(old.spec.plan_dir)
        try:
            plan = await self._load_plan(old.spec.plan_dir)
            templates = compile_templates(plan)
            if plan.name != old.name:
                raise ServiceLoadError(f"{plan.plan_file}: the plan's name changed to {plan.name}")
        except (PlanError, ServiceLoadError) as e:
            self.load_errors[where] = str(e)
            old.update_status = f"update failed: {e}"
            log.error("update.load_failed", plan_dir=where, error=str(e))
            return None
        self.load_errors.pop(where, None)
        log.info(
            "update.restarting",
            service_group=str(old.sg),
            old=old.plan.fingerprint[:12],
            new=plan.fingerprint[:12],
        )
        await old.unload()
        svc = self._new_service(plan, templates, old.spec)
        self._services[plan.name] = svc
        svc.activate()
        return svc

    def _new_service(self, plan: Any, templates: Any, spec: ServiceSpec) -> Service:
        from pysup.service.service import Service

        return Service(
            plan=plan,
            spec=spec,
            templates=templates,
            member_id=self.member_id,
            sys_info=self.sys_info,
            census=self._census,
            publish=self._publish,
            user_toml=self.state.user_toml_path(plan.name),
            env=self._env,
            tuning=self.tuning,
            rng=self._rng,
            faults=self.faults,
            events=self._events,
        )

    async def unload(self, name: str) -> None:
        svc = self._require(name)
        await svc.unload()
        self._services.pop(name, None)
        self._user_toml_seen.pop(name, None)
        log.info("service.unloaded", service_group=str(svc.sg))

    async def start(self, name: str) -> None:
        await self._require(name).start()

    async def stop(self, name: str) -> None:
        await self._require(name).stop()

    async def stop_all(self, timeout_s: float) -> None:
        """Unload every service, dependents (those binding to another loaded group) first, then in
        reverse load order. After `timeout_s` what is still running is killed."""
        deadline = time.monotonic() + timeout_s
        for svc in self._shutdown_order():
            unload = asyncio.ensure_future(svc.unload())
            try:
                await asyncio.wait_for(asyncio.shield(unload), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                pid = svc.process.pid
                log.warning("service.shutdown_timeout", service_group=str(svc.sg), pid=pid)
                if pid is not None:
                    from pysup.service.hooks import kill_group

                    kill_group(pid, signal.SIGKILL)  # the unload then sees it exit
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(unload, svc.tuning.hook_timeout_s)
            self._services.pop(svc.name, None)
        self.close()

    def _shutdown_order(self) -> list[Service]:
        remaining = list(reversed(self._services.values()))
        order: list[Service] = []
        while remaining:
            bound = {b.service_group for s in remaining for b in s.spec.binds}
            # dependents first: a service whose group no remaining service binds to
            pick = next(
                (s for s in remaining if str(s.sg) not in bound),
                remaining[0],  # a bind cycle: fall back to reverse load order
            )
            remaining.remove(pick)
            order.append(pick)
        return order

    def close(self) -> None:
        """Stop the watcher and the census timer (services are left as they are)."""
        for task in (self._watcher, self._plan_watcher):
            if task is not None:
                task.cancel()
        self._watcher = self._plan_watcher = None
        if self._census_timer is not None:
            self._census_timer.cancel()
            self._census_timer = None

    # --- gossip -----------------------------------------------------------------------------------

    def on_rumor(self, rumor: Rumor) -> None:
        """A rumor changed the store: wake the services it concerns. Never blocks."""
        if _REACTIONS[kind_of(rumor)] is _Reaction.GROUP_NOW:
            group = rumor.identity[1]
            for svc in self._services.values():
                if str(svc.sg) == group:
                    svc.take_gossip()
        else:
            self.on_census_changed()

    def on_census_changed(self) -> None:
        """Members, elections or exports changed: re-render every service (debounced)."""
        if self._census_timer is not None:
            return
        loop = asyncio.get_running_loop()
        at = next_pass_at(loop.time(), self._census_last, self._ring_size(), self.census_debounce_s)
        self._census_timer = loop.call_at(at, self._census_fire)

    def _census_fire(self) -> None:
        self._census_timer = None
        self._census_last = asyncio.get_running_loop().time()
        for svc in self._services.values():
            svc.census_changed()

    # --- user.toml --------------------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = self.faults.spawn("service.user_toml_watch", self._watch_user_toml())
        if self._plan_watcher is None or self._plan_watcher.done():
            self._plan_watcher = self.faults.spawn("service.plan_watch", self.plans.run())

    async def _watch_user_toml(self) -> None:
        while True:
            await asyncio.sleep(self.user_toml_poll_s)  # the polling period
            with self.faults.guard("service.user_toml_watch"):
                self.check_user_toml()

    def check_user_toml(self) -> None:
        """Compare each service's user.toml (mtime, size) with the last seen; notify changes."""
        for name, svc in list(self._services.items()):
            stamp = _stamp(svc.user_toml)
            if stamp != self._user_toml_seen.get(name):
                self._user_toml_seen[name] = stamp
                log.info("config.user_changed", service_group=str(svc.sg), file=str(svc.user_toml))
                svc.user_config_changed()


class _Reaction(enum.Enum):
    GROUP_NOW = "the group's services take their config and files from the census at once"
    CENSUS = "every service re-renders from the census (debounced: a burst is one render)"


_REACTIONS = by_kind(
    "service manager reaction",
    {
        RumorKind.MEMBER: _Reaction.CENSUS,
        RumorKind.SERVICE: _Reaction.CENSUS,
        RumorKind.SERVICE_CONFIG: _Reaction.GROUP_NOW,
        RumorKind.SERVICE_FILE: _Reaction.GROUP_NOW,
        RumorKind.DEPARTURE: _Reaction.CENSUS,
        RumorKind.ELECTION: _Reaction.CENSUS,
        RumorKind.ELECTION_UPDATE: _Reaction.CENSUS,
    },
)


def _stamp(path: Path) -> tuple[int, int] | None:
    with contextlib.suppress(OSError):
        st = path.stat()
        return (st.st_mtime_ns, st.st_size)
    return None

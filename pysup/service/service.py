"""One loaded service: its requests and the loop that drives its state machine and hook sequence.

Its parts (config sources, hooks and run process, health checker, election coordinator), its
status, rendering and Service rumor are ``parts.ServiceParts``; this module adds what acts on them.

Everything that changes a service goes through one task per service, ``_loop``: callers (the
manager, gossip, the user.toml watcher, ``start``/``stop``) only record what they want and wake it,
so a config change, a census change and a stop never race each other. Each pass (``_reconcile``):

1. desired Down: stop the run process (shutdown signal, timeout, KILL), run post-stop -> STOPPED;
2. layer the config (default.toml < HAB_<PKG> < user.toml < gossip) and render config/ and hooks/
   into the service dir (only changed files are written; what changed is remembered);
3. gate: topology leader waits until the group's election is Finished (``coordination.gate``),
   strict binds wait until the bound groups export what the plan needs -> WAITING with a
   ``reason``. A running leader-topology service holds its hooks (no render, no reconfigure)
   while an election runs, and is stopped while its group has no quorum (split-brain fence);
4. not running yet: install (once per plan fingerprint), init (retried with backoff), start the run
   process under a ``ProcessSupervisor`` (restart with decorrelated jitter) -> UP;
5. running: changed run/init/post-run hooks, or changed config without a reconfigure hook, restart
   the process; changed config with a reconfigure hook runs it; new gossiped files run file-updated.

Next to the loop: post-run after every start of the process (retried until it exits 0) and the
health-check loop (first check as soon as the process is up, then ``HealthSchedule``; a hook that
hangs is killed after the hook timeout and reported UNKNOWN). Errors are logged once, where handled,
and kept in ``last_error`` for the API.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from pysup.census import Census
from pysup.events.model import (
    ConfigApplied,
    ConfigRejected,
    FileRejected,
    ServiceRestart,
)
from pysup.service.cfg import exported_cfg
from pysup.service.context import binds_not_ready
from pysup.service.handlebars import TemplateError
from pysup.service.lifecycle import (
    TRANSITIONS,
    IllegalTransition,
    OrphanPolicy,
    ServiceState,
    ServiceTuning,
)
from pysup.service.parts import ServiceParts
from pysup.service.spec import DesiredState
from pysup.service.svcdir import (
    SVC_SUBDIRS,
    RenderResult,
    ServiceLoadError,
    Templates,
    compile_templates,
)

__all__ = [
    "TRANSITIONS",
    "IllegalTransition",
    "Service",
    "ServiceLoadError",
    "ServiceState",
    "ServiceTuning",
    "Templates",
    "compile_templates",
]

_S = ServiceState
RESTART_HOOKS: Final = frozenset({"run", "init", "post-run"})
"""A change to one of these hooks restarts the service (Habitat)."""


class Service(ServiceParts):
    """A loaded service (see the module docstring). Built by ``ServiceManager.load``."""

    # --- requests (never block) -------------------------------------------------------------------

    def activate(self) -> None:
        """Start the service's task; it renders and follows the desired state."""
        if self._loop_task is None:
            for sub in SVC_SUBDIRS:
                (self.svc_path / sub).mkdir(parents=True, exist_ok=True)
            self._chown_dirs()
            self.user_config_changed()
            self.take_gossip()
            self._loop_task = self._spawn(self._loop(), "loop")
            if "health-check" in self.templates.hooks:
                self._spawn(self.checker.run(), "health")
            if self.coordination.active:
                self._spawn(self.coordination.run(), "election")
            self.wake()

    async def start(self) -> None:
        self._desired = DesiredState.UP
        self.wake()

    async def stop(self) -> None:
        """Desired Down; returns once stopped (post-stop included)."""
        self._desired = DesiredState.DOWN
        if self._loop_task is None or self._loop_task.done():
            if self.state is not _S.UNLOADED:
                await self._bring_down()
            return
        self.wake()
        while self.state not in (_S.STOPPED, _S.UNLOADED):
            self._changed.clear()
            await self._changed.wait()

    async def unload(self) -> None:
        self.coordination.close()
        await self.stop()
        self._transition(_S.UNLOADED)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._retry_handle is not None:
            self._retry_handle.cancel()

    def census_changed(self) -> None:
        self.take_gossip()
        self.coordination.wake()
        self.wake()

    def take_gossip(self) -> bool:
        """Take our group's gossiped config and files from the census (the only route they
        take); wake the loop if any is new. True if any was."""
        before = self.sources.gossip_incarnation
        news, problems = self.sources.take_census(self._census())
        sg = str(self.sg)
        for p in problems:
            if p.item == "config":
                self._error(p.message, "config.gossip_invalid")
                self._events(ConfigRejected(sg, "gossip", p.incarnation, p.message))
            else:
                self._error(p.message, "file.rejected")
                self._events(FileRejected(sg, p.item, p.incarnation, p.message))
        incarnation = self.sources.gossip_incarnation
        if incarnation != before:
            self._log.info("config.gossip_applied", incarnation=incarnation)
            self._events(ConfigApplied(sg, "gossip", incarnation))
        if news:
            self.wake()
        return news

    def user_config_changed(self) -> None:
        error = self.sources.read_user_toml()
        if error is not None:
            self._error(error, "config.user_invalid")
        sg = str(self.sg)
        self._events(
            ConfigRejected(sg, "user", None, error) if error else ConfigApplied(sg, "user", None)
        )
        self.wake()

    # --- the loop ---------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.state is _S.UNLOADED:
                return
            try:
                # IllegalTransition included: a bug, counted and logged; the loop survives.
                with self._faults.guard("service.reconcile", service_group=str(self.sg)) as fault:
                    await self._reconcile()
                if fault.error is not None:
                    self.last_error = f"internal error: {fault.error}"
            finally:
                self._changed.set()

    async def _reconcile(self) -> None:
        if self.state is _S.LOADED:
            await self._take_over()
        if self._desired is DesiredState.DOWN:
            await self._bring_down()
            return
        census = self._census()
        self.cfg, error = self.sources.merged()
        if error is not None and error != self.last_error:
            self._error(error, "config.env_invalid")
        self.exported = exported_cfg(self.cfg, self.plan.exports)
        gate = self.coordination.gate(census)
        try:
            if self.state is _S.UP and gate.reason is not None:
                if gate.fence:
                    self._log.warning("service.no_quorum", reason=gate.reason)
                    await self._bring_down(gate.reason)
                    self._transition(_S.WAITING, gate.reason)
                elif gate.reason != self.reason:
                    self._log.info("service.hooks_held", reason=gate.reason)
                    self._transition(_S.UP, gate.reason)
                return
            not_ready = gate.reason or binds_not_ready(self.plan, self.spec, census)
            await self._advance(census, not_ready)
        finally:
            self._publish_if_changed()

    async def _advance(self, census: Census, not_ready: str | None) -> None:
        if not_ready is not None and self.state is not _S.UP:
            if self.reason != not_ready:
                self._log.info("service.waiting", reason=not_ready)
            if "suitability" in self.templates.hooks and self.coordination.active:
                # Elections run the suitability hook before any other hook may: render it now.
                with contextlib.suppress(TemplateError):
                    self._render(census)
            self._transition(_S.WAITING, not_ready)
            return
        try:
            render = self._render(census)
        except TemplateError as e:
            self._error(str(e), "template.render_failed")
            if self.state is not _S.UP:
                self._transition(_S.FAILED, str(e))
            return
        self.last_render = render
        files = self._write_files()
        if self.state is _S.UP and self.reason is not None:
            self._transition(_S.UP, None)  # held hooks may run again
        if self.state is not _S.UP:
            await self._bring_up()
        else:
            await self._apply(render, files)

    async def _take_over(self) -> None:
        """The first pass: a run process a killed supervisor left running is adopted (UP without
        install, init or post-run: they ran for it) or stopped (``ServiceTuning.orphans``). The
        rest of the pass then treats it as a running service: a config changed meanwhile is
        applied (reconfigure or restart), desired Down stops it (post-stop included)."""
        stop = self.tuning.orphans is OrphanPolicy.STOP
        checked = await self.supervisor.adopt(stop=stop)
        if checked is not None and checked.ours and not stop:
            self.initialized = True
            self._transition(_S.UP)

    async def _bring_up(self) -> None:
        self._transition(_S.INITIALIZING)
        if not await self.hooks.install(self.plan.fingerprint) or not await self.hooks.init():
            delay = self._init_backoff.next_delay(self._rng)
            self._log.warning("service.init_retry", delay_s=round(delay, 3))
            self._transition(_S.INITIALIZING, f"retrying install/init in {delay:.1f}s")
            self._wake_later(delay)
            return
        self._init_backoff.reset()
        self.initialized = True
        self._transition(_S.UP)
        await self.supervisor.start()

    async def _apply(self, render: RenderResult, files: list[str]) -> None:
        hooks = set(render.hooks)
        restart: str | None = None
        if hooks & RESTART_HOOKS:
            restart = f"hooks changed: {', '.join(sorted(hooks & RESTART_HOOKS))}"
        elif render.config and "reconfigure" not in self.templates.hooks:
            restart = f"config changed: {', '.join(render.config)} (no reconfigure hook)"
        if "init" in hooks:
            await self.hooks.init()  # a failure is recorded; the restart below still happens
        if restart is not None:
            self._log.info("service.restart", reason=restart)
            self._events(ServiceRestart(str(self.sg), restart))
            self._cancel_post_run()
            await self.supervisor.restart()
        elif render.config:
            self._log.info("service.reconfigure", files=render.config)
            await self.hooks.run("reconfigure")
        if files and "file-updated" in self.templates.hooks:
            await self.hooks.run("file-updated")

    async def _bring_down(self, reason: str | None = None) -> None:
        if self.state is _S.UP:
            self._transition(_S.STOPPING, reason)
            self._cancel_post_run()
            await self.supervisor.stop()
            self.checker.stopped()
            if "post-stop" in self.templates.hooks:
                await self.hooks.run("post-stop")
            self._transition(_S.STOPPED, reason)
        elif self.state in (_S.LOADED, _S.WAITING, _S.INITIALIZING, _S.FAILED):
            if self._retry_handle is not None:
                self._retry_handle.cancel()
            self._transition(_S.STOPPED)

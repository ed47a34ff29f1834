"""One loaded service: its state machine, rendering, hook sequence, health checks and Service rumor.

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
import os
import pwd
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import structlog

from pysup.butterfly.messages import Rumor, ServiceConfigRumor, ServiceFileRumor, ServiceRumor
from pysup.census import Census, ElectionState, ServiceGroup
from pysup.events.model import (
    ConfigApplied,
    ConfigRejected,
    FileApplied,
    FileRejected,
    ServiceExited,
    ServiceRestart,
    ServiceStateChanged,
)
from pysup.events.sink import EventSink, health_event, hook_event, no_events
from pysup.faults import Faults
from pysup.service.backoff import RestartBackoff
from pysup.service.cfg import exported_cfg
from pysup.service.checker import HealthChecker
from pysup.service.context import binds_not_ready, render_context, rumor_sys
from pysup.service.coordination import Coordinator
from pysup.service.handlebars import TemplateError
from pysup.service.health import HealthSchedule, HealthStatus
from pysup.service.hooks import HookError, HookResult, parse_suitability, run_hook
from pysup.service.lifecycle import (
    TRANSITIONS,
    IllegalTransition,
    OrphanPolicy,
    ServiceState,
    ServiceTuning,
)
from pysup.service.plan import Plan
from pysup.service.process import ProcessState, ProcessSupervisor, SupervisedProcess
from pysup.service.sources import ConfigSources
from pysup.service.spec import DesiredState, ServiceSpec
from pysup.service.svcdir import (
    SVC_SUBDIRS,
    RenderResult,
    ServiceLoadError,
    Templates,
    compile_templates,
    render_templates,
    resolve_run_user,
    write_files,
)
from pysup.statedir import atomic_write

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

log = structlog.get_logger(__name__)

_S = ServiceState
INSTALL_STATUS_FILE: Final = "INSTALL_HOOK_STATUS"
RESTART_HOOKS: Final = frozenset({"run", "init", "post-run"})
"""A change to one of these hooks restarts the service (Habitat)."""


class Service:
    """A loaded service (see the module docstring). Built by ``ServiceManager.load``."""

    def __init__(
        self,
        *,
        plan: Plan,
        spec: ServiceSpec,
        templates: Templates,
        member_id: str,
        sys_info: Mapping[str, Any],
        census: Callable[[], Census],
        publish: Callable[[Rumor], None],
        user_toml: Path,
        env: Mapping[str, str],
        tuning: ServiceTuning,
        rng: random.Random,
        wall_clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        events: EventSink = no_events,
    ) -> None:
        self._faults = faults if faults is not None else Faults()
        assert plan.svc_path is not None
        self._events = events
        self.plan = plan
        self.spec = spec
        self.templates = templates
        self.member_id = member_id
        self.sys_info = dict(sys_info)
        self.sg = spec.service_group(plan.name)
        self.svc_path = plan.svc_path
        self.user_toml = user_toml
        self.tuning = tuning
        self._census = census
        self._publish = publish
        self._env = dict(env)
        self._rng = rng
        self._wall = wall_clock
        self._user, self._group = resolve_run_user(plan)
        self._log = log.bind(service_group=str(self.sg))

        self.state = ServiceState.LOADED
        self.reason: str | None = None
        """Why the service waits (WAITING) or failed (FAILED)."""
        self.last_error: str | None = None
        """The last error (hook failure, bad config, template error), for the API. It stays until
        the next error: the API shows what last went wrong, also after recovery."""
        self.initialized = False
        self.last_hook: dict[str, HookResult] = {}
        self.cfg: dict[str, Any] = dict(plan.default_cfg)
        self.exported: dict[str, Any] = {}
        """Only the keys named in pkg_exports (what the Service rumor carries)."""
        self.incarnation = 0
        self.last_render: RenderResult = RenderResult()
        self.update_status: str | None = None
        """A pending or running update of the plan (set by the manager's plan watcher)."""

        self._desired = spec.desired_state
        self.sources = ConfigSources(
            service_group=str(self.sg),
            pkg_name=plan.name,
            default=plan.default_cfg,
            env=env,
            user_toml=user_toml,
        )
        self._rendered_once = False
        self._published: tuple[bool, dict[str, Any], str] | None = None
        self._init_backoff = RestartBackoff(
            base_s=tuning.init_retry_base_s, max_s=tuning.init_retry_max_s
        )

        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self.checker = HealthChecker(
            schedule=HealthSchedule(
                interval_s=spec.health_check_interval_s, failure_recheck_s=tuning.failure_recheck_s
            ),
            run_check=self._check_health,
            is_up=lambda: self.process.state is ProcessState.UP,
            rng=rng,
            service_group=str(self.sg),
            on_change=self._publish_if_changed,
            faults=self._faults,
        )
        self.coordination = Coordinator(
            sg=self.sg,
            topology=spec.topology,
            strategy=spec.strategy,
            census=census,
            publish=publish,
            suitability=self.suitability,
            tuning=tuning.election,
            faults=self._faults,
            events=events,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._post_run: asyncio.Task[None] | None = None
        self._retry_handle: asyncio.TimerHandle | None = None

        run_hook_path = self.svc_path / "hooks" / "run" if "run" in templates.hooks else None
        self.process = SupervisedProcess(
            service_group=str(self.sg),
            svc_dir=self.svc_path,
            env=self._env,
            run_hook=run_hook_path,
            run_cmd=None if run_hook_path is not None else plan.svc_run,
            user=self._user,
            group=self._group,
            on_state_change=self._on_process_state,
            wall_clock=wall_clock,
        )
        self.supervisor = ProcessSupervisor(
            self.process,
            backoff=tuning.restart_backoff(),
            rng=rng,
            shutdown_signal=plan.shutdown_signal,
            shutdown_timeout_s=self.shutdown_timeout_s,
            on_exit=self._on_process_exit,
        )

    # --- properties -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def service_group(self) -> ServiceGroup:
        return self.sg

    @property
    def desired_state(self) -> DesiredState:
        return self._desired

    @property
    def shutdown_timeout_s(self) -> float:
        t = self.spec.shutdown_timeout_s
        return float(self.plan.shutdown_timeout) if t is None else t

    @property
    def gossip_incarnation(self) -> int:
        return self.sources.gossip_incarnation

    @property
    def election_status(self) -> ElectionState:
        group = self._census().group(self.sg)
        return group.election_status if group is not None else ElectionState.NONE

    def election_ready(self, census: Census) -> bool:
        """May hooks run as far as the election is concerned? Standalone always; leader topology
        once the group's election is Finished and the group has quorum."""
        return self.coordination.gate(census).reason is None

    def health_status(self) -> HealthStatus:
        """For the API: the last check; without a health-check hook, the process state."""
        if "health-check" not in self.templates.hooks:
            return HealthStatus.from_process_up(self.process.state is ProcessState.UP)
        return self.health if self.health is not None else HealthStatus.UNKNOWN

    @property
    def health(self) -> HealthStatus | None:
        """The last health-check result (None: not checked yet, or stopped)."""
        return self.checker.status

    @health.setter
    def health(self, status: HealthStatus | None) -> None:
        self.checker.status = status

    def rumor(self) -> ServiceRumor:
        return ServiceRumor(
            member_id=self.member_id,
            service_group=str(self.sg),
            incarnation=self.incarnation,
            pkg=self.plan.ident,
            initialized=self.initialized,
            cfg=self.exported,
            sys=rumor_sys(self.sys_info),
            health_check=self._gossiped_health(),
            plan_fingerprint=self.plan.fingerprint,
        )

    def _gossiped_health(self) -> str:
        if self.state in (_S.UP, _S.STOPPING):
            return self.health_status().api_name
        return ""

    # --- requests (never block) -------------------------------------------------------------------

    def activate(self) -> None:
        """Start the service's task; it renders and follows the desired state."""
        if self._loop_task is None:
            for sub in SVC_SUBDIRS:
                (self.svc_path / sub).mkdir(parents=True, exist_ok=True)
            self._chown_dirs()
            self.user_config_changed()
            self.sources.take_census(self._census())
            self._loop_task = self._spawn(self._loop(), "loop")
            if "health-check" in self.templates.hooks:
                self._spawn(self.checker.run(), "health")
            if self.coordination.active:
                self._spawn(self.coordination.run(), "election")
            self.wake()

    def wake(self) -> None:
        self._wake.set()

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
        if self.sources.take_census(self._census()):
            self._log.info("config.gossip_taken", incarnation=self.sources.gossip_incarnation)
        self.coordination.wake()
        self.wake()

    def user_config_changed(self) -> None:
        error = self.sources.read_user_toml()
        if error is not None:
            self._error(error, "config.user_invalid")
        sg = str(self.sg)
        self._events(
            ConfigRejected(sg, "user", None, error) if error else ConfigApplied(sg, "user", None)
        )
        self.wake()

    def apply_config_rumor(self, rumor: ServiceConfigRumor) -> bool:
        """Take a gossiped config for our group if newer than ours; True if taken."""
        taken, error = self.sources.offer_config(
            rumor.service_group, rumor.incarnation, rumor.config, rumor.encrypted
        )
        if error is not None:
            self._error(error, "config.gossip_invalid")
            self._events(ConfigRejected(str(self.sg), "gossip", rumor.incarnation, error))
        if taken:
            self._log.info("config.gossip_applied", incarnation=rumor.incarnation)
            self._events(ConfigApplied(str(self.sg), "gossip", rumor.incarnation))
            self.wake()
        return taken

    def apply_file_rumor(self, rumor: ServiceFileRumor) -> bool:
        """Queue a gossiped file for ``files/`` if newer than ours; True if taken."""
        taken, error = self.sources.offer_file(
            rumor.service_group, rumor.filename, rumor.incarnation, rumor.body, rumor.encrypted
        )
        if error is not None:
            self._error(error, "file.rejected")
            self._events(FileRejected(str(self.sg), rumor.filename, rumor.incarnation, error))
        if taken:
            self.wake()
        return taken

    async def suitability(self) -> int | None:
        """Run the suitability hook (leader elections); None without a hook or on failure."""
        if "suitability" not in self.templates.hooks:
            return None
        result = await self._run_hook("suitability")
        if result is None or not result.ok:
            return None
        try:
            return parse_suitability(result.stdout_tail)
        except ValueError as e:
            self._error(f"suitability hook: {e}", "hook.suitability_invalid")
            return None

    # --- internals --------------------------------------------------------------------------------

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, name=f"{self.sg}:{what}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _transition(self, new: ServiceState, reason: str | None = None) -> None:
        old = self.state
        if new is not old:
            if new not in TRANSITIONS[old]:
                raise IllegalTransition(f"{self.sg}: {old.value} -> {new.value}")
            self._log.info("service.state", old=old.value, new=new.value, reason=reason)
            self._events(ServiceStateChanged(str(self.sg), new.value, old.value, reason))
            self.state = new
        self.reason = reason
        self._changed.set()

    def _error(self, message: str, event: str, **fields: Any) -> None:
        self.last_error = message
        self._log.error(event, error=message, **fields)

    def _wake_later(self, delay: float) -> None:
        if self._retry_handle is not None:
            self._retry_handle.cancel()
        self._retry_handle = asyncio.get_running_loop().call_later(delay, self.wake)

    def _chown_dirs(self) -> None:
        if self._user is None:
            return
        pw = pwd.getpwnam(self._user)
        for sub in ("data", "var", "files", "static"):
            with contextlib.suppress(OSError):
                os.chown(self.svc_path / sub, pw.pw_uid, pw.pw_gid)

    def _render(self, census: Census) -> RenderResult:
        ctx = render_context(
            plan=self.plan,
            spec=self.spec,
            sys_info=self.sys_info,
            member_id=self.member_id,
            cfg=self.cfg,
            exported=self.exported,
            census=census,
            initialized=self.initialized,
        )
        return render_templates(self.templates, ctx, self.svc_path)

    def _write_files(self) -> list[str]:
        pending = self.sources.take_pending_files()
        try:
            changed = write_files(pending, self.svc_path / "files")
        except (OSError, ValueError) as e:
            self._error(f"cannot write gossiped files: {e}", "file.write_failed")
            self._events(FileRejected(str(self.sg), None, None, f"cannot write: {e}"))
            return []
        if changed:
            self._log.info("file.written", files=changed)
            self._events(FileApplied(str(self.sg), tuple(changed)))
        return changed

    def _publish_if_changed(self) -> None:
        if self.state is _S.UNLOADED:
            return
        current = (self.initialized, self.exported, self._gossiped_health())
        if current == self._published:
            return
        self._published = current
        self.incarnation = max(self.incarnation + 1, int(self._wall() * 1000))
        try:
            self._publish(self.rumor())
        except Exception:
            self._log.exception("service.publish_failed")

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
        if not await self._install() or not await self._init():
            delay = self._init_backoff.next_delay(self._rng)
            self._log.warning("service.init_retry", delay_s=round(delay, 3))
            self._transition(_S.INITIALIZING, f"retrying install/init in {delay:.1f}s")
            self._wake_later(delay)
            return
        self._init_backoff.reset()
        self.initialized = True
        self._transition(_S.UP)
        await self.supervisor.start()

    async def _install(self) -> bool:
        if "install" not in self.templates.hooks:
            return True
        marker = self.svc_path / INSTALL_STATUS_FILE
        with contextlib.suppress(OSError):
            if marker.read_text().split() == [self.plan.fingerprint, "0"]:
                return True
        result = await self._run_hook("install")
        code = result.exit_code if result is not None else None
        atomic_write(marker, f"{self.plan.fingerprint} {code}\n".encode(), 0o644)
        return result is not None and result.ok

    async def _init(self) -> bool:
        if "init" not in self.templates.hooks:
            return True
        result = await self._run_hook("init")
        return result is not None and result.ok

    async def _apply(self, render: RenderResult, files: list[str]) -> None:
        hooks = set(render.hooks)
        restart: str | None = None
        if hooks & RESTART_HOOKS:
            restart = f"hooks changed: {', '.join(sorted(hooks & RESTART_HOOKS))}"
        elif render.config and "reconfigure" not in self.templates.hooks:
            restart = f"config changed: {', '.join(render.config)} (no reconfigure hook)"
        if "init" in hooks:
            await self._init()  # a failure is recorded; the restart below still happens
        if restart is not None:
            self._log.info("service.restart", reason=restart)
            self._events(ServiceRestart(str(self.sg), restart))
            self._cancel_post_run()
            await self.supervisor.restart()
        elif render.config:
            self._log.info("service.reconfigure", files=render.config)
            await self._run_hook("reconfigure")
        if files and "file-updated" in self.templates.hooks:
            await self._run_hook("file-updated")

    async def _bring_down(self, reason: str | None = None) -> None:
        if self.state is _S.UP:
            self._transition(_S.STOPPING, reason)
            self._cancel_post_run()
            await self.supervisor.stop()
            self.checker.stopped()
            if "post-stop" in self.templates.hooks:
                await self._run_hook("post-stop")
            self._transition(_S.STOPPED, reason)
        elif self.state in (_S.LOADED, _S.WAITING, _S.INITIALIZING, _S.FAILED):
            if self._retry_handle is not None:
                self._retry_handle.cancel()
            self._transition(_S.STOPPED)

    # --- hooks, post-run, health ------------------------------------------------------------------

    async def _run_hook(self, name: str) -> HookResult | None:
        try:
            result = await run_hook(
                name,
                self.svc_path / "hooks" / name,
                service_group=str(self.sg),
                cwd=self.svc_path,
                env=self._env,
                timeout_s=self.tuning.hook_timeout_s,
                log_dir=self.svc_path / "logs",
                user=self._user,
                group=self._group,
                kill_grace_s=self.tuning.hook_kill_grace_s,
            )
        except HookError as e:
            self._error(f"{name} hook: {e}", "hook.failed", hook=name)
            self._events(hook_event(str(self.sg), name, None, str(e)))
            return None
        self.last_hook[name] = result
        if name != "health-check":  # service.health reports it, with its output
            self._events(hook_event(str(self.sg), name, result))
        if result.timed_out:
            self._error(
                f"{name} hook timed out after {self.tuning.hook_timeout_s:g}s and was killed",
                "hook.failed",
                hook=name,
            )
        elif not result.ok and name != "health-check":
            self._error(f"{name} hook exited with {result.exit_code}", "hook.failed", hook=name)
        return result

    def _on_process_state(self, state: ProcessState) -> None:
        if state is ProcessState.UP:
            self.checker.process_up()
            if "post-run" in self.templates.hooks and not self.process.adopted:
                self._cancel_post_run()
                self._post_run = self._spawn(self._post_run_loop(self.process.pid), "post-run")
        elif "health-check" in self.templates.hooks and self._desired is DesiredState.UP:
            self.checker.process_down()
        self._publish_if_changed()
        self._changed.set()

    def _on_process_exit(self, code: int | None, delay: float | None) -> None:
        self._cancel_post_run()
        self.last_error = f"run process exited with {code}; restarting in {delay or 0:.2f}s"
        attempt = self.supervisor.backoff.attempts
        self._events(ServiceExited(str(self.sg), code, round(delay or 0.0, 3), attempt))

    def _cancel_post_run(self) -> None:
        if self._post_run is not None and not self._post_run.done():
            self._post_run.cancel()
        self._post_run = None

    async def _post_run_loop(self, pid: int | None) -> None:
        delay = self.tuning.post_run_retry_s
        while self.process.pid == pid and pid is not None:
            result = await self._run_hook("post-run")
            if result is not None and result.ok:
                return
            await asyncio.sleep(delay)  # a retry period, not synchronisation
            delay = min(delay * 2, self.tuning.init_retry_max_s)

    async def _check_health(self) -> HealthStatus:
        result = await self._run_hook("health-check")
        status = HealthStatus.from_exit_code(result.exit_code if result is not None else None)
        self._events(health_event(str(self.sg), status, self.health, result))
        return status

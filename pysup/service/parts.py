"""What a loaded service is made of and what it reports (the base of ``service.Service``).

``ServiceParts`` builds, when a plan is loaded, the parts one service is made of: its config
sources, its hooks and run process (``programs``), its health checker and its election coordinator;
it holds the status the API shows (state, reason, last error, the last hook results), renders the
service's templates and gossiped files into its directory (``svcdir``), publishes its Service
rumor when what it carries changed, and follows its run process (post-run after every start).
``service.Service`` adds the requests and the loop that act on these parts.
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
from typing import Any

import structlog

from pysup.butterfly.messages import Rumor, ServiceRumor
from pysup.census import Census, ElectionState, ServiceGroup
from pysup.events.model import (
    FileApplied,
    FileRejected,
    ServiceExited,
    ServiceStateChanged,
)
from pysup.events.sink import EventSink, no_events
from pysup.faults import Faults
from pysup.service.backoff import RestartBackoff
from pysup.service.checker import HealthChecker
from pysup.service.context import render_context, rumor_sys
from pysup.service.coordination import Coordinator
from pysup.service.health import HealthSchedule, HealthStatus
from pysup.service.lifecycle import (
    TRANSITIONS,
    IllegalTransition,
    ServiceState,
    ServiceTuning,
)
from pysup.service.plan import Plan
from pysup.service.process import ProcessState
from pysup.service.programs import RunAs, ServiceHooks, supervised_process
from pysup.service.sources import ConfigSources
from pysup.service.spec import DesiredState, ServiceSpec
from pysup.service.svcdir import (
    RenderResult,
    Templates,
    render_templates,
    resolve_run_user,
    write_files,
)

log = structlog.get_logger(__name__)

_S = ServiceState


class ServiceParts:
    """The parts and status of one loaded service (see the module docstring)."""

    # The status the API shows; the class values are those of a service just loaded.
    state: ServiceState = ServiceState.LOADED
    reason: str | None = None
    """Why the service waits (WAITING) or failed (FAILED)."""
    last_error: str | None = None
    """The last error (hook failure, bad config, template error), for the API. It stays until
    the next error: the API shows what last went wrong, also after recovery."""
    initialized: bool = False
    """install and init succeeded (or an adopted process ran them): the rumor says so."""
    incarnation: int = 0
    """Of the Service rumor last published."""
    update_status: str | None = None
    """A pending or running update of the plan (set by the manager's plan watcher)."""
    cfg: dict[str, Any]
    """The layered config the templates last rendered with."""
    exported: dict[str, Any]
    """Only the keys named in pkg_exports (what the Service rumor carries)."""
    last_render: RenderResult
    """Which config files and hooks the last render changed."""

    # Tasks and timers of the service, None while not running.
    _loop_task: asyncio.Task[None] | None = None
    _post_run: asyncio.Task[None] | None = None
    _retry_handle: asyncio.TimerHandle | None = None
    _published: tuple[bool, dict[str, Any], str] | None = None
    """What the last published Service rumor carried (initialized, exported, health)."""
    _hold_until: float | None = None
    """Loop time until which the Service rumor waits for the first health check (None: no hold)."""

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
        assert plan.svc_path is not None
        self._faults = faults if faults is not None else Faults()
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
        self._rng = rng
        self._wall = wall_clock
        self._log = log.bind(service_group=str(self.sg))
        self.run_as = RunAs(str(self.sg), plan.svc_path, dict(env), *resolve_run_user(plan))

        self.cfg = dict(plan.default_cfg)
        self.exported = {}
        self.last_render = RenderResult()
        self._desired = spec.desired_state
        self.sources = ConfigSources(
            service_group=str(self.sg),
            pkg_name=plan.name,
            default=plan.default_cfg,
            env=env,
            user_toml=user_toml,
        )
        self._init_backoff = RestartBackoff(
            base_s=tuning.init_retry_base_s, max_s=tuning.init_retry_max_s
        )
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

        self.hooks = ServiceHooks(
            self.run_as, tuning, lambda: self.templates.hooks, self._error, events
        )
        self.last_hook = self.hooks.last
        self.checker = self._health_checker()
        self.coordination = self._coordinator()
        self.process, self.supervisor = supervised_process(
            plan,
            self.run_as,
            has_run_hook="run" in templates.hooks,
            tuning=tuning,
            shutdown_timeout_s=self.shutdown_timeout_s,
            rng=rng,
            wall_clock=wall_clock,
            on_state_change=self._on_process_state,
            on_exit=self._on_process_exit,
        )

    def _health_checker(self) -> HealthChecker:
        schedule = HealthSchedule(
            interval_s=self.spec.health_check_interval_s,
            failure_recheck_s=self.tuning.failure_recheck_s,
        )
        return HealthChecker(
            schedule=schedule,
            run_check=lambda: self.hooks.check_health(self.health),
            is_up=lambda: self.process.state is ProcessState.UP,
            rng=self._rng,
            service_group=str(self.sg),
            on_change=self._publish_if_changed,
            faults=self._faults,
        )

    def _coordinator(self) -> Coordinator:
        return Coordinator(
            sg=self.sg,
            topology=self.spec.topology,
            strategy=self.spec.strategy,
            census=self._census,
            publish=self._publish,
            suitability=self.suitability,
            tuning=self.tuning.election,
            faults=self._faults,
            events=self._events,
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

    def wake(self) -> None:
        """Make the service's loop run a pass (never blocks)."""
        self._wake.set()

    async def suitability(self) -> int | None:
        """Run the suitability hook (leader elections); None without a hook or on failure."""
        return await self.hooks.suitability()

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
        if self.run_as.user is None:
            return
        pw = pwd.getpwnam(self.run_as.user)
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
        if self.state is _S.UNLOADED or self._holding_for_first_check():
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

    def _holding_for_first_check(self) -> bool:
        """Up, with a health-check hook that has not answered yet: hold the Service rumor until
        it does or `first_check_hold_s` has passed (then publish, health Unknown), so a load
        gossips one version, not two 0.1 s apart (`ServiceTuning.first_check_hold_s`)."""
        if (
            self.state is not _S.UP
            or self.checker.status is not None
            or "health-check" not in self.templates.hooks
        ):
            self._hold_until = None
            return False
        loop = asyncio.get_running_loop()
        if self._hold_until is None:
            self._hold_until = loop.time() + self.tuning.first_check_hold_s
            loop.call_at(self._hold_until, self._publish_if_changed)
        return loop.time() < self._hold_until

    # --- the run process ------------------------------------------------------------------

    def _on_process_state(self, state: ProcessState) -> None:
        if state is ProcessState.UP:
            self.checker.process_up()
            if "post-run" in self.templates.hooks and not self.process.adopted:
                self._cancel_post_run()
                pid = self.process.pid
                post_run = self.hooks.post_run(lambda: pid is not None and self.process.pid == pid)
                self._post_run = self._spawn(post_run, "post-run")
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

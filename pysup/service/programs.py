"""A service's programs: its hooks and its run process, run as the service's user in its directory.

``ServiceHooks`` runs one named hook of a service (``hooks.run_hook`` with the service's
environment, user, timeout and log dir), remembers each hook's last result for the API, reports a
failure once (``on_error`` and a ``service.hook`` event) and holds the hook steps of the sequence
that are more than one call: install (once per plan fingerprint, remembered in
``INSTALL_STATUS_FILE``), init, post-run (retried until it exits 0), health check, suitability.
``supervised_process`` builds the run process and its restart supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from pysup.events.sink import EventSink, health_event, hook_event
from pysup.service.health import HealthStatus
from pysup.service.hooks import HookError, HookResult, parse_suitability, run_hook
from pysup.service.lifecycle import ServiceTuning
from pysup.service.plan import Plan
from pysup.service.process import ProcessState, ProcessSupervisor, SupervisedProcess
from pysup.statedir import atomic_write

INSTALL_STATUS_FILE: Final = "INSTALL_HOOK_STATUS"
"""In the service dir: ``<plan fingerprint> <exit code>`` of the last install hook run."""


@dataclass(frozen=True)
class RunAs:
    """Where and as whom a service's programs run."""

    service_group: str
    svc_path: Path
    env: Mapping[str, str]
    user: str | None
    group: str | None


class ErrorReport(Protocol):
    def __call__(self, message: str, event: str, **fields: Any) -> None: ...


class ServiceHooks:
    """Runs the hooks of one service (see the module docstring)."""

    def __init__(
        self,
        run_as: RunAs,
        tuning: ServiceTuning,
        defined: Callable[[], Mapping[str, object]],
        on_error: ErrorReport,
        events: EventSink,
    ) -> None:
        self.run_as = run_as
        self.tuning = tuning
        self._defined = defined
        self._error = on_error
        self._events = events
        self.last: dict[str, HookResult] = {}
        """The last result of each hook, for the API."""

    def has(self, name: str) -> bool:
        """Does the plan define hook `name`?"""
        return name in self._defined()

    async def run(self, name: str) -> HookResult | None:
        """Run hook `name`; None when it could not be started (reported)."""
        r, sg = self.run_as, self.run_as.service_group
        try:
            result = await run_hook(
                name,
                r.svc_path / "hooks" / name,
                service_group=sg,
                cwd=r.svc_path,
                env=r.env,
                timeout_s=self.tuning.hook_timeout_s,
                log_dir=r.svc_path / "logs",
                user=r.user,
                group=r.group,
                kill_grace_s=self.tuning.hook_kill_grace_s,
            )
        except HookError as e:
            self._error(f"{name} hook: {e}", "hook.failed", hook=name)
            self._events(hook_event(sg, name, None, str(e)))
            return None
        self.last[name] = result
        if name != "health-check":  # service.health reports it, with its output
            self._events(hook_event(sg, name, result))
        if result.timed_out:
            self._error(
                f"{name} hook timed out after {self.tuning.hook_timeout_s:g}s and was killed",
                "hook.failed",
                hook=name,
            )
        elif not result.ok and name != "health-check":
            self._error(f"{name} hook exited with {result.exit_code}", "hook.failed", hook=name)
        return result

    async def install(self, fingerprint: str) -> bool:
        """Run install unless it already succeeded for this plan; True when it has."""
        if not self.has("install"):
            return True
        marker = self.run_as.svc_path / INSTALL_STATUS_FILE
        with contextlib.suppress(OSError):
            if marker.read_text().split() == [fingerprint, "0"]:
                return True
        result = await self.run("install")
        code = result.exit_code if result is not None else None
        atomic_write(marker, f"{fingerprint} {code}\n".encode(), 0o644)
        return result is not None and result.ok

    async def init(self) -> bool:
        """Run init (if defined); True when it succeeded or there is none."""
        if not self.has("init"):
            return True
        result = await self.run("init")
        return result is not None and result.ok

    async def post_run(self, still_running: Callable[[], bool]) -> None:
        """Run post-run until it exits 0, while `still_running` (the same process) holds."""
        delay = self.tuning.post_run_retry_s
        while still_running():
            result = await self.run("post-run")
            if result is not None and result.ok:
                return
            await asyncio.sleep(delay)  # a retry period, not synchronisation
            delay = min(delay * 2, self.tuning.init_retry_max_s)

    async def check_health(self, previous: HealthStatus | None) -> HealthStatus:
        """Run the health check; a hook that could not run or timed out is UNKNOWN."""
        result = await self.run("health-check")
        status = HealthStatus.from_exit_code(result.exit_code if result is not None else None)
        self._events(health_event(self.run_as.service_group, status, previous, result))
        return status

    async def suitability(self) -> int | None:
        """Run the suitability hook (leader elections); None without a hook or on failure."""
        if not self.has("suitability"):
            return None
        result = await self.run("suitability")
        if result is None or not result.ok:
            return None
        try:
            return parse_suitability(result.stdout_tail)
        except ValueError as e:
            self._error(f"suitability hook: {e}", "hook.suitability_invalid")
            return None


def supervised_process(
    plan: Plan,
    run_as: RunAs,
    *,
    has_run_hook: bool,
    tuning: ServiceTuning,
    shutdown_timeout_s: float,
    rng: random.Random,
    wall_clock: Callable[[], float],
    on_state_change: Callable[[ProcessState], None],
    on_exit: Callable[[int | None, float | None], None],
) -> tuple[SupervisedProcess, ProcessSupervisor]:
    """The run process (the rendered run hook, else the plan's ``svc_run``) and its supervisor
    (restart with backoff, shutdown signal then KILL after `shutdown_timeout_s`)."""
    run_hook_path = run_as.svc_path / "hooks" / "run" if has_run_hook else None
    process = SupervisedProcess(
        service_group=run_as.service_group,
        svc_dir=run_as.svc_path,
        env=run_as.env,
        run_hook=run_hook_path,
        run_cmd=None if run_hook_path is not None else plan.svc_run,
        user=run_as.user,
        group=run_as.group,
        on_state_change=on_state_change,
        wall_clock=wall_clock,
    )
    supervisor = ProcessSupervisor(
        process,
        backoff=tuning.restart_backoff(),
        rng=rng,
        shutdown_signal=plan.shutdown_signal,
        shutdown_timeout_s=shutdown_timeout_s,
        on_exit=on_exit,
    )
    return process, supervisor

"""``PlanWatcher`` (one per manager) polls the plan directories of services whose update strategy is
not ``none`` and asks ``updates.plan_turn`` when to restart them with the changed plan."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pysup.census import Census
from pysup.faults import Faults
from pysup.service.spec import UpdateStrategy
from pysup.service.updates import Turn, plan_turn

if TYPE_CHECKING:
    from pysup.service.service import Service

log = structlog.get_logger(__name__)


class PlanWatcher:
    """Polls the plans of services with an update strategy; restarts them when their turn comes."""

    def __init__(
        self,
        *,
        services: Callable[[], list[Service]],
        census: Callable[[], Census],
        update: Callable[[Service], Awaitable[object]],
        poll_s: float = 1.0,
        pending_poll_s: float = 0.25,
        faults: Faults | None = None,
    ) -> None:
        self._faults = faults if faults is not None else Faults()
        self._services = services
        self._census = census
        self._update = update
        self.poll_s = poll_s
        self.pending_poll_s = pending_poll_s
        self._seen: dict[Path, str] = {}

    async def run(self) -> None:
        while True:
            pending = False
            with self._faults.guard("service.plan_watch"):
                pending = await self.check()
            await asyncio.sleep(self.pending_poll_s if pending else self.poll_s)

    async def check(self) -> bool:
        """One pass over the services; True while an update waits for its turn."""
        pending = False
        for svc in self._services():
            if svc.spec.strategy is UpdateStrategy.NONE:
                continue
            from pysup.service.plan import plan_fingerprint  # the plan loader: with the first plan

            try:
                on_disk = await asyncio.to_thread(plan_fingerprint, svc.spec.plan_dir)
            except OSError as e:
                log.warning("update.plan_unreadable", plan_dir=str(svc.spec.plan_dir), error=str(e))
                continue
            turn = plan_turn(
                svc.spec.strategy,
                self._census().group(svc.sg),
                svc.member_id,
                svc.plan.fingerprint,
                on_disk,
            )
            self._report(svc, turn, on_disk)
            if turn is None:
                continue
            if not turn.go:
                pending = True
                continue
            log.info("update.restart", service_group=str(svc.sg), reason=turn.reason)
            await self._update(svc)
        return pending

    def _report(self, svc: Service, turn: Turn | None, on_disk: str) -> None:
        reason = turn.reason if turn is not None else None
        if reason != svc.update_status:
            if reason is not None:
                log.info(
                    "update.pending",
                    service_group=str(svc.sg),
                    reason=reason,
                    running=svc.plan.fingerprint[:12],
                    on_disk=on_disk[:12],
                )
            svc.update_status = reason

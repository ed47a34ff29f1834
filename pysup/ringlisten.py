"""The daemon's listener for ring events (`pysup.ring.RingEvent`): what each change sets off.

- every event goes to ``/events``;
- a member's health change is logged (``member.alive`` ...), wakes the joiner and tells the
  services the census changed;
- a rumor, opened (encrypted ones with our keys), goes to the services;
- our own refutation is saved (INCARNATION) so a restart refutes from the ring's value;
- being departed by the ring (``sup depart``) stops the supervisor with its own exit status.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from pysup.butterfly.effects import MemberChanged, RumorChanged
from pysup.crypto.sealed import RumorOpener
from pysup.events import EventStream
from pysup.events.translate import effect_event
from pysup.ring import RingEvent
from pysup.service.manager import ServiceManager
from pysup.statedir import StateDir

log = structlog.get_logger(__name__)


class RingListener:
    """Built before the ring; `events` and `services` are attached once they exist."""

    def __init__(
        self,
        *,
        opener: RumorOpener,
        state: StateDir,
        on_member_changed: Callable[[], None],
        on_departed: Callable[[], None],
    ) -> None:
        self.opener = opener
        self.state = state
        self.on_member_changed = on_member_changed
        self.on_departed = on_departed
        self.events: EventStream | None = None
        self.services: ServiceManager | None = None

    def __call__(self, e: RingEvent) -> None:
        if self.events is not None:
            self.events.publish(effect_event(e))
        if isinstance(e, MemberChanged):
            m = e.member
            extra: dict[str, object] = {}
            if e.suspected_by:
                extra["suspected_by"] = e.suspected_by
            if e.confirmations >= 0:
                extra["confirmations"] = e.confirmations
            log.info(
                f"member.{m.health.name.lower()}",
                member_id=m.id,
                address=f"{m.address}:{m.gossip_port}",
                incarnation=m.incarnation,
                previous=e.previous.label if e.previous else None,
                **extra,
            )
            self.on_member_changed()
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
            self.on_departed()

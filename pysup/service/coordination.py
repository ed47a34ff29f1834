"""The shell around the pure election logic for one service.

``Coordinator`` (one per service in leader topology or with the rolling strategy) runs in the
service's task set. On every census change (woken by ``Service.census_changed``) and every
``tick_s`` it reads its group from the census, calls ``election.decide`` for the leader election
(topology leader) and the update election (strategy rolling), and publishes what it returns
through the manager's ``publish``. The suitability hook runs once per term this member stands in.
``gate`` tells the service whether hooks may run: Habitat's "Waiting to execute hooks; election in
progress" (saying how many members a group below ``election.MIN_QUORUM`` still waits for), and,
the split-brain fix, "no quorum": a member that sees a majority of its group gone stops its
running service until quorum returns (``ElectionTuning.stop_without_quorum``). The leader group's
size is logged when it changes: ``election.waiting_for_members`` (members, needed, waiting_for),
``election.enough_members``, and Habitat's warning for an even group, ``election.even_population``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import structlog

from pysup.butterfly.messages import ElectionRumor, Rumor
from pysup.census import Census, CensusGroup, ElectionState, ServiceGroup
from pysup.election import (
    INCUMBENT,
    MIN_QUORUM,
    GroupSize,
    GroupView,
    Participant,
    group_size,
    members_needed,
    quorum,
    reachable_quorum,
    size_notices,
)
from pysup.events.sink import EventSink, no_events
from pysup.events.translate import election_event, size_events
from pysup.faults import Faults
from pysup.service.lifecycle import ElectionTuning
from pysup.service.spec import Topology, UpdateStrategy

log = structlog.get_logger(__name__)


EVEN_POPULATION = (
    "This census has an even population. If half the membership fails, quorum will never be "
    "met, and no leader will be elected. Add another instance to the service group!"
)
"""Habitat's warning for a leader group with an even number of members, word for word (users
search their logs for it)."""


class Gate(NamedTuple):
    reason: str | None
    """Why hooks may not run now; None: they may."""
    fence: bool = False
    """The service must stop (no quorum), not only hold its hooks."""


def group_view(census: Census, group: CensusGroup) -> GroupView:
    return GroupView(
        member_id=census.local_member_id,
        service_group=str(group.service_group),
        members={m.member_id: m.member_health for m in group.members},
        ring={m.id: m.health for m in census.ring},
    )


def leader_gate(group: CensusGroup | None, census: Census, tuning: ElectionTuning) -> Gate:
    """May a leader-topology service run its hooks? (Habitat's messages, plus no quorum.)"""
    if group is None or group.me is None:
        return Gate("Waiting to execute hooks; election hasn't started")
    if tuning.stop_without_quorum and not tuning.external_leader:
        q = reachable_quorum(group_view(census, group).members)
        if not q.has_quorum:
            return Gate(
                f"No quorum: {q} of {group.service_group}; the service stays stopped until "
                "a majority of its group is reachable",
                fence=True,
            )
    status = group.election_status
    if status is ElectionState.NONE:
        return Gate("Waiting to execute hooks; election hasn't started")
    if status is ElectionState.IN_PROGRESS:
        return Gate("Waiting to execute hooks; election in progress")
    if status is ElectionState.NO_QUORUM:
        reason = "Waiting to execute hooks; election in progress, and we have no quorum"
        members = group_view(census, group).members
        needed = members_needed(members, group.election)
        if needed and not tuning.external_leader:
            have = MIN_QUORUM - needed
            reason += (
                f": {have} of the {MIN_QUORUM} members a leader group needs for its first "
                f"election; waiting for {needed} more"
            )
        return Gate(reason)
    if group.leader_id is None:
        return Gate("Waiting to execute hooks; the elected leader is not in the census yet")
    return Gate(None)


class Coordinator:
    """Takes part in the elections of one service's group (see the module docstring)."""

    def __init__(
        self,
        *,
        sg: ServiceGroup,
        topology: Topology,
        strategy: UpdateStrategy,
        census: Callable[[], Census],
        publish: Callable[[Rumor], None],
        suitability: Callable[[], Awaitable[int | None]],
        tuning: ElectionTuning,
        clock: Callable[[], float] = time.monotonic,
        faults: Faults | None = None,
        events: EventSink = no_events,
    ) -> None:
        self._faults = faults if faults is not None else Faults()
        self.sg = sg
        self._events = events
        self.topology = topology
        self.strategy = strategy
        self.tuning = tuning
        self._census = census
        self._publish = publish
        self._suitability = suitability
        self._clock = clock
        self._wake = asyncio.Event()
        self._closed = False
        self._participants = {
            update: Participant(update=update, stuck_after_s=tuning.stuck_after_s)
            for update in (False, True)
        }
        self._suit: tuple[int, int] | None = None
        """(term, suitability) of the last suitability hook run."""
        self._size: GroupSize | None = None
        """The leader group's size last reported (``election.size_notices``)."""
        self._log = log.bind(service_group=str(sg))

    @property
    def active(self) -> bool:
        """Does this member take part in elections? Never when the leader is external."""
        if self.tuning.external_leader:
            return False
        return self.topology is Topology.LEADER or self.strategy is UpdateStrategy.ROLLING

    def gate(self, census: Census) -> Gate:
        if self.topology is not Topology.LEADER:
            return Gate(None)
        return leader_gate(census.group(self.sg), census, self.tuning)

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Take part in nothing more (the service is unloading); ``run`` returns."""
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Evaluate on every wake-up and every tick until closed (or cancelled)."""
        while not self._closed:
            self._wake.clear()
            with self._faults.guard("service.election", service_group=str(self.sg)):
                await self.step()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tuning.tick_s)

    async def step(self) -> None:
        if self._closed or not self.active:
            return
        if self.topology is Topology.LEADER:
            self._report_size()
            await self._elect(update=False)
        if self.strategy is UpdateStrategy.ROLLING:
            await self._elect(update=True)

    def _report_size(self) -> None:
        """Log the leader group's size when it changes: how many members the first election
        still waits for, and Habitat's warning for an even group."""
        census = self._census()
        group = census.group(self.sg)
        if group is None or group.me is None:
            return
        members = group_view(census, group).members
        size = group_size(members, group.election)
        notices = size_notices(self._size, size)
        for payload in size_events(str(self.sg), notices, size, quorum(members)):
            self._events(payload)
        for event in notices:
            if event == "election.even_population":
                self._log.warning(event, members=size.population, message=EVEN_POPULATION)
            else:
                self._log.info(
                    event, members=size.population, needed=MIN_QUORUM, waiting_for=size.needed
                )
        self._size = size

    async def _elect(self, *, update: bool) -> None:
        census = self._census()
        group = census.group(self.sg)
        if group is None:
            return
        stored = group.update_election if update else group.election
        decision = await self._decide(census, group, stored, update)
        if decision is None:
            return
        # A suitability hook may have run meanwhile: decide again on a fresh census.
        census = self._census()
        group = census.group(self.sg)
        if group is None:
            return
        stored = group.update_election if update else group.election
        decision = await self._decide(census, group, stored, update, run_hook=False)
        if decision is not None and not self._closed:
            rumor, why = decision
            kind = "update_election" if update else "election"
            self._log.info(
                f"{kind}.{why}",
                term=rumor.term,
                candidate=rumor.member_id,
                status=rumor.status.value,
                votes=len(rumor.votes),
            )
            self._publish(rumor)
            members = group_view(census, group).members
            payload = election_event(members, stored, rumor, why, update)
            if payload is not None:
                self._events(payload)

    async def _decide(
        self,
        census: Census,
        group: CensusGroup,
        stored: ElectionRumor | None,
        update: bool,
        run_hook: bool = True,
    ) -> tuple[ElectionRumor, str] | None:
        me = census.local_member_id
        suitability = self._update_suitability(group, me) if update else self._cached_suit()
        if suitability is None:
            return None  # update election in leader topology: waits for the topology leader
        participant = self._participants[update]
        d = participant.step(
            group_view(census, group), stored, suitability=suitability, now=self._clock()
        )
        rumor = d.publish
        if rumor is None:
            return None
        standing = rumor.member_id == me and rumor.votes == (me,)
        incumbent = rumor.suitability >= INCUMBENT
        fresh = self._suit is not None and self._suit[0] == rumor.term
        if standing and not update and not incumbent and run_hook and not fresh:
            value = await self._suitability()
            self._suit = (rumor.term, value if value is not None else 0)
        return rumor, d.why

    def _cached_suit(self) -> int:
        return self._suit[1] if self._suit is not None else 0

    def _update_suitability(self, group: CensusGroup, me: str) -> int | None:
        """Habitat: standalone 0; in leader topology the followers stand highest, the topology
        leader lowest (it updates last), and nobody stands before the leader is known."""
        if self.topology is not Topology.LEADER:
            return 0
        if group.leader_id is None:
            return None
        return 0 if group.leader_id == me else INCUMBENT - 1


__all__ = [
    "EVEN_POPULATION",
    "Coordinator",
    "ElectionTuning",
    "Gate",
    "group_view",
    "leader_gate",
]

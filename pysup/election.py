"""Leader elections of service groups: the state machine of one member (pure).

Habitat's "highlander" election, kept where users rely on it and fixed where they hit problems:

- Every member of a leader-topology group takes part through one rumor per group (the
  ``ElectionRumor``; ``update=True`` for the rolling-update election). A member votes by
  publishing its own candidacy at the stored term: the rumor store's merge
  (``rumors.merge_election``) keeps the most suitable candidate (then the larger member id)
  and hands it every loser's votes, so the group converges on one rumor carrying everyone's
  votes.
- Quorum (Habitat's ``check_quorum``): the *population* is the group's members that are Alive,
  Suspect or Confirmed; the *electorate* those that are Alive; quorum iff
  ``alive > population // 2``.
- A minimum of three (``MIN_QUORUM``; Habitat's docs: "the first Supervisor will block until it
  has quorum", and its original leader topology's ``MIN_QUORUM = 3``): a group's *first* election
  waits until its population is at least three, so a member that is alone, or has found only one
  peer, never elects itself (two members started apart would each lead until they met). While it
  waits, each member stands at term 0 with status NoQuorum (what Habitat's ``start_election``
  publishes without quorum), so ``/census`` and ``/services`` show ``ElectionNoQuorum``
  everywhere. The minimum guards only that first election (``bootstrapping``: no rumor yet, or
  term 0 NoQuorum): once it ran, elections follow the quorum rule alone, so a group that shrinks
  below three keeps its leader while a majority is alive, and re-elects by majority (as Habitat
  does once its first election ran). The update election has no minimum (a rolling update of a
  two-member standalone group works, as in Habitat).
- The candidate finishes the election when it has quorum and every member of the electorate voted.
- An election restarts with ``term + 1`` when the leader is Confirmed, Departed or unknown, or when
  this member lost quorum (not only when the leader did: Habitat's #2315, a minority side kept a
  leader). A minority therefore shows NoQuorum and no leader; after the partition heals the higher
  term, or at equal terms the Finished rumor, wins everywhere.
- Never stuck (Habitat's #1994, #5188): a running election whose candidate is gone restarts with
  ``term + 1``; a NoQuorum election restarts once quorum is back (the merge keeps NoQuorum for its
  term); a candidate still missing votes after ``stuck_after_s`` finishes with the votes of a
  majority of the population (a member of the group that never votes: unloaded, or standalone); and
  any member with quorum restarts an election that has run for ``2 * stuck_after_s`` without
  finishing.
- A restarting leader keeps its leadership when it can: the last leader this member saw stands with
  a suitability above any hook's (Habitat gives the previous leader ``u64::MAX``; we add the term
  it led, so of two former leaders the more recent wins), so a healed partition or a lost and
  regained quorum does not move the leader needlessly.

``decide`` is a function of what one member knows (``GroupView``), the stored rumor and the time;
it returns the rumor to publish (or None) and why. The shell (``service/coordination.py``) calls it
on every census change and on a timer, and publishes what it returns; a published rumor merges
into the store and the next ``decide`` sees it, so repeating a call is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, NamedTuple

from pysup.butterfly.member import Health, next_incarnation
from pysup.butterfly.messages import ElectionRumor, ElectionStatus

MAX_SUITABILITY: Final = 2**64 - 1
"""Suitability is a u64 (Habitat's)."""
INCUMBENT: Final = 2**63
"""An incumbent (the last leader a member saw) stands with ``INCUMBENT + the term it led``: above
any suitability a hook reports (they are below 2**63), and the more recent leader of two wins."""

MIN_QUORUM: Final = 3
"""Members (the quorum population) a leader group needs before its first election. Three is the
smallest group in which a majority survives the loss of one member and a tie cannot happen, and
the number Habitat documents and once enforced; more would make small deployments wait for
members they will never have."""

DEFAULT_STUCK_AFTER_S: Final = 30.0

_GONE: Final = frozenset({Health.CONFIRMED, Health.DEPARTED})


@dataclass(frozen=True)
class GroupView:
    """What one member knows of one service group right now."""

    member_id: str
    """This member."""
    service_group: str
    members: Mapping[str, Health | None]
    """Every member of the group (a Service rumor for it) -> its health (None: not in the member
    table). This member is in it once its own Service rumor is out."""
    ring: Mapping[str, Health] | None = None
    """The member table (any group): tells a candidate whose Service rumor has not arrived yet
    from one that is gone. None: no ring information."""

    def health_of(self, member_id: str) -> Health | None:
        health = self.members.get(member_id)
        if health is None and self.ring is not None:
            health = self.ring.get(member_id)
        return health

    def gone(self, member_id: str) -> bool:
        """Confirmed, Departed, or unknown to both the group and the member table."""
        health = self.health_of(member_id)
        return health is None or health in _GONE


class Quorum(NamedTuple):
    alive: int
    """The electorate: Alive members."""
    population: int
    """Alive, Suspect and Confirmed members (Departed ones no longer count)."""

    @property
    def has_quorum(self) -> bool:
        return self.alive > self.population // 2

    def __str__(self) -> str:
        return f"{self.alive} of {self.population} members alive"


def quorum(members: Mapping[str, Health | None]) -> Quorum:
    """Habitat's ``check_quorum`` over the group's members."""
    population = sum(1 for h in members.values() if h is not None and h is not Health.DEPARTED)
    alive = sum(1 for h in members.values() if h is Health.ALIVE)
    return Quorum(alive, population)


def reachable_quorum(members: Mapping[str, Health | None]) -> Quorum:
    """Quorum counting Suspect members as reachable: the test for *stopping* a running service,
    so a short suspicion (which Lifeguard often refutes) does not stop it."""
    population = sum(1 for h in members.values() if h is not None and h is not Health.DEPARTED)
    live = sum(1 for h in members.values() if h in (Health.ALIVE, Health.SUSPECT))
    return Quorum(live, population)


def bootstrapping(stored: ElectionRumor | None) -> bool:
    """Has the group not run its first election yet? No rumor, or the term-0 NoQuorum standing
    of members waiting for ``MIN_QUORUM`` (a term-0 election that started and then lost quorum
    looks the same and waits for the minimum again, which is the safe reading)."""
    return stored is None or (stored.term == 0 and stored.status is ElectionStatus.NO_QUORUM)


def members_needed(
    members: Mapping[str, Health | None], stored: ElectionRumor | None, *, update: bool = False
) -> int:
    """How many more members the group needs before its election may run (0: none)."""
    if update or not bootstrapping(stored):
        return 0
    return max(0, MIN_QUORUM - quorum(members).population)


class GroupSize(NamedTuple):
    """What the shell reports about a leader group's size, logged when it changes."""

    population: int
    """Members counting toward quorum (Alive, Suspect, Confirmed)."""
    needed: int
    """More members needed before the first election (``members_needed``)."""

    @property
    def even(self) -> bool:
        """An even group that is electing or elected: Habitat warns that half of it failing
        leaves no quorum on either side (and no leader)."""
        return self.needed == 0 and self.population > 0 and self.population % 2 == 0


def group_size(members: Mapping[str, Health | None], stored: ElectionRumor | None) -> GroupSize:
    return GroupSize(quorum(members).population, members_needed(members, stored))


def size_notices(previous: GroupSize | None, current: GroupSize) -> tuple[str, ...]:
    """Events to log for a change of a leader group's size (none when nothing changed):
    ``election.waiting_for_members`` while below the minimum, ``election.enough_members`` when
    it is reached, ``election.even_population`` when the group is even."""
    if current == previous:
        return ()
    events: list[str] = []
    if current.needed > 0:
        events.append("election.waiting_for_members")
    elif previous is not None and previous.needed > 0:
        events.append("election.enough_members")
    if current.even:  # the size changed, or the group just started electing at this size
        events.append("election.even_population")
    return tuple(events)


class Decision(NamedTuple):
    publish: ElectionRumor | None
    """The rumor to publish, or None: nothing to do."""
    why: str
    """A stable word for logs: start, vote, finish, finish_timeout, no_quorum, restart_*, wait_*
    (wait_members: the group is below ``MIN_QUORUM`` for its first election)."""


def running_since(
    previous: tuple[int, float] | None, stored: ElectionRumor | None, now: float
) -> tuple[int, float] | None:
    """Track since when the stored election has been unfinished at its term: (term, since)."""
    if stored is None or stored.status is ElectionStatus.FINISHED:
        return None
    if previous is not None and previous[0] == stored.term:
        return previous
    return (stored.term, now)


def decide(
    view: GroupView,
    stored: ElectionRumor | None,
    *,
    suitability: int,
    incumbent_term: int | None = None,
    since: float | None = None,
    now: float = 0.0,
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S,
    update: bool = False,
) -> Decision:
    """One member's next step in the election of its group (see the module docstring).

    `suitability`: this member's (the suitability hook's); `incumbent_term`: the term this member
    led, when it is the last leader it saw (it then stands as ``INCUMBENT + term``); `since`:
    when the stored election was first seen unfinished at its term (``running_since``); `update`:
    the rolling-update election.
    """
    me = view.member_id
    if me not in view.members:
        return Decision(None, "wait_not_a_member")
    if view.members[me] in _GONE:
        return Decision(None, "wait_departed")  # leaving the ring: stand for nothing
    q = quorum(view.members)
    # May an election run (start, restart, finish)? Quorum, and the minimum for the first one.
    waiting = members_needed(view.members, stored, update=update) > 0
    can_elect = q.has_quorum and not waiting
    status = ElectionStatus.RUNNING if can_elect else ElectionStatus.NO_QUORUM
    if incumbent_term is not None:
        suit = INCUMBENT + max(0, min(incumbent_term, INCUMBENT - 1))
    else:
        suit = max(0, min(suitability, INCUMBENT - 1))

    def candidacy(term: int) -> ElectionRumor:
        return ElectionRumor(view.service_group, me, term, suit, status, (me,), update)

    if stored is None:
        return Decision(candidacy(0), "start")
    term = stored.term
    if stored.status is ElectionStatus.FINISHED:
        if view.gone(stored.member_id):
            return Decision(candidacy(next_incarnation(term)), "restart_leader_gone")
        if not q.has_quorum:
            return Decision(candidacy(next_incarnation(term)), "restart_no_quorum")
        return Decision(None, "finished")
    if stored.status is ElectionStatus.NO_QUORUM and can_elect:
        return Decision(candidacy(next_incarnation(term)), "restart_quorum_back")
    # Below the minimum nobody restarts the waiting standing, even if its candidate left: a
    # restart would be a later term, which no longer waits for the minimum.
    if view.gone(stored.member_id) and not waiting:
        return Decision(candidacy(next_incarnation(term)), "restart_candidate_gone")
    if me not in stored.votes:
        return Decision(candidacy(term), "vote")
    if waiting:
        return Decision(None, "wait_members")
    age = None if since is None else now - since
    if stored.member_id != me:
        if can_elect and age is not None and age >= 2 * stuck_after_s:
            return Decision(candidacy(next_incarnation(term)), "restart_stuck")
        return Decision(None, "wait_candidate")
    # This member is the candidate.
    if not can_elect:
        if stored.status is not ElectionStatus.NO_QUORUM:
            return Decision(replace(stored, status=ElectionStatus.NO_QUORUM), "no_quorum")
        return Decision(None, "wait_no_quorum")
    votes = set(stored.votes)
    electorate = {m for m, h in view.members.items() if h is Health.ALIVE}
    if electorate <= votes:
        return Decision(replace(stored, status=ElectionStatus.FINISHED), "finish")
    if age is not None and age >= stuck_after_s:
        counted = sum(1 for m in votes if view.members.get(m) not in (None, Health.DEPARTED))
        if counted > q.population // 2:
            return Decision(replace(stored, status=ElectionStatus.FINISHED), "finish_timeout")
    return Decision(None, "wait_votes")


@dataclass
class Participant:
    """One member's part in one group's election across calls to ``decide``: since when the
    stored election has been unfinished, and the last leader it saw (incumbency)."""

    update: bool = False
    """The rolling-update election (no incumbency: Habitat elects it afresh)."""
    stuck_after_s: float = DEFAULT_STUCK_AFTER_S
    since: tuple[int, float] | None = None
    last_leader: tuple[str, int] | None = None
    """(member id, term) of the last Finished election seen."""

    def step(
        self, view: GroupView, stored: ElectionRumor | None, *, suitability: int, now: float
    ) -> Decision:
        self.since = running_since(self.since, stored, now)
        if stored is not None and stored.status is ElectionStatus.FINISHED:
            self.last_leader = (stored.member_id, stored.term)
        last = self.last_leader
        mine = last is not None and last[0] == view.member_id and not self.update
        return decide(
            view,
            stored,
            suitability=suitability,
            incumbent_term=last[1] if mine and last is not None else None,
            since=self.since[1] if self.since is not None else None,
            now=now,
            stuck_after_s=self.stuck_after_s,
            update=self.update,
        )


def leader_of(stored: ElectionRumor | None) -> str | None:
    """The leader a stored election names: its candidate once Finished."""
    if stored is None or stored.status is not ElectionStatus.FINISHED:
        return None
    return stored.member_id


__all__ = [
    "DEFAULT_STUCK_AFTER_S",
    "INCUMBENT",
    "MAX_SUITABILITY",
    "MIN_QUORUM",
    "Decision",
    "GroupSize",
    "GroupView",
    "Participant",
    "Quorum",
    "bootstrapping",
    "decide",
    "group_size",
    "leader_of",
    "members_needed",
    "quorum",
    "reachable_quorum",
    "running_since",
    "size_notices",
]

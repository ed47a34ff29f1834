"""Update strategies for a plan that changed on disk: who restarts when (pure).

pysup runs plans in place, so an "update" is the plan directory changing (its fingerprint: every
file's name and content). Each member watches its own copy (``planwatch.PlanWatcher``) and asks
this module what to do:

- ``none``: nothing (Habitat's default: no automatic update);
- ``at-once``: restart with the new plan as soon as the change is seen;
- ``rolling``: one member at a time, in a deterministic order coordinated through the group's
  update election (``ElectionUpdate``): the update leader first, then the other members by member
  id (a leader-topology group's leader last, as Habitat elects its update leader among the
  followers). A member restarts when every member before it runs the new plan, is alive and
  reports a healthy health check (Habitat only compared package versions, so two members could be
  down at once); members that are Confirmed or Departed are skipped. A member whose copy of the plan
  differs holds everyone after it: the reason says whom the group waits for and why.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from pysup.census import CensusGroup, CensusMember, ElectionState
from pysup.service.spec import UpdateStrategy

HEALTHY: Final = frozenset({"Ok", "Warning"})
"""Health-check results that let the next member of a rolling update go (HTTP 200 in Habitat)."""


class Turn(NamedTuple):
    go: bool
    """Restart with the new plan now."""
    reason: str
    """What the member does or waits for (shown under ``pysup.update`` in ``/services``)."""


def short(member_id: str) -> str:
    return member_id[:8]


def rolling_order(group: CensusGroup) -> list[CensusMember]:
    """The order members restart in: the update leader, then the others by member id with the
    topology leader last. Confirmed and Departed members are left out."""
    first = group.update_leader_id
    live = [m for m in group.members if m.active]
    return sorted(
        live,
        key=lambda m: (m.member_id != first, m.member_id == group.leader_id, m.member_id),
    )


def is_done(member: CensusMember, target: str) -> tuple[bool, str]:
    """Has `member` finished updating to `target` (and is it healthy)? With the reason if not."""
    if member.plan_fingerprint != target:
        have = member.plan_fingerprint[:12] or "unknown"
        return False, f"runs plan {have}, not {target[:12]}"
    if not member.alive:
        return False, "is not alive"
    if member.health_check not in HEALTHY:
        return False, f"is not healthy yet (health check: {member.health_check or 'none yet'})"
    return True, ""


def rolling_turn(group: CensusGroup | None, me: str, target: str) -> Turn:
    """May member `me` restart now to run the plan with fingerprint `target`?"""
    if group is None or group.me is None:
        return Turn(False, "rolling update: waiting to appear in the census")
    if group.update_election_status is not ElectionState.FINISHED or not group.update_leader_id:
        status = group.update_election_status.value
        return Turn(False, f"rolling update: waiting for the update election ({status})")
    order = rolling_order(group)
    for i, member in enumerate(order, start=1):
        if member.member_id == me:
            return Turn(True, f"rolling update: my turn ({i} of {len(order)})")
        done, why = is_done(member, target)
        if not done:
            return Turn(
                False, f"rolling update: waiting for {short(member.member_id)}, which {why}"
            )
    return Turn(False, "rolling update: not in the update order (not alive)")


def plan_turn(
    strategy: UpdateStrategy, group: CensusGroup | None, me: str, running: str, on_disk: str
) -> Turn | None:
    """What to do about a plan whose fingerprint on disk (`on_disk`) differs from the running one
    (`running`); None when nothing changed or the strategy is ``none``."""
    if on_disk == running or strategy is UpdateStrategy.NONE:
        return None
    if strategy is UpdateStrategy.AT_ONCE:
        return Turn(True, "at-once update: restarting with the changed plan")
    return rolling_turn(group, me, on_disk)


__all__ = ["HEALTHY", "Turn", "is_done", "plan_turn", "rolling_order", "rolling_turn"]

"""A probe that failed while our own host lagged says nothing about its target.

The shell calls `tick` when the earliest timer is due; on a busy host (an event loop behind a join
burst of hundreds of members) it calls late, and an ack may be waiting unread in our socket. Such
a probe must raise our local health (Lifeguard: we are the slow one), not suspect a live member:
at N=1000 on 2 cores every such suspicion became a rumor for everyone and the ring never settled
(bench/README.md, "N=1000 on real sockets")."""

from __future__ import annotations

from pysup.butterfly.core import LATE_TICK_FRACTION
from pysup.butterfly.member import Health
from pysup.butterfly.messages import PingReq
from tests.unit.test_core import CFG, Harness, changes, first_probe, ring, sends

LIMIT = LATE_TICK_FRACTION * CFG.probe_timeout_s
"""How late a tick may be (at local health 0) before a failed probe is inconclusive."""


def _unanswered_probe(late: float) -> tuple[Harness, str, list[object]]:
    """A probe nobody answers (neither the target nor, through proxies, anyone), whose end of
    period is ticked `late` seconds after its deadline. Returns the harness, the target's id and
    the effects of that late tick."""
    h = Harness(ring(5))
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    h.answer = set()
    assert len(sends(h.advance(t0 + CFG.probe_timeout_s), PingReq)) == CFG.indirect_checks
    end = t0 + CFG.probe_interval_s
    assert h.core.next_deadline() <= end  # the probe's period ends at `end` (or before)
    h.advance(end - 1e-9)
    h.now = end + late
    effects = h.core.tick(h.now)
    return h, target.id, list(effects)


def test_a_probe_ended_by_a_late_tick_does_not_suspect_and_raises_local_health() -> None:
    # Fails on the code before LATE_TICK_FRACTION: the target became Suspect and health 3.
    h, target_id, effects = _unanswered_probe(late=LIMIT * 1.6)
    assert not changes(effects, target_id)  # type: ignore[arg-type]
    assert h.core.member(target_id).health == Health.ALIVE  # type: ignore[union-attr]
    assert h.core.local_health == 1  # one step up (inconclusive), not 3 (no nack arrived)


def test_a_probe_ended_on_time_still_suspects() -> None:
    h, target_id, effects = _unanswered_probe(late=LIMIT * 0.5)  # ordinary timer jitter
    (changed,) = changes(effects, target_id)  # type: ignore[arg-type]
    assert changed.member.health == Health.SUSPECT
    assert h.core.local_health == CFG.indirect_checks  # no proxy nacked: our links look bad


def test_a_late_probe_timeout_counts_too() -> None:
    # The loop lagged when the ack timeout fired (ping-reqs went out late) and caught up by the
    # end of the period: the proxies' answers were as late as ours, so the probe is inconclusive.
    h = Harness(ring(5))
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    h.answer = set()
    h.advance(t0 + CFG.probe_timeout_s - 1e-9)
    h.now = t0 + CFG.probe_timeout_s + LIMIT * 1.6
    assert len(sends(h.core.tick(h.now), PingReq)) == CFG.indirect_checks
    effects = h.advance(t0 + CFG.probe_interval_s + LIMIT * 1.6)
    assert not changes(effects, target.id)
    assert h.core.member(target.id).health == Health.ALIVE  # type: ignore[union-attr]

"""Departed members' service rumors are garbage-collected `departure_timeout_s` after they left,
and stay collected: a member whose own timer has not fired yet still sends them (push-pull,
gossip), and merging those copies must not bring them back (found by `bench/soak.py`: with the
copies merged, a 50-member ring under churn kept every departed member's service rumor)."""

from __future__ import annotations

from pysup.butterfly.member import Health
from pysup.butterfly.messages import Gossip, MemberRumor, RumorKind, ServiceRumor
from tests.unit.test_core import CFG, Harness, mk

TIMEOUT = 60.0


def service_of(member_id: str, incarnation: int = 1) -> ServiceRumor:
    return ServiceRumor(member_id, "redis.default", incarnation, "core/redis/1/2")


def stored_services(h: Harness) -> set[str]:
    return {
        r.member_id
        for r in h.core.all_rumors()
        if isinstance(r, ServiceRumor) and r.service_group == "redis.default"
    }


def test_a_departed_members_service_rumor_is_collected_and_copies_do_not_revive_it() -> None:
    a, b = mk(1), mk(2)
    h = Harness([a, b], config=CFG.with_(departure_timeout_s=TIMEOUT))
    h.feed(b, Gossip(b, (service_of(a.id), service_of(b.id))))
    assert stored_services(h) == {a.id, b.id}

    h.now = 10.0
    left = a._replace(incarnation=2, health=Health.DEPARTED)
    h.feed(b, Gossip(b, (MemberRumor(left),)))
    assert h.core.member(a.id) is not None and h.core.member(a.id).health == Health.DEPARTED  # type: ignore[union-attr]

    h.advance(10.0 + TIMEOUT - 1.0)
    h.feed(b, Gossip(b, (service_of(a.id),)))  # while the timer runs, copies are still merged
    assert a.id in stored_services(h)
    h.advance(10.0 + TIMEOUT + 0.1)
    assert stored_services(h) == {b.id}

    # b has not collected it yet and sends its copy (a newer incarnation even): it stays gone.
    h.feed(b, Gossip(b, (service_of(a.id, incarnation=5), service_of(b.id, incarnation=2))))
    assert stored_services(h) == {b.id}
    assert h.core.store.counts().get(RumorKind.SERVICE) == 1


def test_a_live_members_service_rumor_is_merged_as_usual() -> None:
    a = mk(1)
    h = Harness([a], config=CFG.with_(departure_timeout_s=TIMEOUT))
    h.answer = {a.id}  # it acks its probes: it stays Alive
    h.advance(TIMEOUT * 3)
    h.feed(a, Gossip(a, (service_of(a.id),)))
    assert stored_services(h) == {a.id}

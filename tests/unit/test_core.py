"""SwimCore driven by hand: messages fed in, time advanced explicitly, effects inspected.

Each test builds a core that knows a few members, then plays the other members' part."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import pytest

from pysup.butterfly.config import LAN, GossipConfig
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import (
    Effect,
    MemberChanged,
    ProbeRtt,
    RumorChanged,
    SelfChanged,
    Send,
    StreamSend,
)
from pysup.butterfly.member import Health, Member, new_member_id
from pysup.butterfly.messages import (
    Ack,
    DepartureRumor,
    Gossip,
    MemberRumor,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Rumor,
    ServiceRumor,
)

CFG = LAN.with_(push_pull_interval_s=10_000.0)  # keep anti-entropy out of the way


def mk(i: int, inc: int = 1, health: Health = Health.ALIVE, persistent: bool = False) -> Member:
    return Member(new_member_id(random.Random(i)), inc, f"10.0.0.{i}", 9638, health, persistent)


ME = mk(100)


class Harness:
    """One core under test plus the time; `answer` lists the members that ack pings at once."""

    def __init__(self, others: Iterable[Member], config: GossipConfig = CFG, seed: int = 1) -> None:
        self.now = 0.0
        self.core = SwimCore(config, ME, random.Random(seed), self.now)
        self.others = {m.id: m for m in others}
        self.core.add_known(self.others.values(), self.now)
        self.by_addr = {m.addr: m for m in self.others.values()}
        self.answer: set[str] = set()
        self.relayed: set[str] = set()  # targets that proxies report as answering ping-reqs

    def advance(self, until: float) -> list[Effect]:
        """Fire every timer due up to `until` (inclusive), then set the clock to `until`."""
        out: list[Effect] = []
        while self.core.next_deadline() <= until:
            self.now = self.core.next_deadline()
            out.extend(self._auto(self.core.tick(self.now)))
        self.now = until
        return out

    def feed(self, frm: Member, msg: object) -> list[Effect]:
        return self._auto(self.core.receive(frm.addr, msg, self.now))  # type: ignore[arg-type]

    def _auto(self, effects: list[Effect]) -> list[Effect]:
        out = list(effects)
        for e in effects:
            if isinstance(e, Send) and isinstance(e.msg, Ping):
                peer = self.by_addr.get(e.addr)
                if peer is not None and peer.id in self.answer:
                    out.extend(self.core.receive(peer.addr, Ack(e.msg.seq, peer), self.now))
            if isinstance(e, Send) and isinstance(e.msg, PingReq):
                peer = self.by_addr.get(e.addr)
                if peer is not None and peer.id in self.answer and e.msg.target.id in self.relayed:
                    out.extend(self.core.receive(peer.addr, Ack(e.msg.seq, peer), self.now))
        return out


def sends(effects: Iterable[Effect], kind: type) -> list[Send]:
    return [e for e in effects if isinstance(e, Send) and isinstance(e.msg, kind)]


def changes(effects: Iterable[Effect], member_id: str) -> list[MemberChanged]:
    return [e for e in effects if isinstance(e, MemberChanged) and e.member.id == member_id]


def first_probe(h: Harness) -> tuple[Send, float]:
    """Run until the core pings someone; returns that Send and when."""
    for _ in range(100):
        effects = h.advance(h.core.next_deadline())
        pings = sends(effects, Ping)
        if pings:
            return pings[0], h.now
    raise AssertionError("no probe")


def ring(n: int) -> list[Member]:
    return [mk(i) for i in range(1, n + 1)]


# --- failure detection, step by step ------------------------------------------------------


def test_ping_then_ping_req_to_k_proxies_then_suspect() -> None:
    h = Harness(ring(5))
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    assert ping.msg.target_id == target.id  # type: ignore[union-attr]
    h.answer = set(h.others) - {target.id}

    # No ack within probe_timeout: ask indirect_checks proxies, never the target itself.
    effects = h.advance(t0 + CFG.probe_timeout_s)
    reqs = sends(effects, PingReq)
    assert len(reqs) == CFG.indirect_checks == 3
    assert all(r.msg.target.id == target.id for r in reqs)  # type: ignore[union-attr]
    assert target.addr not in {r.addr for r in reqs}
    assert len({r.addr for r in reqs}) == 3
    assert not changes(effects, target.id)

    # Still nothing at the end of the protocol period: Suspect, gossiped with us as suspector.
    effects = h.advance(t0 + CFG.probe_interval_s)
    (changed,) = changes(effects, target.id)
    assert changed.member.health == Health.SUSPECT and changed.previous == Health.ALIVE
    assert changed.suspected_by == h.core.me.id  # the event stream's member.health names us
    assert h.core.member(target.id).health == Health.SUSPECT  # type: ignore[union-attr]
    # Lifeguard: none of the 3 proxies nacked, so our own links look bad.
    assert h.core.local_health == 3


def test_direct_ack_cancels_the_probe() -> None:
    h = Harness(ring(5))
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    h.answer = set(h.others)
    effects = h.feed(target, Ack(ping.msg.seq, target))  # type: ignore[union-attr]
    assert [e for e in effects if isinstance(e, ProbeRtt)] == [ProbeRtt(0.0)]
    effects = h.advance(t0 + CFG.probe_interval_s * 3)
    assert not sends(effects, PingReq)
    assert not [e for e in effects if isinstance(e, MemberChanged)]
    assert h.core.local_health == 0


def test_indirect_ack_through_a_proxy_cancels_suspicion() -> None:
    h = Harness(ring(5))
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    h.answer = set(h.others) - {target.id}
    reqs = sends(h.advance(t0 + CFG.probe_timeout_s), PingReq)
    proxy = h.by_addr[reqs[0].addr]
    h.feed(proxy, Ack(reqs[0].msg.seq, proxy))  # the proxy relays the target's ack
    effects = h.advance(t0 + CFG.probe_interval_s)
    assert not changes(effects, target.id)
    assert h.core.member(target.id).health == Health.ALIVE  # type: ignore[union-attr]


@pytest.mark.parametrize("nacks", [0, 1, 2, 3])
def test_nacks_decide_how_much_local_health_suffers(nacks: int) -> None:
    h = Harness(ring(5))
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    h.answer = set(h.others) - {target.id}
    reqs = sends(h.advance(t0 + CFG.probe_timeout_s), PingReq)
    for r in reqs[:nacks]:
        proxy = h.by_addr[r.addr]
        h.feed(proxy, Nack(r.msg.seq, proxy))
    effects = h.advance(t0 + CFG.probe_interval_s)
    # Still suspect (nobody reached the target) but each nack proves one of our paths works.
    assert changes(effects, target.id)[0].member.health == Health.SUSPECT
    assert h.core.local_health == CFG.indirect_checks - nacks


def test_local_health_stretches_an_unanswered_probe_not_the_next_answered_one() -> None:
    """memberlist's pacing: a degraded member gives an unanswered probe (score + 1) periods to
    collect indirect acks before it suspects, but an answered probe does not delay the next.
    Stretching every period (as before) cut a lossy ring's probe rate, and so the rate at which
    a killed member is found and confirmed, by the average score."""
    h = Harness(ring(5))
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    h.answer = set(h.others) - {target.id}
    t1 = t0 + CFG.probe_interval_s
    h.advance(t1)  # failed probe, no nacks: score 3; the next probe (answered) goes out at t1
    assert h.core.local_health == 3
    h.answer = set()  # from here on nobody answers
    # The answered probe at t1 does not hold the next one back: it goes out one period later.
    t2 = t1 + CFG.probe_interval_s
    (second,) = sends(h.advance(t2), Ping)
    assert h.core.local_health == 2  # the answered probe lowered the score by one
    # Its ack timeout is stretched by the score (ping-reqs after 3 * 0.5 s) ...
    assert sends(h.advance(t2 + CFG.probe_timeout_s * 3 - 1e-6), PingReq) == []
    assert len(sends(h.advance(t2 + CFG.probe_timeout_s * 3), PingReq)) == CFG.indirect_checks
    # ... and, unanswered, it runs 3 periods before its target is suspected and the next goes.
    quiet = h.advance(t2 + CFG.probe_interval_s * 3 - 1e-6)
    assert sends(quiet, Ping) == [] and not changes(quiet, h.by_addr[second.addr].id)
    effects = h.advance(t2 + CFG.probe_interval_s * 3)
    assert changes(effects, h.by_addr[second.addr].id)[0].member.health == Health.SUSPECT
    assert len(sends(effects, Ping)) == 1


def test_acking_a_ping_and_ignoring_one_for_someone_else() -> None:
    a = mk(1)
    h = Harness([a])
    effects = h.feed(a, Ping(77, a, ME.id))
    (ack,) = sends(effects, Ack)
    assert ack.addr == a.addr and ack.msg.seq == 77 and ack.msg.sender == ME  # type: ignore[union-attr]
    assert sends(h.feed(a, Ping(78, a, mk(9).id)), Ack) == []


def test_relaying_a_ping_req_acks_or_nacks_the_asker() -> None:
    asker, target = mk(1), mk(2)
    h = Harness([asker, target])
    effects = h.feed(asker, PingReq(5, asker, target))
    (ping,) = sends(effects, Ping)
    assert ping.addr == target.addr
    relay_seq = ping.msg.seq  # type: ignore[union-attr]
    # The target answers: the asker gets an ack with its own seq.
    (ack,) = sends(h.feed(target, Ack(relay_seq, target)), Ack)
    assert ack.addr == asker.addr and ack.msg.seq == 5  # type: ignore[union-attr]
    # A second ping-req that goes unanswered: a nack in time to reach the asker before its
    # probe period ends (it sent the ping-req at probe_timeout and decides at probe_interval).
    (ping,) = sends(h.feed(asker, PingReq(6, asker, target)), Ping)
    nack_at = h.now + CFG.relay_nack_s()
    assert CFG.probe_timeout_s + CFG.relay_nack_s() < CFG.probe_interval_s
    assert sends(h.advance(nack_at - 1e-6), Nack) == []
    nacks = sends(h.advance(nack_at), Nack)
    assert [(n.addr, n.msg.seq) for n in nacks] == [(asker.addr, 6)]  # type: ignore[union-attr]
    # An ack that comes after the nack, within probe_timeout, is still relayed ...
    (late,) = sends(h.feed(target, Ack(ping.msg.seq, target)), Ack)  # type: ignore[union-attr]
    assert late.addr == asker.addr and late.msg.seq == 6  # type: ignore[union-attr]
    # ... and one after probe_timeout is not.
    (ping,) = sends(h.feed(asker, PingReq(7, asker, target)), Ping)
    h.advance(h.now + CFG.probe_timeout_s)
    assert sends(h.feed(target, Ack(ping.msg.seq, target)), Ack) == []  # type: ignore[union-attr]


# --- suspicion timeouts -------------------------------------------------------------------


def suspected_at(h: Harness, target: Member, by: Member) -> None:
    h.feed(by, Gossip(by, (MemberRumor(target.with_health(Health.SUSPECT), by.id),)))


def test_a_suspicion_learned_from_gossip_names_its_suspecter_and_confirmed_names_none() -> None:
    members = ring(4)
    h = Harness(members)
    target, a = members[0], members[1]
    effects = h.feed(a, Gossip(a, (MemberRumor(target.with_health(Health.SUSPECT), a.id),)))
    (changed,) = changes(effects, target.id)
    assert (changed.member.health, changed.suspected_by) == (Health.SUSPECT, a.id)
    confirmed = target.with_health(Health.CONFIRMED)
    (changed,) = changes(h.feed(a, Gossip(a, (MemberRumor(confirmed, a.id),))), target.id)
    assert (changed.member.health, changed.suspected_by) == (Health.CONFIRMED, "")


def confirm_time(h: Harness, target: Member, limit: float) -> float:
    """Advance in small steps until the target is Confirmed; returns when."""
    step = 0.01
    while h.now < limit:
        effects = h.advance(h.now + step)
        for c in changes(effects, target.id):
            if c.member.health == Health.CONFIRMED:
                return h.now
    raise AssertionError("never confirmed")


def test_unconfirmed_suspicion_lasts_the_maximum() -> None:
    members = ring(9)  # N = 10 with us: min 4 s, max 24 s, k = 2
    h = Harness(members)
    h.answer = {m.id for m in members[2:]}
    target, a = members[0], members[1]
    h.answer.add(a.id)
    h.relayed = {target.id}  # our own probes get through indirectly: no confirmation from us
    suspected_at(h, target, a)
    n = h.core.num_members()
    assert n == 10
    t = confirm_time(h, target, 100)
    assert t == pytest.approx(CFG.suspicion_max_s(n), abs=0.011)
    assert CFG.suspicion_max_s(n) == 24.0


@pytest.mark.parametrize("confirmations", [1, 2, 3])
def test_independent_confirmations_shrink_the_timeout(confirmations: int) -> None:
    members = ring(9)
    h = Harness(members)
    h.answer = {m.id for m in members[1:]}
    target = members[0]
    h.relayed = {target.id}
    suspected_at(h, target, members[1])
    for m in members[2 : 2 + confirmations]:
        suspected_at(h, target, m)
        suspected_at(h, target, m)  # the same suspector twice counts once
    n = h.core.num_members()
    lo, hi, k = CFG.suspicion_min_s(n), CFG.suspicion_max_s(n), 2
    c = min(confirmations, k)
    want = max(lo, hi - (hi - lo) * math.log(c + 1) / math.log(k + 1))
    assert confirm_time(h, target, 100) == pytest.approx(want, abs=0.011)


def test_refutation_cancels_the_suspicion() -> None:
    members = ring(9)
    h = Harness(members)
    h.answer = {m.id for m in members}
    target = members[0]
    suspected_at(h, target, members[1])
    refuted = target._replace(incarnation=2)
    effects = h.feed(members[2], Gossip(members[2], (MemberRumor(refuted),)))
    assert changes(effects, target.id)[0].member == refuted
    effects = h.advance(100)
    assert not [c for c in changes(effects, target.id) if c.member.health != Health.ALIVE]


def test_own_failed_probe_of_a_suspect_counts_as_confirmation() -> None:
    """A member already suspected by someone else that also misses our probe: our verdict is an
    independent confirmation, which shortens the timeout and is gossiped (Lifeguard)."""
    members = ring(3)  # N = 4: k = 2
    h = Harness(members)
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    other = next(m for m in members if m.id != target.id)
    h.answer = set(h.others) - {target.id}
    suspected_at(h, target, other)
    effects = h.advance(t0 + CFG.probe_interval_s)
    gossip = [
        r
        for e in sends(effects, Gossip) + sends(effects, Ping) + sends(effects, PingReq)
        for r in e.msg.rumors  # type: ignore[union-attr]
        if isinstance(r, MemberRumor) and r.member.id == target.id and r.by == ME.id
    ]
    assert gossip, "our confirmation was not gossiped"


# --- refutation and "a message proves it alive" -------------------------------------------


@pytest.mark.parametrize("health", [Health.SUSPECT, Health.CONFIRMED, Health.DEPARTED])
def test_refutation_bumps_incarnation_past_the_rumor(health: Health) -> None:
    a = mk(1)
    h = Harness([a])
    rumor = MemberRumor(ME._replace(incarnation=7, health=health), a.id)
    effects = h.feed(a, Gossip(a, (rumor,)))
    selfs = [e for e in effects if isinstance(e, SelfChanged)]
    assert [(s.member.incarnation, s.member.health, s.reason) for s in selfs] == [
        (8, Health.ALIVE, "refuted")
    ]
    assert h.core.me.incarnation == 8
    # The refutation is gossiped.
    gossip = sends(h.advance(h.now + 1.0), Gossip)
    carried = [r for g in gossip for r in g.msg.rumors if isinstance(r, MemberRumor)]  # type: ignore[union-attr]
    assert any(r.member.id == ME.id and r.member.incarnation == 8 for r in carried)


def test_no_refutation_for_old_or_alive_news() -> None:
    a = mk(1)
    h = Harness([a])
    h.feed(a, Gossip(a, (MemberRumor(ME._replace(incarnation=5, health=Health.SUSPECT)),)))
    assert h.core.me.incarnation == 6
    for news in (
        ME._replace(incarnation=4, health=Health.CONFIRMED),  # older life
        ME._replace(incarnation=6),  # our current record
    ):
        effects = h.feed(a, Gossip(a, (MemberRumor(news),)))
        assert not [e for e in effects if isinstance(e, SelfChanged)]
    assert h.core.me.incarnation == 6


def queued_about(h: Harness, member_id: str) -> list[Member]:
    gossip = sends(h.advance(h.now + 2.0), Gossip)
    return [
        r.member
        for g in gossip
        for r in g.msg.rumors  # type: ignore[union-attr]
        if isinstance(r, MemberRumor) and r.member.id == member_id
    ]


def test_message_from_a_suspect_revives_it_locally_only() -> None:
    a, b = mk(1, inc=3, health=Health.SUSPECT), mk(2)
    h = Harness([a, b])
    h.answer = {a.id, b.id}
    queued_about(h, a.id)  # drain what add_known left
    effects = h.feed(a, Ping(1, a._replace(health=Health.ALIVE), ME.id))
    (c,) = changes(effects, a.id)
    assert c.member.health == Health.ALIVE and c.previous == Health.SUSPECT
    assert c.member.incarnation == 3
    # Local evidence only: the ring hears it from the member's own refutation, not from us.
    assert queued_about(h, a.id) == []


@pytest.mark.parametrize("health", [Health.CONFIRMED, Health.DEPARTED])
def test_confirmed_or_departed_need_a_higher_incarnation(health: Health) -> None:
    a = mk(1, inc=3, health=health)
    h = Harness([a, mk(2)])
    effects = h.feed(a, Ping(1, a._replace(health=Health.ALIVE), ME.id))
    assert not changes(effects, a.id)
    assert h.core.member(a.id).health == health  # type: ignore[union-attr]
    effects = h.feed(a, Ping(2, a._replace(health=Health.ALIVE, incarnation=4), ME.id))
    (c,) = changes(effects, a.id)
    assert (c.member.health, c.member.incarnation) == (Health.ALIVE, 4)


def test_address_comes_from_the_packet_source() -> None:
    a = mk(1)
    h = Harness([])
    liar = a._replace(address="192.0.2.1", incarnation=1)
    h.core.receive(("10.9.9.9", 9638), Ping(1, liar, ME.id), 0.0)
    assert h.core.member(a.id).address == "10.9.9.9"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("stored", "incoming", "accepted"),
    [
        ((3, Health.ALIVE), (3, Health.SUSPECT), True),
        ((3, Health.SUSPECT), (3, Health.ALIVE), False),
        ((3, Health.SUSPECT), (4, Health.ALIVE), True),
        ((3, Health.CONFIRMED), (3, Health.DEPARTED), True),
        ((3, Health.DEPARTED), (3, Health.CONFIRMED), False),
        ((3, Health.CONFIRMED), (2, Health.ALIVE), False),
    ],
)
def test_member_rumors_follow_the_accept_rule(
    stored: tuple[int, Health], incoming: tuple[int, Health], accepted: bool
) -> None:
    a, b = mk(1, *stored), mk(2)
    h = Harness([a, b])
    news = a._replace(incarnation=incoming[0], health=incoming[1])
    effects = h.feed(b, Gossip(b, (MemberRumor(news, b.id),)))
    assert bool(changes(effects, a.id)) is accepted
    want = news if accepted else a
    assert h.core.member(a.id)[:2] == want[:2]
    assert h.core.member(a.id).health == want.health  # type: ignore[union-attr]


# --- persistence of verdicts --------------------------------------------------------------


def test_permanent_peers_are_probed_even_when_confirmed() -> None:
    peer = mk(1, health=Health.CONFIRMED, persistent=True)
    plain = mk(2, health=Health.CONFIRMED)
    h = Harness([peer, plain])
    pinged = {e.addr for e in sends(h.advance(5 * CFG.probe_interval_s), Ping)}
    assert pinged == {peer.addr}


def test_confirmed_becomes_departed_after_departure_timeout() -> None:
    cfg = CFG.with_(departure_timeout_s=3600.0)
    a = mk(1, health=Health.CONFIRMED)
    h = Harness([a], config=cfg)
    assert not changes(h.advance(3600.0 - 0.001), a.id)
    (c,) = changes(h.advance(3600.0), a.id)
    assert c.member.health == Health.DEPARTED and c.previous == Health.CONFIRMED


def test_leave_sends_departed_at_higher_incarnation_to_live_members() -> None:
    alive = [mk(1), mk(2, health=Health.SUSPECT)]
    dead = mk(3, health=Health.CONFIRMED)
    h = Harness([*alive, dead])
    effects = h.core.leave(h.now)
    me = h.core.me
    assert (me.incarnation, me.health) == (ME.incarnation + 1, Health.DEPARTED)
    assert [e for e in effects if isinstance(e, SelfChanged)] == [SelfChanged(me, "left")]
    gossip = sends(effects, Gossip)
    assert {g.addr for g in gossip} == {m.addr for m in alive}
    for g in gossip:
        assert MemberRumor(me) in g.msg.rumors  # type: ignore[union-attr]
    assert h.core.departed
    assert h.core.leave(h.now) == []
    # A departed core answers nothing and runs no timers' work.
    assert h.feed(alive[0], Ping(1, alive[0], ME.id)) == []
    assert h.advance(100.0) == []


def test_departure_rumor_is_final() -> None:
    a, b = mk(1), mk(2)
    h = Harness([a, b])
    effects = h.feed(b, Gossip(b, (DepartureRumor(a.id),)))
    (c,) = changes(effects, a.id)
    assert c.member.health == Health.DEPARTED
    assert [e.rumor for e in effects if isinstance(e, RumorChanged)] == [DepartureRumor(a.id)]
    # A later Alive rumor, even at a higher incarnation, does not bring it back.
    effects = h.feed(b, Gossip(b, (MemberRumor(a._replace(incarnation=99)),)))
    assert not changes(effects, a.id)
    assert h.core.member(a.id).health == Health.DEPARTED  # type: ignore[union-attr]
    # Nor does a message from the departed member itself, which is told it departed.
    effects = h.feed(a, Ping(1, a._replace(incarnation=100), ME.id))
    assert not changes(effects, a.id)
    told = sends(effects, Gossip)
    assert [(g.addr, g.msg.rumors) for g in told] == [(a.addr, (DepartureRumor(a.id),))]  # type: ignore[union-attr]


def test_departure_learned_before_the_member_keeps_it_departed() -> None:
    a, b = mk(1), mk(2)
    h = Harness([b])
    h.feed(b, Gossip(b, (DepartureRumor(a.id),)))
    effects = h.feed(b, Gossip(b, (MemberRumor(a),)))
    (c,) = changes(effects, a.id)
    assert c.member.health == Health.DEPARTED


def test_departure_rumor_about_ourselves() -> None:
    b = mk(2)
    h = Harness([b])
    effects = h.feed(b, Gossip(b, (DepartureRumor(ME.id),)))
    assert h.core.departed
    selfs = [e for e in effects if isinstance(e, SelfChanged)]
    assert len(selfs) == 1 and selfs[0].reason == "departed"
    assert selfs[0].member.health == Health.DEPARTED


# --- rumors and state exchange ------------------------------------------------------------


def test_published_rumor_is_piggybacked_and_reported() -> None:
    a = mk(1)
    h = Harness([a])
    h.answer = {a.id}
    rumor = ServiceRumor(ME.id, "redis.default", 1, "core/redis")
    effects = h.core.publish(rumor, h.now)
    assert [e.rumor for e in effects if isinstance(e, RumorChanged)] == [rumor]
    # Our own news is gossiped at once, not at the next gossip tick.
    first = [e for e in effects if isinstance(e, Send) and isinstance(e.msg, Gossip)]
    assert first and rumor in first[0].msg.rumors  # type: ignore[union-attr]
    carried: list[Rumor] = [r for e in first for r in e.msg.rumors]  # type: ignore[union-attr]
    for e in h.advance(h.now + 2.0):
        if isinstance(e, Send) and isinstance(e.msg, Gossip | Ping | Ack | PingReq):
            carried.extend(e.msg.rumors)
    sent = carried.count(rumor)
    assert sent == CFG.retransmits(h.core.num_members())


def test_large_rumor_takes_the_stream_path() -> None:
    a = mk(1)
    h = Harness([a])
    big = ServiceRumor(ME.id, "redis.default", 1, "core/redis", cfg={"blob": "x" * 5000})
    h.core.publish(big, h.now)
    effects = h.advance(h.now + 1.0)
    pushes = [e for e in effects if isinstance(e, StreamSend)]
    assert pushes and all(e.addr == a.addr for e in pushes)
    assert all(big not in e.msg.rumors for e in sends(effects, Gossip))  # type: ignore[union-attr]


def test_join_and_push_pull_reply() -> None:
    a, b = mk(1), mk(2)
    h = Harness([])
    (send,) = h.core.join([a.addr], h.now)
    assert isinstance(send, StreamSend) and isinstance(send.msg, PushPull) and send.msg.join
    reply, effects = h.core.receive_stream(
        a.addr, PushPull(a, (a, b), (ServiceRumor(b.id, "x.d", 1, "p"),), reply=True), h.now
    )
    assert reply is None  # a reply is not answered
    assert {c.member.id for c in effects if isinstance(c, MemberChanged)} == {a.id, b.id}
    assert h.core.num_members() == 3
    reply, _ = h.core.receive_stream(a.addr, PushPull(a, (a,), ()), h.now)
    assert isinstance(reply, PushPull) and reply.reply
    # Not `a`'s own record: it just sent it, and we hold it the same (test_pushpull_delta.py).
    assert {m.id for m in reply.members} == {ME.id, b.id}


def test_push_pull_demotes_a_confirmed_verdict_to_suspect() -> None:
    a, b = mk(1), mk(2)
    h = Harness([a, b])
    effects = h.feed(a, PushPull(a, (b.with_health(Health.CONFIRMED),), (), reply=True))
    (c,) = changes(effects, b.id)
    assert c.member.health == Health.SUSPECT


def test_restored_rumors_do_not_trust_old_liveness() -> None:
    a = mk(1)
    core = SwimCore(CFG, ME, random.Random(1), 0.0, rumors=[MemberRumor(a)])
    assert core.member(a.id).health == Health.SUSPECT  # type: ignore[union-attr]


def test_same_seed_same_effects() -> None:
    def trace(seed: int) -> list[str]:
        h = Harness(ring(5), seed=seed)
        return [repr(e) for e in h.advance(20.0)]

    assert trace(3) == trace(3)
    assert trace(3) != trace(4)


def test_tcp_fallback_asks_over_a_stream_and_its_answer_saves_the_suspicion() -> None:
    """memberlist's TCP fallback: with `tcp_fallback`, a missed direct ack also sends the target
    a push-pull over a stream, and its reply within the period counts as the ack. Without it
    (LAN) no stream goes out and the same silence makes the target Suspect."""
    cfg = CFG.with_(tcp_fallback=True)
    h = Harness(ring(5), cfg)
    ping, t0 = first_probe(h)
    target = h.by_addr[ping.addr]
    effects = h.advance(t0 + cfg.probe_timeout_s)
    streams = [e for e in effects if isinstance(e, StreamSend)]
    assert [s.addr for s in streams] == [target.addr]
    assert isinstance(streams[0].msg, PushPull) and not streams[0].msg.reply
    assert len(sends(effects, PingReq)) == cfg.indirect_checks  # in parallel, not instead
    h.feed(target, PushPull(target, (target,), (), False, True))  # the stream's reply
    effects = h.advance(t0 + cfg.probe_interval_s)
    assert not changes(effects, target.id)
    assert h.core.member(target.id).health == Health.ALIVE  # type: ignore[union-attr]
    assert h.core.local_health == 0  # an answered probe

    lan = Harness(ring(5))
    ping, t0 = first_probe(lan)
    effects = lan.advance(t0 + CFG.probe_timeout_s)
    assert not [e for e in effects if isinstance(e, StreamSend)]
    effects = lan.advance(t0 + CFG.probe_interval_s)
    assert changes(effects, lan.by_addr[ping.addr].id)[0].member.health == Health.SUSPECT

"""SwimCore against well-formed hostile input, fed by hand (no codec in between, so these hold
for a core used as a library too): incarnation bound, member cap, per-source admission,
proven-first probing, refused local rumors."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import pytest

from pysup.butterfly import codec
from pysup.butterfly.config import MAX_INCARNATION
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import Effect, MemberChanged, Rejected, SelfChanged, Send
from pysup.butterfly.member import Health, Member, next_incarnation
from pysup.butterfly.messages import (
    Ack,
    Gossip,
    MemberRumor,
    Nack,
    Ping,
    PingReq,
    PushPull,
    ServiceFileRumor,
    ServiceRumor,
)
from tests.unit.test_core import CFG, ME, Harness, mk, ring, sends

ATTACKER = ("192.0.2.66", 9638)


def rejected(effects: list[Effect]) -> Counter[str]:
    return Counter(e.reason for e in effects if isinstance(e, Rejected))


def invented(n: int, start: int = 0) -> list[Member]:
    """Members at addresses where nobody answers."""
    return [
        Member(f"{start + k + 1:08x}" + "f" * 24, 1, f"198.51.{k // 250}.{k % 250 + 1}", 9638)
        for k in range(n)
    ]


def encodable(core: SwimCore) -> None:
    """Everything the core would gossip or save packs (the old failure: OverflowError)."""
    codec.encode(PushPull(core.me, (core.me, *core.members()), tuple(core.store)))
    codec.encode_rumors(core.all_rumors())


# --- incarnations ------------------------------------------------------------------------


def test_next_incarnation_saturates_at_the_bound() -> None:
    assert next_incarnation(7) == 8
    assert next_incarnation(MAX_INCARNATION - 1) == MAX_INCARNATION
    assert next_incarnation(MAX_INCARNATION) == MAX_INCARNATION
    assert MAX_INCARNATION < 2**64  # what msgpack's uint64 and the INCARNATION file hold


@pytest.mark.parametrize("health", [Health.SUSPECT, Health.CONFIRMED, Health.DEPARTED])
def test_a_claim_about_us_at_2_64_minus_1_is_refused_not_refuted(health: Health) -> None:
    a = mk(1)
    h = Harness([a])
    claim = MemberRumor(ME._replace(incarnation=2**64 - 1, health=health), a.id)
    effects = h.feed(a, Gossip(a, (claim,)))
    assert rejected(effects) == {"incarnation": 1}
    assert not [e for e in effects if isinstance(e, SelfChanged)]
    assert h.core.me == ME
    encodable(h.core)


def test_a_claim_just_under_the_bound_is_refuted_to_the_bound_and_then_no_further() -> None:
    a = mk(1)
    h = Harness([a])
    h.feed(a, Gossip(a, (MemberRumor(ME._replace(incarnation=MAX_INCARNATION - 1,
                                                 health=Health.SUSPECT)),)))  # fmt: skip
    assert h.core.me.incarnation == MAX_INCARNATION and h.core.me.health == Health.ALIVE
    # Suspect at the bound: its subject could not refute it, so nobody takes it.
    effects = h.feed(a, Gossip(a, (MemberRumor(h.core.me.with_health(Health.SUSPECT)),)))
    assert rejected(effects) == {"incarnation": 1}
    # An Alive claim at the bound is our own record: nothing to do.
    assert not h.feed(a, Gossip(a, (MemberRumor(h.core.me),)))
    h.core.leave(h.now)
    assert h.core.me.incarnation == MAX_INCARNATION  # saturated, still packable
    encodable(h.core)


def test_claims_about_others_beyond_the_bound_are_refused() -> None:
    a, b = mk(1), mk(2)
    h = Harness([a, b])
    for inc, health in ((2**64 - 1, Health.ALIVE), (MAX_INCARNATION, Health.CONFIRMED)):
        effects = h.feed(a, Gossip(a, (MemberRumor(b._replace(incarnation=inc, health=health)),)))
        assert rejected(effects) == {"incarnation": 1}
    assert h.core.member(b.id) == b


def test_a_core_never_starts_beyond_the_bound_or_at_a_name() -> None:
    core = SwimCore(CFG, ME._replace(incarnation=2**64 + 5), random.Random(1), 0.0)
    assert core.me.incarnation == MAX_INCARNATION
    with pytest.raises(ValueError, match="IP literal"):
        SwimCore(CFG, ME._replace(address="db.example.com"), random.Random(1), 0.0)


def test_restored_rumors_beyond_the_bound_are_skipped() -> None:
    a, b = mk(1), mk(2)
    rumors = [MemberRumor(a._replace(incarnation=2**64 - 1)), MemberRumor(b)]
    core = SwimCore(CFG, ME, random.Random(1), 0.0, rumors)
    assert core.member(a.id) is None and core.member(b.id) is not None


# --- local rumors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rumor",
    [
        ServiceRumor(ME.id, "redis.default", 1, "core/redis", cfg={"port": b"\x01"}),
        ServiceRumor(ME.id, "redis.default", 1, "core/redis", cfg={"at": dt.date(2026, 1, 1)}),
        ServiceRumor(ME.id, "not a group", 1, "core/redis"),
        ServiceFileRumor("redis.default", "../../etc/passwd", 1, b"x"),
        ServiceFileRumor("redis.default", "ok.txt", 2**64, b"x"),
    ],
    ids=["bytes", "date", "group", "traversal", "version"],
)
def test_a_local_rumor_the_ring_would_refuse_is_refused_and_reported(rumor: object) -> None:
    a = mk(1)
    h = Harness([a])
    effects = h.core.publish(rumor, h.now)  # type: ignore[arg-type]
    assert rejected(effects) == {"local_rumor": 1}
    assert len(h.core.store) == 0 and h.core.queue_depth() == 1  # only our own member rumor
    encodable(h.core)


# --- membership flood --------------------------------------------------------------------


def flood(h: Harness, members: list[Member], src: tuple[str, int], per: int = 25) -> Counter[str]:
    out: Counter[str] = Counter()
    sender = Member("e" * 32, 1, *src)
    for i in range(0, len(members), per):
        rumors = tuple(MemberRumor(m) for m in members[i : i + per])
        out += rejected(h.core.receive(src, Gossip(sender, rumors), h.now))
    return out


def test_one_datagram_source_may_introduce_only_its_burst_then_its_rate() -> None:
    h = Harness(ring(3))
    refused = flood(h, invented(2000), ATTACKER)
    known = sum(1 for _ in h.core.members())
    # The sender itself took one admission, its rumors the rest of the burst.
    assert known == 3 + CFG.admit_burst
    assert refused == {"member_rate": 2000 - (CFG.admit_burst - 1)}
    h.now += 1.0
    flood(h, invented(2000, start=5000), ATTACKER)
    assert sum(1 for _ in h.core.members()) == known + int(CFG.admit_rate_per_s)
    # Another source has its own bucket (the sender is known by now: only its 10 rumors count).
    flood(h, invented(10, start=9000), ("192.0.2.77", 9638))
    assert sum(1 for _ in h.core.members()) == known + int(CFG.admit_rate_per_s) + 10


def test_a_push_pull_is_not_rate_limited_but_the_table_is_capped_with_a_clear_reason() -> None:
    cfg = CFG.with_(max_members=100)
    a = mk(1)
    h = Harness([a], config=cfg)
    _, effects = h.core.receive_stream(a.addr, PushPull(a, tuple(invented(150)), ()), h.now)
    assert sum(1 for _ in h.core.members()) == 100
    assert rejected(effects) == {"member_cap": 51}
    detail = next(e.detail for e in effects if isinstance(e, Rejected))
    assert "member table full (100 members, max_members)" in detail


def test_at_the_cap_a_departed_member_makes_room_then_an_unproven_confirmed_one() -> None:
    cfg = CFG.with_(max_members=4)
    a, b, c = mk(1), mk(2), mk(3)
    h = Harness([a, b, c], config=cfg)  # add_known: all three proven
    h.core.receive_stream(a.addr, PushPull(a, (mk(4).with_health(Health.DEPARTED),), ()), h.now)
    d = mk(4)
    assert h.core.member(d.id) is not None and len(list(h.core.members())) == 4
    # A newcomer: the Departed member goes.
    e = mk(5)
    h.core.receive_stream(a.addr, PushPull(a, (e,), ()), h.now)
    assert h.core.member(d.id) is None and h.core.member(e.id) is not None
    # Nobody Departed, and e is unproven: once Confirmed it is the one forgotten.
    h.core.receive_stream(a.addr, PushPull(a, (e._replace(incarnation=2, health=Health.SUSPECT),),
                                          ()), h.now)  # fmt: skip
    h.advance(h.now + CFG.suspicion_max_s(5) + 1)
    assert h.core.member(e.id).health == Health.CONFIRMED  # type: ignore[union-attr]
    f = mk(6)
    h.core.receive_stream(a.addr, PushPull(a, (f,), ()), h.now)
    assert h.core.member(e.id) is None and h.core.member(f.id) is not None
    # Now only proven members: the next newcomer is refused.
    effects = h.core.receive_stream(a.addr, PushPull(a, (mk(7),), ()), h.now)[1]
    assert rejected(effects) == {"member_cap": 1}


def test_probes_favour_proven_members_and_proxies_are_proven_only() -> None:
    real = ring(8)
    h = Harness(real)  # proven: add_known
    fakes = invented(400)
    for i in range(0, 400, 25):  # from 16 sources: under each one's burst
        flood(h, fakes[i : i + 25], (f"192.0.2.{i // 25 + 1}", 9638))
    fake_ids = {m.id for m in fakes}
    h.answer = {m.id for m in real}
    probed: Counter[str] = Counter()
    proxies: set[str] = set()
    end = h.now + 400 * CFG.probe_interval_s
    while h.now < end:
        effects = h.advance(h.core.next_deadline())
        for s in sends(effects, Ping):
            target = s.msg.target_id  # type: ignore[union-attr]
            probed["fake" if target in fake_ids else "real"] += 1
        for s in sends(effects, PingReq):
            proxy = h.by_addr.get(s.addr)
            proxies.add(proxy.id if proxy is not None else "fake")
            if proxy is not None:  # an honest proxy that got no answer either says so
                h.core.receive(proxy.addr, Nack(s.msg.seq, proxy), h.now)
    share = probed["fake"] / (probed["fake"] + probed["real"])
    assert 0.2 <= share <= 1 / CFG.unproven_probe_every + 0.01, probed
    assert proxies and proxies <= {m.id for m in real}
    # Each real member was probed about every (8 / (1 - 1/4)) periods, not every 408.
    assert probed["real"] >= 0.7 * 400 * (1 - 1 / CFG.unproven_probe_every)


def test_an_ack_from_the_probed_member_proves_it() -> None:
    a = mk(1)
    h = Harness([])
    h.core.receive(a.addr, Gossip(mk(2), (MemberRumor(a),)), h.now)
    assert not h.core.is_proven(a.id)
    h.by_addr[a.addr] = a
    h.answer = {a.id}
    for _ in range(10):
        effects = h.advance(h.core.next_deadline())
        for s in sends(effects, Ping):
            if s.msg.target_id == a.id:  # type: ignore[union-attr]
                h.core.receive(a.addr, Ack(s.msg.seq, a), h.now)  # type: ignore[union-attr]
        if h.core.is_proven(a.id):
            break
    assert h.core.is_proven(a.id)
    # A ping from a member does not prove it (a datagram's source can be forged).
    b = mk(3)
    h.core.receive(b.addr, Ping(1, b, ME.id), h.now)
    assert h.core.member(b.id) is not None and not h.core.is_proven(b.id)


def test_member_changes_are_still_reported_for_admitted_members() -> None:
    h = Harness(ring(2))
    (m,) = invented(1)
    effects = h.core.receive(ATTACKER, Gossip(Member("e" * 32, 1, *ATTACKER), (MemberRumor(m),)),
                             h.now)  # fmt: skip
    assert {e.member.id for e in effects if isinstance(e, MemberChanged)} == {"e" * 32, m.id}
    assert all(isinstance(s, Send) for s in effects if not isinstance(s, MemberChanged))


def flooded_ring() -> tuple[Harness, list[Member], list[Member]]:
    """A core knowing 8 real members and 400 invented ones (16 forged sources of 25)."""
    real = ring(8)
    h = Harness(real)
    fakes = invented(400)
    for i in range(0, 400, 25):
        flood(h, fakes[i : i + 25], (f"192.0.2.{i // 25 + 1}", 9638))
    return h, real, fakes


def gossip_for_a_minute(
    h: Harness, fakes: list[Member], watch: Member | None = None
) -> Counter[str]:
    """Gossip datagrams sent over 60 s (a new rumor each round), to invented and real members,
    and to `watch`."""
    fake_addrs = {m.addr for m in fakes}
    to: Counter[str] = Counter()
    end = h.now + 60.0
    while h.now < end:
        h.core.publish(ServiceRumor(ME.id, "redis.default", int(h.now * 1000) + 1, "p"), h.now)
        for s in sends(h.advance(h.now + CFG.gossip_interval_s), Gossip):
            to["fake" if s.addr in fake_addrs else "real"] += 1
            to["watched"] += watch is not None and s.addr == watch.addr
    return to


def test_gossip_goes_to_members_heard_first_hand_not_to_invented_ones() -> None:
    h, _, fakes = flooded_ring()
    to = gossip_for_a_minute(h, fakes)
    assert to["fake"] / (to["fake"] + to["real"]) <= 1 / CFG.unproven_probe_every, to


def test_an_anti_entropy_push_pull_vouches_only_for_members_it_introduces() -> None:
    """Invented members that reached us in datagrams stay unheard when a real peer's push-pull
    lists them later (the peer was flooded too), while a member the push-pull introduces is
    gossiped to at once. Before, the listing made the invented members gossip targets: in a
    3-member ring the fanout went to them and a killed member's Confirmed never reached the
    other real member (Confirmed at the 38 s maximum; tests/integration/test_hostile.py)."""
    h, real, fakes = flooded_ring()
    newcomer, peer = mk(50), real[0]
    h.core.receive_stream(peer.addr, PushPull(peer, (peer, *fakes, newcomer), ()), h.now)
    to = gossip_for_a_minute(h, fakes, watch=newcomer)
    assert to["fake"] / (to["fake"] + to["real"]) <= 1 / CFG.unproven_probe_every, to
    assert to["watched"] > 0, to


def test_a_member_at_the_bound_suspected_here_never_spoils_what_we_send() -> None:
    """Found by `bench.fuzz --targets semantic` (seed 1, input #17125): a member at
    MAX_INCARNATION that failed our probe became Suspect at the bound here, a record every
    receiver refuses, and with it every push-pull and piggyback that carried it."""
    a, top = mk(1), mk(2, inc=MAX_INCARNATION)
    h = Harness([a, top])
    h.answer = {a.id}
    h.advance(h.now + 60.0)
    assert h.core.member(top.id).health in (Health.SUSPECT, Health.CONFIRMED)  # type: ignore[union-attr]
    reply, effects = h.core.receive_stream(a.addr, PushPull(a, (a,), ()), h.now)
    assert reply is not None
    codec.decode(codec.encode(reply), None, codec.MAX_FRAME)  # nothing in it is refused
    for s in sends(h.advance(h.now + 5.0), Ping) + sends(effects, Gossip):
        codec.decode(codec.encode(s.msg), None, codec.MAX_DATAGRAM)
    assert codec.decode_rumors(codec.encode_rumors(h.core.all_rumors())) == h.core.all_rumors()

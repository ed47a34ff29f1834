"""A push-pull reply leaves out what the requester just sent and the responder holds the same
(issue 18, goal 4: keep push-pull from resending what the peer has), and anti-entropy stays
complete: after one exchange both sides hold the same records. What a reply leaves out the
requester knew already, so a push-pull vouches (heard) for the same members as before: those it
introduces."""

from __future__ import annotations

import random
from collections.abc import Iterable

from pysup.butterfly.config import LAN
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import StreamSend
from pysup.butterfly.member import Health, Member, new_member_id
from pysup.butterfly.messages import PushPull, ServiceRumor

CFG = LAN.with_(push_pull_interval_s=10_000.0)  # only the exchanges the test makes


def mk(i: int, inc: int = 1, health: Health = Health.ALIVE) -> Member:
    return Member(new_member_id(random.Random(i)), inc, f"10.0.1.{i}", 9638, health)


def core(i: int, known: Iterable[Member] = (), seed: int = 1) -> SwimCore:
    c = SwimCore(CFG, mk(i), random.Random(seed), 0.0)
    c.add_known(known, 0.0)
    return c


def request(a: SwimCore, b: SwimCore) -> PushPull:
    """A's push-pull request to B (the join path)."""
    (send,) = a.join([b.me.addr], 0.0)
    assert isinstance(send, StreamSend) and isinstance(send.msg, PushPull)
    return send.msg


def test_a_reply_leaves_out_what_the_requester_holds_the_same() -> None:
    same, newer_here, only_here, only_there = mk(1), mk(2, inc=3), mk(3), mk(4)
    a = core(50, [same, newer_here._replace(incarnation=2), only_there])
    b = core(60, [same, newer_here, only_here])
    svc = ServiceRumor(same.id, "redis.default", 1, "core/redis")
    a.store.merge(svc)
    b.store.merge(svc)
    b.store.merge(ServiceRumor(only_here.id, "redis.default", 1, "core/redis"))

    reply, _ = b.receive_stream(a.me.addr, request(a, b), 0.0)

    assert isinstance(reply, PushPull) and reply.reply
    sent = {m.id: m for m in reply.members}
    # Ours, a newer record than A's, and one A lacks; not what A sent that B now holds the same
    # (A itself, `same`, `only_there`, just merged).
    assert set(sent) == {b.me.id, newer_here.id, only_here.id}
    assert sent[newer_here.id].incarnation == 3
    assert [r.member_id for r in reply.rumors] == [only_here.id]  # type: ignore[union-attr]


def test_one_exchange_leaves_both_sides_with_the_same_records() -> None:
    """Random differing views (seeded): after A's request and B's delta reply, every member
    record is the same on both sides, as after a full-state exchange."""
    rng = random.Random(7)
    pool = [mk(i) for i in range(1, 120)]

    def view() -> list[Member]:
        out = []
        for m in rng.sample(pool, 80):
            health = rng.choice((Health.ALIVE, Health.SUSPECT))
            out.append(m._replace(incarnation=rng.randrange(1, 4), health=health))
        return out

    a, b = core(150, view(), seed=2), core(160, view(), seed=3)
    full = len(list(b.members())) + 1
    reply, _ = b.receive_stream(a.me.addr, request(a, b), 0.0)
    assert isinstance(reply, PushPull)
    a.receive(b.me.addr, reply, 0.0)

    assert len(reply.members) < full  # it did leave something out
    ids = {m.id for m in pool}
    for mid in ids:
        assert a.member(mid) == b.member(mid), mid


def test_a_full_reply_from_an_older_peer_is_merged_as_before() -> None:
    """A peer that still echoes everything (no delta): its records are merged, and the member it
    introduces counts as heard."""
    x, y, z = mk(1), mk(2, inc=2), mk(3)
    a = core(50, [x, y._replace(incarnation=1)])
    b = core(60, [x, y, z])
    request(a, b)
    a.receive(b.me.addr, PushPull(b.me, (b.me, *b.members()), (), False, True), 0.0)
    assert a.member(y.id) == y and a.member(z.id) == z
    assert z.id in a._table.heard

"""Reconnect: a core keeps push-pulling Confirmed members, so a partition that outlasted gossip
to the dead still heals once the network does (found by tests/netns: without it a {2}|{3}
partition held for 70 s never healed). Departed members, and members alive again, are left
alone."""

from __future__ import annotations

import random

from pysup.butterfly.config import LAN
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import Addr, Effect, StreamSend
from pysup.butterfly.member import Health, Member, new_member_id
from pysup.butterfly.messages import Gossip, MemberRumor, PushPull


def mk(i: int, inc: int = 1, health: Health = Health.ALIVE) -> Member:
    return Member(new_member_id(random.Random(i)), inc, f"10.0.0.{i}", 9638, health)


ME = mk(100)


def run(core: SwimCore, until: float) -> list[Effect]:
    out: list[Effect] = []
    while core.next_deadline() <= until:
        out.extend(core.tick(core.next_deadline()))
    return out


def pushpulls_to(effects: list[Effect], addr: Addr) -> int:
    return sum(
        isinstance(e, StreamSend) and isinstance(e.msg, PushPull) and e.addr == addr
        for e in effects
    )


def one_push_pull_round() -> float:
    return LAN.push_pull_interval_s * 1.25 + 1.0


def test_a_confirmed_member_gets_a_push_pull_every_interval_after_gossip_to_dead_ends() -> None:
    dead = mk(2, health=Health.CONFIRMED)
    core = SwimCore(LAN, ME, random.Random(7), 0.0)
    core.add_known([dead], 0.0)
    t = LAN.gossip_to_dead_s + 1.0
    run(core, t)
    for _ in range(3):
        effects = run(core, t + one_push_pull_round())
        t += one_push_pull_round()
        assert pushpulls_to(effects, dead.addr) >= 1


def test_departed_and_revived_members_are_not_reconnected() -> None:
    departed, revived = mk(3, health=Health.DEPARTED), mk(4, health=Health.CONFIRMED)
    core = SwimCore(LAN, ME, random.Random(7), 0.0)
    core.add_known([departed, revived], 0.0)
    # The confirmed member refutes: a higher incarnation, Alive.
    back = revived._replace(incarnation=2, health=Health.ALIVE)
    core.receive(back.addr, Gossip(back, (MemberRumor(back),)), 1.0)
    assert core.member(back.id) == back
    effects = run(core, 3 * one_push_pull_round())
    assert pushpulls_to(effects, departed.addr) == 0
    # Revived: reached only by the ordinary push-pull to a random live member (the only one).
    assert all(e.addr == back.addr for e in effects if isinstance(e, StreamSend)), (
        "push-pull to something other than the one live member"
    )

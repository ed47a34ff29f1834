"""Well-formed hostile datagrams against a 64-member simulated ring (virtual time, seeded).

What it proves, end to end through the real codec and cores:

- a Suspect rumor carrying incarnation 2^64-1 about member X is refused by every member (counted
  as `incarnation`), and X stays Alive everywhere with its incarnation unchanged. Before the
  bound, X refuted with 2^64, which the codec could not pack: X's next send raised;
- a Suspect rumor just under the bound makes X refute *to* the bound (saturating, still
  packable), and X stays Alive; a Suspect rumor at the bound is refused (X could not refute it);
- 2,000 invented members injected into every member (80 datagrams of 25, from 80 forged
  sources so the per-source admission limit does not stop them: the worst case) do not stop a
  killed real member from being Confirmed by every live member within the Lifeguard bound of
  the real ring. Before, probes were spread evenly over all 2,064 members and ping-reqs went
  through invented proxies that never nack (which Lifeguard blames on our own links).
"""

from __future__ import annotations

import pytest

from pysup.butterfly import codec
from pysup.butterfly.config import LOCAL, MAX_INCARNATION
from pysup.butterfly.effects import Effect, MemberChanged
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import Gossip, MemberRumor
from pysup.testing.simnet import SimNetwork, SimNode
from tests.sim.test_ring_sim import LIFEGUARD_BOUND, N, Views, converged

ATTACKER = ("192.0.2.66", 9638)
ATTACKER_ID = "e" * 32


def forged_suspicion(x: SimNode, incarnation: int) -> bytes:
    """A Gossip from a member nobody knows, saying X is Suspect at `incarnation`."""
    sender = Member(ATTACKER_ID, 1, *ATTACKER)
    about = Member(x.id, incarnation, x.addr[0], x.addr[1], Health.SUSPECT)
    return codec.encode(Gossip(sender, (MemberRumor(about, ATTACKER_ID),)))


def not_alive_at(views: Views, observers: list[SimNode], x: SimNode) -> list[str]:
    """Observers whose record of X is not Alive now."""
    return [o.id for o in observers if views.of[o.id][x.id].health != Health.ALIVE]


def test_suspect_rumor_at_2_64_minus_1_is_refused_and_its_subject_stays_alive() -> None:
    net, nodes = converged(21)
    views = Views(net)
    x = nodes[5]
    before = x.core.me.incarnation
    data = forged_suspicion(x, 2**64 - 1)
    for node in nodes:
        net.inject(ATTACKER, node, data)
    others = [n for n in nodes if n is not x]
    suspected: list[float] = []

    def watch(node: SimNode, e: Effect, now: float) -> None:
        if isinstance(e, MemberChanged) and e.member.id == x.id and e.member.health != Health.ALIVE:
            suspected.append(now)

    net.observers.append(watch)
    net.run_for(LIFEGUARD_BOUND)
    assert net.rejected.get("incarnation") == N  # every member refused it
    assert suspected == []  # nobody ever held X as anything but Alive
    assert not_alive_at(views, others, x) == []
    assert x.core.me.incarnation == before and x.core.me.health == Health.ALIVE


def test_suspect_rumor_under_the_bound_is_refuted_to_the_bound_and_one_at_it_refused() -> None:
    net, nodes = converged(22)
    views = Views(net)
    x = nodes[9]
    others = [n for n in nodes if n is not x]
    net.inject(ATTACKER, nodes[0], forged_suspicion(x, MAX_INCARNATION - 1))
    at_bound = views.goal(
        others, [x], Health.ALIVE
    )  # Alive everywhere, and below we check the incarnation reached the bound
    assert net.run_for(LIFEGUARD_BOUND, lambda: x.core.me.incarnation == MAX_INCARNATION)
    assert net.run_for(LIFEGUARD_BOUND, lambda: at_bound() and all(
        views.of[o.id][x.id].incarnation == MAX_INCARNATION for o in others
    ))  # fmt: skip
    for node in nodes:
        net.inject(ATTACKER, node, forged_suspicion(x, MAX_INCARNATION))
    net.run_for(LIFEGUARD_BOUND)
    assert net.rejected.get("incarnation") == N
    assert not_alive_at(views, others, x) == []
    assert x.core.me == x.core.me._replace(incarnation=MAX_INCARNATION, health=Health.ALIVE)


FLOOD = 2000
PER_DATAGRAM = 25


def invented_member(k: int) -> Member:
    """Invented member number `k`, at an address where nobody answers."""
    return Member(f"{k + 1:08x}" + "f" * 24, 1, f"198.51.{k // 250}.{k % 250 + 1}", 9638)


def invented_members(d: int) -> list[Member]:
    """The invented members of datagram `d` of the flood."""
    return [invented_member(d * PER_DATAGRAM + i) for i in range(PER_DATAGRAM)]


def invented_flood() -> list[tuple[tuple[str, int], bytes]]:
    """80 Gossip datagrams of 25 invented Alive members, each from its own forged source, at
    addresses where nobody answers."""
    out = []
    for d in range(FLOOD // PER_DATAGRAM):
        src = (f"192.0.2.{d + 1}", 9638)
        sender = Member(f"{d + 1:032x}", 1, *src)
        rumors = tuple(MemberRumor(m) for m in invented_members(d))
        out.append((src, codec.encode(Gossip(sender, rumors))))
    return out


def test_killed_member_is_confirmed_within_lifeguard_bound_while_2000_invented_are_injected() -> (
    None
):
    net, nodes = converged(23)
    views = Views(net)
    for src, data in invented_flood():
        for node in nodes:
            net.inject(src, node, data)
    net.run_for(0.01)
    # The flood is in: every member holds the invented members (and the forged senders).
    assert all(sum(1 for _ in n.core.members()) >= FLOOD + N - 1 for n in nodes)
    victim, live = nodes[7], [n for n in nodes if n is not nodes[7]]
    net.crash(victim)
    assert net.run_for(LIFEGUARD_BOUND, views.goal(live, [victim], Health.CONFIRMED))
    assert views.goal(live, live, Health.ALIVE)()  # and no real member was taken for dead


@pytest.mark.parametrize("seed", [9, 21, 40])
def test_three_real_members_one_flooded_still_confirm_a_killed_one_with_the_others_help(
    seed: int,
) -> None:
    """The integration test's shape (tests/integration/test_hostile.py): 2,000 invented members
    from one source into member 0 of a 3-member ring (128 admitted, then gossiped on to member
    1), anti-entropy rounds pass, member 2 is killed. Each survivor's suspicion must be shortened
    by the other's, so both hold it Confirmed before a lone suspicion's maximum. Before, member
    1's push-pull with member 0 made the invented members gossip targets and the Confirmed never
    crossed (seed 9: 43.8 s, over the test's 43.3 s bound)."""
    net = SimNetwork(seed, LOCAL)
    m0, m1, m2 = (net.add_member() for _ in range(3))
    net.converge_instantly()
    net.run_for(5.0)
    src = ("192.0.2.1", 9638)
    sender = Member("1" * 32, 1, *src)
    for d in range(FLOOD // PER_DATAGRAM):
        fakes = invented_members(d)
        net.inject(src, m0, codec.encode(Gossip(sender, tuple(MemberRumor(m) for m in fakes))))
    net.run_for(2 * LOCAL.push_pull_s(3))  # anti-entropy: member 1 is listed every fake
    views = Views(net)
    net.crash(m2)
    n = sum(1 for _ in m0.core.members()) + 1
    assert net.run_for(LOCAL.suspicion_max_s(n), views.goal([m0, m1], [m2], Health.CONFIRMED))

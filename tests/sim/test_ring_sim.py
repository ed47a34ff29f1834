"""A 64-member ring in the simulator (virtual time, seeded): the SWIM + Lifeguard guarantees hold
end to end, within bounds derived from the configuration rather than tuned to the run.

Bounds used below (N = 64, LAN preset):
- dissemination slack D = retransmits(N) * gossip_interval_s: how long one member keeps
  retransmitting a rumor it learned; an epidemic takes a few such generations at most.
- Lifeguard detection bound = probe_interval_s * awareness_max_multiplier (the slowest a
  degraded member probes) + suspicion_max_s(N) (an unconfirmed suspicion) + D.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable

import pytest

from pysup.butterfly.config import LAN, GossipConfig
from pysup.butterfly.core import CATCHUP_EXCHANGES, CATCHUP_FIRST_S
from pysup.butterfly.effects import Effect, MemberChanged, RumorChanged
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import ServiceConfigRumor, ServiceRumor
from pysup.testing.simnet import NetProfile, SimNetwork, SimNode

N = 64
CFG = LAN
D = CFG.retransmits(N) * CFG.gossip_interval_s
ROUNDS = math.ceil(math.log(N) / math.log(1 + CFG.gossip_nodes))
"""Fewest gossip rounds that can reach N members (the dissemination floor)."""
LIFEGUARD_BOUND = CFG.probe_interval_s * CFG.awareness_max_multiplier + CFG.suspicion_max_s(N) + D


class Goal:
    """ "Every observer sees every member (other than itself) in an `ok` state", kept up to date
    incrementally by the Views observer, so checking it after each event costs O(1)."""

    def __init__(
        self,
        views: Views,
        observers: Iterable[SimNode],
        members: Iterable[SimNode],
        ok: Callable[[Member], bool],
    ) -> None:
        self.observers = {o.id for o in observers}
        self.members = {m.id for m in members}
        self.ok = ok
        self.total = sum(1 for o in self.observers for m in self.members if o != m)
        self.met: set[tuple[str, str]] = set()
        for o in self.observers:
            for m in self.members:
                rec = views.of[o].get(m)
                if o != m and rec is not None and ok(rec):
                    self.met.add((o, m))
        views.goals.append(self)

    def update(self, observer: str, member: Member) -> None:
        if observer in self.observers and member.id in self.members and observer != member.id:
            if self.ok(member):
                self.met.add((observer, member.id))
            else:
                self.met.discard((observer, member.id))

    def __call__(self) -> bool:
        return len(self.met) == self.total


class Views:
    """Each node's view of the ring, kept up to date by an observer (no scanning)."""

    def __init__(self, net: SimNetwork) -> None:
        self.of: dict[str, dict[str, Member]] = {}
        self.goals: list[Goal] = []
        for node in net.nodes.values():
            self.of[node.id] = {m.id: m for m in node.core.members()}
        net.observers.append(self._observe)

    def _observe(self, node: SimNode, e: Effect, now: float) -> None:
        if isinstance(e, MemberChanged):
            self.of.setdefault(node.id, {})[e.member.id] = e.member
            for goal in self.goals:
                goal.update(node.id, e.member)

    def goal(
        self, observers: Iterable[SimNode], members: Iterable[SimNode], health: Health
    ) -> Goal:
        return Goal(self, observers, members, lambda m: m.health == health)


def ring(seed: int, profile: NetProfile | None = None, config: GossipConfig = CFG) -> SimNetwork:
    net = SimNetwork(seed, config, profile or NetProfile())
    for _ in range(N):
        net.add_member()
    return net


def converged(seed: int, profile: NetProfile | None = None) -> tuple[SimNetwork, list[SimNode]]:
    net = ring(seed, profile)
    net.converge_instantly()
    net.run_for(5.0)  # let timers spread out
    return net, list(net.nodes.values())


@pytest.mark.parametrize("seed", [1, 2])
def test_bootstrap_through_one_seed_converges(seed: int) -> None:
    net = ring(seed)
    nodes = list(net.nodes.values())
    views = Views(net)
    for node in nodes[1:]:
        net.join(node, [nodes[0]])
    # Joiners learn the ring from the seed's reply and their catch-up push-pulls; gossip fills in.
    bound = CATCHUP_FIRST_S * 2**CATCHUP_EXCHANGES + 2 * D
    assert net.run_for(bound, views.goal(nodes, nodes, Health.ALIVE))


@pytest.mark.parametrize("seed", [1, 2])
def test_crash_is_confirmed_by_every_live_member_within_lifeguard_bound(seed: int) -> None:
    net, nodes = converged(seed)
    views = Views(net)
    victim, live = nodes[7], [n for n in nodes if n is not nodes[7]]
    net.crash(victim)
    t0 = net.now
    assert net.run_for(LIFEGUARD_BOUND, views.goal(live, [victim], Health.CONFIRMED))
    # Lifeguard's floor: nobody may confirm before the minimum suspicion timeout.
    assert net.now - t0 >= CFG.suspicion_min_s(N)
    assert views.goal(live, live, Health.ALIVE)()


def test_no_false_confirmation_at_one_percent_loss_for_ten_minutes() -> None:
    net, _ = converged(3, NetProfile(loss=0.01, duplicate=0.01))
    wrongly: set[str] = set()

    def observe(node: SimNode, e: Effect, now: float) -> None:
        if isinstance(e, MemberChanged) and e.member.health >= Health.CONFIRMED:
            wrongly.add(e.member.id)

    net.observers.append(observe)
    net.run_for(600.0)
    assert wrongly == set()
    assert net.stats.dropped > 0  # the loss was real


@pytest.mark.parametrize("wait", [0.0, CFG.gossip_to_dead_s + 10.0], ids=["fresh", "outlasted"])
def test_partition_confirms_both_sides_and_heal_restores_everyone(wait: float) -> None:
    net, nodes = converged(4)
    views = Views(net)
    left, right = nodes[: N // 2], nodes[N // 2 :]
    net.partition(left, right)
    left_sees, right_sees = (
        views.goal(left, right, Health.CONFIRMED),
        views.goal(right, left, Health.CONFIRMED),
    )
    assert net.run_for(LIFEGUARD_BOUND, lambda: left_sees() and right_sees())
    assert views.goal(left, left, Health.ALIVE)() and views.goal(right, right, Health.ALIVE)()
    # Healed while the confirmations are fresh, gossip to the recently dead carries the verdicts
    # across; once the partition outlasted gossip_to_dead_s, only the push-pull with a Confirmed
    # member (reconnect) does. Either way the subjects refute (higher incarnation) and push-pull
    # merges the rest.
    net.run_for(wait)
    net.heal()
    heal_bound = CFG.gossip_to_dead_s + 2 * CFG.push_pull_s(N) + CFG.suspicion_max_s(N)
    assert net.run_for(heal_bound, views.goal(nodes, nodes, Health.ALIVE))
    refuted = [n for n in nodes if n.core.me.incarnation > 1]
    assert refuted  # coming back took refutations, not a lenient accept rule


def test_small_and_stream_sized_rumors_reach_every_live_member() -> None:
    net, nodes = converged(5, NetProfile(loss=0.01))
    dead = nodes[3]
    net.crash(dead)
    live = [n for n in nodes if n is not dead]
    got: dict[str, set[str]] = {"small": set(), "big": set()}

    def observe(node: SimNode, e: Effect, now: float) -> None:
        if isinstance(e, RumorChanged):
            got["big" if isinstance(e.rumor, ServiceConfigRumor) else "small"].add(node.id)

    net.observers.append(observe)
    small = ServiceRumor(nodes[10].id, "redis.default", 1, "core/redis/7.0.0/20260101000000")
    big = ServiceConfigRumor("redis.default", 1, b"x = '" + b"y" * (40 * 1024) + b"'\n")
    assert len(big.config) > CFG.stream_rumor_bytes  # takes the stream path
    net.publish(nodes[10], small)
    net.publish(nodes[20], big)
    everyone = {n.id for n in live}
    bound = ROUNDS * CFG.gossip_interval_s + 3 * D
    assert net.run_for(bound, lambda: got["small"] >= everyone and got["big"] >= everyone)
    assert dead.id not in got["small"] | got["big"]
    for n in live:
        assert n.core.store.get(*big.identity) == big


def test_restarted_member_returns_with_same_id_and_higher_incarnation() -> None:
    net, nodes = converged(6)
    views = Views(net)
    node, others = nodes[9], [n for n in nodes if n is not nodes[9]]
    old = node.core.me
    net.crash(node)
    assert net.run_for(LIFEGUARD_BOUND, views.goal(others, [node], Health.CONFIRMED))
    net.restart(node, [nodes[0]])
    assert node.id == old.id and node.core.me.incarnation > old.incarnation
    back = Goal(
        views,
        others,
        [node],
        lambda m: m.health == Health.ALIVE and m.incarnation > old.incarnation,
    )
    assert net.run_for(CATCHUP_FIRST_S * 2**CATCHUP_EXCHANGES + 2 * D, back)


def trace_digest(seed: int) -> str:
    """Everything the cores report, in order, with the virtual time: one digest per run."""
    net = SimNetwork(seed, CFG, NetProfile(loss=0.05, duplicate=0.05))
    nodes = [net.add_member() for _ in range(16)]
    h = hashlib.sha256()
    net.observers.append(lambda node, e, now: h.update(f"{now:.9f}{node.id}{e!r}".encode()))
    for node in nodes[1:]:
        net.join(node, [nodes[0]])
    net.run_for(10.0)
    net.crash(nodes[5])
    net.publish(nodes[2], ServiceRumor(nodes[2].id, "a.default", 1, "p"))
    net.run_for(30.0)
    net.restart(nodes[5], [nodes[0]])
    net.run_for(10.0)
    h.update(repr(net.stats).encode())
    return h.hexdigest()


def test_same_seed_gives_identical_trace() -> None:
    assert trace_digest(11) == trace_digest(11)
    assert trace_digest(11) != trace_digest(12)

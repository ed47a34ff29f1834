"""A member that moves up a probe tier (heard, then proven) joins the rest of that tier's current
round, as a new member does, instead of waiting for the round's next rebuild."""

from __future__ import annotations

import random

import pytest

from pysup.butterfly.member import Member, new_member_id
from pysup.butterfly.table import MemberTable


def mk(i: int) -> Member:
    return Member(new_member_id(random.Random(i)), 1, f"10.0.{i // 256}.{i % 256}", 9638)


@pytest.mark.parametrize("seed", range(10))
def test_a_member_proven_mid_round_is_probed_in_the_rest_of_that_round(seed: int) -> None:
    """Five probes into a round of 20 proven members, a newcomer is proven (it acked our probe):
    the next 16 probes are the 15 left and the newcomer, each once. Before, it was left out of
    that round (its unproven round skips it once proven): in a 100-member ring the members that
    had just proven a newcomer did not probe it again for up to 99 s, and killed 4 s after
    joining it was Confirmed everywhere 10-35 s after the kill (simulator), not ~9 s."""
    rng = random.Random(seed)
    t = MemberTable(1000)  # no unproven slot within these probes
    first = [mk(i) for i in range(1, 21)]
    t.put_proven_alive(first, rng)
    done = [t.next_probe(rng) for _ in range(5)]
    newcomer = mk(99)
    t.put(newcomer, None, rng)
    t.mark_proven(newcomer.id, rng)
    rest = [t.next_probe(rng) for _ in range(16)]
    assert sorted(x for x in rest if x is not None) == sorted(
        [m.id for m in first if m.id not in done] + [newcomer.id]
    )


@pytest.mark.parametrize("seed", range(10))
def test_a_member_heard_mid_round_is_probed_in_the_rest_of_the_heard_round(seed: int) -> None:
    """Seen from a member of a ring formed by joining: 30 members heard of (a push-pull
    introduced them), none proven yet, so every probe goes to the heard tier. A newcomer known
    only from a rumor then talks to us: it is probed within the heard round's rest (the 30 minus
    the probes done, plus itself), not after a whole new round."""
    rng = random.Random(seed)
    t = MemberTable(4)
    heard = [mk(i) for i in range(1, 31)]
    for m in heard:
        t.put(m, None, rng)
        t.mark_heard(m.id, rng)
    done = [t.next_probe(rng) for _ in range(10)]
    newcomer = mk(99)
    t.put(newcomer, None, rng)
    t.mark_heard(newcomer.id, rng)
    rest = [t.next_probe(rng) for _ in range(21)]
    assert newcomer.id in rest
    assert sorted(x for x in done + rest if x is not None) == sorted(
        [m.id for m in heard] + [newcomer.id]
    )

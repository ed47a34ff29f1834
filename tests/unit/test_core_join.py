"""A joiner takes the ring its push-pulls bring quietly; news it still gossips on.

In an all-at-once join of N members each joiner used to queue every record its seed sent for
`retransmits(N)` gossip sends, N^2 records through every member's queue at once (N=1000 on
2 cores never drained them: bench/README.md, "N=1000 on real sockets")."""

from __future__ import annotations

from pysup.butterfly.core import CATCHUP_EXCHANGES, CATCHUP_FIRST_S
from pysup.butterfly.member import Health
from pysup.butterfly.messages import Gossip, MemberRumor, PushPull
from tests.unit.test_core import Harness, mk, ring, sends

SEED = mk(1)
RING = ring(8)[1:]  # members 2..8, which the seed knows


def test_a_joiner_does_not_gossip_the_ring_its_seed_sent() -> None:
    # Fails on the code before the quiet merge: the 7 records were queued (depth 9, not 2).
    h = Harness([])
    before = h.core.queue_depth()  # our own record, to introduce ourselves
    h.core.join([SEED.addr], h.now)
    h.core.receive_stream(SEED.addr, PushPull(SEED, (SEED, *RING), (), reply=True), h.now)
    assert h.core.num_members() == 1 + 1 + len(RING)  # all taken, and probed like any other
    assert h.core.queue_depth() == before + 1  # + the seed: it spoke to us directly


def test_news_in_a_joiners_push_pull_is_still_gossiped() -> None:
    h = Harness([])
    h.core.join([SEED.addr], h.now)
    h.core.receive_stream(SEED.addr, PushPull(SEED, (SEED, *RING), (), reply=True), h.now)
    depth = h.core.queue_depth()
    suspect = RING[0].with_health(Health.SUSPECT)  # a change to a member we know: news
    h.core.receive_stream(SEED.addr, PushPull(SEED, (SEED, suspect), (), reply=True), h.now)
    assert h.core.queue_depth() == depth + 1


def test_after_the_catch_up_window_push_pull_news_is_gossiped_again() -> None:
    h = Harness([SEED])
    h.core.join([SEED.addr], h.now)
    window = CATCHUP_FIRST_S * 2**CATCHUP_EXCHANGES * 1.2  # the last catch-up, at its latest
    h.advance(window)
    newcomer = mk(50)
    h.feed(SEED, PushPull(SEED, (SEED, newcomer), (), reply=True))
    gossiped = {
        r.member.id
        for s in sends(h.advance(window + 1.0), Gossip)
        for r in s.msg.rumors  # type: ignore[union-attr]
        if isinstance(r, MemberRumor)
    }
    assert newcomer.id in gossiped

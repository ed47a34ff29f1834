"""A member killed seconds after joining a formed ring is detected as fast as an old member.

Its peers prove it (it acks their probes) within its first seconds; before, a member proven
mid-round waited for the prover's next round (N-1 probes away) to be probed again, so after the
kill nobody probed it for tens of seconds (simulator, N=100: first suspected 2-26 s after the
kill, Confirmed everywhere 10-35 s after it; bench/README.md, "Failure detection at N=100 per
process"). Here (N=64, seeds 1-12) it was Confirmed everywhere 11.7-63.8 s after the kill
before, 8.8-11.1 s now; seeds 2, 3 and 5 took 27.3, 54.5 and 27.8 s before.
"""

from __future__ import annotations

import pytest

from pysup.butterfly.member import Health
from tests.sim.test_ring_sim import CFG, D, N, Views, converged

JOINED_FOR_S = 4.0
"""The newcomer runs this long before the kill (bench/per_process.py kills its last newcomer
3-4 s after it joined)."""
BOUND = CFG.suspicion_min_s(N) + 4 * CFG.probe_interval_s + D
"""The minimum suspicion timeout (reached once k members suspect it), a few probe periods for
the first failed probe and the confirmations, and one dissemination slack for the Confirmed."""


@pytest.mark.parametrize("seed", [2, 3, 5])
def test_newcomer_killed_after_joining_is_confirmed_like_an_old_member(seed: int) -> None:
    net, nodes = converged(seed)
    newcomer = net.add_member()
    net.join(newcomer, [nodes[0]])
    net.run_for(JOINED_FOR_S)
    assert sum(newcomer.id in n.core._table.proven for n in nodes) > N // 2  # it was proven
    views = Views(net)
    net.crash(newcomer)
    t0 = net.now
    assert net.run_for(BOUND, views.goal(nodes, [newcomer], Health.CONFIRMED)), net.now - t0

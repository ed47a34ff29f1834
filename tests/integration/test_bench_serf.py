"""The Serf side of the benchmark against real ``serf agent`` processes (3 of them).

Proves the cluster driver observes each scenario (bootstrap, join, user event, kill -9) and that
no agent outlives the cluster, even when the block exits early.
"""

from __future__ import annotations

import os
import shutil

import pytest

from bench.serf import SerfCluster

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which("serf") is None, reason="serf not installed (bench/setup)"),
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_cluster_measures_every_scenario_and_kills_its_agents() -> None:
    async with SerfCluster(3) as cluster:
        boot, missed = await cluster.bootstrap(wait_s=20)
        assert missed == 0
        assert len(boot) == 3
        assert all(0 < t < 20 for t in boot)

        join, missed = await cluster.join_one(wait_s=20)
        assert (len(join), missed) == (3, 0)

        cpu, rss = await cluster.idle_usage(window=0.5)
        assert len(cpu) == len(rss) == 4
        assert all(r > 1 for r in rss)  # MiB: a Go agent is never below 1 MiB resident

        await cluster.open_streams()
        event, missed = await cluster.user_event("t1", wait_s=10)
        assert (len(event), missed) == (3, 0)  # everyone but the sender

        # Failure detection cannot beat memberlist's suspicion timeout (4 s at N <= 10).
        fd, missed = await cluster.kill_and_detect(wait_s=40)
        assert (len(fd), missed) == (3, 0)
        assert min(fd) > 3.0
        pids = [a.proc.pid for a in cluster.agents]
    assert not any(_alive(p) for p in pids)


async def test_agents_are_killed_when_the_block_raises() -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        async with SerfCluster(2) as cluster:
            await cluster.bootstrap(wait_s=20)
            pids = [a.proc.pid for a in cluster.agents]
            raise RuntimeError("boom")
    assert pids
    assert not any(_alive(p) for p in pids)

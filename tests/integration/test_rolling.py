"""Update strategies with real `pysup run` processes, for a plan that changes on disk.

rolling: 3 members restart one at a time, the update leader first and then by member id, each only
once the one before runs the new plan and is healthy: checked from the process start times every
run appends to starts.log (consecutive restarts are at least the warm-up apart, the warm-up being
how long a fresh backend answers 503 to its health check) and from /services sampled during the
update (never two members down or unhealthy at once).
at-once: every member restarts as soon as it sees the change, without waiting for the others.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path
from typing import Any

from tests.integration.daemons import Fleet, Sup, report
from tests.integration.test_leader import (
    BACKEND,
    census_group,
    fleet,
    service,
    start_group,
    wait,
)

__all__ = ["fleet"]

WARMUP_S = 1.5


def starts(sup: Sup) -> list[float]:
    path = sup.state_dir / "svc" / "backend" / "data" / "starts.log"
    try:
        return [float(x) for x in path.read_text().split()]
    except OSError:
        return []


def healthy(sup: Sup) -> bool:
    svc = service(sup)
    return svc is not None and svc["process"]["state"] == "up" and svc["health_check"] == "Ok"


def copy_plan(tmp_path: Path) -> Path:
    plan = tmp_path / "plan-backend"
    shutil.copytree(BACKEND, plan, ignore=shutil.ignore_patterns("__pycache__"))
    return plan


def change_plan(plan: Path) -> None:
    """A new version of the plan: different content, so a different fingerprint."""
    (plan / "CHANGELOG").write_text(f"0.1.1: rebuilt at {time.time()}\n")


def group_ready(sups: list[Sup]) -> bool:
    return all(healthy(s) and len(starts(s)) == 1 for s in sups)


def test_rolling_update_restarts_one_member_at_a_time_in_order(
    fleet: Fleet, tmp_path: Path
) -> None:
    plan = copy_plan(tmp_path)
    sups = start_group(fleet, 3, ["--strategy", "rolling"], plan=plan, warmup=WARMUP_S)
    wait(lambda: group_ready(sups), 30.0, "3 healthy members", fleet)

    def update_leader() -> Any:
        ids = {(census_group(s) or {}).get("update_leader_id") for s in sups}
        statuses = {(census_group(s) or {}).get("update_election_status") for s in sups}
        return ids.pop() if len(ids) == 1 and statuses == {"ElectionFinished"} else None

    first = wait(update_leader, 20.0, "the update election", fleet)
    ids = {s.member_id(): s for s in sups}
    expected = [first, *sorted(m for m in ids if m != first)]

    change_plan(plan)
    t0 = time.time()
    worst = 0
    deadline = time.monotonic() + 60.0
    while not all(len(starts(s)) == 2 for s in sups) or not all(healthy(s) for s in sups):
        assert time.monotonic() < deadline, f"update did not finish\n{fleet.logs()}"
        unhealthy = sum(1 for s in sups if not healthy(s))
        worst = max(worst, unhealthy)
        assert unhealthy <= 1, f"{unhealthy} members down at once\n{fleet.logs()}"
        time.sleep(0.05)
    report("rolling update of 3: change -> all restarted and healthy", time.time() - t0)

    restarts = sorted((starts(s)[1], mid) for mid, s in ids.items())
    assert [mid for _, mid in restarts] == expected, (restarts, expected)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(restarts)]
    assert all(gap >= WARMUP_S for gap in gaps), gaps  # each waited for the previous to be healthy
    assert worst == 1  # someone really was down: the samples saw the update
    for s in sups:
        svc = service(s)
        assert svc is not None and svc["pysup"].get("update") is None
        assert svc["update_strategy"] == "rolling"


def test_at_once_update_restarts_every_member_without_waiting(fleet: Fleet, tmp_path: Path) -> None:
    warmup = 4.0  # long, so "nobody waited" cannot be mistaken for a quick rolling update
    plan = copy_plan(tmp_path)
    sups = start_group(fleet, 3, ["--strategy", "at-once"], plan=plan, warmup=warmup, prefix="a")
    wait(lambda: group_ready(sups), 30.0, "3 healthy members", fleet)
    change_plan(plan)
    wait(lambda: all(len(starts(s)) == 2 for s in sups), 20.0, "every member restarted", fleet)
    second = sorted(starts(s)[1] for s in sups)
    # Nobody waited for another's warm-up: all restarted within about one poll period.
    assert second[-1] - second[0] < warmup, second
    wait(lambda: all(healthy(s) for s in sups), 20.0, "healthy again", fleet)

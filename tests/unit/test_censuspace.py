"""Census-driven re-renders: batched by the debounce, spaced by the ring's size (censuspace)."""

from __future__ import annotations

import asyncio
import itertools
import math
from pathlib import Path

from pysup.service.censuspace import (
    CENSUS_MAX_SPACING_S,
    CENSUS_S_PER_MEMBER,
    next_pass_at,
    spacing_s,
)


def test_spacing_grows_with_the_ring_and_is_capped() -> None:
    # The cost of a pass grows with N, so must the spacing; the cap bounds the latency.
    assert spacing_s(10) == 10 * CENSUS_S_PER_MEMBER
    assert spacing_s(100) > spacing_s(10)
    assert spacing_s(100_000) == CENSUS_MAX_SPACING_S
    assert spacing_s(0) == 0.0


def test_a_first_change_waits_only_the_debounce() -> None:
    assert next_pass_at(50.0, -math.inf, 100, 0.1) == 50.1


def test_a_change_soon_after_a_pass_waits_for_the_spacing() -> None:
    # A pass ran at t=10 in a 100-member ring: the next may not start before 10 + 1 s, even
    # though the change came after the debounce would have let it run.
    assert next_pass_at(10.2, 10.0, 100, 0.1) == 10.0 + spacing_s(100)
    # In a small ring the debounce alone decides, as before.
    assert next_pass_at(10.2, 10.0, 5, 0.1) == 10.2 + 0.1


def test_continuous_churn_renders_at_most_once_per_spacing() -> None:
    """A change every 5 ms for 10 s (a wave of suspicions): the passes this schedule gives are
    at least the spacing apart, so their number is bounded by the window over the spacing
    (a fixed 0.1 s debounce gave 100)."""
    n, debounce, now = 100, 0.1, 0.0
    passes: list[float] = []
    last, pending = -math.inf, None
    while now < 10.0:
        if pending is not None and now >= pending:
            passes.append(pending)
            last, pending = pending, None
        if pending is None:
            pending = next_pass_at(now, last, n, debounce)
        now += 0.005
    gaps = [b - a for a, b in itertools.pairwise(passes)]
    assert min(gaps) >= spacing_s(n) - 0.005
    assert len(passes) <= 10.0 / spacing_s(n) + 1


async def test_the_manager_schedules_census_passes_by_the_spacing(tmp_path: Path) -> None:
    """The wiring: ServiceManager's census timer follows `next_pass_at` with the ring's size
    (before, every change after a pass re-rendered 0.1 s later whatever N)."""
    from pysup.census import Census
    from pysup.service.manager import ServiceManager
    from pysup.statedir import StateDir

    def no_census() -> Census:
        raise AssertionError("no service is loaded: nothing reads the census")

    manager = ServiceManager(
        state=StateDir(tmp_path / "state"),
        sys_info={},
        member_id="m" * 32,
        census=no_census,
        publish=lambda rumor: None,
        ring_size=lambda: 100,
    )
    loop = asyncio.get_running_loop()
    try:
        before = loop.time()
        manager.on_census_changed()
        timer = manager._census_timer
        assert timer is not None
        assert before + 0.1 <= timer.when() <= loop.time() + 0.1  # the first: the debounce only
        timer.cancel()
        manager._census_fire()  # the pass runs (no services)
        fired = loop.time()
        manager.on_census_changed()
        timer = manager._census_timer
        assert timer is not None
        # The next: a spacing after the pass, not the 0.1 s debounce.
        assert timer.when() - fired >= spacing_s(100) - 1e-3
    finally:
        manager.close()

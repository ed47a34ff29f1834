"""Census-driven re-renders: batched by the debounce, spaced by the ring's size (censuspace)."""

from __future__ import annotations

import itertools
import math

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

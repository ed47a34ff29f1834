"""RestartBackoff: Habitat's decorrelated jitter with a cooldown reset (pure, seeded rng)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pysup.service.backoff import RestartBackoff


class MaxRandom(random.Random):
    """Always draws the top of the range: exposes the deterministic upper envelope."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_first_delay_is_base_then_upper_bound_triples_until_capped() -> None:
    b = RestartBackoff(base_s=1.0, max_s=20.0)
    rng = MaxRandom()
    assert [b.next_delay(rng) for _ in range(5)] == [1.0, 3.0, 9.0, 20.0, 20.0]
    assert b.attempts == 5


def test_seeded_sequence_is_reproducible_and_within_decorrelated_bounds() -> None:
    def run(seed: int) -> list[float]:
        b = RestartBackoff(base_s=0.5, max_s=30.0)
        rng = random.Random(seed)
        return [b.next_delay(rng) for _ in range(20)]

    seq = run(42)
    assert seq == run(42)
    assert seq != run(43)
    assert seq[0] == 0.5
    for prev, cur in itertools.pairwise(seq):
        assert 0.5 <= cur <= min(30.0, prev * 3)
    # the jitter really spreads the delays once capped instead of pinning them to max_s
    assert len({round(d, 6) for d in seq[5:]}) > 10


def test_cooldown_resets_after_a_long_enough_run() -> None:
    b = RestartBackoff(base_s=1.0, max_s=100.0, cooldown_s=300.0)
    rng = MaxRandom()
    b.record_start(0.0)
    b.record_exit(10.0)
    assert b.next_delay(rng) == 1.0
    b.record_start(11.0)
    b.record_exit(20.0)  # ran 9 s: still crash-looping
    assert b.next_delay(rng) == 3.0
    b.record_start(23.0)
    b.record_exit(23.0 + 299.9)  # just short of the cooldown
    assert b.next_delay(rng) == 9.0
    assert b.attempts == 3
    b.record_start(400.0)
    b.record_exit(700.0)  # ran exactly the cooldown: a fresh failure
    assert b.attempts == 0
    assert b.next_delay(rng) == 1.0


def test_exit_without_recorded_start_does_not_reset() -> None:
    b = RestartBackoff(base_s=1.0, max_s=100.0, cooldown_s=5.0)
    rng = MaxRandom()
    b.next_delay(rng)
    b.record_exit(1000.0)
    assert b.next_delay(rng) == 3.0


def test_base_above_max_is_clamped_and_zero_base_restarts_immediately() -> None:
    assert RestartBackoff(base_s=10.0, max_s=2.0).next_delay(random.Random(1)) == 2.0
    b = RestartBackoff(base_s=0.0, max_s=0.0)
    rng = random.Random(1)
    assert [b.next_delay(rng) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_negative_periods_rejected() -> None:
    with pytest.raises(ValueError):
        RestartBackoff(base_s=-1.0)


@given(
    base=st.floats(0.0, 10.0),
    cap=st.floats(0.0, 500.0),
    seed=st.integers(0, 2**32),
    n=st.integers(1, 40),
)
def test_delays_always_within_base_and_cap(base: float, cap: float, seed: int, n: int) -> None:
    b = RestartBackoff(base_s=base, max_s=cap)
    rng = random.Random(seed)
    prev: float | None = None
    for _ in range(n):
        d = b.next_delay(rng)
        assert min(base, cap) <= d <= cap
        if prev is not None:
            assert d <= max(min(base, cap), prev * 3) + 1e-9
        prev = d

"""HealthStatus mapping and the HealthSchedule (Habitat's splay-after-first-OK semantics)."""

from __future__ import annotations

import random

import pytest

from pysup.service.health import HealthSchedule, HealthStatus

OK, WARN, CRIT, UNK = (
    HealthStatus.OK,
    HealthStatus.WARNING,
    HealthStatus.CRITICAL,
    HealthStatus.UNKNOWN,
)


@pytest.mark.parametrize(
    ("code", "status"),
    [(0, OK), (1, WARN), (2, CRIT), (3, UNK), (4, UNK), (255, UNK), (-9, UNK), (None, UNK)],
)
def test_exit_code_mapping(code: int | None, status: HealthStatus) -> None:
    assert HealthStatus.from_exit_code(code) is status


def test_api_spellings_and_http_status() -> None:
    assert [s.api_name for s in HealthStatus] == ["Ok", "Warning", "Critical", "Unknown"]
    assert [s.status_name for s in HealthStatus] == ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
    assert [s.http_status for s in HealthStatus] == [200, 200, 503, 500]


def test_no_hook_uses_process_state() -> None:
    assert HealthStatus.from_process_up(True) is OK
    assert HealthStatus.from_process_up(False) is CRIT


def test_first_check_is_immediate() -> None:
    assert HealthSchedule(interval_s=30.0).next_check(100.0, None, random.Random(0)) == 100.0


def test_splay_only_after_the_first_ok_then_exact_interval() -> None:
    sched = HealthSchedule(interval_s=30.0)
    rng = random.Random(7)
    first = sched.next_check(100.0, OK, rng)
    assert 100.0 <= first <= 130.0
    assert first != 130.0  # a real splay was drawn (seeded: deterministic)
    assert first == 100.0 + random.Random(7).uniform(0.0, 30.0)
    assert sched.next_check(first, OK, rng) == first + 30.0
    assert sched.next_check(first + 30.0, OK, rng) == first + 60.0


def test_splays_spread_members_across_the_interval() -> None:
    rng = random.Random(3)
    firsts = [HealthSchedule(interval_s=30.0).next_check(0.0, OK, rng) for _ in range(50)]
    assert min(firsts) < 5.0 and max(firsts) > 25.0


def test_non_ok_rechecks_within_min_of_interval_and_30s_without_splay() -> None:
    rng = random.Random(1)
    long = HealthSchedule(interval_s=300.0)
    long.next_check(0.0, OK, rng)  # past start-up: the normal recheck applies
    for status in (WARN, CRIT, UNK):
        assert long.next_check(10.0, status, rng) == 40.0
    short = HealthSchedule(interval_s=5.0)
    short.next_check(0.0, OK, rng)
    assert short.next_check(10.0, CRIT, rng) == 15.0


def test_before_the_first_ok_failures_are_retried_with_a_doubling_delay() -> None:
    rng = random.Random(1)
    sched = HealthSchedule(interval_s=30.0)
    delays = [sched.next_check(100.0, CRIT, rng) - 100.0 for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    sched.next_check(100.0, OK, rng)
    assert sched.next_check(200.0, CRIT, rng) == 230.0
    sched.reset()
    assert sched.next_check(300.0, CRIT, rng) == 301.0


def test_non_ok_does_not_consume_the_first_ok_splay_and_reset_restores_it() -> None:
    sched = HealthSchedule(interval_s=30.0)
    rng = random.Random(11)
    sched.next_check(0.0, CRIT, rng)
    splayed = sched.next_check(0.0, OK, random.Random(5))
    assert splayed == random.Random(5).uniform(0.0, 30.0)
    assert sched.next_check(0.0, OK, rng) == 30.0
    sched.reset()
    assert sched.next_check(0.0, OK, random.Random(5)) == splayed


def test_invalid_interval_rejected() -> None:
    with pytest.raises(ValueError):
        HealthSchedule(interval_s=0.0)

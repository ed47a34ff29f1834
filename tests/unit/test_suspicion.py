"""Lifeguard's timing: the suspicion timeout (exact numbers from the config formulas) and the
local-health multiplier."""

from __future__ import annotations

import math

import pytest

from pysup.butterfly.config import HABITAT, LAN, GossipConfig
from pysup.butterfly.suspicion import LocalHealth, Suspicion, expected_confirmations


def test_suspicion_bounds_from_config() -> None:
    # LAN: mult 4, max mult 6, probe 1 s.
    assert LAN.suspicion_min_s(1) == 4.0  # max(1, log10 N) never goes below 1
    assert LAN.suspicion_min_s(10) == 4.0
    assert LAN.suspicion_min_s(100) == pytest.approx(8.0)
    assert LAN.suspicion_min_s(1000) == pytest.approx(12.0)
    assert LAN.suspicion_max_s(1000) == pytest.approx(72.0)
    # Habitat: 3 periods of 3.1 s = 9.3 s, no stretching.
    assert HABITAT.suspicion_min_s(10) == pytest.approx(9.3)
    assert HABITAT.suspicion_max_s(10) == pytest.approx(9.3)


@pytest.mark.parametrize(
    ("mult", "n", "k"), [(4, 100, 2), (4, 4, 2), (4, 3, 0), (2, 100, 0), (6, 5, 0), (6, 6, 4)]
)
def test_expected_confirmations(mult: int, n: int, k: int) -> None:
    assert expected_confirmations(mult, n) == k


def test_timeout_shrinks_logarithmically_with_confirmations() -> None:
    s = Suspicion("m", 1, start=100.0, min_s=8.0, max_s=48.0, k=3, origin="a")
    assert s.timeout() == 48.0 and s.deadline == 148.0
    expected = [48.0 - 40.0 * math.log(c + 1) / math.log(4) for c in range(4)]
    got = [s.timeout()]
    for by in ("b", "c", "d"):
        assert s.confirm(by)
        got.append(s.timeout())
    assert got == pytest.approx(expected)
    assert got[-1] == pytest.approx(8.0)  # k confirmations reach the minimum
    assert not s.confirm("e")  # never more than k
    assert s.timeout() == pytest.approx(8.0)


def test_confirmations_must_be_independent() -> None:
    s = Suspicion("m", 1, start=0.0, min_s=4.0, max_s=24.0, k=2, origin="a")
    assert not s.confirm("a")  # the originator cannot confirm itself
    assert not s.confirm("")  # nor an anonymous rumor
    assert s.confirm("b")
    assert not s.confirm("b")  # nor twice
    assert s.confirmations == 1
    assert s.timeout() == pytest.approx(24.0 - 20.0 * math.log(2) / math.log(3))


def test_k_zero_means_minimum_timeout() -> None:
    s = Suspicion("m", 1, start=5.0, min_s=4.0, max_s=24.0, k=0)
    assert s.timeout() == 4.0 and s.deadline == 9.0
    assert not s.confirm("b")


def test_local_health_is_clamped_and_scales_time() -> None:
    h = LocalHealth(max_multiplier=8)
    assert h.scale(1.0) == 1.0
    h.apply(3)
    assert h.score == 3 and h.scale(0.5) == 2.0
    h.apply(100)
    assert h.score == 7 and h.scale(1.0) == 8.0  # at most max_multiplier times
    h.apply(-100)
    assert h.score == 0
    off = LocalHealth(max_multiplier=1)  # Habitat preset: no Lifeguard
    off.apply(5)
    assert off.score == 0 and off.scale(3.1) == 3.1


def test_config_formulas() -> None:
    c = GossipConfig(retransmit_mult=4, push_pull_interval_s=30.0)
    assert [c.retransmits(n) for n in (1, 9, 10, 99, 100, 1000)] == [4, 4, 8, 8, 12, 16]
    assert c.push_pull_s(32) == 30.0
    assert c.push_pull_s(64) == 60.0
    assert c.push_pull_s(1000) == 30.0 * (1 + math.ceil(math.log2(1000) - 5))

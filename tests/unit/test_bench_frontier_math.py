"""The frontier's arithmetic: episodes of false Confirmed, rates per member-hour with an exact
Poisson upper bound, and the goal check (faster than Serf at no more false positives at every
loss level)."""

from __future__ import annotations

import math

import pytest

from bench import frontier_math as fm


def test_episodes_split_where_consecutive_confirmations_are_far_apart() -> None:
    assert fm.episodes([]) == 0
    assert fm.episodes([5.0]) == 1
    assert fm.episodes([10.0, 1.0, 2.0], gap_s=5.0) == 2  # unsorted on purpose: {1, 2}, {10}
    assert fm.episodes([0.0, 5.0, 10.0], gap_s=5.0) == 1  # a gap equal to the limit joins


def test_false_confirm_episodes_count_only_live_members_inside_the_window() -> None:
    confirms = [
        ("a", 100.0), ("a", 100.4), ("a", 101.0),  # one episode seen by three members
        ("a", 200.0),  # a second episode later
        ("b", 150.0),  # b was killed: a true positive
        ("c", 50.0),  # before the window
    ]  # fmt: skip
    got = fm.false_confirm_episodes(confirms, {"a", "c"}, since=60.0, until=300.0)
    assert got == {"a": 2}


def test_poisson_upper_bound_matches_known_values() -> None:
    assert fm.poisson_upper(0) == pytest.approx(-math.log(0.05), rel=1e-6)  # 2.996: rule of 3
    assert fm.poisson_upper(1) == pytest.approx(4.744, rel=1e-3)
    assert fm.poisson_upper(5) == pytest.approx(10.513, rel=1e-3)
    with pytest.raises(ValueError):
        fm.poisson_upper(-1)


def test_point_rates_per_member_hour() -> None:
    p = fm.FrontierPoint("pysup-lan", 0.05, 6.0, 7.0, false_episodes=0, member_hours=2.0)
    assert p.fp_rate == 0.0
    assert p.fp_upper == pytest.approx(2.996 / 2.0, rel=1e-3)
    assert fm.member_hours(10, 1800.0) == 5.0
    assert math.isnan(fm.FrontierPoint("x", 0.0, 1.0, 1.0, 0, 0.0).fp_rate)


def _pt(system: str, loss: float, det: float, eps: int, missed: int = 0) -> fm.FrontierPoint:
    return fm.FrontierPoint(system, loss, det, det + 1, eps, 1.0, missed)


def test_goal_needs_faster_detection_at_no_more_false_positives_at_every_level() -> None:
    serf = [_pt("serf", 0.0, 6.0, 0), _pt("serf", 0.1, 7.0, 1)]
    good = [_pt("pysup-a", 0.0, 5.0, 0), _pt("pysup-a", 0.1, 6.5, 1)]
    slow_once = [_pt("pysup-b", 0.0, 5.0, 0), _pt("pysup-b", 0.1, 7.5, 0)]
    noisy = [_pt("pysup-c", 0.0, 5.0, 0), _pt("pysup-c", 0.1, 6.0, 2)]
    missing = [_pt("pysup-d", 0.0, 5.0, 0)]
    missed = [_pt("pysup-e", 0.0, 5.0, 0, missed=1), _pt("pysup-e", 0.1, 6.0, 0)]
    got = fm.goal_check(serf + good + slow_once + noisy + missing + missed)
    assert got == {
        "pysup-a": True,
        "pysup-b": False,
        "pysup-c": False,
        "pysup-d": False,
        "pysup-e": False,
    }


def test_markdown_lists_every_point_and_the_verdicts() -> None:
    pts = [_pt("serf", 0.0, 6.0, 0), _pt("pysup-lan", 0.0, 5.0, 0)]
    text = fm.markdown(pts, fm.goal_check(pts))
    assert "| pysup-lan | 0% | 5 |" in text and "| serf | 0% | 6 |" in text
    assert "pysup-lan: faster than serf" in text and ": met" in text

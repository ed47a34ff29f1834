"""The arithmetic of the detection / false-positive frontier (pure; used by bench.frontier).

A **false Confirmed** is a live member (nobody killed it) declared Confirmed (pysup) or failed
(Serf) by at least one other member. Once one member confirms, the others follow through gossip,
so the confirmations of one member within ``EPISODE_GAP_S`` of each other are one **episode**;
the rate is episodes per member-hour of observation (live members x window). With few episodes
the rate is uncertain: ``poisson_upper`` gives the one-sided 95% upper bound (0 episodes in
H member-hours: below 3.0/H, the "rule of three").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

EPISODE_GAP_S = 30.0
"""Confirmations of one member further apart than this are separate episodes: longer than a
confirmation takes to spread (a few gossip rounds), shorter than a refute-and-fail-again cycle
(a suspicion timeout of >= 4 s plus a refutation) repeated by chance."""


def episodes(times: Iterable[float], gap_s: float = EPISODE_GAP_S) -> int:
    """Clusters of timestamps whose consecutive members are at most `gap_s` apart."""
    xs = sorted(times)
    if not xs:
        return 0
    return 1 + sum(1 for a, b in itertools.pairwise(xs) if b - a > gap_s)


def false_confirm_episodes(
    confirmations: Iterable[tuple[str, float]],
    live: set[str],
    since: float,
    until: float,
    gap_s: float = EPISODE_GAP_S,
) -> dict[str, int]:
    """Episodes per live member among (target, time) confirmations inside [since, until]."""
    by_target: dict[str, list[float]] = {}
    for target, t in confirmations:
        if target in live and since <= t <= until:
            by_target.setdefault(target, []).append(t)
    return {k: episodes(v, gap_s) for k, v in sorted(by_target.items())}


def member_hours(members: int, seconds: float) -> float:
    return members * seconds / 3600.0


def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """The one-sided upper confidence bound of a Poisson mean after observing `k` events: the
    lambda with P(X <= k | lambda) = 1 - confidence (bisection on the exact CDF)."""
    if k < 0:
        raise ValueError("k must be >= 0")
    alpha = 1.0 - confidence

    def cdf(lam: float) -> float:
        term = math.exp(-lam)
        total = term
        for i in range(1, k + 1):
            term *= lam / i
            total += term
        return total

    lo, hi = 0.0, max(10.0, 4.0 * (k + 5))
    for _ in range(200):
        mid = (lo + hi) / 2
        if cdf(mid) > alpha:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class FrontierPoint:
    system: str
    loss: float
    detect_p50_s: float
    """Median over kills of the time until every live member had the victim Confirmed."""
    detect_all_s: float
    """The slowest kill's time until every member had it Confirmed (NaN: some never did)."""
    false_episodes: int
    member_hours: float
    missed: int = 0
    """Observers that never confirmed a victim within the deadline (over all kills)."""
    suspicions: int = 0
    """Suspicions of live members logged meanwhile (all false; most are refuted in time)."""

    @property
    def fp_rate(self) -> float:
        """False Confirmed episodes per member-hour."""
        return self.false_episodes / self.member_hours if self.member_hours > 0 else math.nan

    @property
    def fp_upper(self) -> float:
        """95% upper bound of the rate."""
        if self.member_hours <= 0:
            return math.nan
        return poisson_upper(self.false_episodes) / self.member_hours


def dominates(a: FrontierPoint, b: FrontierPoint) -> bool:
    """`a` detects strictly faster than `b` at an equal or lower false-positive rate (the issue's
    goal 3 at one loss level). A system that missed observers never dominates."""
    if a.missed or math.isnan(a.detect_p50_s) or math.isnan(b.detect_p50_s):
        return False
    return a.detect_p50_s < b.detect_p50_s and a.fp_rate <= b.fp_rate


def goal_check(points: Sequence[FrontierPoint], reference: str = "serf") -> dict[str, bool]:
    """Per non-reference system: does it dominate the reference at every loss level measured
    for both? (False when a level lacks either.)"""
    ref = {p.loss: p for p in points if p.system == reference}
    out: dict[str, bool] = {}
    for system in sorted({p.system for p in points} - {reference}):
        mine = {p.loss: p for p in points if p.system == system}
        levels = sorted(set(ref) | set(mine))
        out[system] = bool(levels) and all(
            lv in mine and lv in ref and dominates(mine[lv], ref[lv]) for lv in levels
        )
    return out


def markdown(points: Sequence[FrontierPoint], goal: Mapping[str, bool]) -> str:
    lines = [
        "| system | loss | detection p50 s | detection all s | missed | false suspicions "
        "| false Confirmed | member-hours | per member-hour | 95% upper |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(points, key=lambda p: (p.loss, p.system)):
        lines.append(
            f"| {p.system} | {p.loss:.0%} | {_f(p.detect_p50_s)} | {_f(p.detect_all_s)} "
            f"| {p.missed} | {p.suspicions} | {p.false_episodes} | {p.member_hours:.2f} "
            f"| {_f(p.fp_rate)} "
            f"| {_f(p.fp_upper)} |"
        )
    if goal:
        lines.append("")
        for system, ok in goal.items():
            verdict = "met" if ok else "**not met**"
            lines.append(
                f"- {system}: faster than serf at an equal or lower false-positive rate at "
                f"every loss level: {verdict}"
            )
    return "\n".join(lines) + "\n"


def _f(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.3g}"

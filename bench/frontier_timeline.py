"""Why one system detects faster than another: per-kill timelines from the members' own logs.

For each kill (`bench.frontier`), per system, from the logs every member writes anyway:

- **failed probes** of the victim: pysup's ``gossip.probe_failed``, memberlist's
  ``Suspect X has failed, no acks received``. Both are logged by the prober whenever a probe of a
  member (Alive or already Suspect) got no ack, direct or indirect: the first one starts the
  suspicion, each later one from another member is an independent (Lifeguard) confirmation;
- **timer confirmations**: a member whose own suspicion timer made the victim Confirmed logs how
  many confirmations that suspicion had counted (pysup: ``member.confirmed`` with
  ``confirmations``; memberlist: ``Marking X as failed, suspect timeout reached (N peer
  confirmations)``). The others learn Confirmed by gossip;
- **Confirmed** at every live member (first and last).

From these: the delay from the kill to the first failed probe, the suspicion's duration (first
failed probe to first Confirmed), distinct probers that failed before the first Confirmed, the
confirmations the deciding timer had, and the spread (first to last Confirmed). In the
false-positive window, failed probes of live members are counted the same way for both systems
(every one is a false suspicion or confirmation), so "false suspicions" compare like with like:
pysup logs ``member.suspect`` at every member that learns a suspicion, memberlist logs only the
prober's line.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

PROBE_FAILED = "gossip.probe_failed"
"""pysup's event (info) for a probe that got no ack (`pysup.butterfly.effects.ProbeFailed`)."""


class View(Protocol):
    """What a timeline reads of one member's log (`bench.memberlog.Observer`)."""

    me: str | None

    def events(self, kind: str, since: float = 0.0, until: float = ...) -> list[Any]: ...

    @property
    def other(self) -> list[Any]: ...


@dataclass(frozen=True)
class KillTimeline:
    system: str
    first_probe_failed_s: float
    """Kill to the first failed probe of the victim by any member (NaN: none logged)."""
    probers_before_confirm: int
    """Distinct members whose probe of the victim failed before the first Confirmed."""
    probe_failures: int
    """Failed probes of the victim logged until the last Confirmed."""
    timer_confirmations: tuple[int, ...]
    """Confirmations counted by each suspicion timer that made the victim Confirmed."""
    first_confirmed_s: float
    last_confirmed_s: float
    target: str = ""
    t0: float = math.nan
    """The kill, wall-clock seconds (to line the timeline up with kept logs)."""

    @property
    def suspicion_s(self) -> float:
        """First failed probe to first Confirmed: how long the suspicion ran."""
        return self.first_confirmed_s - self.first_probe_failed_s


def _probe_failures(system: str, v: View, target: str, since: float, until: float) -> list[float]:
    if system == "serf":
        return [e.t for e in v.events("suspect", since, until) if e.target == target]
    failed = [e for e in v.other if e.kind == PROBE_FAILED]
    if failed:
        mine = (e for e in failed if e.fields.get("member_id") == target)
        return [e.t for e in mine if since <= e.t <= until]
    # A pysup from before gossip.probe_failed: the suspicions it started itself (its first
    # failed probe of a member; confirmations by its own later probes are not in its log).
    return [
        e.t
        for e in v.events("suspect", since, until)
        if e.target == target and e.fields.get("suspected_by") == v.me
    ]


def _timer_confirmations(system: str, v: View, target: str, since: float) -> list[int]:
    if system == "serf":
        return [
            int(e.fields.get("confirmations", -1))
            for e in v.other
            if e.kind == "marked_failed" and e.target == target and e.t >= since
        ]
    return [
        int(e.fields["confirmations"])
        for e in v.events("confirmed", since)
        if e.target == target and "confirmations" in e.fields
    ]


def kill_timeline(
    system: str, observers: Sequence[View], target: str, t0: float, until: float
) -> KillTimeline:
    """The timeline of one kill at `t0` of `target`, from the views of the live members."""
    confirmed = [
        e.t for v in observers for e in v.events("confirmed", t0, until) if e.target == target
    ]
    first_c = min(confirmed, default=math.nan)
    last_c = max(confirmed, default=math.nan)
    failures = [
        (t, v.me or str(i))
        for i, v in enumerate(observers)
        for t in _probe_failures(system, v, target, t0, until)
    ]
    first_f = min((t for t, _ in failures), default=math.nan)
    before = {who for t, who in failures if math.isnan(first_c) or t <= first_c}
    timers = [c for v in observers for c in _timer_confirmations(system, v, target, t0)]
    return KillTimeline(
        system,
        first_f - t0,
        len(before),
        len(failures),
        tuple(sorted(timers)),
        first_c - t0,
        last_c - t0,
        target,
        t0,
    )


def false_probe_failures(
    system: str, observers: Iterable[View], live: set[str], since: float, until: float
) -> int:
    """Failed probes of members never killed, over all observers, in [since, until]."""
    return sum(
        len(_probe_failures(system, v, target, since, until))
        for v in observers
        for target in live
        if target != v.me
    )


def summary(timelines: Sequence[KillTimeline]) -> dict[str, float]:
    """Medians over kills (NaN-free where data exists)."""

    def med(xs: Iterable[float]) -> float:
        ys = [x for x in xs if not math.isnan(x)]
        return statistics.median(ys) if ys else math.nan

    return {
        "first_probe_failed_s": med(t.first_probe_failed_s for t in timelines),
        "suspicion_s": med(t.suspicion_s for t in timelines),
        "probers_before_confirm": med(float(t.probers_before_confirm) for t in timelines),
        "timer_confirmations": med(float(c) for t in timelines for c in t.timer_confirmations),
        "first_confirmed_s": med(t.first_confirmed_s for t in timelines),
        "spread_s": med(t.last_confirmed_s - t.first_confirmed_s for t in timelines),
    }


def as_meta(timelines: Sequence[KillTimeline]) -> list[dict[str, Any]]:
    return [asdict(t) for t in timelines]


def markdown(rows: Mapping[tuple[str, float], tuple[dict[str, float], int]]) -> str:
    """One row per (system, loss): medians over kills, and false probe failures."""
    lines = [
        "| system | loss | kill to 1st failed probe s | suspicion s (1st failed probe to "
        "1st Confirmed) | probers failed before Confirmed | confirmations at the deciding "
        "timer | 1st to last Confirmed s | false failed probes (window) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (system, loss), (s, false_fails) in sorted(rows.items(), key=lambda kv: kv[0][::-1]):
        lines.append(
            f"| {system} | {loss:.0%} | {_f(s['first_probe_failed_s'])} "
            f"| {_f(s['suspicion_s'])} | {_f(s['probers_before_confirm'])} "
            f"| {_f(s['timer_confirmations'])} | {_f(s['spread_s'])} | {false_fails} |"
        )
    return "\n".join(lines) + "\n"


def _f(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.3g}"

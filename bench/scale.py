"""Issue 18, goal 4: N=1000 on real UDP sockets, with an honest verdict when it does not converge.

    python -m bench.scale [--members 1000] [--workers 2] [--bootstrap-timeout 90] [--quick]

`bench.udp.UdpRing` hosts the members (many per process, `--workers` processes, one event loop
each). Phases, each with its own timeout so a ring that does not converge ends the phase with
"did not converge by T" (how many members made it, and a census of what they see) instead of
hanging:

- ``bootstrap``: every member joins member 0 at the same instant; per member, until it lists all
  N-1 others Alive. Target p99 <= 30 s.
- ``join``: a new member in a process of its own joins; until each member lists it Alive.
- ``event``: `rumors` config rumors, one at a time, each from a random member. Target p99 <= 2 s.
- ``failure_detection``: kill -9 of the newcomer's process; until each survivor lists it
  Confirmed. Target median <= 15 s. Its meta also says when the first survivor saw it Suspect
  (`suspicion`): Confirmed minus that is how long the suspicion ran, i.e. how few independent
  confirmations shortened it.

Later phases run even after an earlier one timed out (each is bounded): how a ring that never
converged handles a rumor and a crash is information too. `--stop-on-timeout` skips them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bench.measure import Result, percentile

SYSTEM = "pysup-udp"
TARGETS: dict[str, tuple[str, float | None]] = {
    "bootstrap": ("p99", 30.0),
    "event": ("p99", 2.0),
    "failure_detection": ("p50", 15.0),
}
"""The issue's N=1000 targets: metric -> (statistic, limit in seconds)."""


def verdict(phase: str, samples: Sequence[float], misses: int, timeout_s: float) -> dict[str, Any]:
    """The outcome of one phase: converged or not, the value of the target's statistic and
    whether the target is met (None: the phase has no target). A phase where some observers
    never saw the effect within `timeout_s` did not converge: its percentile would describe only
    those that did, so its value is infinite."""
    total = len(samples) + misses
    stat, limit = TARGETS.get(phase, ("p99", None))
    out: dict[str, Any] = {"phase": phase, "stat": stat, "limit": limit, "converged": not misses}
    if total == 0:
        return {**out, "converged": False, "value": None, "met": None, "text": f"{phase}: none"}
    if misses:
        text = f"did not converge by {timeout_s:g} s ({len(samples)} of {total} observers saw it)"
        value = math.inf
    else:
        value = percentile(samples, 50.0 if stat == "p50" else 99.0)
        text = f"{stat} {value:.2f} s"
    met = None if limit is None else value <= limit
    if met is not None:
        text += f" (target <= {limit:g} s: {'met' if met else 'missed'})"
    return {**out, "value": value, "met": met, "text": f"{phase}: {text}"}


def census_summary(census: Sequence[dict[str, Any]], n: int) -> dict[str, Any]:
    """What the members see when a phase timed out: how many others each lists Alive or
    Suspect, their Lifeguard local health and gossip queue depth."""
    if not census:
        return {}
    alive = [int(c.get("alive", 0)) for c in census]
    suspect = [int(c.get("suspect", 0)) for c in census]
    return {
        "members": len(census),
        "alive_seen_p50": percentile(alive, 50),
        "alive_seen_min": min(alive),
        "complete_views": sum(1 for a in alive if a >= n - 1),
        "suspect_seen_p50": percentile(suspect, 50),
        "suspect_seen_max": max(suspect),
        "local_health_p50": percentile([float(c.get("health", 0)) for c in census], 50),
        "local_health_max": max(int(c.get("health", 0)) for c in census),
        "queue_p50": percentile([float(c.get("queue", 0)) for c in census], 50),
        "queue_max": max(int(c.get("queue", 0)) for c in census),
    }


@dataclass(frozen=True)
class Options:
    members: int = 1000
    workers: int = 2
    profile: str = "lan"
    bootstrap_timeout_s: float = 90.0
    join_timeout_s: float = 30.0
    rumor_timeout_s: float = 15.0
    rumors: int = 3
    failure_timeout_s: float = 90.0
    stop_on_timeout: bool = False
    census_always: bool = False
    """Take the census (what members see, local health, queues) after every phase, not only
    after one that timed out: why a converged phase was slow (e.g. local health still high)."""
    seed: int | None = 1


QUICK = Options(bootstrap_timeout_s=60.0, rumors=2, failure_timeout_s=60.0)


def run_scale(opts: Options, say: Callable[[str], None]) -> list[Result]:
    from bench.udp import UdpRing

    n = opts.members
    tag = f"scale n={n}"
    phases: dict[str, tuple[list[float], int, float]] = {}
    censuses: dict[str, dict[str, Any]] = {}
    kills: dict[str, dict[str, float | None]] = {}
    t_start = time.monotonic()
    with UdpRing(n, workers=opts.workers, profile=opts.profile, seed=opts.seed) as ring:
        say(f"{tag}: binding {n} members in {opts.workers} workers")
        ring.start()

        def record(phase: str, got: tuple[list[float], int], timeout: float) -> bool:
            phases[phase] = (got[0], got[1], timeout)
            v = verdict(phase, got[0], got[1], timeout)
            say(f"{tag}: {v['text']}")
            if got[0]:
                p50, p99 = percentile(got[0], 50.0), percentile(got[0], 99.0)
                say(f"{tag}: {phase}: of those seen p50 {p50:.2f} s, p99 {p99:.2f} s")
            if got[1] or opts.census_always:
                censuses[phase] = census_summary(ring.census(), n)
                say(f"{tag}: census after {phase}: {censuses[phase]}")
            return not got[1]

        say(f"{tag}: bootstrap (all join at once; timeout {opts.bootstrap_timeout_s:g}s)")
        ok = record("bootstrap", ring.bootstrap(opts.bootstrap_timeout_s), opts.bootstrap_timeout_s)
        if ok or not opts.stop_on_timeout:
            say(f"{tag}: join")
            ok = record("join", ring.join_victim(opts.join_timeout_s), opts.join_timeout_s) and ok
            samples: list[float] = []
            misses = 0
            for k in range(opts.rumors):
                say(f"{tag}: rumor {k + 1}/{opts.rumors}")
                time.sleep(0.5)
                s, m = ring.rumor(incarnation=k + 1, wait_s=opts.rumor_timeout_s)
                samples += s
                misses += m
            ok = record("event", (samples, misses), opts.rumor_timeout_s) and ok
            if ok or not opts.stop_on_timeout:
                say(f"{tag}: failure detection (timeout {opts.failure_timeout_s:g}s)")
                got = ring.kill_victim(opts.failure_timeout_s)
                record("failure_detection", got, opts.failure_timeout_s)
                kills["failure_detection"] = dict(ring.last_kill)
                say(f"{tag}: failure_detection: suspicion {ring.last_kill}")
    out = []
    for phase, (samples, misses, timeout) in phases.items():
        v = verdict(phase, samples, misses, timeout)
        out.append(
            Result.from_samples(
                SYSTEM,
                phase,
                n,
                samples,
                "s",
                timeouts=misses,
                timeout_s=timeout,
                verdict=v,
                census=censuses.get(phase),
                suspicion=kills.get(phase),
                workers=opts.workers,
                profile=opts.profile,
                part="scale",
                wall_s=round(time.monotonic() - t_start, 1),
                host_mode=f"real UDP, {n // opts.workers} members per process",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bootstrap-timeout", type=float)
    ap.add_argument("--stop-on-timeout", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--census", action="store_true", help="census after every phase")
    args = ap.parse_args(argv)
    opts = replace(
        QUICK if args.quick else Options(),
        members=args.members,
        workers=args.workers,
        stop_on_timeout=args.stop_on_timeout,
        census_always=args.census,
    )
    if args.bootstrap_timeout:
        opts = replace(opts, bootstrap_timeout_s=args.bootstrap_timeout)
    for r in run_scale(opts, lambda m: print(m, file=sys.stderr, flush=True)):
        print(json.dumps({"phase": r.metric, **r.meta["verdict"]}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

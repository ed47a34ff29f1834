"""The frontier in the simulator: detection against false suspicions, per preset and loss, seeded.

    python -m bench.frontier_sim [--presets lan] [--loss 0,0.05,0.1] [--seeds 20] [--n 10]
                                 [--window 120] [--kills 1] [--set FIELD=VALUE]

A fast, deterministic companion of `bench.frontier` (real processes in network namespaces, against
Serf) for iterating on the protocol: per seed, a converged ring of `--n` members in
`pysup.testing.simnet` with every datagram lost with probability `loss` (streams see it as TCP
does: lost packets resent after a retransmission timeout, `NetProfile.stream_loss`), then
`--window` virtual seconds counting failed probes of live members (each a false suspicion or
confirmation), suspicions started and false Confirmed; then `--kills` members crash one after
another and we time each one's first failed probe, the confirmations of the timer that decided,
and Confirmed at every member.
Medians over seeds. Virtual time only: CPU load, scheduling and real TCP are `bench.frontier`'s.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from pysup.butterfly.config import PRESETS, GossipConfig
from pysup.butterfly.effects import Effect, MemberChanged, ProbeFailed
from pysup.butterfly.member import Health
from pysup.testing.simnet import NetProfile, SimNetwork, SimNode


@dataclass
class Kill:
    first_failed_s: float = math.nan
    timer_confirmations: list[int] = field(default_factory=list)
    first_confirmed_s: float = math.nan
    all_confirmed_s: float = math.nan


@dataclass
class SeedRun:
    false_failed_probes: int = 0
    false_suspicions: int = 0
    false_confirmed: int = 0
    kills: list[Kill] = field(default_factory=list)


GAP_S = 3.0
"""Seconds between one kill's last Confirmed and the next kill (as `bench.frontier`)."""


def run_seed(
    seed: int, n: int, config: GossipConfig, loss: float, window_s: float, kills: int = 1
) -> SeedRun:
    """A converged ring at `loss`: `window_s` of false positives, then `kills` crashes one after
    another, each `GAP_S` after the last member confirmed the one before (local health carries
    over from one to the next, as it does in `bench.frontier`)."""
    sim = SimNetwork(seed, config, NetProfile(loss=loss, stream_loss=True))
    for _ in range(n):
        sim.add_member()
    sim.converge_instantly()
    out = SeedRun()
    now_kill: list[tuple[str, float, Kill, dict[str, float]]] = []

    def observe(node: SimNode, e: Effect, now: float) -> None:
        if isinstance(e, ProbeFailed):
            if not now_kill:  # the window: every failure and suspicion is false
                out.false_failed_probes += 1
            elif e.member_id == now_kill[-1][0]:
                kill = now_kill[-1][2]
                if math.isnan(kill.first_failed_s):
                    kill.first_failed_s = now - now_kill[-1][1]
        elif isinstance(e, MemberChanged):
            health = e.member.health
            if not now_kill:
                if health == Health.SUSPECT and e.suspected_by == node.id:
                    out.false_suspicions += 1
                elif health == Health.CONFIRMED:
                    out.false_confirmed += 1
                return
            victim, t0, kill, confirmed = now_kill[-1]
            if e.member.id == victim and health == Health.CONFIRMED and node.id not in confirmed:
                confirmed[node.id] = now - t0
                if e.confirmations >= 0:
                    kill.timer_confirmations.append(e.confirmations)

    sim.observers.append(observe)
    sim.run_for(window_s)
    limit = 30 + 1.5 * (config.suspicion_max_s(n) + config.probe_interval_s * 8)
    for _ in range(min(kills, n - 2)):
        live = [x for x in sim.nodes.values() if x.up]
        dead = live[sim.rng.randrange(len(live))]
        confirmed: dict[str, float] = {}
        kill = Kill()
        out.kills.append(kill)
        now_kill.append((dead.id, sim.now, kill, confirmed))
        sim.crash(dead)
        sim.run_for(limit, _all_of(confirmed, len(live) - 1))
        if confirmed:
            kill.first_confirmed_s = min(confirmed.values())
        if len(confirmed) == len(live) - 1:
            kill.all_confirmed_s = max(confirmed.values())
        sim.run_for(GAP_S)
    return out


def _all_of(confirmed: dict[str, float], others: int) -> Callable[[], bool]:
    return lambda: len(confirmed) == others


def _med(xs: list[float]) -> float:
    ys = [x for x in xs if not math.isnan(x)]
    return statistics.median(ys) if ys else math.nan


def summary(runs: list[SeedRun], window_s: float, n: int) -> dict[str, float]:
    hours = len(runs) * n * window_s / 3600
    ks = [k for r in runs for k in r.kills]
    return {
        "detect_p50_s": _med([k.all_confirmed_s for k in ks]),
        "first_failed_s": _med([k.first_failed_s for k in ks]),
        "first_confirmed_s": _med([k.first_confirmed_s for k in ks]),
        "timer_confirmations": _med([float(c) for k in ks for c in k.timer_confirmations]),
        "missed": sum(1 for k in ks if math.isnan(k.all_confirmed_s)),
        "false_failed_probes_per_member_h": sum(r.false_failed_probes for r in runs) / hours,
        "false_suspicions_per_member_h": sum(r.false_suspicions for r in runs) / hours,
        "false_confirmed": sum(r.false_confirmed for r in runs),
    }


def _value(v: str) -> object:
    if v in ("True", "False"):
        return v == "True"
    return float(v) if "." in v else int(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.frontier_sim", description=__doc__)
    ap.add_argument("--presets", default="lan")
    ap.add_argument("--loss", default="0,0.05,0.1")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--window", type=float, default=120.0)
    ap.add_argument("--kills", type=int, default=1, help="kills one after another per seed")
    ap.add_argument(
        "--set", action="append", default=[], help="FIELD=VALUE on every preset (repeatable)"
    )
    args = ap.parse_args(argv)
    changes = {k: _value(v) for k, v in (a.split("=") for a in args.set)}
    cols = [
        "detect_p50_s",
        "first_failed_s",
        "first_confirmed_s",
        "timer_confirmations",
        "missed",
        "false_failed_probes_per_member_h",
        "false_suspicions_per_member_h",
        "false_confirmed",
    ]
    print("| preset | loss | " + " | ".join(c.replace("_", " ") for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name in args.presets.split(","):
        config = PRESETS[name].with_(**changes)
        for loss in (float(x) for x in args.loss.split(",")):
            runs = [
                run_seed(s, args.n, config, loss, args.window, args.kills)
                for s in range(args.seeds)
            ]
            s = summary(runs, args.window, args.n)
            print(f"| {name} | {loss:.0%} | " + " | ".join(f"{s[c]:.3g}" for c in cols) + " |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

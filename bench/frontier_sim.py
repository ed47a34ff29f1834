"""The frontier in the simulator: detection against false suspicions, per preset and loss, seeded.

    python -m bench.frontier_sim [--presets lan] [--loss 0,0.05,0.1] [--seeds 20] [--n 10]
                                 [--window 120]

A fast, deterministic companion of `bench.frontier` (real processes in network namespaces, against
Serf) for iterating on the protocol: per seed, a converged ring of `--n` members in
`pysup.testing.simnet` with every datagram lost with probability `loss` (streams see it as TCP
does: lost packets resent after a retransmission timeout, `NetProfile.stream_loss`), then
`--window` virtual seconds counting failed probes of live members (each a false suspicion or
confirmation), suspicions started and false Confirmed; then one member crashes and we time its
first failed probe, the confirmations of the timer that decided, and Confirmed at every member.
Medians over seeds. Virtual time only: CPU load, scheduling and real TCP are `bench.frontier`'s.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass, field

from pysup.butterfly.config import PRESETS, GossipConfig
from pysup.butterfly.effects import Effect, MemberChanged, ProbeFailed
from pysup.butterfly.member import Health
from pysup.testing.simnet import NetProfile, SimNetwork, SimNode


@dataclass
class SeedRun:
    false_failed_probes: int = 0
    false_suspicions: int = 0
    false_confirmed: int = 0
    first_failed_s: float = math.nan
    timer_confirmations: list[int] = field(default_factory=list)
    first_confirmed_s: float = math.nan
    all_confirmed_s: float = math.nan


def run_seed(seed: int, n: int, config: GossipConfig, loss: float, window_s: float) -> SeedRun:
    sim = SimNetwork(seed, config, NetProfile(loss=loss, stream_loss=True))
    for _ in range(n):
        sim.add_member()
    sim.converge_instantly()
    out = SeedRun()
    victim: list[str] = []
    t0 = [math.inf]
    confirmed: dict[str, float] = {}

    def observe(node: SimNode, e: Effect, now: float) -> None:
        target = e.member_id if isinstance(e, ProbeFailed) else None
        if isinstance(e, MemberChanged):
            target = e.member.id
        if target is None:
            return
        if now < t0[0]:  # the window: every failure and suspicion is false
            if isinstance(e, ProbeFailed):
                out.false_failed_probes += 1
            elif e.member.health == Health.SUSPECT and e.suspected_by == node.id:
                out.false_suspicions += 1
            elif e.member.health == Health.CONFIRMED:
                out.false_confirmed += 1
            return
        if target != victim[0]:
            return
        if isinstance(e, ProbeFailed):
            if math.isnan(out.first_failed_s):
                out.first_failed_s = now - t0[0]
        elif e.member.health == Health.CONFIRMED and node.id not in confirmed:
            confirmed[node.id] = now - t0[0]
            if e.confirmations >= 0:
                out.timer_confirmations.append(e.confirmations)

    sim.observers.append(observe)
    sim.run_for(window_s)
    nodes = list(sim.nodes.values())
    dead = nodes[sim.rng.randrange(n)]
    victim.append(dead.id)
    t0[0] = sim.now
    sim.crash(dead)
    limit = 30 + 1.5 * (config.suspicion_max_s(n) + config.probe_interval_s * 8)
    sim.run_for(limit, lambda: len(confirmed) == n - 1)
    if confirmed:
        out.first_confirmed_s = min(confirmed.values())
    if len(confirmed) == n - 1:
        out.all_confirmed_s = max(confirmed.values())
    return out


def _med(xs: list[float]) -> float:
    ys = [x for x in xs if not math.isnan(x)]
    return statistics.median(ys) if ys else math.nan


def summary(runs: list[SeedRun], window_s: float, n: int) -> dict[str, float]:
    hours = len(runs) * n * window_s / 3600
    return {
        "detect_p50_s": _med([r.all_confirmed_s for r in runs]),
        "first_failed_s": _med([r.first_failed_s for r in runs]),
        "first_confirmed_s": _med([r.first_confirmed_s for r in runs]),
        "timer_confirmations": _med([float(c) for r in runs for c in r.timer_confirmations]),
        "missed": sum(1 for r in runs if math.isnan(r.all_confirmed_s)),
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
            runs = [run_seed(s, args.n, config, loss, args.window) for s in range(args.seeds)]
            s = summary(runs, args.window, args.n)
            print(f"| {name} | {loss:.0%} | " + " | ".join(f"{s[c]:.3g}" for c in cols) + " |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

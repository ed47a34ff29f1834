"""Gossip convergence in the simulator: N SwimCores in one process, in virtual time.

    python -m bench.sim --members 1000 --scenario rumor --seed 1 --profile lan --json

Scenarios (every time is virtual seconds from the stimulus, measured by observers on the
effects each core emits, never by scanning the nodes):

- ``bootstrap``: all members join one seed at t=0; per member, the time until it sees every other
  member Alive (``all_s``: the last member).
- ``rumor``: a converged ring idles a few seconds, then one small ServiceRumor is published at a
  random member; per member, the time until it has it. Several rumors per repeat.
- ``failure``: a converged ring idles, one member crashes; per live member, the time until it
  marks the victim Confirmed.
- ``loss``: 1% datagram loss for 10 virtual minutes; ``false_positives`` counts distinct live
  members that anyone ever marked Confirmed.
- ``idle``: a converged ring idles 60 virtual seconds: what a big ring costs in wall time.
- ``big`` (goal 5 of issue 18, N=10,000): one converged ring, built once and timed apart
  (``build_wall_s``), idles 60 virtual seconds (``idle_wall_s``: the wall time of that minute),
  then carries 5 rumors (samples: arrival times). A converged ring holds N^2 member records
  (~260-350 B each: ~26-33 GiB at N=10,000), so `memory_problem` refuses sizes that do not fit.

``msgs_per_member_s`` and ``bytes_per_member_s`` are datagrams (and datagram + stream bytes) sent
per member per virtual second over the measured window. ``floor_s`` is the dissemination lower
bound ``ceil(log_(1+fanout) N) * gossip_interval``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.measure import Result, percentile, write_results
from pysup.butterfly.config import PRESETS, GossipConfig
from pysup.butterfly.effects import Effect, MemberChanged, RumorChanged
from pysup.butterfly.member import Health
from pysup.butterfly.messages import ServiceRumor
from pysup.testing.simnet import NetProfile, SimNetwork, SimNode

SCENARIOS = ("bootstrap", "rumor", "failure", "loss", "idle", "big")

NET_PROFILES: dict[str, NetProfile] = {
    "lan": NetProfile(latency_s=0.0005, jitter_s=0.0005),
    "local": NetProfile(latency_s=0.0001, jitter_s=0.0001),
    "wan": NetProfile(latency_s=0.030, jitter_s=0.010, stream_timeout_s=3.0),
    "habitat": NetProfile(latency_s=0.0005, jitter_s=0.0005),
}
"""Network used with each gossip preset: the preset's intended environment."""

IDLE_BEFORE_S = 5.0
"""Virtual seconds a converged ring runs before a stimulus, so timers are spread out."""
RUMORS_PER_REPEAT = 5
LOSS_RUN_S = 600.0
LOSS_RATE = 0.01
IDLE_RUN_S = 60.0
BYTES_PER_RECORD = 350.0
"""Memory of one member record in one core of a converged simulated ring: a converged ring
holds N^2 of them. Measured (CPython 3.11, growth of ru_maxrss over `converge_instantly`) 348 /
282 / 261 B at N = 1,500 / 2,000 / 3,000 (it steps with the hash tables' sizes): the record is
in seven per-core indexes (`MemberTable`: by id, live, proven, proven and live, heard, heard
and live, the probe round). The earlier 110 B (measured before the heard indexes) let an
N=10,000 ring start here and be killed by the kernel at 19 GB; this value refuses it."""
BIG_IDLE_BUDGET_S = 300.0
"""Wall seconds `big` lets its idle minute take (goal 5's own limit); past it the minute is cut
short and reported as the virtual seconds reached."""
BIG_RUMOR_BUDGET_S = 300.0
"""Wall seconds after which `big` sends no further rumor."""
MEMORY_SLACK_MIB = 1024.0
"""Left free for everything else on the machine when deciding whether a ring fits."""


def floor_s(config: GossipConfig, n: int) -> float:
    """Fewest gossip rounds that can reach N members with fanout f, times the round length."""
    if n <= 1:
        return 0.0
    return math.ceil(math.log(n) / math.log(1 + config.gossip_nodes)) * config.gossip_interval_s


@dataclass
class Run:
    """The outcome of one repeat."""

    samples: list[float] = field(default_factory=list)
    all_s: float = math.nan
    timeouts: int = 0
    false_positives: int = 0
    datagrams: int = 0
    total_bytes: int = 0
    member_seconds: float = 0.0
    virtual_s: float = 0.0
    idle_wall_s: float = math.nan
    idle_virtual_s: float = math.nan
    rumors: int = 0


def _traffic(net: SimNetwork) -> tuple[int, int]:
    return net.stats.datagrams, net.stats.datagram_bytes + net.stats.stream_bytes


def _account(run: Run, net: SimNetwork, start: tuple[int, int], t0: float, live: int) -> None:
    d, b = _traffic(net)
    run.datagrams += d - start[0]
    run.total_bytes += b - start[1]
    run.member_seconds += live * (net.now - t0)
    run.virtual_s += net.now - t0


def estimate_mib(n: int) -> float:
    """Resident memory a converged ring of n members needs (member records dominate)."""
    return 100.0 + BYTES_PER_RECORD * n * n / 2**20


def _available_mib() -> float | None:
    """MemAvailable in MiB (None where /proc/meminfo cannot tell)."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(x.split()[1]) / 1024 for x in f if x.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def memory_problem(n: int, available_mib: float | None = None) -> str | None:
    """Why a converged ring of n cannot be built here (None: it fits)."""
    if available_mib is None:
        available_mib = _available_mib()
        if available_mib is None:
            return None
    need = estimate_mib(n)
    if need + MEMORY_SLACK_MIB > available_mib:
        return (
            f"needs ~{need:.0f} MiB (+{MEMORY_SLACK_MIB:.0f} slack), {available_mib:.0f} available"
        )
    return None


BIG_FALLBACK_SHARE = 0.75
"""When the asked size does not fit, the suite runs the largest multiple of 1,000 whose estimate
stays under this share of MemAvailable (the estimate is within a few % of the measured peak at
N=6,000; the margin keeps the kernel's OOM killer away from colleagues' processes)."""


def largest_fitting(n: int, available_mib: float | None = None, step: int = 1000) -> int | None:
    """The largest multiple of `step` below `n` that fits with margin (None: not even `step`)."""
    if available_mib is None:
        available_mib = _available_mib()
        if available_mib is None:
            return None
    k = (n - 1) // step * step
    while k >= step and estimate_mib(k) > BIG_FALLBACK_SHARE * available_mib:
        k -= step
    return k if k >= step else None


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _ring(seed: int, n: int, config: GossipConfig, net: NetProfile) -> SimNetwork:
    sim = SimNetwork(seed, config, net)
    for _ in range(n):
        sim.add_member()
    return sim


def _built(seed: int, n: int, config: GossipConfig, net: NetProfile) -> SimNetwork:
    """A converged ring, its heap then frozen out of the cyclic garbage collector.

    A converged ring is N^2 references in long-lived tables (10^8 at N=10,000), and every full
    collection walked them all: at N=2,000 that was 38 collections and 13.7 of the idle
    minute's 39.6 wall seconds, and it grows with N^2 per virtual second. The tables hold no
    cycles to collect, so the collector is off while they are built and their objects are then
    moved to its permanent generation (`gc.freeze`); `run` unfreezes after each repeat."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        sim = _ring(seed, n, config, net)
        sim.converge_instantly()
        gc.collect()
        gc.freeze()
    finally:
        if enabled:
            gc.enable()
    return sim


def _converged(seed: int, n: int, config: GossipConfig, net: NetProfile) -> SimNetwork:
    sim = _built(seed, n, config, net)
    sim.run_for(IDLE_BEFORE_S)
    return sim


BUILD_WALL: list[float] = [0.0]
"""Wall seconds the last scenario spent building its converged ring (reported apart from the
scenario itself: at N=10,000 building is 10^8 member records)."""


def _timed_converged(seed: int, n: int, config: GossipConfig, net: NetProfile) -> SimNetwork:
    t = time.perf_counter()
    sim = _built(seed, n, config, net)
    BUILD_WALL[0] = time.perf_counter() - t
    return sim


def run_bootstrap(seed: int, n: int, config: GossipConfig, net: NetProfile, limit: float) -> Run:
    sim = _ring(seed, n, config, net)
    nodes = list(sim.nodes.values())
    alive: dict[str, set[str]] = {node.id: set() for node in nodes}
    done_at: dict[str, float] = {}

    def observe(node: SimNode, e: Effect, now: float) -> None:
        if not isinstance(e, MemberChanged):
            return
        seen = alive[node.id]
        if e.member.health == Health.ALIVE:
            seen.add(e.member.id)
            if len(seen) == n - 1 and node.id not in done_at:
                done_at[node.id] = now
        else:
            seen.discard(e.member.id)

    sim.observers.append(observe)
    start = _traffic(sim)
    for node in nodes[1:]:
        sim.join(node, [nodes[0]])
    sim.run_until(limit, lambda: len(done_at) == n)
    run = Run(samples=sorted(done_at.values()), timeouts=n - len(done_at))
    run.all_s = max(done_at.values()) if len(done_at) == n else math.nan
    _account(run, sim, start, 0.0, n)
    return run


def _rumors(
    sim: SimNetwork, n: int, limit: float, run: Run, wall_budget_s: float = math.inf
) -> None:
    """RUMORS_PER_REPEAT ServiceRumors, one at a time, each from a random member; no new rumor
    once `wall_budget_s` wall seconds have gone (`run.rumors` counts those sent)."""
    nodes = list(sim.nodes.values())
    arrived: dict[str, float] = {}
    wanted: list[str] = [""]  # the service group of the rumor in flight

    def observe(node: SimNode, e: Effect, now: float) -> None:
        if (
            isinstance(e, RumorChanged)
            and isinstance(e.rumor, ServiceRumor)
            and e.rumor.service_group == wanted[0]
            and node.id not in arrived
        ):
            arrived[node.id] = now

    sim.observers.append(observe)
    worst: list[float] = []
    deadline = time.perf_counter() + wall_budget_s

    def over() -> bool:
        return time.perf_counter() > deadline

    for i in range(RUMORS_PER_REPEAT):
        if over():
            break
        run.rumors += 1
        origin = nodes[sim.rng.randrange(n)]
        wanted[0] = f"bench{i}.default"
        arrived.clear()
        rumor = ServiceRumor(origin.id, wanted[0], 1, "core/bench/1.0.0/20260101000000")
        t0 = sim.now
        start = _traffic(sim)
        sim.publish(origin, rumor)
        sim.run_for(limit, lambda: len(arrived) == n or over())  # a cut rumor: timeouts
        _account(run, sim, start, t0, n)
        times = [t - t0 for nid, t in arrived.items() if nid != origin.id]
        run.samples.extend(times)
        run.timeouts += n - len(arrived)
        worst.append(max(times) if len(arrived) == n else math.nan)
        sim.run_for(1.0, over)  # let the retransmissions of this rumor drain
    sim.observers.remove(observe)
    run.all_s = max(worst, default=math.nan)


def run_rumor(seed: int, n: int, config: GossipConfig, net: NetProfile, limit: float) -> Run:
    sim = _converged(seed, n, config, net)
    run = Run()
    _rumors(sim, n, limit, run)
    return run


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] bench.sim: {msg}", file=sys.stderr, flush=True)


def run_big(seed: int, n: int, config: GossipConfig, net: NetProfile, limit: float) -> Run:
    """One converged ring (built once: the expensive part at N=10,000) idles IDLE_BEFORE_S,
    carries RUMORS_PER_REPEAT rumors (samples), then idles IDLE_RUN_S virtual seconds timed on
    their own (`idle_wall_s`). The rumors stop at BIG_RUMOR_BUDGET_S wall seconds and the idle
    minute at BIG_IDLE_BUDGET_S, so a ring too slow for the goal still ends with what it
    reached (`rumors`, `idle_virtual_s`). Rumors come first, so a slow idle minute cannot cut
    them short (the members' push-pulls are spread over their interval as in a long-formed ring:
    `SimNetwork.converge_instantly`)."""
    sim = _timed_converged(seed, n, config, net)
    _progress(f"N={n} converged ring built in {BUILD_WALL[0]:.0f} s; rumors")
    sim.run_for(IDLE_BEFORE_S)
    run = Run()
    _rumors(sim, n, limit, run, BIG_RUMOR_BUDGET_S)
    _progress(f"{run.rumors} rumors, {len(run.samples)} arrivals; idling {IDLE_RUN_S:g} s")
    start = _traffic(sim)
    t0, t = sim.now, time.perf_counter()

    def over() -> bool:  # checked after every simulated event
        return time.perf_counter() - t > BIG_IDLE_BUDGET_S

    while sim.now < t0 + IDLE_RUN_S - 1e-9 and not over():
        sim.run_until(min(t0 + IDLE_RUN_S, math.floor(sim.now / 10.0 + 1) * 10.0), over)
        _progress(f"idle {sim.now - t0:.1f} virtual s after {time.perf_counter() - t:.0f} s wall")
    run.idle_wall_s = time.perf_counter() - t
    run.idle_virtual_s = sim.now - t0
    _account(run, sim, start, t0, n)
    return run


def run_failure(seed: int, n: int, config: GossipConfig, net: NetProfile, limit: float) -> Run:
    sim = _converged(seed, n, config, net)
    nodes = list(sim.nodes.values())
    victim = nodes[sim.rng.randrange(n)]
    confirmed: dict[str, float] = {}

    def observe(node: SimNode, e: Effect, now: float) -> None:
        if (
            isinstance(e, MemberChanged)
            and e.member.id == victim.id
            and e.member.health >= Health.CONFIRMED
            and node.id not in confirmed
        ):
            confirmed[node.id] = now

    sim.observers.append(observe)
    t0 = sim.now
    start = _traffic(sim)
    sim.crash(victim)
    sim.run_for(limit, lambda: len(confirmed) == n - 1)
    run = Run(samples=sorted(t - t0 for t in confirmed.values()), timeouts=n - 1 - len(confirmed))
    run.all_s = max(run.samples) if run.timeouts == 0 else math.nan
    _account(run, sim, start, t0, n - 1)
    return run


def run_loss(seed: int, n: int, config: GossipConfig, net: NetProfile, limit: float) -> Run:
    lossy = NetProfile(LOSS_RATE, net.duplicate, net.latency_s, net.jitter_s, net.stream_timeout_s)
    sim = _built(seed, n, config, lossy)
    wrongly: set[str] = set()

    def observe(node: SimNode, e: Effect, now: float) -> None:
        if isinstance(e, MemberChanged) and e.member.health == Health.CONFIRMED:
            wrongly.add(e.member.id)  # nobody crashed: every Confirmed is a false positive

    sim.observers.append(observe)
    start = _traffic(sim)
    sim.run_for(LOSS_RUN_S)
    run = Run(false_positives=len(wrongly))
    _account(run, sim, start, 0.0, n)
    return run


def run_idle(seed: int, n: int, config: GossipConfig, net: NetProfile, limit: float) -> Run:
    sim = _built(seed, n, config, net)
    start = _traffic(sim)
    sim.run_for(IDLE_RUN_S)
    run = Run()
    _account(run, sim, start, 0.0, n)
    return run


RUNNERS: dict[str, Callable[[int, int, GossipConfig, NetProfile, float], Run]] = {
    "bootstrap": run_bootstrap,
    "rumor": run_rumor,
    "failure": run_failure,
    "loss": run_loss,
    "idle": run_idle,
    "big": run_big,
}


def time_limit(scenario: str, config: GossipConfig, n: int) -> float:
    """Virtual seconds after which a run gives up waiting (well past every target)."""
    lifeguard = (
        config.probe_interval_s * config.awareness_max_multiplier + config.suspicion_max_s(n)
    ) * 2
    return {
        "bootstrap": 120.0 + floor_s(config, n) * 10,
        "rumor": 30.0 + floor_s(config, n) * 10,
        "big": 30.0 + floor_s(config, n) * 10,
        "failure": lifeguard + 60.0,
    }.get(scenario, 0.0)


def targets(scenario: str, profile: str, n: int, out: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets that apply to this run (LAN numbers are stated for N=1000; smaller
    rings must meet them too)."""
    found: list[tuple[str, float | None, float]] = []
    if profile == "lan":
        # A percentile of the arrivals that came would flatter a rumor some members never got:
        # with missed arrivals there is no value, and the target is missed.
        rumor_p99 = None if out["timeouts"] else out["p99_s"]
        if scenario == "rumor":
            found.append(("rumor p99 <= 1.5 s", rumor_p99, 1.5))
        elif scenario == "failure":
            found.append(("failure median <= 15 s", out["p50_s"], 15.0))
        elif scenario == "bootstrap":
            found.append(("bootstrap p99 <= 30 s", out["p99_s"], 30.0))
        elif scenario == "idle" and n >= 1000:
            found.append(("60 virtual s idle in < 60 wall s", out["wall_s"] / out["repeat"], 60.0))
        elif scenario == "big":
            # Goal 5 of issue 18 (stated for N=10,000): rumor p99 and the idle minute's wall time.
            found.append(("rumor p99 <= 1.5 s", rumor_p99, 1.5))
            # A minute cut short by the budget missed the goal: the wall time it would have
            # taken at the pace reached is what the report shows.
            idle = out["idle_wall_s"] * IDLE_RUN_S / max(1e-9, out["idle_virtual_s"])
            found.append(("60 virtual s idle <= 300 wall s", idle, 300.0))
    if scenario == "loss":
        found.append(("0 false positives at 1% loss", float(out["false_positives"]), 0.0))
    missed = f"{out['timeouts']} arrivals missed" if out["timeouts"] else ""
    return [
        {
            "target": name,
            "value": value,
            "limit": limit,
            "met": value is not None and value <= limit,
            "note": missed if name.startswith("rumor") else "",
        }
        for name, value, limit in found
    ]


METRIC_OF = {
    "bootstrap": "bootstrap",
    "rumor": "event",
    "failure": "failure_detection",
    "loss": "false_positives",
    "idle": "idle_wall",
    "big": "event",
}


def run(
    n: int, scenario: str, seed: int, profile: str, repeat: int
) -> tuple[dict[str, Any], Result]:
    config = PRESETS[profile]
    net = NET_PROFILES[profile]
    limit = time_limit(scenario, config, n)
    runs: list[Run] = []
    wall0 = time.perf_counter()
    for r in range(repeat):
        runs.append(RUNNERS[scenario](seed + r, n, config, net, limit))
        gc.unfreeze()  # the repeat's ring (`_built`) may be collected again
    wall = time.perf_counter() - wall0
    samples = [x for r in runs for x in r.samples]
    member_s = sum(r.member_seconds for r in runs)
    out: dict[str, Any] = {
        "members": n,
        "scenario": scenario,
        "profile": profile,
        "seed": seed,
        "repeat": repeat,
        "n_samples": len(samples),
        "p50_s": percentile(samples, 50) if samples else None,
        "p99_s": percentile(samples, 99) if samples else None,
        "all_s": max((r.all_s for r in runs), default=math.nan) if samples else None,
        "timeouts": sum(r.timeouts for r in runs),
        "false_positives": sum(r.false_positives for r in runs),
        "msgs_per_member_s": sum(r.datagrams for r in runs) / member_s if member_s else 0.0,
        "bytes_per_member_s": sum(r.total_bytes for r in runs) / member_s if member_s else 0.0,
        "wall_s": round(wall, 3),
        "build_wall_s": round(BUILD_WALL[0], 3),
        "idle_wall_s": max((r.idle_wall_s for r in runs), default=math.nan),
        "idle_virtual_s": max((r.idle_virtual_s for r in runs), default=math.nan),
        "rumors": sum(r.rumors for r in runs),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "estimated_mib": round(estimate_mib(n)),
        "floor_s": floor_s(config, n),
        "virtual_s": sum(r.virtual_s for r in runs),
    }
    if out["all_s"] is not None and math.isnan(out["all_s"]):
        out["all_s"] = None  # some member never saw it: see `timeouts`
    for key in ("idle_wall_s", "idle_virtual_s"):
        if math.isnan(out[key]):
            out[key] = None  # only `big` times its idle minute apart
    out["targets"] = targets(scenario, profile, n, out)
    result = Result.from_samples(
        "pysup-sim",
        METRIC_OF[scenario],
        n,
        samples,
        unit="s",
        floor={"fanout": config.gossip_nodes, "gossip_interval": config.gossip_interval_s},
        **{k: v for k, v in out.items() if k not in ("members", "p50_s", "p99_s")},
    )
    return out, result


def _human(out: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)

    lines = [
        f"{out['scenario']} N={out['members']} profile={out['profile']} seed={out['seed']} "
        f"repeat={out['repeat']}",
        f"  p50 {f(out['p50_s'])} s  p99 {f(out['p99_s'])} s  all {f(out['all_s'])} s  "
        f"floor {f(out['floor_s'])} s  timeouts {out['timeouts']}  "
        f"false positives {out['false_positives']}",
        f"  {out['msgs_per_member_s']:.2f} msgs/member/s  "
        f"{out['bytes_per_member_s']:.0f} B/member/s  "
        f"virtual {out['virtual_s']:.1f} s  wall {out['wall_s']:.1f} s "
        f"(building the ring {out['build_wall_s']:.1f} s, idle minute {f(out['idle_wall_s'])} s)"
        f"  peak RSS {out['peak_rss_mib']:.0f} MiB (estimated {out['estimated_mib']} MiB)",
    ]
    for t in out["targets"]:
        lines.append(
            f"  target {t['target']}: {f(t['value'])} -> {'met' if t['met'] else 'MISSED'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sim", description=__doc__.split("\n")[0])
    p.add_argument("--members", "-n", type=int, required=True)
    p.add_argument("--scenario", choices=SCENARIOS, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", choices=sorted(PRESETS), default="lan")
    p.add_argument("--repeat", type=int, default=1, help="runs with seeds seed..seed+R-1")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--save", action="store_true", help="also write bench/results/sim-*.json")
    p.add_argument("--force", action="store_true", help="skip the memory check")
    args = p.parse_args(argv)
    if args.members < 2:
        p.error("--members must be at least 2")
    problem = None if args.force else memory_problem(args.members)
    if problem:
        print(json.dumps({"skipped": problem}) if args.json else f"skipped: {problem}")
        return 3
    out, result = run(args.members, args.scenario, args.seed, args.profile, max(1, args.repeat))
    if args.save:
        path = write_results([result], f"sim-{args.scenario}-{args.members}", machine=None)
        out["saved"] = str(path)
    if args.json:
        print(json.dumps(out, allow_nan=False, default=str))
    else:
        print(_human(out))
    if args.save and not args.json:
        print(f"  saved {out['saved']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

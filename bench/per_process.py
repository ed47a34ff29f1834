"""Issue 18, goals 1, 6, 7 and the idle traffic: one `pysup run` process per member against one
Serf agent per member, same N, back to back in the same run.

    python -m bench.per_process --members 10 [--quick] [--no-serf] [--profile-burst 20]

One pysup session per N (a fresh `ProcRing`), in this order:

1. ``bootstrap``: the seed, then N-1 members spawned at once (t0 before spawning: includes each
   interpreter's start, as Serf's includes its Go binary's); split into ``bootstrap_started``
   (t0 to each member's `supervisor.started`) and ``bootstrap_after_last_start`` (the last
   member's start to each full view: what joining and gossip take once everyone runs).
2. idle window on the converged ring: per process ``cpu`` (CPU s/s, reaped children included),
   ``rss`` and ``pss`` (`/proc/<pid>/smaps_rollup`), and ``traffic`` by message kind from every
   member's own `/metrics` at both ends of the window (push-pull included; the window defaults to
   twice the push-pull interval at N so push-pull is sampled, capped at 180 s).
3. ``startups`` new members, one after another, each joining the seed: ``startup_healthz``
   (spawn to the first `/healthz` 200), ``startup_joined`` (spawn to its first member Alive),
   ``join`` (until each existing member lists it Alive). All but the last leave (SIGTERM).
4. ``failure_detection``: kill -9 of the last newcomer, until each survivor lists it Confirmed.
5. ``burst`` (goal 6, `bench.burst`): `svc load` of the trivial plan on all N at once.
6. ``event`` / ``reconfigure`` / ``health_census`` (goal 7, `bench.e2e`).

Then one Serf session at the same N (`bench.serf.run_serf_bench`: bootstrap, idle cpu/rss/pss,
join with start-up, user events, failure detection).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import traffic
from bench.burst import load_burst, make_plan
from bench.e2e import config_apply, health_change
from bench.measure import Result, SampleAccumulator, summary_json
from bench.procs import SYSTEM, ProcRing, http_get_many, procs_capacity
from pysup.butterfly.config import PRESETS

IDLE_WINDOW_CAP_S = 180.0


@dataclass(frozen=True)
class Options:
    profile: str = "lan"
    idle_window_s: float | None = None
    """None: 2 x the push-pull interval at N (so push-pull traffic is sampled), capped."""
    startups: int = 3
    burst: bool = True
    e2e: bool = True
    configs: int = 2
    """`config apply` rounds (each one ``event`` + ``reconfigure`` sample set)."""
    health_interval_s: float = 5.0
    """Health-check interval of the loaded service (its hook runs this often on every member)."""
    profile_burst_s: float = 0.0
    """> 0: py-spy records one member this long from the start of the burst."""
    cprofile_burst: str | None = None
    """A path: member 1 runs under cProfile over the burst's window; its stats are kept there."""
    serf: bool = True
    serf_events: int = 3
    seed: int | None = None


QUICK = Options(idle_window_s=20.0, startups=2, configs=1, serf_events=2)
BURST_COUNTS = (
    "false_suspicions",
    "suspected_members",
    "suspecting_members",
    "false_confirmed",
    "refutations",
    "aftermath_suspicions",
    "aftermath_confirmed",
    "window_s",
    "cpu_s_per_load",
)
"""What the command line prints of the burst besides the headline lines."""
BURST_ONLY: dict[str, Any] = {"idle_window_s": 10.0, "startups": 0, "e2e": False, "serf": False}
"""`--burst-only`: what goal 6 needs (the idle window gives the CPU subtracted from the burst)."""


def idle_window(opts: Options, n: int) -> float:
    if opts.idle_window_s is not None:
        return opts.idle_window_s
    return min(IDLE_WINDOW_CAP_S, 2.0 * PRESETS[opts.profile].push_pull_s(n))


def _census_poll_s(n: int) -> float:
    """Poll each member's view at most this often: the polling itself costs the members CPU."""
    return max(0.25, n / 100.0)


async def _scrape(ring: ProcRing) -> dict[int, traffic.Counters]:
    members = ring.live
    answers = await http_get_many([m.http for m in members], "/metrics")
    return {
        m.index: traffic.gossip_counters(body.decode(errors="replace"))
        for m, (status, body, _) in zip(members, answers, strict=True)
        if status == 200
    }


def run_pysup(n: int, opts: Options, say: Callable[[str], None]) -> list[Result]:
    rng = random.Random(opts.seed)
    cfg = PRESETS[opts.profile]
    acc = {
        k: SampleAccumulator()
        for k in ("bootstrap", "join", "failure_detection", "event", "reconfigure")
    }
    out: list[Result] = []
    meta: dict[str, Any] = {
        "profile": opts.profile,
        "host_mode": "one `pysup run` process per member",
        "floor": {"fanout": cfg.gossip_nodes, "gossip_interval": cfg.gossip_interval_s},
    }

    def add(metric: str, samples: list[float], unit: str | None = None, **kw: Any) -> None:
        out.append(Result.from_samples(SYSTEM, metric, n, samples, unit, **meta, **kw))

    tag = f"{SYSTEM} n={n}"
    cprof = 1 if opts.cprofile_burst else None
    with ProcRing(n, profile=opts.profile, cprofile_index=cprof) as ring:
        say(f"{tag}: bootstrap (spawning {n} processes)")
        acc["bootstrap"].add(ring.bootstrap())
        # The bootstrap split in two: interpreter start-up (N at once) and the join itself.
        add("bootstrap_started", ring.boot_started, "s", t0="just before spawning N-1 members")
        add("bootstrap_after_last_start", ring.boot_after_last, "s", t0="the last member started")
        time.sleep(5.0)
        window = idle_window(opts, n)
        say(f"{tag}: idle {window:g}s (cpu, rss, pss, traffic by kind)")
        before = asyncio.run(_scrape(ring))
        t_a = time.monotonic()
        use = ring.usage(window)
        after = asyncio.run(_scrape(ring))
        secs = time.monotonic() - t_a
        per_member = [traffic.rates(before[i], after[i], secs) for i in after if i in before]
        add("cpu", use["cpu"], window_s=use["wall"])
        add("rss", use["rss"])
        add("pss", use["pss"], "MiB", pss_anon=use["pss_anon"])
        add(
            "traffic",
            traffic.totals(per_member),
            "B/s",
            by_kind=traffic.mean_by_kind(per_member),
            window_s=secs,
            push_pull_interval_s=cfg.push_pull_s(n),
        )
        startup: dict[str, list[float]] = {"healthz": [], "joined": []}
        victim = None
        for k in range(opts.startups):
            say(f"{tag}: start-up {k + 1}/{opts.startups}")
            got = ring.start_one()
            acc["join"].add(got["join"])
            for key in startup:
                if got[key] is not None:
                    startup[key].append(got[key])
            if k < opts.startups - 1:
                ring.leave(got["member"])
            else:
                victim = got["member"]
            time.sleep(1.0)
        for key, samples in startup.items() if opts.startups else ():
            add(f"startup_{key}", samples, "s", t0="just before spawning the interpreter")
        if victim is not None:
            time.sleep(2.0 + rng.random())
            say(f"{tag}: failure detection")
            wait = 30.0 + 1.5 * (
                cfg.suspicion_max_s(n) + cfg.probe_interval_s * cfg.awareness_max_multiplier
            )
            acc["failure_detection"].add(ring.kill(victim, wait))
        if opts.burst or opts.e2e:
            _service_phases(ring, n, opts, rng, use["cpu"], acc, add, say)
    for metric, a in acc.items():
        if a.samples or a.timeouts:
            add(metric, a.samples, all_s=a.all_s, timeouts=a.timeouts)
    return out


def _service_phases(
    ring: ProcRing,
    n: int,
    opts: Options,
    rng: random.Random,
    idle_cpu: list[float],
    acc: dict[str, SampleAccumulator],
    add: Callable[..., None],
    say: Callable[[str], None],
) -> None:
    tag = f"{SYSTEM} n={n}"
    plan = make_plan(ring.workdir)
    idle = sum(idle_cpu) / len(idle_cpu) if idle_cpu else 0.0
    b = load_burst(
        ring,
        plan,
        idle_cpu_per_process=idle,
        health_interval_s=opts.health_interval_s,
        profile_s=opts.profile_burst_s,
        cprofile_out=Path(opts.cprofile_burst) if opts.cprofile_burst else None,
        say=lambda m: say(f"{tag}: {m}"),
    )
    burst_meta = {k: v for k, v in b.items() if k not in ("up_s",)}
    add("burst_false_suspicions", [b["false_suspicions"]], "lines", **burst_meta)
    add("burst_cpu_per_load", [b["cpu_s_per_load"]], "cpu_s", **burst_meta)
    add("burst_up", b["up_s"], "s", timeouts=b["not_up"])
    if not opts.e2e:
        return
    time.sleep(3.0)
    for v in range(1, opts.configs + 1):
        say(f"{tag}: config apply {v}/{opts.configs}")
        got = config_apply(ring, v, rng)
        acc["event"].add(got["event"])
        acc["reconfigure"].add(got["reconfigure"])
        time.sleep(1.0)
    say(f"{tag}: health change")
    h = health_change(ring, rng, _census_poll_s(n))
    if "error" in h:
        say(f"{tag}: health change: {h['error']}")
        return
    add(
        "health_census",
        h["samples"],
        "s",
        timeouts=h["misses"],
        via=h["via"],
        poll_s=h["poll_s"],
        detect_s=h["detect_s"],
        t0="the victim logged health.changed",
    )


def run_per_process(n: int, opts: Options, say: Callable[[str], None]) -> list[Result]:
    """The pysup session, then Serf's, at ring size n."""
    say(f"{SYSTEM} n={n}: capacity check (one member)")
    problem = procs_capacity(n, opts.profile)
    out: list[Result] = []
    if problem:
        say(f"{SYSTEM} n={n}: skipped ({problem})")
    else:
        out += run_pysup(n, opts, say)
    if opts.serf:
        from bench.serf import run_serf_bench
        from bench.serf_env import capacity_problem

        problem = capacity_problem(n)
        if problem:
            say(f"serf n={n}: skipped ({problem})")
        else:
            out += asyncio.run(
                run_serf_bench(
                    n,
                    1,
                    idle_window=idle_window(opts, n),
                    events=opts.serf_events,
                    seed=opts.seed,
                    progress=say,
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.per_process", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--members", "-n", type=int, required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--profile", default="lan", help="gossip preset by name (bench: any PRESETS)")
    ap.add_argument("--no-serf", action="store_true")
    ap.add_argument("--profile-burst", type=float, default=0.0, metavar="SECONDS")
    ap.add_argument(
        "--cprofile-burst",
        metavar="PATH",
        help="member 1 runs under cProfile during the burst; its stats are kept at PATH and "
        "summarised by function family (bench.cprof_table)",
    )
    ap.add_argument(
        "--burst-only",
        action="store_true",
        help="bootstrap, a short idle window and the burst (goal 6) only: no start-ups, "
        "failure detection or end-to-end phases (N=100 is heavy on a small machine)",
    )
    args = ap.parse_args(argv)
    opts = replace(
        QUICK if args.quick else Options(),
        profile=args.profile,
        serf=not args.no_serf,
        profile_burst_s=args.profile_burst,
        cprofile_burst=args.cprofile_burst,
    )
    if args.burst_only:
        opts = replace(opts, **BURST_ONLY)
    for r in run_per_process(args.members, opts, lambda m: print(m, file=sys.stderr)):
        print(summary_json(r))
        if r.metric == "burst_false_suspicions":  # the burst's counts, not only the headline
            print(json.dumps({k: r.meta[k] for k in BURST_COUNTS if k in r.meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

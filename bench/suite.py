"""The parts of `python -m bench` as jobs: what each runs, at which sizes, in which order.

Parts (issue 18's goals in brackets), in run order:

| part | what |
|---|---|
| startup | lone `pysup run`: start-up, memory floor, `-X importtime`, tracemalloc (2) |
| procs | one process per member vs one Serf agent per member: convergence, CPU, RSS, PSS, |
|  | start-up (1); idle traffic by kind; `svc load` burst (6); config / health end to end (7) |
| http | `/services` and `/census` under wrk, 10 services (7) |
| frontier | detection vs false positives at 0/5/10% loss in namespaces, presets vs Serf (3) |
| scale | N=1000 on real UDP, many members per process, per-phase timeouts (4) |
| udp | many members per process on real UDP at the sizes (the scale mode, labelled so) |
| sim | the simulator at the sizes (+ 1000, 2000) |
| sim10k | the simulator at N=10,000: rumor p99 and the idle minute's wall time (5) |
| habitat-profile | real UDP with Habitat's timings (not run by default) |
| uvloop | real UDP with and without uvloop (not run by default) |

Every phase of every part has a time limit, so the default run is bounded (about 70 minutes on
the project machine; `--quick` about 15) whatever the machine does; `--list` prints the jobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from bench.measure import Result, parse_proc_stat_busy, percentile

PARTS = (
    "startup",
    "procs",
    "http",
    "frontier",
    "scale",
    "udp",
    "sim",
    "sim10k",
    "habitat-profile",
    "uvloop",
)
DEFAULT_PARTS = PARTS[:8]
DEFAULT_SIZES = (10, 50, 100)
QUICK_SIZES = (10,)
SIM_EXTRA_SIZES = (1000, 2000)
"""The simulator also runs bigger rings than real sockets can host here."""
SIM_BIG = 10_000
QUICK_SIM_BIG = 2_000
"""--quick runs the simulator's big scenario at this size (the full size takes ~10 minutes)."""
UVLOOP_SIZES = (100, 250)

Say = Callable[[str], None]


@dataclass
class Job:
    part: str
    system: str
    n: int
    run: Callable[[Say], list[Result]]
    estimate_s: float = 60.0
    """Rough wall time on the project machine, for --list."""


@dataclass
class SuiteOptions:
    parts: tuple[str, ...] = DEFAULT_PARTS
    sizes: tuple[int, ...] = DEFAULT_SIZES
    quick: bool = False
    repeat: int = 1
    presets: tuple[str, ...] = ("lan", "lan-fast")
    """pysup presets in the frontier (any names in PRESETS)."""
    profile_burst_s: float = 0.0
    """> 0: py-spy profile of one member during each load burst."""


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average and the machine's busy CPU fraction (all processes,
    from /proc/stat) every `every` seconds while the suite runs."""

    def __init__(self, every: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self.busy: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()

    @staticmethod
    def _stat() -> tuple[float, float]:
        with open("/proc/stat") as f:
            return parse_proc_stat_busy(f.read())

    def run(self) -> None:
        prev = self._stat()
        while not self._stop.is_set():
            t = round(time.monotonic() - self._t0, 1)
            self.samples.append((t, os.getloadavg()[0]))
            self._stop.wait(self.every)
            cur = self._stat()
            if cur[1] > prev[1]:
                self.busy.append((t, round((cur[0] - prev[0]) / (cur[1] - prev[1]), 3)))
            prev = cur

    def summary(self) -> dict[str, Any]:
        loads = [x for _, x in self.samples]
        busy = [x for _, x in self.busy]
        return {
            "loadavg_1m_samples": list(self.samples),
            "loadavg_1m_p50": percentile(loads, 50) if loads else None,
            "loadavg_1m_max": max(loads) if loads else None,
            "cpu_busy_samples": list(self.busy),
            "cpu_busy_p50": percentile(busy, 50) if busy else None,
            "loadavg_at_end": list(os.getloadavg()),
        }

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        return self.summary()


# --- job builders ------------------------------------------------------------------------------


def _startup_job(quick: bool) -> Callable[[Say], list[Result]]:
    def run(say: Say) -> list[Result]:
        from bench.startup import run_startup

        return run_startup(3 if quick else 5, 5.0 if quick else 8.0, say)

    return run


def _procs_job(n: int, o: SuiteOptions) -> Callable[[Say], list[Result]]:
    def run(say: Say) -> list[Result]:
        from bench import per_process as pp

        opts = replace(pp.QUICK if o.quick else pp.Options(), profile_burst_s=o.profile_burst_s)
        return pp.run_per_process(n, opts, say)

    return run


def _http_job(quick: bool, summary: dict[str, Any]) -> Callable[[Say], list[Result]]:
    def run(say: Say) -> list[Result]:
        from bench.http_load import run_http_bench

        results, got = run_http_bench(duration=5.0 if quick else 10.0, progress=say)
        if not results:
            say(f"http: {got.get('skipped', 'nothing measured')}")
        summary.update(got)
        return results

    return run


def _frontier_job(o: SuiteOptions) -> Callable[[Say], list[Result]]:
    def run(say: Say) -> list[Result]:
        from bench import frontier

        opts = replace(frontier.QUICK if o.quick else frontier.Options(), presets=o.presets)
        return frontier.run_frontier(opts, say)

    return run


def _scale_job(quick: bool) -> Callable[[Say], list[Result]]:
    def run(say: Say) -> list[Result]:
        from bench import scale

        return scale.run_scale(scale.QUICK if quick else scale.Options(), say)

    return run


def _udp_job(n: int, repeat: int, quick: bool, **kw: Any) -> Callable[[Say], list[Result]]:
    def run(say: Say) -> list[Result]:
        from bench.udp import run_udp_bench

        return run_udp_bench(
            n,
            repeat,
            idle_window=5.0 if quick else 10.0,
            churn_window=0.0 if quick else 10.0,
            loss_window=0.0 if quick or n >= 500 else 30.0,
            events=2 if quick else 3,
            progress=say,
            **kw,
        )

    return run


def _sim_job(n: int, repeat: int, quick: bool) -> Callable[[Say], list[Result]]:
    def run(say: Say) -> list[Result]:
        from bench import sim

        out = []
        scenarios = ["bootstrap", "rumor", "failure"] if n <= 500 else ["rumor"]
        if n <= 250 and not quick:
            scenarios.append("loss")
        for sc in scenarios:
            say(f"pysup-sim n={n}: {sc}")
            _, r = sim.run(n, sc, 1, "lan", 1 if sc == "loss" else repeat)
            out.append(r)
        return out

    return run


def _sim_big_job(n: int) -> Callable[[Say], list[Result]]:
    """In a child process: the ring takes ~32 GiB at N=10,000 (refused where it does not fit),
    which a long-lived suite process would keep (CPython rarely returns it to the system)."""

    def run(say: Say) -> list[Result]:
        say(f"pysup-sim n={n}: big (build, idle minute, rumors) in a child process")
        cmd = [sys.executable, "-m", "bench.sim", "-n", str(n), "--scenario", "big", "--json"]
        # Its progress lines (stderr) go straight to the terminal; the result is its stdout.
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=3600, check=False)
        try:
            out = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(
                f"bench.sim exited {done.returncode}: {done.stderr[-800:]}"
            ) from None
        if "skipped" in out:
            return [Result.from_samples("pysup-sim", "sim_big", n, [], "s", skipped=out["skipped"])]
        nan = float("nan")
        p50, p99 = out.get("p50_s"), out.get("p99_s")
        return [
            Result(
                "pysup-sim",
                "sim_big",
                n,
                (),
                nan if p50 is None else float(p50),
                nan if p99 is None else float(p99),
                "s",
                out,
            )
        ]

    return run


def plan_jobs(o: SuiteOptions, http_summary: dict[str, Any]) -> list[Job]:
    jobs: list[Job] = []
    parts = set(o.parts)
    if "startup" in parts:
        jobs.append(Job("startup", "pysup", 1, _startup_job(o.quick), 60))
    if "procs" in parts:
        for n in o.sizes:
            est = 120 + 4 * n + (40 if o.quick else 2 * min(180, 60 * (1 + n // 40)))
            jobs.append(Job("procs", "pysup-procs+serf", n, _procs_job(n, o), est))
    if "http" in parts:
        jobs.append(Job("http", "pysup-http", 10, _http_job(o.quick, http_summary), 60))
    if "frontier" in parts:
        jobs.append(
            Job(
                "frontier",
                "pysup presets+serf",
                5 if o.quick else 10,
                _frontier_job(o),
                270 if o.quick else 1200,
            )
        )
    if "scale" in parts:
        jobs.append(Job("scale", "pysup-udp", 1000, _scale_job(o.quick), 420))
    for n in o.sizes:
        if "udp" in parts:
            jobs.append(Job("udp", "pysup-udp", n, _udp_job(n, o.repeat, o.quick), 30 + n))
        if "habitat-profile" in parts:
            jobs.append(
                Job(
                    "habitat-profile",
                    "pysup-udp-habitat",
                    n,
                    _udp_job(n, 1, True, profile="habitat", system="pysup-udp-habitat"),
                    30 + n,
                )
            )
    if "uvloop" in parts:
        for n in [n for n in UVLOOP_SIZES if n <= max(o.sizes)] or [max(o.sizes)]:
            for on in (False, True):
                name = "pysup-udp-uvloop" if on else "pysup-udp-asyncio"
                run = _udp_job(n, 1, True, use_uvloop=on, system=name)
                jobs.append(Job("uvloop", name, n, run, 30 + n))
    if "sim" in parts:
        for n in sorted({*o.sizes, *(() if o.quick else SIM_EXTRA_SIZES)}):
            jobs.append(Job("sim", "pysup-sim", n, _sim_job(n, o.repeat, o.quick), 5 + n / 20))
    if "sim10k" in parts:
        n = QUICK_SIM_BIG if o.quick else SIM_BIG
        jobs.append(Job("sim10k", "pysup-sim", n, _sim_big_job(n), 40 if o.quick else 600))
        from bench.sim import largest_fitting, memory_problem

        fit = largest_fitting(n) if not o.quick and memory_problem(n) else None
        if fit is not None:  # N=10,000 is reported as skipped; the largest size that fits runs
            jobs.append(Job("sim10k", "pysup-sim", fit, _sim_big_job(fit), 40 + fit / 20))
    return jobs

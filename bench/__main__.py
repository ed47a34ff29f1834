"""The benchmark suite: pysup (simulator, real UDP, one process per member) side by side with
Serf, plus Habitat's timing profile, uvloop on/off and the HTTP gateway under wrk.

    python -m bench [--quick] [--sizes 10,50,100,250] [--systems pysup-udp,serf,...]

Writes ``bench/results/suite-<date>.json`` (every Result, the machine, its load during the run)
and ``bench/results/suite-<date>/report.md`` with the tables, the targets met or missed and one
PNG per metric (convergence time against N, each system a line, the lockstep-rounds floor drawn).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import RESULTS_DIR, Result, describe_machine, merge_results, percentile
from bench.report import floors_from_results, markdown_table, plot_metric

SYSTEMS = ("pysup-sim", "pysup-udp", "pysup-procs", "serf", "habitat-profile", "uvloop", "http")
DEFAULT_SIZES = (10, 50, 100, 250, 500, 1000)
QUICK_SIZES = (10, 50)
SIM_EXTRA_SIZES = (1000, 2000)
"""The simulator also runs bigger rings than real sockets can host here."""
CONVERGENCE = ("bootstrap", "join", "event", "failure_detection")
UDP_MAX = 1000
SERF_MAX = 1000
PROCS_MAX = 250
HABITAT_MAX = 250
UVLOOP_SIZES = (100, 250)


@dataclass
class Job:
    system: str
    n: int
    run: Callable[[Callable[[str], None]], list[Result]]


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every `every` seconds while the suite runs."""

    def __init__(self, every: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.monotonic() - self._t0, 1), os.getloadavg()[0]))
            self._stop.wait(self.every)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        loads = [x for _, x in self.samples]
        return {
            "loadavg_1m_samples": self.samples,
            "loadavg_1m_p50": percentile(loads, 50) if loads else None,
            "loadavg_1m_max": max(loads) if loads else None,
            "loadavg_at_end": list(os.getloadavg()),
        }


# --- jobs ----------------------------------------------------------------------------------


def _sim_job(n: int, repeat: int, quick: bool) -> Callable[[Callable[[str], None]], list[Result]]:
    def run(say: Callable[[str], None]) -> list[Result]:
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


def _udp_job(n: int, repeat: int, quick: bool, **kw: Any) -> Callable[..., list[Result]]:
    def run(say: Callable[[str], None]) -> list[Result]:
        from bench.udp import run_udp_bench

        big = n >= 500
        return run_udp_bench(
            n,
            repeat,
            idle_window=5.0 if quick else 10.0,
            churn_window=0.0 if quick else 10.0,
            loss_window=0.0 if quick or big else 30.0,
            events=2 if quick else 3,
            progress=say,
            **kw,
        )

    return run


def _serf_job(n: int, repeat: int, quick: bool) -> Callable[..., list[Result]]:
    def run(say: Callable[[str], None]) -> list[Result]:
        from bench.serf import run_serf_bench
        from bench.serf_env import capacity_problem

        problem = capacity_problem(n)
        if problem:
            say(f"serf n={n}: skipped ({problem})")
            return []
        return asyncio.run(
            run_serf_bench(n, repeat, idle_window=5.0 if quick else 10.0, progress=say)
        )

    return run


def _procs_job(n: int, repeat: int, quick: bool) -> Callable[..., list[Result]]:
    def run(say: Callable[[str], None]) -> list[Result]:
        from bench.procs import procs_capacity, run_procs_bench

        say(f"pysup-procs n={n}: measuring one member for the capacity check")
        problem = procs_capacity(n)
        if problem:
            say(f"pysup-procs n={n}: skipped ({problem})")
            return []
        return run_procs_bench(n, repeat, idle_window=5.0 if quick else 10.0, progress=say)

    return run


def _http_job(quick: bool) -> Callable[..., list[Result]]:
    def run(say: Callable[[str], None]) -> list[Result]:
        from bench.http_load import run_http_bench

        results, summary = run_http_bench(duration=5.0 if quick else 10.0, progress=say)
        if not results:
            say(f"http: {summary.get('skipped', 'nothing measured')}")
        HTTP_SUMMARY.update(summary)
        return results

    return run


HTTP_SUMMARY: dict[str, Any] = {}


def plan_jobs(systems: Sequence[str], sizes: Sequence[int], repeat: int, quick: bool) -> list[Job]:
    jobs: list[Job] = []
    for n in sizes:
        # pysup and Serf at the same N back to back, so both see similar machine load.
        if "pysup-udp" in systems and n <= UDP_MAX:
            jobs.append(Job("pysup-udp", n, _udp_job(n, 1 if n >= 500 else repeat, quick)))
        if "serf" in systems and n <= SERF_MAX:
            jobs.append(Job("serf", n, _serf_job(n, 1 if n >= 500 else repeat, quick)))
        if "pysup-procs" in systems and n <= PROCS_MAX:
            jobs.append(Job("pysup-procs", n, _procs_job(n, 1, quick)))
        if "habitat-profile" in systems and n <= HABITAT_MAX:
            jobs.append(
                Job(
                    "pysup-udp-habitat",
                    n,
                    _udp_job(n, 1, True, profile="habitat", system="pysup-udp-habitat"),
                )
            )
    if "uvloop" in systems:
        for n in [n for n in UVLOOP_SIZES if n <= max(sizes)] or [max(sizes)]:
            for on in (False, True):
                name = "pysup-udp-uvloop" if on else "pysup-udp-asyncio"
                jobs.append(
                    Job(name, n, _udp_job(n, 1, True, use_uvloop=on, system=name)),
                )
    if "http" in systems:
        jobs.append(Job("http", 10, _http_job(quick)))
    # The simulator last: it needs no sockets, so its numbers do not depend on the load above.
    sim_sizes = sorted({*sizes, *(() if quick else SIM_EXTRA_SIZES)})
    for n in sim_sizes:
        if "pysup-sim" in systems:
            jobs.append(Job("pysup-sim", n, _sim_job(n, repeat, quick)))
    return jobs


# --- targets and report --------------------------------------------------------------------


def _idx(results: Sequence[Result]) -> dict[tuple[str, str, int], Result]:
    return {(r.system, r.metric, r.n): r for r in merge_results(results)}


def check_targets(results: Sequence[Result]) -> list[dict[str, Any]]:
    """The issue's targets, each with the value found and met/missed (None: not measured)."""
    idx = _idx(results)
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, note: str = "") -> None:
        met = None if value is None or math.isnan(value) else value <= limit
        out.append({"target": name, "value": value, "limit": limit, "met": met, "note": note})

    for mine in ("pysup-udp", "pysup-procs", "pysup-sim"):
        for metric in CONVERGENCE:
            for n in sorted({n for (s, m, n) in idx if s == "serf" and m == metric}):
                a, b = idx.get((mine, metric, n)), idx.get(("serf", metric, n))
                if a is None or b is None:
                    continue
                for stat in ("p50", "p99"):
                    x, y = getattr(a, stat), getattr(b, stat)
                    ratio = x / y if y and not math.isnan(y) else math.nan
                    t = a.meta.get("timeouts") or 0
                    add(
                        f"{mine}/serf {metric} {stat} N={n}",
                        math.inf if t else ratio,
                        1.0,
                        f"{t} observers timed out" if t else "",
                    )
    for metric, limit, stat in (("event", 2.0, "p99"), ("bootstrap", 30.0, "p99")):
        r = idx.get(("pysup-udp", metric, 1000))
        t = (r.meta.get("timeouts") or 0) if r else 0
        v = None if r is None else (math.inf if t else getattr(r, stat))
        add(
            f"pysup-udp N=1000 {metric} {stat} <= {limit:g} s",
            v,
            limit,
            f"{t} observers timed out" if t else "",
        )
    for (s, m, n), r in sorted(idx.items()):
        if s == "pysup-udp" and m == "cpu":
            add(f"pysup-udp idle CPU <= 0.3 ms/member/s N={n}", r.p50 * 1000, 0.3, "ms/s")
    r = idx.get(("pysup-udp", "bytes", 100))
    add(
        "pysup-udp idle traffic <= 1 KB/s/member N=100", None if r is None else r.p50, 1000.0, "B/s"
    )
    return out


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isinf(x):
            return "∞"
        if math.isnan(x):
            return "—"
        return f"{x:.3g}"
    return str(x)


def targets_markdown(targets: Sequence[dict[str, Any]]) -> str:
    lines = ["| target | value | limit | met |", "|---|---|---|---|"]
    for t in targets:
        met = "—" if t["met"] is None else ("met" if t["met"] else "**missed**")
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']} | {_fmt(t['value'])}{note} | {_fmt(t['limit'])} | {met} |")
    return "\n".join(lines) + "\n"


def other_table(results: Sequence[Result], metrics: Sequence[str]) -> str:
    rs = sorted(
        (r for r in merge_results(results) if r.metric in metrics),
        key=lambda r: (r.metric, r.system, r.n),
    )
    lines = ["| metric | system | N | p50 | p99 | unit | notes |", "|---|---|---|---|---|---|---|"]
    for r in rs:
        notes = []
        if r.meta.get("timeouts"):
            notes.append(f"{r.meta['timeouts']} timed out")
        for k in ("loss", "window_s", "replaced", "connections"):
            if k in r.meta:
                notes.append(f"{k}={_fmt(r.meta[k])}")
        lines.append(
            f"| {r.metric} | {r.system} | {r.n} | {_fmt(r.p50)} | {_fmt(r.p99)} | {r.unit} "
            f"| {', '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


def write_suite_report(results: Sequence[Result], machine: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = check_targets(results)
    m = machine
    parts = [
        f"# pysup benchmark suite — {m.get('date', '?')}\n",
        f"Machine: {m.get('cores')} cores {m.get('cpu_model')}, {m.get('mem_gib')} GiB, "
        f"Python {m.get('python')}, kernel {m.get('kernel')}. Shared with other work during the "
        f"run: 1-minute load average at start {_fmt((m.get('loadavg_at_start') or [None])[0])}, "
        f"median {_fmt(m.get('loadavg_1m_p50'))}, max {_fmt(m.get('loadavg_1m_max'))} "
        f"(2 cores = load 2.0 saturated).\n",
        "## Targets\n",
        targets_markdown(targets),
    ]
    systems = sorted({r.system for r in results})
    for mine in ("pysup-udp", "pysup-procs", "pysup-sim", "pysup-udp-habitat"):
        if mine in systems:
            parts += [f"## {mine} vs serf\n", markdown_table(results, systems=(mine, "serf"))]
    if "pysup-udp-uvloop" in systems:
        parts += [
            "## uvloop on/off (pysup-udp)\n",
            markdown_table(results, systems=("pysup-udp-uvloop", "pysup-udp-asyncio")),
        ]
    parts += [
        "## Other metrics\n",
        other_table(
            results,
            ("bytes", "rss_process", "cpu_churn", "false_positives", "http_rps", "http_p99"),
        ),
    ]
    # One floor line per distinct timing (systems sharing a profile share a floor).
    by_timing: dict[tuple[int, float], list[str]] = {}
    for system, timing in sorted(floors_from_results(results).items()):
        by_timing.setdefault(timing, []).append(system)
    named = {(3, 0.2): "LAN profile", (5, 1.0): "habitat profile"}
    floors = {named.get(t, "/".join(names)): t for t, names in by_timing.items()}
    # uvloop on/off and HTTP have their own tables; keep the plots to the host modes and Serf.
    # A point where most observers timed out is the percentile of the few that made it: it would
    # look like a measurement, so it is left to the tables, which show its timeout count.
    plot_results = [
        r
        for r in merge_results(results)
        if not r.system.startswith(("pysup-http", "pysup-udp-asyncio", "pysup-udp-uvloop"))
        and (r.meta.get("timeouts") or 0) <= len(r.samples)
    ]
    for metric in (*CONVERGENCE, "cpu", "rss", "bytes"):
        png = plot_metric(plot_results, metric, out_dir / f"{metric}.png", floors)
        if png is not None:
            parts.append(f"![{metric}]({png.name})\n")
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    (out_dir / "targets.json").write_text(json.dumps(targets, indent=1, default=str) + "\n")
    return path


# --- main ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N=10,50, short windows, 1 repeat")
    ap.add_argument("--sizes", help="comma-separated ring sizes [10,50,100,250,500,1000]")
    ap.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)}")
    ap.add_argument("--repeat", type=int, default=None, help="fresh rings per size [3; quick 1]")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--list", action="store_true", help="print the planned jobs and exit")
    ap.add_argument(
        "--report-only",
        nargs="+",
        type=Path,
        metavar="SUITE_JSON",
        help="run nothing: write one report from these suite JSON files (e.g. a main run and a "
        "re-run of one system); the first file's machine description heads it",
    )
    args = ap.parse_args(argv)
    if args.report_only:
        return _report_only(args.report_only)
    sizes = (
        tuple(int(x) for x in args.sizes.split(","))
        if args.sizes
        else (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    )
    systems = tuple(args.systems.split(",")) if args.systems else SYSTEMS
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown systems {sorted(unknown)}; choose from {','.join(SYSTEMS)}")
    repeat = args.repeat or (1 if args.quick else 3)
    jobs = plan_jobs(systems, sizes, repeat, args.quick)
    if args.list:
        for j in jobs:
            print(j.system, j.n)
        return 0

    from tqdm import tqdm

    machine = describe_machine()
    sampler = LoadSampler()
    sampler.start()
    results: list[Result] = []
    failures: list[str] = []
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    t_start = time.monotonic()
    with tqdm(jobs, unit="job", dynamic_ncols=True) as bar:
        for job in bar:
            bar.set_description(f"{job.system} N={job.n}")
            t0 = time.monotonic()
            try:
                got = job.run(lambda msg: bar.set_postfix_str(msg, refresh=True))
            except KeyboardInterrupt:
                failures.append(f"{job.system} N={job.n}: interrupted")
                break
            except Exception as e:
                failures.append(f"{job.system} N={job.n}: {type(e).__name__}: {e}")
                tqdm.write(f"FAILED {job.system} N={job.n}: {e}\n{traceback.format_exc()}")
                continue
            for r in got:
                r.meta.setdefault("job_wall_s", round(time.monotonic() - t0, 1))  # type: ignore[attr-defined]
                r.meta.setdefault("loadavg_1m", os.getloadavg()[0])  # type: ignore[attr-defined]
            results += got
            _save(results, machine, sampler, failures, args.out, stamp, t_start)
    machine = _save(results, machine, sampler, failures, args.out, stamp, t_start, final=True)
    report = write_suite_report(results, machine, args.out / f"suite-{stamp}")
    print(report.read_text())
    print(f"\nwrote {args.out / f'suite-{stamp}.json'} and {report}")
    for f in failures:
        print(f"FAILED: {f}")
    return 1 if failures else 0


def _report_only(files: Sequence[Path]) -> int:
    from bench.measure import read_results

    machine: dict[str, Any] = {}
    results: list[Result] = []
    for f in files:
        m, rs = read_results(f)
        machine = machine or m
        if "http" in m:
            HTTP_SUMMARY.update(m["http"])
        results += rs
    machine["merged_from"] = [f.name for f in files]
    out = files[0].with_suffix("")
    report = write_suite_report(results, machine, out)
    print(report.read_text())
    print(f"wrote {report}")
    return 0


def _save(
    results: list[Result],
    machine: dict[str, Any],
    sampler: LoadSampler,
    failures: list[str],
    out: Path,
    stamp: str,
    t_start: float,
    final: bool = False,
) -> dict[str, Any]:
    """Write the results so far (a crash late in a long run keeps the rest)."""
    m = dict(machine)
    m.update(sampler.stop() if final else {"loadavg_1m_samples": list(sampler.samples)})
    loads = [x for _, x in sampler.samples]
    m.setdefault("loadavg_1m_p50", percentile(loads, 50) if loads else None)
    m.setdefault("loadavg_1m_max", max(loads) if loads else None)
    m["suite_wall_s"] = round(time.monotonic() - t_start, 1)
    m["failures"] = failures
    if HTTP_SUMMARY:
        m["http"] = HTTP_SUMMARY
    out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": m, "results": [r.to_json() for r in results]}
    (out / f"suite-{stamp}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return m


if __name__ == "__main__":
    raise SystemExit(main())

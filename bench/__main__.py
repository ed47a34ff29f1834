"""The benchmark suite, one command: pysup (one process per member, many per process, the
simulator) side by side with Serf in the same run, plus start-up and memory breakdowns, the
detection / false-positive frontier, N=1000, the simulator at N=10,000, a `svc load` burst, a
supervisor's work end to end and the HTTP gateway.

    python -m bench [--quick] [--parts startup,procs,...] [--sizes 10,50,100] [--list]
                    [--lock /tmp/pysup-heavy.lock] [--presets lan,lan-fast] [--profile-burst 20]

Writes ``bench/results/suite-<date>.json`` (every Result, the machine and its load) after every
job, and ``bench/results/suite-<date>/`` with ``report.md``, ``readme-table.md``,
``targets.json`` and the plots. The parts are described in ``bench/suite.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.measure import RESULTS_DIR, Result, describe_machine
from bench.suite import (
    DEFAULT_PARTS,
    DEFAULT_SIZES,
    PARTS,
    QUICK_SIZES,
    Job,
    LoadSampler,
    SuiteOptions,
    plan_jobs,
)
from bench.suite_report import write_suite_report


@contextlib.contextmanager
def _locked(path: Path | None) -> Iterator[None]:
    """Hold an exclusive flock on `path` (the machine's shared heavy-work lock) for one job, so
    other people's timing-sensitive tests can run between jobs but never during one."""
    if path is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, short windows, 1 repeat")
    ap.add_argument("--parts", help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--sizes", help="ring sizes of procs/udp/sim [10,50,100; quick 10]")
    ap.add_argument("--repeat", type=int, default=1, help="fresh rings per size (udp, sim)")
    ap.add_argument(
        "--presets", default="lan,lan-fast", help="pysup presets in the frontier [lan,lan-fast]"
    )
    ap.add_argument(
        "--profile-burst",
        type=float,
        default=0.0,
        metavar="S",
        help="py-spy one member for S seconds during each svc load burst",
    )
    ap.add_argument("--lock", type=Path, help="flock this file around each job")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--list", action="store_true", help="print the planned jobs and exit")
    ap.add_argument(
        "--report-only",
        nargs="+",
        type=Path,
        metavar="SUITE_JSON",
        help="run nothing: one report from these suite JSON files (the first one's machine "
        "description heads it)",
    )
    args = ap.parse_args(argv)
    if args.report_only:
        return _report_only(args.report_only)
    parts = tuple(args.parts.split(",")) if args.parts else DEFAULT_PARTS
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    sizes = (
        tuple(int(x) for x in args.sizes.split(","))
        if args.sizes
        else (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    )
    opts = SuiteOptions(
        parts=parts,
        sizes=sizes,
        quick=args.quick,
        repeat=args.repeat,
        presets=tuple(args.presets.split(",")),
        profile_burst_s=args.profile_burst,
    )
    http_summary: dict[str, Any] = {}
    jobs = plan_jobs(opts, http_summary)
    total = sum(j.estimate_s for j in jobs)
    if args.list:
        for j in jobs:
            print(f"{j.part:<16} {j.system:<20} N={j.n:<6} ~{j.estimate_s / 60:.1f} min")
        print(f"{len(jobs)} jobs, ~{total / 60:.0f} min on the project machine")
        return 0
    return _run(jobs, args, http_summary, total)


def _run(jobs: list[Job], args: argparse.Namespace, http: dict[str, Any], total: float) -> int:
    from tqdm import tqdm

    machine = describe_machine()
    sampler = LoadSampler()
    sampler.start()
    results: list[Result] = []
    failures: list[str] = []
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    t_start = time.monotonic()
    tqdm.write(f"{len(jobs)} jobs, ~{total / 60:.0f} min on the project machine")
    with tqdm(jobs, unit="job", dynamic_ncols=True) as bar:
        for job in bar:
            bar.set_description(f"{job.part} N={job.n}")
            t0 = time.monotonic()

            def say(msg: str) -> None:
                tqdm.write(f"[{time.strftime('%H:%M:%S')}] {msg}")

            try:
                with _locked(args.lock):
                    got = job.run(say)
            except KeyboardInterrupt:
                failures.append(f"{job.part} N={job.n}: interrupted")
                break
            except Exception as e:
                failures.append(f"{job.part} N={job.n}: {type(e).__name__}: {e}")
                tqdm.write(f"FAILED {job.part} N={job.n}: {e}\n{traceback.format_exc()}")
                continue
            for r in got:
                r.meta.setdefault("job_wall_s", round(time.monotonic() - t0, 1))  # type: ignore[attr-defined]
                r.meta.setdefault("loadavg_1m", os.getloadavg()[0])  # type: ignore[attr-defined]
                r.meta.setdefault("part", job.part)  # type: ignore[attr-defined]
            results += got
            _save(results, machine, sampler, failures, args.out, stamp, t_start, http)
    machine = _save(results, machine, sampler, failures, args.out, stamp, t_start, http, True)
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
        results += rs
    machine["merged_from"] = [f.name for f in files]
    report = write_suite_report(results, machine, files[0].with_suffix(""))
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
    http: dict[str, Any],
    final: bool = False,
) -> dict[str, Any]:
    """Write the results so far (a crash late in a long run keeps the rest)."""
    m = dict(machine)
    m.update(sampler.stop() if final else sampler.summary())
    m["suite_wall_s"] = round(time.monotonic() - t_start, 1)
    m["failures"] = failures
    if http:
        m["http"] = http
    out.mkdir(parents=True, exist_ok=True)
    doc = {"machine": m, "results": [r.to_json() for r in results]}
    (out / f"suite-{stamp}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return m


if __name__ == "__main__":
    raise SystemExit(main())

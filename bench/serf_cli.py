"""``python -m bench.serf``: measure Serf agents at one or more cluster sizes.

Examples::

    python -m bench.serf --members 10 --repeat 3
    python -m bench.serf --members 10,50 --repeat 1 --json
    python -m bench.serf --members 100 --save        # bench/results/serf-<date>.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from bench.measure import Result, describe_machine, write_results
from bench.serf import run_serf_bench
from bench.serf_env import PROFILES, capacity_problem


def _sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def format_summary(results: Sequence[Result]) -> str:
    lines = [
        f"{'metric':<18} {'n':>5} {'p50':>9} {'p99':>9} {'unit':<8} {'max/repeat':<24} timeouts"
    ]
    for r in results:
        all_s = r.meta.get("all_s")
        per = ", ".join(f"{x:.2f}" for x in all_s) if isinstance(all_s, list) else ""
        lines.append(
            f"{r.metric:<18} {r.n:>5} {r.p50:>9.4g} {r.p99:>9.4g} {r.unit:<8} {per:<24} "
            f"{r.meta.get('timeouts', '')}"
        )
    return "\n".join(lines)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into SystemExit so the clusters' finally blocks kill the agents.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.serf", description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=_sizes, default=[10], help="cluster sizes, e.g. 10,50")
    ap.add_argument("--repeat", type=int, default=3, help="fresh clusters per size")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="lan")
    ap.add_argument("--events", type=int, default=3, help="user events per repeat")
    ap.add_argument("--idle-window", type=float, default=10.0, help="CPU sampling window, s")
    ap.add_argument("--poll-interval", type=float, default=None, help="membership poll, s")
    ap.add_argument("--seed", type=int, default=None, help="rng seed (victim/origin choice)")
    ap.add_argument("--json", action="store_true", help="print {machine, results} JSON")
    ap.add_argument("--save", action="store_true", help="write bench/results/serf-<date>.json")
    ap.add_argument("--force", action="store_true", help="run even if capacity check fails")
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _sigterm)
    machine = describe_machine()
    results: list[Result] = []
    for n in args.members:
        problem = capacity_problem(n)
        if problem and not args.force:
            print(f"skipping n={n}: {problem}", file=sys.stderr)
            continue
        results += asyncio.run(
            run_serf_bench(
                n,
                args.repeat,
                profile=args.profile,
                events=args.events,
                idle_window=args.idle_window,
                poll_interval=args.poll_interval,
                seed=args.seed,
                progress=lambda msg: print(msg, file=sys.stderr, flush=True),
            )
        )
    if args.json:
        doc = {"machine": machine, "results": [r.to_json() for r in results]}
        print(json.dumps(doc, indent=1))
    else:
        print(format_summary(results))
    if args.save:
        path = write_results(results, "serf", machine=machine)
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

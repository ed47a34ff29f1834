"""Run `pysup` under a deterministic profiler switched by signals (issue 18, goal 6).

    python -m bench.cprof_member OUT.prof run --listen-gossip=... (the usual pysup arguments)

The member runs as `python -m pysup` would, with two extra signal handlers:

- ``SIGUSR1``: start `cProfile` (every Python call from here on is counted and timed, in CPU
  seconds of the process: `time.process_time`);
- ``SIGUSR2``: stop it and write the stats to OUT.prof (`pstats` format) and the profiler's
  measured cost per call to OUT.prof.overhead, then carry on.

So the harness profiles exactly the window it measures (the `svc load` burst), not the bootstrap
before it. cProfile slows the profiled member (each Python call costs more), so its absolute
times are inflated by about a microsecond per call (measured at the end: `overhead_per_call`),
which the summary subtracts; call counts are exact.
A sampling profiler (py-spy) attributed 56% of a member's burst to one decoder whose measured
cost could not explain it: this one counts calls instead of guessing from stacks.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from pathlib import Path
from types import FrameType

CALIBRATION_CALLS = 20_000
"""Calls timed to estimate the profiler's cost per call (~20 ms with and without it)."""


def _noop() -> None:
    pass


def _calls(n: int) -> None:
    for _ in range(n):
        _noop()


def overhead_per_call() -> float:
    """CPU seconds cProfile adds to one Python call here and now (the best of 3 tries): its
    times are inflated by about this much per counted call, which `bench.cprof_table` removes."""
    best = float("inf")
    for _ in range(3):
        t = time.process_time()
        _calls(CALIBRATION_CALLS)
        bare = time.process_time() - t
        prof = cProfile.Profile(time.process_time)
        t = time.process_time()
        prof.enable()
        _calls(CALIBRATION_CALLS)
        prof.disable()
        best = min(best, (time.process_time() - t - bare) / CALIBRATION_CALLS)
    return max(0.0, best)


def main(argv: list[str]) -> int:
    out, args = argv[0], argv[1:]
    # CPU time, not wall: the loop's waits in epoll cost nothing and must not show as time.
    prof = cProfile.Profile(time.process_time)

    def start(_sig: int, _frame: FrameType | None) -> None:
        prof.enable()

    def stop(_sig: int, _frame: FrameType | None) -> None:
        prof.disable()
        prof.dump_stats(out)
        Path(out + ".overhead").write_text(f"{overhead_per_call():.9f}\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from pysup.cli import main as pysup_main

    sys.argv = ["pysup", *args]
    return pysup_main(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

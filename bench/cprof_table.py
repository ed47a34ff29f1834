"""Where a profiled member's CPU went, by function family (issue 18, goal 6): pure summaries of a
`cProfile` stats file written by `bench.cprof_member`.

    python -m bench.cprof_table m1.prof [--loads 1] [--top 30]

Every function's own time (``tottime``) is charged to a **family**. A pysup function belongs to
the family of its module (`FAMILIES`, first match). Time in anything else (the standard library,
C builtins, msgpack) is charged to whoever called it, split by the time each caller's calls took
(`pstats` records per-caller times), walking up until a pysup function: `json.dumps` called from
the event stream is event encoding, `os.fsync` called from `atomic_write` is a state write,
`_posixsubprocess.fork_exec` under a hook is a hook spawn. What has no pysup caller at all (the
asyncio loop itself, selectors, callbacks' dispatch) is "event loop". Some third-party packages
are families of their own (structlog: logging; aiohttp: HTTP).
"""

from __future__ import annotations

import argparse
import marshal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Func = tuple[str, int, str]
"""pstats' key of a function: (file, line, name); C builtins have file ``~``."""

FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("event encoding (/events)", ("pysup/events/",)),
    ("state writes", ("pysup/statedir", "pysup/ringstate", "pysup/native_state")),
    ("census rebuild", ("pysup/census", "pysup/service/censuspace", "pysup/election")),
    (
        "template render",
        ("pysup/service/handlebars/", "pysup/service/context", "pysup/service/cfg"),
    ),
    (
        "plan load",
        (
            "pysup/service/plan",
            "pysup/service/spec",
            "pysup/service/saved",
            "pysup/service/manager",
            "pysup/service/svcdir",
            "pysup/service/pkgpaths",
            "pysup/service/sources",
            "pysup/service/updates",
            "pysup/gateway/ctl",
        ),
    ),
    (
        "hooks, health checks, processes",
        (
            "pysup/service/hooks",
            "pysup/service/process",
            "pysup/service/health",
            "pysup/service/checker",
            "pysup/service/reaper",
            "pysup/service/lifecycle",
            "pysup/service/programs",
            "pysup/service/pidfile",
            "pysup/service/adopt",
        ),
    ),
    ("service reconcile (rest)", ("pysup/service/",)),
    (
        "rumor decode/merge",
        (
            "pysup/butterfly/records",
            "pysup/butterfly/codec",
            "pysup/butterfly/core",
            "pysup/butterfly/rumors",
            "pysup/butterfly/membership",
            "pysup/butterfly/table",
            "pysup/butterfly/member",
            "pysup/butterfly/suspicion",
            "pysup/butterfly/broadcast",
            "pysup/butterfly/messages",
            "pysup/butterfly/validate",
            "pysup/butterfly/admission",
        ),
    ),
    ("gossip I/O and timers", ("pysup/butterfly/", "pysup/crypto/", "pysup/ring")),
    ("HTTP gateway", ("pysup/gateway/", "/aiohttp/", "/multidict/", "/yarl/")),
    ("logging", ("pysup/logs", "/structlog/", "/logging/")),
    ("metrics", ("pysup/metrics", "/prometheus_client/")),
    ("pysup (other)", ("pysup/",)),
)
"""(family, path fragments), first match wins: more specific fragments come first."""
LOOP = "event loop (no pysup caller)"
IMPORTS = "imports (modules a first plan load brings in)"

COUNTED: tuple[tuple[str, str, str], ...] = (
    ("service rumors decoded", "butterfly/records.py", "_unpack_service"),
    ("member rumors decoded", "butterfly/records.py", "_unpack_member_rumor"),
    ("census builds", "pysup/census_build.py", "build_census"),
    ("template renders", "handlebars/__init__.py", "render"),
    ("service reconciles", "service/service.py", "_reconcile"),
    ("events published", "events/hub.py", "publish"),
    ("atomic_write calls", "pysup/statedir.py", "atomic_write"),
    ("fsyncs", "~", "<built-in method posix.fsync>"),
    ("fork/exec (subprocess)", "~", "<built-in method _posixsubprocess.fork_exec>"),
    ("datagrams received", "butterfly/runner.py", "_on_datagram"),
    ("service rumors published (own)", "service/parts.py", "rumor"),
)
"""Events counted by their functions' call counts (label, file fragment, function name)."""


def family_of_file(path: str) -> str | None:
    p = path.replace("\\", "/")
    for fam, frags in FAMILIES:
        if any(f in p for f in frags):
            return fam
    return None


@dataclass
class Summary:
    total_s: float
    families: dict[str, float]
    calls: dict[str, int]
    """Calls charged to each family (a builtin's calls go to its callers by their call counts)."""
    overhead_s: float
    """The profiler's measured cost per call (0: unknown)."""
    counts: dict[str, int]
    top: list[tuple[str, int, float, float]]
    """(function, calls, own seconds, cumulative seconds) by cumulative time."""


def load_stats(path: Path) -> dict[Func, Any]:
    """The raw table `cProfile.Profile.dump_stats` writes (marshal of pstats' dict)."""
    with open(path, "rb") as f:
        stats: dict[Func, Any] = marshal.load(f)
    return stats


def _charge(
    stats: Mapping[Func, Any], edge: int, amount: Callable[[Any], float]
) -> dict[str, float]:
    """Sum `amount` of every function into families; a function of no family passes its amount
    to its callers in proportion to field `edge` of each caller's record (2: time, 1: calls)."""
    memo: dict[Func, dict[str, float]] = {}

    def shares(fn: Func, active: set[Func]) -> dict[str, float]:
        got = memo.get(fn)
        if got is not None:
            return got
        # A module's body and the import machinery: lazy imports paid during the burst.
        fam = IMPORTS if fn[2] == "<module>" or "importlib" in fn[0] else family_of_file(fn[0])
        if fam is not None:
            memo[fn] = {fam: 1.0}
            return memo[fn]
        callers = stats[fn][4] if fn in stats else {}
        if fn in active or not callers:
            return {LOOP: 1.0}
        active.add(fn)
        weights = {c: float(e[edge]) for c, e in callers.items()}
        if sum(weights.values()) <= 0:
            weights = {c: float(e[1]) for c, e in callers.items()}
        total = sum(weights.values()) or 1.0
        out: dict[str, float] = {}
        for c, w in weights.items():
            for fam2, part in shares(c, active).items():
                out[fam2] = out.get(fam2, 0.0) + part * w / total
        active.discard(fn)
        memo[fn] = out
        return out

    got: dict[str, float] = {}
    for fn, v in stats.items():
        for fam, part in shares(fn, set()).items():
            got[fam] = got.get(fam, 0.0) + amount(v) * part
    return got


def summarize(stats: Mapping[Func, Any], top: int = 30, overhead_s: float = 0.0) -> Summary:
    """Charge every function's own time to a family (see the module docstring). `overhead_s`:
    the profiler's cost per call, to estimate each family's time without it."""
    families = _charge(stats, 2, lambda v: float(v[2]))
    # The profiler's cost is per call: calls go up by the callers' call counts, not their time.
    calls = _charge(stats, 1, lambda v: float(v[1]))
    counts = {label: 0 for label, _, _ in COUNTED}
    for (file, _line, name), (_cc, nc, _tt, _ct, _callers) in stats.items():
        for label, frag, fname in COUNTED:
            if name == fname and frag in file.replace("\\", "/"):
                counts[label] += nc
    rows = sorted(stats.items(), key=lambda kv: kv[1][3], reverse=True)[:top]
    top_rows = [(_label(fn), v[1], v[2], v[3]) for fn, v in rows]
    total = sum(v[2] for v in stats.values())
    n_calls = {k: round(v) for k, v in calls.items()}
    return Summary(total, families, n_calls, overhead_s, counts, top_rows)


def _label(fn: Func) -> str:
    file, line, name = fn
    if file == "~":
        return name
    p = file.replace("\\", "/")
    for marker in ("/pysup/", "/site-packages/", "/lib/python3"):
        if marker in p:
            p = p.split(marker, 1)[1]
            break
    return f"{p}:{line}({name})"


def unprofiled(s: Summary) -> dict[str, float]:
    """Each family's seconds less the profiler's cost of its calls (never below 0)."""
    return {f: max(0.0, sec - s.calls.get(f, 0) * s.overhead_s) for f, sec in s.families.items()}


def load_overhead(stats_path: Path) -> float:
    """The cost per call `bench.cprof_member` measured next to the stats (0 when absent)."""
    p = stats_path.with_name(stats_path.name + ".overhead")
    try:
        return float(p.read_text())
    except (OSError, ValueError):
        return 0.0


def format_summary(s: Summary, loads: int = 1) -> str:
    """Markdown tables: families (profiled and estimated unprofiled seconds, share of the
    latter), counted events, top functions."""
    est = unprofiled(s)
    total_est = sum(est.values())
    out = [
        f"profiled CPU {s.total_s:.3f} s over {loads} plan load(s); {sum(s.calls.values())} "
        f"calls at {s.overhead_s * 1e6:.2f} us each by the profiler: about {total_est:.3f} s "
        "without it",
        "",
        "| family | calls | profiled s | est. unprofiled s | share of est. |",
        "|---|---|---|---|---|",
    ]
    for fam, sec in sorted(est.items(), key=lambda kv: -kv[1]):
        out.append(
            f"| {fam} | {s.calls.get(fam, 0)} | {s.families[fam] / loads:.3f} | "
            f"{sec / loads:.3f} | {100 * sec / max(total_est, 1e-9):.1f}% |"
        )
    out += ["", "| event | count |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in s.counts.items()]
    out += ["", "| function (by cumulative) | calls | own s | cum s |", "|---|---|---|---|"]
    out += [f"| {f} | {n} | {tt:.3f} | {ct:.3f} |" for f, n, tt, ct in s.top]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cprof_table")
    ap.add_argument("stats", type=Path)
    ap.add_argument("--loads", type=int, default=1)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args(argv)
    s = summarize(load_stats(a.stats), a.top, load_overhead(a.stats))
    print(format_summary(s, a.loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Side-by-side report of pysup and Serf results: a Markdown table and PNG plots.

``python -m bench.report bench/results/*.json --out bench/results/report [--targets t.json]``

Table: one row per (metric, N) with pysup p50/p99, Serf p50/p99, the pysup/Serf ratios and
whether pysup meets its target. Plots: one PNG per metric, value vs N (log x), p50 solid and p99
dashed per system, plus the dissemination floor ``ceil(log_(1+fanout) N) * gossip_interval`` of
each system whose results carry ``meta["floor"] = {"fanout": f, "gossip_interval": s}`` (or that
is passed explicitly). That floor models gossip in lockstep rounds; real agents tick with
independent phases, so a hop costs about half an interval on average and measured p99 can sit
below it (Serf's does at N=10 and 50). Read it as a reference scale, not a hard bound.

Targets (JSON or ``Target`` objects) are keyed by metric or ``"metric@N"`` (the latter wins), e.g.
``{"event": {"stat": "p99", "max_ratio": 2.0}, "bootstrap@100": {"max_value": 5.0}}``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import METRICS, Result, merge_results, read_results

PYSUP = "pysup"
SERF = "serf"
#: Metrics whose theoretical floor is the gossip dissemination bound.
FLOOR_METRICS = ("bootstrap", "join", "event")
METRIC_ORDER = tuple(METRICS)


@dataclass(frozen=True)
class Target:
    """A bound pysup must meet for one metric: absolute, relative to Serf, or both."""

    stat: str = "p99"
    """Which statistic is checked: "p50" or "p99"."""
    max_value: float | None = None
    """Upper bound in the metric's unit (e.g. seconds)."""
    max_ratio: float | None = None
    """Upper bound on pysup/Serf for that statistic (e.g. 2.0 = at most twice Serf's)."""

    def describe(self, unit: str) -> str:
        parts = []
        if self.max_value is not None:
            parts.append(f"{self.stat} ≤ {_num(self.max_value)} {unit}".rstrip())
        if self.max_ratio is not None:
            parts.append(f"{self.stat} ≤ {_num(self.max_ratio)}x serf")
        return ", ".join(parts) or "—"

    def check(self, pysup: Result | None, serf: Result | None) -> bool | None:
        """True/False when decidable; None when the data needed is missing."""
        if pysup is None:
            return None
        mine = _stat(pysup, self.stat)
        if math.isnan(mine):
            return None
        if (pysup.meta.get("timeouts") or 0) > 0:
            return False  # some observers never converged: the percentile understates
        ok = True
        if self.max_value is not None:
            ok = ok and mine <= self.max_value
        if self.max_ratio is not None:
            ratio = _ratio(mine, _stat(serf, self.stat) if serf is not None else math.nan)
            if math.isnan(ratio):
                return None
            ok = ok and ratio <= self.max_ratio
        return ok


def targets_from_json(doc: Mapping[str, Mapping[str, Any]]) -> dict[str, Target]:
    return {
        key: Target(
            stat=str(v.get("stat", "p99")),
            max_value=None if v.get("max_value") is None else float(v["max_value"]),
            max_ratio=None if v.get("max_ratio") is None else float(v["max_ratio"]),
        )
        for key, v in doc.items()
    }


def lookup_target(targets: Mapping[str, Target], metric: str, n: int) -> Target | None:
    return targets.get(f"{metric}@{n}") or targets.get(metric)


def floor_seconds(n: int, fanout: int, gossip_interval: float) -> float:
    """Rounds of push gossip to reach n nodes at the given fanout, times the round length."""
    if n <= 1:
        return 0.0
    return math.ceil(math.log(n) / math.log(1 + fanout) - 1e-9) * gossip_interval


def _stat(r: Result | None, stat: str) -> float:
    if r is None:
        return math.nan
    if stat not in ("p50", "p99"):
        raise ValueError(f"stat must be p50 or p99, got {stat!r}")
    return float(getattr(r, stat))


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


def _num(x: float) -> str:
    if math.isnan(x):
        return "—"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _ratio_cell(x: float) -> str:
    return "—" if math.isnan(x) else f"{x:.2f}x"


def _index(results: Iterable[Result]) -> dict[tuple[str, str, int], Result]:
    return {(r.system, r.metric, r.n): r for r in merge_results(results)}


def _metric_order(metrics: Iterable[str]) -> list[str]:
    known = [m for m in METRIC_ORDER if m in metrics]
    return known + sorted(set(metrics) - set(known))


def markdown_table(
    results: Iterable[Result],
    targets: Mapping[str, Target] | None = None,
    systems: tuple[str, str] = (PYSUP, SERF),
) -> str:
    """The comparison table. Rows: every (metric, N) present for either system."""
    targets = targets or {}
    idx = _index(results)
    mine, ref = systems
    keys = {(m, n) for (s, m, n) in idx if s in systems}
    header = (
        f"| metric | N | {mine} p50 | {mine} p99 | {ref} p50 | {ref} p99 "
        f"| {mine}/{ref} p50 | {mine}/{ref} p99 | target | met |"
    )
    lines = [header, "|" + "---|" * 10]
    for metric in _metric_order({m for m, _ in keys}):
        for n in sorted(n for m, n in keys if m == metric):
            a, b = idx.get((mine, metric, n)), idx.get((ref, metric, n))
            either = a if a is not None else b
            unit = either.unit if either is not None else ""
            target = lookup_target(targets, metric, n)
            verdict = target.check(a, b) if target else None
            met = "—" if verdict is None else ("met" if verdict else "**missed**")
            cells = [
                f"{metric} ({unit})" if unit else metric,
                str(n),
                _num(_stat(a, "p50")) + _timeouts(a),
                _num(_stat(a, "p99")),
                _num(_stat(b, "p50")) + _timeouts(b),
                _num(_stat(b, "p99")),
                _ratio_cell(_ratio(_stat(a, "p50"), _stat(b, "p50"))),
                _ratio_cell(_ratio(_stat(a, "p99"), _stat(b, "p99"))),
                target.describe(unit) if target else "—",
                met,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _timeouts(r: Result | None) -> str:
    t = (r.meta.get("timeouts") or 0) if r is not None else 0
    return f" ({t} timed out)" if t else ""


def floors_from_results(results: Iterable[Result]) -> dict[str, tuple[int, float]]:
    """System -> (fanout, gossip_interval) from results' ``meta["floor"]``."""
    out: dict[str, tuple[int, float]] = {}
    for r in results:
        floor = r.meta.get("floor")
        if isinstance(floor, Mapping) and r.system not in out:
            out[r.system] = (int(floor["fanout"]), float(floor["gossip_interval"]))
    return out


def plot_metric(
    results: Iterable[Result],
    metric: str,
    path: Path,
    floors: Mapping[str, tuple[int, float]] | None = None,
) -> Path | None:
    """PNG of p50 (solid) and p99 (dashed) vs N per system; None if no data for metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rs = [r for r in merge_results(results) if r.metric == metric]
    if not rs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_n: set[int] = set()
    for i, system in enumerate(sorted({r.system for r in rs})):
        mine = sorted((r for r in rs if r.system == system), key=lambda r: r.n)
        ns = [r.n for r in mine]
        all_n.update(ns)
        color = colors[i % len(colors)]
        ax.plot(ns, [r.p50 for r in mine], "o-", color=color, label=f"{system} p50")
        ax.plot(ns, [r.p99 for r in mine], "s--", color=color, label=f"{system} p99", alpha=0.7)
    if floors and metric in FLOOR_METRICS and all_n:
        lo, hi = min(all_n), max(all_n)
        grid = sorted({*all_n, *(round(lo * (hi / lo) ** (k / 50)) for k in range(51))})
        for system, (fanout, interval) in sorted(floors.items()):
            ax.step(
                grid,
                [floor_seconds(n, fanout, interval) for n in grid],
                ":",
                where="post",
                color="grey",
                label=f"{system} lockstep-rounds floor ⌈log{1 + fanout} N⌉·{interval:g}s",
            )
    ax.set_xscale("log")
    ax.set_xticks(sorted(all_n))
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("cluster size N")
    unit = rs[0].unit
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric)
    ax.set_title(metric.replace("_", " "))
    return _save(fig, ax, path)


def _save(fig: Any, ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _machine_lines(machines: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for m in machines:
        lines.append(
            f"- {m.get('date', '?')}: {m.get('cores', '?')} cores {m.get('cpu_model', '?')}, "
            f"{m.get('mem_gib', '?')} GiB, Python {m.get('python', '?')}, "
            f"kernel {m.get('kernel', '?')}, load at start {m.get('loadavg_at_start', '?')}"
        )
    return lines


def write_report(
    results: Sequence[Result],
    out_dir: Path,
    targets: Mapping[str, Target] | None = None,
    floors: Mapping[str, tuple[int, float]] | None = None,
    machines: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Write ``report.md`` and one PNG per metric into out_dir; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    floors = dict(floors) if floors is not None else floors_from_results(results)
    parts = ["# pysup vs Serf: gossip convergence\n"]
    if machines:
        parts += ["Measured on:", *_machine_lines(machines), ""]
    parts += [markdown_table(results, targets), ""]
    for metric in _metric_order({r.metric for r in results}):
        png = plot_metric(results, metric, out_dir / f"{metric}.png", floors)
        if png is not None:
            parts.append(f"![{metric}]({png.name})\n")
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="results JSON files")
    ap.add_argument("--out", type=Path, default=Path("bench/results/report"))
    ap.add_argument("--targets", type=Path, default=None, help="targets JSON file")
    args = ap.parse_args(argv)
    machines: list[dict[str, Any]] = []
    results: list[Result] = []
    for f in args.files:
        machine, rs = read_results(f)
        machines.append(machine)
        results += rs
    targets = targets_from_json(json.loads(args.targets.read_text())) if args.targets else None
    path = write_report(results, args.out, targets, machines=machines)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def plot_frontier(points: Sequence[Any], path: Path) -> Path | None:
    """Detection time (to Confirmed everywhere, median over kills) against false Confirmed per
    member-hour, one line per system through its loss levels (labelled), with the 95% upper
    bound of each rate as an error bar: down and left is better."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in points if not math.isnan(p.detect_p50_s)]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, system in enumerate(sorted({p.system for p in pts})):
        mine = sorted((p for p in pts if p.system == system), key=lambda p: p.loss)
        xs = [p.fp_rate for p in mine]
        ys = [p.detect_p50_s for p in mine]
        err = [[0.0] * len(mine), [max(0.0, p.fp_upper - p.fp_rate) for p in mine]]
        color = colors[i % len(colors)]
        ax.errorbar(xs, ys, xerr=err, fmt="o-", color=color, label=system, capsize=3, alpha=0.9)
        for p in mine:
            ax.annotate(
                f"{p.loss:.0%}",
                (p.fp_rate, p.detect_p50_s),
                fontsize=8,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax.set_xlabel("false Confirmed per member-hour (bar: 95% upper bound)")
    ax.set_ylabel("kill -9 to Confirmed everywhere (s, median over kills)")
    ax.set_title("failure detection vs false positives, by packet loss")
    return _save(fig, ax, path)

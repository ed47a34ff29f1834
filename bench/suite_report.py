"""The suite's report: targets met or missed, the main table (one process per member on both
sides), the many-members-per-process table labelled as such, every part's section, plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import frontier_math as fm
from bench import report_parts as parts
from bench.frontier import points_from_results
from bench.measure import Result, merge_results
from bench.report import floors_from_results, markdown_table, plot_metric
from bench.report_parts import fmt
from bench.scale import verdict as scale_verdict

CONVERGENCE = ("bootstrap", "join", "event", "failure_detection")
COMPARED = (
    *CONVERGENCE,
    "cpu",
    "rss",
    "pss",
    "startup_healthz",
    "startup_joined",
    "bytes",
    "rss_process",
    "cpu_churn",
    "false_positives",
)
"""Metrics the side-by-side tables show; the others have their own sections."""
MAIN = "pysup-procs"
"""The main table's pysup side: one `pysup run` process per member, as users run it."""
README_ROWS: tuple[tuple[str, str, str, float], ...] = (
    ("bootstrap", "bootstrap", "time", 1.0),
    ("bootstrap: interpreters starting", "bootstrap_started", "time", 1.0),
    ("bootstrap: joining, after the last start", "bootstrap_after_last_start", "time", 1.0),
    ("join seen by all", "join", "time", 1.0),
    ("config rumor vs user event", "event", "time", 1.0),
    ("failure detection", "failure_detection", "time", 1.0),
    ("start-up to /healthz 200 (Serf: RPC answers)", "startup_healthz", "p50", 1.0),
    ("start-up to joined", "startup_joined", "p50", 1.0),
    ("idle CPU ms/process/s", "cpu", "p50", 1000.0),
    ("RSS MiB/process", "rss", "p50", 1.0),
    ("PSS MiB/process", "pss", "p50", 1.0),
)
"""(row label, metric, kind, scale): `time` rows show p50 / p99 and the ratio of the p99s;
`p50` rows show the p50 and its ratio."""


def _idx(results: Sequence[Result]) -> dict[tuple[str, str, int], Result]:
    return {(r.system, r.metric, r.n): r for r in merge_results(results)}


def readme_table(results: Sequence[Result], mine: str = MAIN, ref: str = "serf") -> str:
    """The README's main table: one column group per N where both systems were measured; a
    ratio above 1 (pysup slower or bigger) is bold."""
    idx = _idx(results)
    sizes = sorted({n for (s, m, n) in idx if s == mine} & {n for (s, m, n) in idx if s == ref})
    if not sizes:
        return ""
    head = "| metric |" + "".join(f" N={n} pysup | N={n} Serf | ratio |" for n in sizes)
    lines = [head, "|---|" + "---|---|---|" * len(sizes)]
    for label, metric, kind, scale in README_ROWS:
        cells = []
        for n in sizes:
            a, b = idx.get((mine, metric, n)), idx.get((ref, metric, n))
            cells += [_cell(a, kind, scale), _cell(b, kind, scale), _ratio(a, b, kind)]
        if any(c != "—" for c in cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(r: Result | None, kind: str, scale: float) -> str:
    if r is None or math.isnan(r.p50):
        return "—"
    t = r.meta.get("timeouts") or 0
    miss = f" ({t} timed out)" if t else ""
    if kind == "time":
        return f"{fmt(r.p50 * scale)} / {fmt(r.p99 * scale)}{miss}"
    return f"{fmt(r.p50 * scale)}{miss}"


def _ratio(a: Result | None, b: Result | None, kind: str) -> str:
    if a is None or b is None:
        return "—"
    stat = "p99" if kind == "time" else "p50"
    x, y = getattr(a, stat), getattr(b, stat)
    if math.isnan(x) or math.isnan(y) or y == 0:
        return "—"
    if a.meta.get("timeouts"):
        return "**∞**"
    r = x / y
    return f"**{r:.2f}**" if r > 1.0 else f"{r:.2f}"


def check_targets(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Issue 18's targets, each with the value found and met/missed (None: not measured)."""
    idx = _idx(results)
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, note: str = "", le: bool = True) -> None:
        bad = value is None or (isinstance(value, float) and math.isnan(value))
        met = None if bad else (value <= limit if le else value >= limit)  # type: ignore[operator]
        out.append({"target": name, "value": value, "limit": limit, "met": met, "note": note})

    for mine in (MAIN, "pysup-udp", "pysup-sim"):
        for metric in CONVERGENCE:
            for n in sorted({n for (s, m, n) in idx if s == "serf" and m == metric}):
                a, b = idx.get((mine, metric, n)), idx.get(("serf", metric, n))
                if a is None or b is None or not b.p99 or math.isnan(b.p99):
                    continue
                t = a.meta.get("timeouts") or 0
                note = f"{t} observers timed out" if t else ""
                add(f"{mine}/serf {metric} p99 N={n}", math.inf if t else a.p99 / b.p99, 1.0, note)
    st, rss = idx.get(("pysup", "lone_startup_healthz", 1)), idx.get(("pysup", "lone_idle_rss", 1))
    if st is not None:
        add("goal 2: start-up to /healthz 200 p50 <= 0.25 s", st.p50, 0.25, "s")
    if rss is not None and rss.meta.get("floor_rss_mib") is not None:
        floor = float(rss.meta["floor_rss_mib"])
        add(f"goal 2: idle RSS <= floor {floor:.1f} + 2 MiB", rss.p50, floor + 2.0, "MiB")
    points = points_from_results(results)
    if any(p.system == "serf" for p in points):
        hours = min(p.member_hours for p in points)
        weak = (
            f"only {hours:.2f} member-hours per level: no statistical power" if hours < 10 else ""
        )
        for system, ok in fm.goal_check(points).items():
            target = f"goal 3: {system} dominates serf at every loss level"
            out.append({"target": target, "value": None, "limit": None, "met": ok, "note": weak})
    for r in results:
        if r.meta.get("part") != "scale":
            continue
        # Judged again from the samples: the verdict stored by an older harness may differ.
        v = scale_verdict(r.metric, r.samples, r.meta.get("timeouts") or 0, r.meta["timeout_s"])
        if v["limit"] is not None:
            add(
                f"goal 4: N={r.n} {r.metric} {v['stat']} <= {v['limit']:g} s",
                v.get("value"),
                v["limit"],
                "" if v["converged"] else "did not converge",
            )
    for r in results:
        if r.metric == "sim_big":
            for t in r.meta.get("targets", []):  # judged by bench.sim itself
                add(f"goal 5: sim N={r.n} {t['target']}", t["value"], t["limit"], t.get("note", ""))
                out[-1]["met"] = t["met"]  # no value (arrivals missed) is a miss, not unknown
    for (s, m, n), r in sorted(idx.items()):
        if s == MAIN and m == "burst_false_suspicions":
            add(f"goal 6: svc load on all, false suspicions N={n}", r.p50, 0.0, "lines")
        if s.startswith("pysup-http") and m == "http_rps":
            add(f"goal 7: {s.split()[-1]} requests/s >= 2000", r.p50, 2000.0, "", le=False)
    return out


def targets_markdown(targets: Sequence[dict[str, Any]]) -> str:
    lines = ["| target | value | limit | met |", "|---|---|---|---|"]
    for t in targets:
        met = "—" if t["met"] is None else ("met" if t["met"] else "**missed**")
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']} | {fmt(t['value'])}{note} | {fmt(t['limit'])} | {met} |")
    return "\n".join(lines) + "\n"


def machine_text(m: dict[str, Any]) -> str:
    busy = m.get("cpu_busy_p50")
    trial = (m.get("loadavg_1m_p50") or 0) > 0.5 * (m.get("cores") or 2)
    return (
        f"Machine: {m.get('cores')} cores {m.get('cpu_model')}, {m.get('mem_gib')} GiB, Python "
        f"{m.get('python')}, kernel {m.get('kernel')}. Load during the run: 1-minute load average "
        f"at start {fmt((m.get('loadavg_at_start') or [None])[0])}, median "
        f"{fmt(m.get('loadavg_1m_p50'))}, max {fmt(m.get('loadavg_1m_max'))}; all CPUs busy "
        f"{fmt(busy * 100 if busy is not None else None)}% (median of 15 s samples, every "
        f"process on the machine, this suite's included). Wall time "
        f"{(m.get('suite_wall_s') or 0) / 60:.0f} min."
        + (
            "\n\n**The machine was busy during this run: treat the figures as a trial, not as "
            "final numbers.**"
            if trial
            else ""
        )
        + "\n"
    )


def write_suite_report(results: Sequence[Result], machine: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = check_targets(results)
    systems = sorted({r.system for r in results})
    compared = [r for r in results if r.metric in COMPARED]
    doc = [f"# pysup benchmark suite — {machine.get('date', '?')}\n", machine_text(machine)]
    doc += ["## Targets (issue 18)\n", targets_markdown(targets)]
    main = readme_table(results)
    if main:
        doc += [
            "## Main table: one process per member on both sides (the README's table)\n",
            "`pysup run` processes against Serf agents, same LAN timing; times in seconds from the "
            "stimulus, p50 / p99; ratio = pysup/Serf (p99 for times, p50 otherwise).\n",
            main,
            f"\nEvery metric, {MAIN} against serf:\n",
            markdown_table(compared, systems=(MAIN, "serf")),
        ]
    for mine, title in (
        ("pysup-udp", "many members per process (2 worker processes; scale mode, not deployment)"),
        ("pysup-sim", "the simulator (virtual time)"),
        ("pysup-udp-habitat", "real UDP, Habitat's timings"),
    ):
        if mine in systems:
            doc += [
                f"## {mine} vs serf: {title}\n",
                markdown_table(results, systems=(mine, "serf")),
            ]
    if "pysup-udp-uvloop" in systems:
        doc += [
            "## uvloop on/off (pysup-udp)\n",
            markdown_table(compared, systems=("pysup-udp-uvloop", "pysup-udp-asyncio")),
        ]
    doc += [
        parts.startup_section(results),
        parts.frontier_section(results, out_dir),
        parts.scale_section(results),
        parts.sim_big_section(results),
        parts.burst_section(results),
        parts.e2e_section(results),
        parts.traffic_section(results),
    ]
    doc.append(parts.http_section(machine.get("http") or {}))
    by_timing: dict[tuple[int, float], list[str]] = {}
    for system, timing in sorted(floors_from_results(results).items()):
        by_timing.setdefault(timing, []).append(system)
    named = {(3, 0.2): "LAN profile", (5, 1.0): "habitat profile"}
    floors = {named.get(t, "/".join(names)): t for t, names in by_timing.items()}
    plot_results = [
        r
        for r in merge_results(results)
        if not r.system.startswith(("pysup-http", "pysup-udp-asyncio", "pysup-udp-uvloop"))
        and r.meta.get("part") != "scale"
        and (r.meta.get("timeouts") or 0) <= len(r.samples)
    ]
    for metric in (*CONVERGENCE, "cpu", "rss", "pss", "startup_healthz", "bytes"):
        png = plot_metric(plot_results, metric, out_dir / f"{metric}.png", floors)
        if png is not None:
            doc.append(f"![{metric}]({png.name})\n")
    path = out_dir / "report.md"
    path.write_text("\n".join(d for d in doc if d))
    (out_dir / "targets.json").write_text(json.dumps(targets, indent=1, default=str) + "\n")
    (out_dir / "readme-table.md").write_text(main)
    return path

"""Markdown sections of the suite report for the parts that are more than a pysup/Serf table:
start-up and memory breakdown, the frontier, N=1000, the simulator at N=10,000, the load burst,
the end-to-end work of a supervisor and the idle traffic by message kind."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import frontier_math as fm
from bench import traffic
from bench.measure import Result, merge_results
from bench.scale import verdict as scale_verdict


def fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isinf(x):
            return "∞"
        if math.isnan(x):
            return "—"
        return f"{x:.{digits}g}"
    return str(x)


def _by(results: Sequence[Result], metric: str) -> list[Result]:
    return sorted((r for r in merge_results(results) if r.metric == metric), key=lambda r: r.n)


def _top(d: Mapping[str, float], k: int = 12, unit: str = "") -> str:
    items = sorted(d.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{name} {v:.1f}{unit}" for name, v in items)


def startup_section(results: Sequence[Result]) -> str:
    idx = {r.metric: r for r in results if r.system == "pysup"}
    if not idx:
        return ""
    out = ["## Start-up and memory of a lone `pysup run` (goal 2)\n"]
    st, rss = idx.get("lone_startup_healthz"), idx.get("lone_idle_rss")
    if st is not None:
        out.append(
            f"Spawn to the first `/healthz` 200: p50 {fmt(st.p50)} s over {len(st.samples)} "
            f"starts (goal <= 0.25 s)."
        )
    if rss is not None:
        m = rss.meta
        out.append(
            f"Idle RSS {fmt(rss.p50)} MiB, PSS {fmt(m.get('pss_mib'))} MiB; the libraries' floor "
            f"(through aiohttp) {fmt(m.get('floor_rss_mib'))} MiB (goal: within 2 MB of it).\n"
        )
    floor = idx.get("import_floor")
    if floor is not None:
        out += ["| import layer (cumulative) | RSS MiB | PSS MiB | wall ms |", "|---|---|---|---|"]
        for layer in floor.meta.get("layers", []):
            out.append(
                f"| {layer['layer']} | {layer['rss_mib']:.1f} | {layer['pss_mib']:.1f} "
                f"| {layer['wall_s'] * 1000:.0f} |"
            )
        out.append("")
    imp = idx.get("importtime")
    if imp is not None:
        m = imp.meta
        out.append(
            f"`-X importtime` of `pysup run` (to /healthz 200 in {fmt(m.get('healthz_s'))} s): "
            f"{fmt(m.get('total_ms'))} ms in {m.get('modules')} modules. Self time by package "
            f"(ms): {_top(m.get('by_package_ms', {}), 15)}.\n"
        )
        pulled = m.get("pulled_in_by", {})
        rows = sorted(
            ((owner, pkg, ms) for owner, d in pulled.items() for pkg, ms in d.items() if ms >= 1),
            key=lambda t: -t[2],
        )
        if rows:
            out += ["| pysup module | imports | cumulative ms |", "|---|---|---|"]
            out += [f"| {o} | {p} | {ms:.1f} |" for o, p, ms in rows[:20]]
            out.append("")
    tm = idx.get("tracemalloc")
    if tm is not None:
        m = tm.meta
        out.append(
            f"tracemalloc after idling: {fmt(m.get('traced_mib'))} MiB traced of "
            f"{fmt(m.get('rss_plain_mib'))} MiB RSS (untraced: interpreter, shared libraries, "
            f"allocator: {fmt(m.get('untraced_mib'))} MiB). By package (MiB): "
            f"{_top(m.get('by_package_mib', {}), 15)}.\n"
        )
    return "\n".join(out) + "\n"


def frontier_section(results: Sequence[Result], out_dir: Path) -> str:
    from bench.frontier import points_from_results
    from bench.report import plot_frontier

    points = points_from_results(results)
    if not points:
        return ""
    hosts = next(r.n for r in results if r.metric.startswith("frontier_loss"))
    kills = max(int(r.meta.get("kills", 0)) for r in results if r.metric.startswith("frontier"))
    out = [
        "## Failure detection vs false positives (goal 3)\n",
        f"{hosts} hosts (network namespaces), every system at once on the same hosts, iptables "
        f"random DROP on INPUT; {kills} kill(s) per loss level. Detection: kill -9 to Confirmed "
        f"(Serf: failed) at every live member.\n",
        fm.markdown(
            points, fm.goal_check(points) if any(p.system == "serf" for p in points) else {}
        ),
    ]
    png = plot_frontier(points, out_dir / "frontier.png")
    if png is not None:
        out.append(f"![frontier]({png.name})\n")
    return "\n".join(out) + "\n"


def scale_section(results: Sequence[Result]) -> str:
    rs = [r for r in results if r.meta.get("part") == "scale"]
    if not rs:
        return ""
    out = [
        f"## N={rs[0].n} on real UDP (goal 4; {rs[0].meta.get('host_mode')})\n",
        "| phase | verdict | p50 s | p99 s | timed out | census when it timed out |",
        "|---|---|---|---|---|---|",
    ]
    for r in rs:
        c = r.meta.get("census") or {}
        census = ", ".join(f"{k} {fmt(v)}" for k, v in c.items()) if c else ""
        misses = r.meta.get("timeouts") or 0
        v = scale_verdict(r.metric, r.samples, misses, r.meta["timeout_s"])
        out.append(
            f"| {r.metric} | {v['text']} | {fmt(r.p50)} | {fmt(r.p99)} | {misses} | {census} |"
        )
    return "\n".join(out) + "\n\n"


def sim_big_section(results: Sequence[Result]) -> str:
    rs = [r for r in results if r.metric == "sim_big"]
    if not rs:
        return ""
    out = ["## The simulator at scale (goal 5)\n"]
    for r in rs:
        m = r.meta
        if "skipped" in m:
            out.append(f"N={r.n}: skipped ({m['skipped']}).\n")
            continue
        virtual = m.get("idle_virtual_s")  # absent from results of the budget-less harness
        idle = f"60 virtual idle seconds took {fmt(m.get('idle_wall_s'))} s wall"
        if virtual is not None and virtual < 59.999:
            pace = (m.get("idle_wall_s") or 0.0) / max(virtual, 1e-9)
            idle = (
                f"the idle minute was cut at its budget: {virtual:.1f} virtual s in "
                f"{fmt(m.get('idle_wall_s'))} s wall (at that average pace the minute would "
                f"take ~{pace:.0f} min)"
            )
        out.append(
            f"N={r.n}: {m.get('rumors', 5)} rumors, p50 {fmt(r.p50)} s, p99 {fmt(r.p99)} s virtual "
            f"(goal <= 1.5 s; {m.get('timeouts', 0)} arrivals missed); {idle} (goal <= 300 s); "
            f"building the converged ring took {fmt(m.get('build_wall_s'))} s; peak RSS "
            f"{fmt(m.get('peak_rss_mib'))} MiB (estimate {fmt(m.get('estimated_mib'))}); "
            f"{fmt(m.get('bytes_per_member_s'))} B/member/s.\n"
        )
    return "\n".join(out) + "\n"


def burst_section(results: Sequence[Result]) -> str:
    rs = _by(results, "burst_false_suspicions")
    if not rs:
        return ""
    cpu = {r.n: r for r in _by(results, "burst_cpu_per_load")}
    up = {r.n: r for r in _by(results, "burst_up")}
    out = [
        "## `svc load` on every member at once (goal 6, one process per member)\n",
        "| N | false suspicions (lines) | members suspected | members suspecting | "
        "false Confirmed | refutations | CPU s per load | up p50 / p99 s | not up | window s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    profiles = []
    for r in rs:
        m = r.meta
        u = up.get(r.n)
        out.append(
            f"| {r.n} | {m['false_suspicions']} | {m['suspected_members']} "
            f"| {m['suspecting_members']} | {m['false_confirmed']} | {m['refutations']} "
            f"| {fmt(cpu[r.n].p50) if r.n in cpu else '—'} "
            f"| {fmt(u.p50) if u else '—'} / {fmt(u.p99) if u else '—'} "
            f"| {m.get('not_up', 0)} | {fmt(m['window_s'])} |"
        )
        if m.get("py_spy"):
            profiles.append((r.n, m["py_spy"]))
    for n, p in profiles:
        leaves = ", ".join(f"{name} {share:.0%}" for name, share in p["self"][:8])
        pkgs = ", ".join(f"{name} {share:.0%}" for name, share in p["package"][:8])
        out.append(
            f"\nN={n}, py-spy of one member during the burst ({p['samples']} samples): by "
            f"package {pkgs}; top self time {leaves}."
        )
    return "\n".join(out) + "\n\n"


def e2e_section(results: Sequence[Result]) -> str:
    rows = []
    for metric, what in (
        ("event", "config rumor arrives (`config.gossip_applied`), from `config apply`"),
        ("reconfigure", "reconfigure hook ran with the new config, from `config apply`"),
        ("health_census", "health change visible at every member, from the source's check"),
    ):
        for r in _by(results, metric):
            if r.system != "pysup-procs":
                continue
            note = (
                f"via /{r.meta['via']}, polled every {r.meta['poll_s']:g}s"
                if "via" in r.meta
                else ""
            )
            rows.append(
                f"| {what} | {r.n} | {fmt(r.p50)} | {fmt(r.p99)} | {r.meta.get('timeouts', 0)} "
                f"| {note} |"
            )
    if not rows:
        return ""
    head = [
        "## A supervisor's own work, end to end (goal 7, one process per member)\n",
        "| what | N | p50 s | p99 s | timed out | notes |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n\n"


def traffic_section(results: Sequence[Result]) -> str:
    rs = [r for r in _by(results, "traffic") if r.system == "pysup-procs"]
    if not rs:
        return ""
    out = ["## Idle gossip traffic per member by message kind (members' own /metrics)\n"]
    for r in rs:
        m = r.meta
        cover = m.get("window_s", 0) / max(1e-9, m.get("push_pull_interval_s", 1))
        out.append(
            f"N={r.n}, {fmt(m.get('window_s'))} s window ({cover:.1f} push-pull intervals of "
            f"{fmt(m.get('push_pull_interval_s'))} s):\n"
        )
        out.append(traffic.markdown(m.get("by_kind", {}), list(r.samples)))
    return "\n".join(out) + "\n"


def http_section(summary: Mapping[str, Any]) -> str:
    routes = [k for k, v in summary.items() if k.startswith("/") and isinstance(v, dict)]
    if not routes:
        return ""
    out = [
        f"## HTTP gateway under wrk (goal 7; {summary.get('services_listed')} services, "
        f"{summary.get('connections')} connections, {summary.get('duration_s')} s)\n",
        "| route | requests/s | p50 ms | p99 ms | supervisor CPU (cores) | CPU ms per request |",
        "|---|---|---|---|---|---|",
    ]
    for route in routes:
        v = summary[route]
        if "rps" not in v:
            out.append(f"| {route} | not measured (status {v.get('status')}) | | | | |")
            continue
        per = v.get("sup_cpu", math.nan) / v["rps"] * 1000 if v["rps"] else math.nan
        out.append(
            f"| {route} | {v['rps']:.0f} | {fmt(v.get('p50', math.nan) * 1000)} "
            f"| {fmt(v.get('p99', math.nan) * 1000)} | {fmt(v.get('sup_cpu'))} | {fmt(per)} |"
        )
    return "\n".join(out) + "\n\n"

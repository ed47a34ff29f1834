"""The suite's pure pieces: the README's per-process table, issue 18's target checks, the N=1000
verdicts, the parsers of the end-to-end phases, /proc parsers, the simulator's memory estimate and
the job plan. Inputs are synthetic Results, so every expected value is known."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import e2e, scale, sim
from bench.measure import (
    Result,
    parse_proc_stat_busy,
    parse_proc_stat_children_cpu,
    parse_smaps_rollup,
)
from bench.per_process import Options, idle_window
from bench.suite import SuiteOptions, plan_jobs
from bench.suite_report import check_targets, readme_table, write_suite_report


def _r(system: str, metric: str, n: int, samples: list[float], **meta: object) -> Result:
    return Result.from_samples(system, metric, n, samples, **meta)  # type: ignore[arg-type]


def _main_results() -> list[Result]:
    return [
        _r("pysup-procs", "bootstrap", 10, [1.0, 2.0]),
        _r("serf", "bootstrap", 10, [1.0, 1.0]),
        _r("pysup-procs", "rss", 10, [45.0]),
        _r("serf", "rss", 10, [15.0]),
        _r("pysup-procs", "cpu", 10, [0.001]),
        _r("serf", "cpu", 10, [0.002]),
        _r("pysup-procs", "failure_detection", 10, [7.0], timeouts=2),
        _r("serf", "failure_detection", 10, [6.0]),
        _r("pysup-udp", "bootstrap", 10, [0.1]),  # scale mode: not in the main table
        _r("pysup-procs", "bootstrap", 50, [3.0]),  # no Serf at 50: no column
    ]


def test_readme_table_has_per_process_rows_ratios_and_bold_where_pysup_is_worse() -> None:
    table = readme_table(_main_results())
    lines = table.splitlines()
    assert lines[0] == "| metric | N=10 pysup | N=10 Serf | ratio |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert rows["bootstrap"] == "| bootstrap | 1.5 / 1.99 | 1 / 1 | **1.99** |"
    assert rows["idle CPU ms/process/s"] == "| idle CPU ms/process/s | 1 | 2 | 0.50 |"
    assert rows["RSS MiB/process"].endswith("| 45 | 15 | **3.00** |")
    # Observers that never saw the failure make the ratio infinite, not a flattering number.
    assert "(2 timed out)" in rows["failure detection"] and "**∞**" in rows["failure detection"]
    assert "join seen by all" not in rows  # measured by neither: no empty row
    assert "N=50" not in table


def test_readme_table_splits_the_bootstrap_where_measured() -> None:
    """Start-up and joining shown under the bootstrap (pysup only: Serf's side and the ratio
    stay empty), so the table says which of the two a slow bootstrap was."""
    results = [
        *_main_results(),
        _r("pysup-procs", "bootstrap_started", 10, [3.0]),
        _r("pysup-procs", "bootstrap_after_last_start", 10, [0.1]),
    ]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in readme_table(results).splitlines()}
    assert rows["bootstrap: interpreters starting"].endswith("| 3 / 3 | — | — |")
    assert rows["bootstrap: joining, after the last start"].endswith("| 0.1 / 0.1 | — | — |")


def test_targets_cover_the_issue_goals_with_verdicts() -> None:
    results = [
        *_main_results(),
        _r("pysup", "lone_startup_healthz", 1, [0.3, 0.26, 0.4]),
        _r("pysup", "lone_idle_rss", 1, [45.7], floor_rss_mib=39.3),
        _r("pysup-procs", "burst_false_suspicions", 100, [0.0]),
        _r("pysup-http /census", "http_rps", 10, [2100.0]),
        _r("pysup-http /services", "http_rps", 10, [270.0]),
        _r(
            "pysup-udp",
            "bootstrap",
            1000,
            [1.0],
            part="scale",
            timeouts=3,
            timeout_s=60.0,
        ),
    ]
    got = {t["target"]: t for t in check_targets(results)}
    assert got["goal 2: start-up to /healthz 200 p50 <= 0.25 s"]["met"] is False
    assert got["goal 2: idle RSS <= floor 39.3 + 2 MiB"]["met"] is False
    assert got["goal 6: svc load on all, false suspicions N=100"]["met"] is True
    assert got["goal 7: /census requests/s >= 2000"]["met"] is True
    assert got["goal 7: /services requests/s >= 2000"]["met"] is False
    boot = got["goal 4: N=1000 bootstrap p99 <= 30 s"]
    assert boot["met"] is False and boot["note"] == "did not converge"
    ratio = got["pysup-procs/serf bootstrap p99 N=10"]
    assert ratio["value"] == pytest.approx(1.99) and ratio["met"] is False
    assert got["pysup-procs/serf failure_detection p99 N=10"]["value"] == math.inf


def test_scale_verdict_says_did_not_converge_with_the_counts() -> None:
    v = scale.verdict("bootstrap", [1.0, 2.0], misses=998, timeout_s=90.0)
    assert v["converged"] is False and v["met"] is False
    assert v["text"] == (
        "bootstrap: did not converge by 90 s (2 of 1000 observers saw it) (target <= 30 s: missed)"
    )
    ok = scale.verdict("failure_detection", [10.0, 12.0, 20.0], 0, 90.0)
    assert ok["converged"] and ok["stat"] == "p50" and ok["value"] == 12.0 and ok["met"]
    late = scale.verdict("event", [1.0, 3.0], 0, 15.0)
    assert late["met"] is False and "missed" in late["text"]
    assert scale.verdict("join", [1.0], 0, 30.0)["met"] is None  # no target for join
    stuck = scale.verdict("join", [1.0], 5, 30.0)
    assert stuck["met"] is None and stuck["converged"] is False and stuck["value"] == math.inf


def test_scale_census_summary() -> None:
    census = [
        {"alive": 999, "suspect": 0, "health": 0, "queue": 3},
        {"alive": 500, "suspect": 20, "health": 7, "queue": 900},
    ]
    s = scale.census_summary(census, 1000)
    assert s["complete_views"] == 1 and s["alive_seen_min"] == 500
    assert s["suspect_seen_max"] == 20 and s["local_health_max"] == 7 and s["queue_max"] == 900
    assert scale.census_summary([], 10) == {}


def test_e2e_parsers() -> None:
    text = "1700000000.5 value=v1\ngarbage\n1700000009.25 value=v2\n1700000010.0 value=v2\n"
    assert e2e.parse_reconfigured(text, "value=v2") == 1700000009.25
    assert e2e.parse_reconfigured(text, "value=v3") is None
    census = {"census_groups": {"benchsvc.default": {"population": {"m1": {"alive": True}}}}}
    assert e2e.census_health(census, "m1") is None  # the census has no health_check field
    census["census_groups"]["benchsvc.default"]["population"]["m1"]["health_check"] = "Critical"
    assert e2e.census_health(census, "m1") == "Critical"
    bf = {"service": {"list": {"benchsvc.default": {"m1": {"incarnation": 4}}}}}
    assert e2e.butterfly_incarnation(bf, "m1") == 4
    assert e2e.butterfly_incarnation(bf, "m2") is None
    assert e2e.butterfly_incarnation(None, "m1") is None


def test_proc_parsers() -> None:
    rollup = (
        "55d0c0000000-7ffd0a000000 ---p 00000000 00:00 0    [rollup]\n"
        "Rss:               46848 kB\nPss:               40960 kB\nPss_Anon:          30720 kB\n"
    )
    assert parse_smaps_rollup(rollup) == {"Rss": 45.75, "Pss": 40.0, "Pss_Anon": 30.0}
    stat = "42 (py (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 30 20 20 0 1 0"
    assert parse_proc_stat_children_cpu(stat, clk_tck=100) == 0.5
    busy, total = parse_proc_stat_busy("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 1 1 1\n")
    assert (busy, total) == (150.0, 1000.0)


def test_sim_memory_estimate_and_refusal() -> None:
    assert sim.estimate_mib(10_000) == pytest.approx(100 + sim.BYTES_PER_RECORD * 1e8 / 2**20)
    assert sim.memory_problem(10_000, available_mib=4096.0) is not None
    assert sim.memory_problem(1000, available_mib=4096.0) is None


def test_idle_window_covers_push_pull_unless_given() -> None:
    assert idle_window(Options(), 10) == 60.0  # 2 x 30 s
    assert idle_window(Options(), 100) == 180.0  # 2 x 90 s, at the cap
    assert idle_window(Options(idle_window_s=20.0), 100) == 20.0


def test_plan_jobs_respects_parts_sizes_and_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.sim

    monkeypatch.setattr(bench.sim, "memory_problem", lambda n: None)  # a machine it fits on
    jobs = plan_jobs(SuiteOptions(parts=("procs", "sim10k"), sizes=(10, 50)), {})
    assert [(j.part, j.n) for j in jobs] == [("procs", 10), ("procs", 50), ("sim10k", 10_000)]
    # Where it does not fit: 10,000 (reported skipped) and the largest size that does.
    monkeypatch.setattr(bench.sim, "memory_problem", lambda n: "too big")
    monkeypatch.setattr(bench.sim, "largest_fitting", lambda n: 7000)
    jobs = plan_jobs(SuiteOptions(parts=("sim10k",)), {})
    assert [(j.part, j.n) for j in jobs] == [("sim10k", 10_000), ("sim10k", 7000)]
    quick = plan_jobs(SuiteOptions(parts=("sim10k", "frontier"), quick=True), {})
    assert [(j.part, j.n) for j in quick] == [("frontier", 5), ("sim10k", 2000)]


def test_suite_report_writes_every_file(tmp_path: Path) -> None:
    machine = {"cores": 2, "loadavg_1m_p50": 3.0, "cpu_busy_p50": 0.9, "date": "today"}
    path = write_suite_report(_main_results(), machine, tmp_path)
    text = path.read_text()
    assert "## Main table: one process per member on both sides" in text
    assert "many members per process" in text
    assert "treat the figures as a trial" in text  # load 3.0 on 2 cores
    assert (tmp_path / "readme-table.md").read_text() == readme_table(_main_results())
    assert (tmp_path / "bootstrap.png").exists()


def test_sim_big_cut_short_by_its_budgets_still_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    # Budgets already spent: the idle minute does not start and no rumor is sent, yet the run
    # ends with a result that misses goal 5 instead of hanging or crashing.
    monkeypatch.setattr(sim, "BIG_IDLE_BUDGET_S", -1.0)
    monkeypatch.setattr(sim, "BIG_RUMOR_BUDGET_S", -1.0)
    out, result = sim.run(20, "big", 1, "lan", 1)
    assert out["idle_virtual_s"] == 0.0 and out["rumors"] == 0 and out["p99_s"] is None
    assert [t["met"] for t in out["targets"]] == [False, False]
    assert result.metric == "event" and result.samples == ()

"""The benchmark's pure plumbing: percentiles, /proc parsing, result files and the report table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.measure import (
    Result,
    cpu_rates,
    merge_results,
    parse_proc_stat_cpu,
    parse_vmrss_mib,
    percentile,
    read_results,
    write_results,
)
from bench.report import (
    Target,
    floor_seconds,
    floors_from_results,
    lookup_target,
    markdown_table,
    targets_from_json,
    write_report,
)


def test_percentile_interpolates_linearly_between_closest_ranks() -> None:
    xs = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(xs, 0) == 1.0
    assert percentile(xs, 100) == 4.0
    assert percentile(xs, 50) == pytest.approx(2.5)
    # rank = 0.99 * 3 = 2.97 -> 3 + 0.97 * (4 - 3)
    assert percentile(xs, 99) == pytest.approx(3.97)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan_and_bad_q_is_rejected() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_result_from_samples_fills_percentiles_and_unit_from_metric() -> None:
    r = Result.from_samples("serf", "event", 10, [0.1, 0.2, 0.3], timeouts=0)
    assert r.p50 == pytest.approx(0.2)
    assert r.p99 == pytest.approx(0.298)
    assert r.unit == "s"
    assert r.samples == (0.1, 0.2, 0.3)


def test_results_round_trip_through_json_file(tmp_path: Path) -> None:
    rs = [
        Result.from_samples("pysup", "bootstrap", 50, [1.0, 2.0], all_s=[2.0]),
        Result.from_samples("serf", "rss", 50, [12.5]),
        Result.from_samples("serf", "join", 50, []),  # no samples: NaN percentiles survive
    ]
    path = write_results(rs, "unit", directory=tmp_path, machine={"cores": 2})
    assert path.parent == tmp_path
    assert path.name.startswith("unit-")
    assert path.suffix == ".json"
    machine, back = read_results(path)
    assert machine == {"cores": 2}
    assert back[:2] == rs[:2]
    assert math.isnan(back[2].p50)


def test_proc_stat_cpu_counts_fields_after_the_last_paren() -> None:
    # comm with a space and a ')' must not shift the fields; utime=250, stime=50 ticks.
    fields = ["S", *(["0"] * 10), "250", "50", *(["0"] * 20)]
    line = "1234 (serf a) b) " + " ".join(fields)
    assert parse_proc_stat_cpu(line, clk_tck=100) == pytest.approx(3.0)


def test_vmrss_is_read_in_mib_and_missing_for_zombies() -> None:
    assert parse_vmrss_mib("Name:\tserf\nVmRSS:\t   13312 kB\n") == pytest.approx(13.0)
    assert math.isnan(parse_vmrss_mib("Name:\tserf\nState:\tZ (zombie)\n"))


def test_cpu_rates_skip_pids_that_vanished() -> None:
    assert cpu_rates({1: 1.0, 2: 5.0}, {1: 1.5}, wall=10.0) == [pytest.approx(0.05)]


def test_merge_pools_samples_of_the_same_system_metric_and_size() -> None:
    a = Result.from_samples("serf", "event", 10, [1.0, 2.0], timeouts=1, all_s=[2.0])
    b = Result.from_samples("serf", "event", 10, [3.0], timeouts=2, all_s=[3.0])
    c = Result.from_samples("serf", "event", 50, [9.0])
    merged = {(r.n): r for r in merge_results([a, b, c])}
    assert merged[10].samples == (1.0, 2.0, 3.0)
    assert merged[10].p50 == 2.0
    assert merged[10].meta["mean"] == pytest.approx(2.0)
    assert merged[10].meta["timeouts"] == 3
    assert merged[10].meta["all_s"] == [2.0, 3.0]
    assert merged[50] == c


def test_floor_is_gossip_rounds_times_interval() -> None:
    assert floor_seconds(1, 3, 0.2) == 0.0
    assert floor_seconds(10, 3, 0.2) == pytest.approx(0.4)  # log4(10) = 1.66 -> 2 rounds
    assert floor_seconds(64, 3, 0.2) == pytest.approx(0.6)  # exactly 3 rounds, not 4
    assert floor_seconds(1000, 3, 0.2) == pytest.approx(1.0)


def _fixture() -> list[Result]:
    return [
        Result.from_samples("pysup", "event", 10, [0.2, 0.4]),
        Result.from_samples("serf", "event", 10, [0.1, 0.2]),
        Result.from_samples("pysup", "event", 50, [0.3, 0.5]),
        Result.from_samples("serf", "event", 50, [0.3, 0.5]),
        Result.from_samples(
            "serf", "bootstrap", 10, [0.2], floor={"fanout": 3, "gossip_interval": 0.2}
        ),
        Result.from_samples("pysup", "failure_detection", 10, [3.0], timeouts=1),
        Result.from_samples("serf", "failure_detection", 10, [5.0]),
    ]


def _row(table: str, metric: str, n: int) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0].startswith(metric) and cells[1] == str(n):
            return cells
    raise AssertionError(f"no row for {metric} n={n} in:\n{table}")


def test_table_puts_systems_side_by_side_with_ratios_and_verdicts() -> None:
    targets = {"event": Target(stat="p99", max_ratio=1.5), "event@50": Target(max_value=0.4)}
    table = markdown_table(_fixture(), targets)
    row10 = _row(table, "event", 10)
    assert row10[2:6] == ["0.3", "0.398", "0.15", "0.199"]
    assert row10[6:8] == ["2.00x", "2.00x"]
    assert row10[9] == "**missed**"  # 2.0x > 1.5x
    row50 = _row(table, "event", 50)
    assert row50[6] == "1.00x"
    assert row50[8] == "p99 ≤ 0.4 s"  # the N-specific target wins over the metric-wide one
    assert row50[9] == "**missed**"  # p99 0.498 > 0.4


def test_table_marks_missing_data_and_timeouts() -> None:
    table = markdown_table(_fixture(), {"failure_detection": Target(max_value=10.0)})
    boot = _row(table, "bootstrap", 10)
    assert boot[2] == "—"  # no pysup record
    assert boot[6] == "—"
    assert boot[9] == "—"  # no target for bootstrap
    fd = _row(table, "failure_detection", 10)
    assert "1 timed out" in fd[2]
    assert fd[9] == "**missed**"  # under the bound, but one observer never saw the failure


def test_targets_load_from_json_and_specific_size_wins() -> None:
    targets = targets_from_json({"join": {"max_ratio": 2}, "join@1000": {"stat": "p50"}})
    assert lookup_target(targets, "join", 10) == Target(max_ratio=2.0)
    assert lookup_target(targets, "join", 1000) == Target(stat="p50")
    assert lookup_target(targets, "event", 10) is None


def test_report_writes_markdown_and_one_plot_per_metric(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    results = _fixture()
    assert floors_from_results(results) == {"serf": (3, 0.2)}
    md = write_report(results, tmp_path, {"event": Target(max_ratio=3.0)})
    text = md.read_text()
    assert "| event (s) | 10 |" in text
    for metric in ("event", "bootstrap", "failure_detection"):
        png = tmp_path / f"{metric}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({metric}.png)" in text

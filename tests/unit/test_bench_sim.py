"""`python -m bench.sim` prints one JSON object with the fields the README table is built from."""

from __future__ import annotations

import json

import pytest

from bench import sim

KEYS = {
    "members",
    "scenario",
    "profile",
    "p50_s",
    "p99_s",
    "false_positives",
    "msgs_per_member_s",
    "bytes_per_member_s",
    "wall_s",
    "floor_s",
    "virtual_s",
    "targets",
}


@pytest.mark.parametrize("scenario", ["bootstrap", "rumor", "failure"])
def test_json_output(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["-n", "10", "--scenario", scenario, "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= KEYS
    assert out["members"] == 10 and out["scenario"] == scenario and out["profile"] == "lan"
    assert out["timeouts"] == 0
    assert 0 < out["p50_s"] <= out["p99_s"]
    assert out["floor_s"] == sim.floor_s(sim.PRESETS["lan"], 10) == 0.4  # ceil(log4 10) * 0.2
    assert [t["met"] for t in out["targets"]] == [True]


def test_same_seed_same_numbers() -> None:
    a, _ = sim.run(8, "rumor", 5, "habitat", 1)
    b, _ = sim.run(8, "rumor", 5, "habitat", 1)
    assert (a["p50_s"], a["p99_s"], a["msgs_per_member_s"]) == (
        b["p50_s"],
        b["p99_s"],
        b["msgs_per_member_s"],
    )


def test_memory_check_refuses_a_ring_this_machine_cannot_hold() -> None:
    """24 GB here: an N=10,000 ring (10^8 records at ~260-350 B) was started by the old 110 B
    estimate and killed by the kernel at 19 GB; N=4,000 (about 5 GiB) fits."""
    assert sim.memory_problem(10_000, available_mib=24_000.0) is not None
    assert sim.memory_problem(4_000, available_mib=24_000.0) is None


def test_the_largest_fitting_size_keeps_a_margin_and_steps_by_a_thousand() -> None:
    """Where N=10,000 does not fit, the suite runs the largest multiple of 1,000 that does."""
    fit = sim.largest_fitting(10_000, available_mib=24_000.0)
    assert fit is not None and fit % 1000 == 0 and fit < 10_000
    assert sim.estimate_mib(fit) <= sim.BIG_FALLBACK_SHARE * 24_000.0
    assert sim.estimate_mib(fit + 1000) > sim.BIG_FALLBACK_SHARE * 24_000.0
    assert sim.largest_fitting(10_000, available_mib=10.0) is None


def test_a_built_ring_is_frozen_out_of_the_collector_until_the_run_ends() -> None:
    """`_built` moves the converged ring's objects to the collector's permanent generation;
    `run` gives them back after the repeat, so repeats do not pile up frozen rings."""
    import gc

    before = gc.get_freeze_count()
    ring = sim._built(1, 20, sim.PRESETS["lan"], sim.NET_PROFILES["lan"])
    assert gc.get_freeze_count() > before
    assert all(len(list(n.core.members())) == 19 for n in ring.nodes.values())
    gc.unfreeze()
    sim.run(20, "idle", 1, "lan", 1)
    assert gc.get_freeze_count() == 0

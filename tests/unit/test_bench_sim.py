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

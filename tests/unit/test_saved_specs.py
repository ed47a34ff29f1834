"""Saved service specs (pysup.service.saved): what ``svc load``/``start``/``stop``/``unload`` leave
in the state dir is what a restarted supervisor loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysup.service.saved import (
    forget_spec,
    load_saved_specs,
    save_desired,
    save_spec,
    spec_path,
)
from pysup.service.spec import DesiredState, ServiceSpec
from pysup.statedir import StateDir


def _state(tmp_path: Path) -> StateDir:
    return StateDir(tmp_path / "state")


def test_a_saved_spec_is_loaded_back_and_forgotten_on_unload(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = ServiceSpec(plan_dir=tmp_path, group="blue")
    save_spec(state, "redis", spec)
    assert [s.group for s in load_saved_specs(state)] == ["blue"]
    forget_spec(state, "redis")
    forget_spec(state, "redis")  # already gone: not an error
    assert load_saved_specs(state) == []


def test_desired_state_is_recorded_only_for_a_saved_spec(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec = ServiceSpec(plan_dir=tmp_path, group="blue")
    save_desired(state, "cli", spec, DesiredState.DOWN)  # given on the command line: no file
    assert not spec_path(state, "cli").exists()
    save_spec(state, "redis", spec)
    save_desired(state, "redis", spec, DesiredState.DOWN)
    [saved] = load_saved_specs(state)
    assert (saved.group, saved.desired_state) == ("blue", DesiredState.DOWN)


def test_an_unreadable_saved_spec_is_replaced_by_the_current_one(tmp_path: Path) -> None:
    state = _state(tmp_path)
    spec_path(state, "redis").write_text("plan_dir = \n")
    save_desired(state, "redis", ServiceSpec(plan_dir=tmp_path, group="g"), DesiredState.DOWN)
    [saved] = load_saved_specs(state)
    assert (saved.group, saved.desired_state) == ("g", DesiredState.DOWN)


@pytest.mark.parametrize("name", ["../evil", ".hidden", "a/b"])
def test_a_name_that_is_no_service_name_has_no_path(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        spec_path(_state(tmp_path), name)

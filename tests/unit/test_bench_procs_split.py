"""The bootstrap's split (bench.procs): interpreter start-up and the join itself, from the
members' own log times, so a slow bootstrap says which of the two it was."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bench.memberlog import Observer
from bench.procs import ProcRing


def _member(started: float | None, full: float | None) -> SimpleNamespace:
    view = Observer(expect=2)
    view.started_at, view.full_at = started, full
    return SimpleNamespace(view=view)


def test_split_measures_start_up_from_t0_and_the_join_from_the_last_start(tmp_path: Path) -> None:
    ring = ProcRing(3, workdir=tmp_path)
    # The seed started before t0 (it is not one of the N-1 spawned at once); m1 and m2 took 2 s
    # and 3 s to start; the views were full 0.2 s and 0.5 s after the last start.
    ring.members = [_member(90.0, 103.2), _member(102.0, 103.5), _member(103.0, None)]  # type: ignore[list-item]
    ring._split_bootstrap(100.0)
    assert ring.boot_started == [2.0, 3.0]
    assert [round(x, 6) for x in ring.boot_after_last] == [0.2, 0.5]

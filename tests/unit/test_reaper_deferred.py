"""A supervisor that is not PID 1 and has no children asks whether it is a subreaper only after
its first spawn (asking loads ctypes, ~0.8 MiB of an idle supervisor: issue 18), and then reaps
as before. A fake /proc says whether we have children; no process is forked."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pysup.service import reaper as reaper_mod
from pysup.service.reaper import ChildRegistry, Reaper, has_children


def _children_file(root: Path, content: str | None) -> Path:
    pid = str(os.getpid())
    d = root / pid / "task" / pid
    d.mkdir(parents=True, exist_ok=True)
    f = d / "children"
    if content is not None:
        f.write_text(content)
    return f


def test_has_children_reads_the_main_threads_children_file(tmp_path: Path) -> None:
    f = _children_file(tmp_path, "")
    assert has_children(tmp_path) is False
    f.write_text("4242 ")
    assert has_children(tmp_path) is True
    f.unlink()
    assert has_children(tmp_path) is True, "unreadable: assume children and ask at once"


def test_the_subreaper_question_waits_for_the_first_spawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []

    def is_subreaper() -> bool:
        asked.append(True)
        return True

    monkeypatch.setattr(reaper_mod, "is_child_subreaper", is_subreaper)
    f = _children_file(tmp_path, "")
    registry = ChildRegistry()
    r = Reaper(registry, proc_root=tmp_path)

    async def scenario() -> None:
        assert r.install(make_subreaper=False) is False
        assert asked == [] and not r.active, "asked (and loaded ctypes) with no child yet"
        f.write_text("4242")  # the first spawn: a child now exists
        with registry.spawning():
            registry.register(4242)
        await asyncio.sleep(0)  # install runs on the loop, soon after the spawn
        assert asked == [True] and r.active
        r.close()

    asyncio.run(scenario())


def test_a_supervisor_started_with_children_asks_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Children from before exec may be zombies already: a subreaper must reap them now."""
    asked: list[bool] = []
    monkeypatch.setattr(reaper_mod, "is_child_subreaper", lambda: asked.append(True) or False)
    _children_file(tmp_path, "4242")
    r = Reaper(ChildRegistry(), proc_root=tmp_path)

    async def scenario() -> None:
        assert r.install(make_subreaper=False) is False
        assert asked == [True]

    asyncio.run(scenario())

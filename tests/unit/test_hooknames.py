"""Hook file names (issue 14, item 1): Habitat's deprecated underscore names still run under the
dashed name, with Habitat's words; with both spellings the dashed file wins; other files are not
hooks. Through ``load_plan`` too, which is what fails on the old code (``health_check`` was
'unknown' and never ran)."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.service.hooknames import DEPRECATED_HOOK_NAMES, HOOK_NAMES, classify_hook_files
from pysup.service.plan import load_plan


def test_every_dashed_hook_has_its_underscore_spelling() -> None:
    assert dict(DEPRECATED_HOOK_NAMES) == {
        "file_updated": "file-updated",
        "health_check": "health-check",
        "post_run": "post-run",
        "post_stop": "post-stop",
    }
    assert all(name in HOOK_NAMES for name in DEPRECATED_HOOK_NAMES.values())


def test_underscore_names_are_their_hooks_with_habitats_warning() -> None:
    hooks, notes = classify_hook_files(["run", "health_check", "post_stop"])
    assert hooks == {"run": "run", "health-check": "health_check", "post-stop": "post_stop"}
    assert [(n.kind, n.file, n.hook, n.event) for n in notes] == [
        ("deprecated", "health_check", "health-check", "plan.hook_deprecated"),
        ("deprecated", "post_stop", "post-stop", "plan.hook_deprecated"),
    ]
    assert notes[0].message == (
        "Deprecated hook file detected: health_check. You should use health-check instead."
    )


def test_with_both_spellings_the_dashed_file_wins() -> None:
    hooks, notes = classify_hook_files(["health-check", "health_check", "run"])
    assert hooks == {"health-check": "health-check", "run": "run"}
    assert [(n.kind, n.event) for n in notes] == [
        ("deprecated_ignored", "plan.hook_deprecated_ignored")
    ]
    assert notes[0].message == (
        "Deprecated hook file detected along with expected one. "
        "You should remove health_check and keep only health-check."
    )


@pytest.mark.parametrize(
    ("file", "hint"),
    [
        ("healthcheck", "Did you mean health-check?"),
        ("poststop", "Did you mean post-stop?"),
        ("reload", "replaced the reload hook with reconfigure"),
        ("uninstall", "never uninstalls"),
        ("README.md", "is not a hook name and is ignored."),
    ],
)
def test_other_files_are_not_hooks_and_get_a_hint(file: str, hint: str) -> None:
    hooks, notes = classify_hook_files(["run", file])
    assert hooks == {"run": "run"}
    assert [(n.kind, n.file, n.event) for n in notes] == [("unknown", file, "plan.hook_unknown")]
    assert hint in notes[0].message


def _plan(tmp_path: Path, hooks: dict[str, str]) -> Path:
    d = tmp_path / "p"
    (d / "hooks").mkdir(parents=True)
    (d / "plan.sh").write_text("pkg_name=p\n")
    for name, body in hooks.items():
        (d / "hooks" / name).write_text(body)
    return d


def test_load_plan_maps_every_underscore_hook_and_logs_each(tmp_path: Path) -> None:
    files = {
        "run": "#!/bin/sh\n",
        **{old: f"#!/bin/sh\n# {old}\n" for old in DEPRECATED_HOOK_NAMES},
    }
    plan_dir = _plan(tmp_path, files)
    with capture_logs() as logs:
        plan = load_plan(plan_dir, tmp_path / "svc")
    assert dict(plan.hooks) == {
        "run": plan_dir / "hooks" / "run",
        **{new: plan_dir / "hooks" / old for old, new in DEPRECATED_HOOK_NAMES.items()},
    }
    deprecated = [e for e in logs if e["event"] == "plan.hook_deprecated"]
    assert sorted(e["hook"] for e in deprecated) == sorted(DEPRECATED_HOOK_NAMES.values())
    assert all(e["log_level"] == "warning" and e["service"] == "p" for e in deprecated)
    assert not [e for e in logs if e["event"] == "plan.hook_unknown"]


def test_load_plan_prefers_the_dashed_file(tmp_path: Path) -> None:
    plan_dir = _plan(
        tmp_path, {"run": "#!/bin/sh\n", "health-check": "exit 1\n", "health_check": "exit 2\n"}
    )
    with capture_logs() as logs:
        plan = load_plan(plan_dir, tmp_path / "svc")
    assert plan.hooks["health-check"] == plan_dir / "hooks" / "health-check"
    assert [e["event"] for e in logs if e["event"].startswith("plan.hook")] == [
        "plan.hook_deprecated_ignored"
    ]

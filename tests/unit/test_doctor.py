"""`pysup plan check` (the plan doctor, issue 14): the shipped plans are clean, and every problem
planted in tests/fixtures/plans is reported at its file and line with a fix, exit status 1.

Plans are loaded as the Supervisor loads them (plan.sh through a real bash). Dependencies are
resolved with an explicit PkgPaths so that the result does not depend on what this host has
installed: core/curl is mapped, nothing is installed under /hab/pkgs, PATH is this process's."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pysup.cli import main
from pysup.service.doctor import Problem, check_plan, run
from pysup.service.pkgpaths import PkgPaths

REPO = Path(__file__).resolve().parents[2]
PLANS = REPO / "plans"
BROKEN = REPO / "tests" / "fixtures" / "plans"


@pytest.fixture
def paths(tmp_path: Path) -> PkgPaths:
    search = tuple(d for d in os.environ.get("PATH", "").split(os.pathsep) if d)
    return PkgPaths(mapping={"core/curl": "/usr"}, search_path=search, hab_root=tmp_path / "hab")


def found(problems: list[Problem]) -> list[tuple[str, str, int, str]]:
    """(severity, file relative to the fixtures, line, message) of each problem."""
    return [(p.severity, str(p.file.relative_to(BROKEN)), p.line, p.message) for p in problems]


@pytest.mark.parametrize("name", sorted(p.name for p in PLANS.iterdir() if p.is_dir()))
def test_the_shipped_plans_have_no_errors(name: str, paths: PkgPaths) -> None:
    problems = check_plan(PLANS / name, paths)
    assert [p for p in problems if p.severity == "error"] == []
    expected = []
    if name == "habsuper":  # the blog's shape keeps its underscore health_check on purpose
        expected = [
            "Deprecated hook file detected: health_check. You should use health-check instead."
        ]
    assert [p.message for p in problems] == expected


def test_hook_names(paths: PkgPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # paths in messages are shown relative to the working directory
    problems = check_plan(BROKEN / "hook-names", paths)
    assert [(s, f, line) for s, f, line, _ in found(problems)] == [
        ("warning", "hook-names/hooks/health_check", 1),
        ("warning", "hook-names/hooks/healthcheck", 1),
        ("warning", "hook-names/hooks/post_stop", 1),
    ]
    shadowed, unknown, deprecated = problems
    assert "keep only health-check" in shadowed.message
    assert "Did you mean health-check?" in unknown.message
    assert deprecated.message.startswith("Deprecated hook file detected: post_stop.")
    hooks = "tests/fixtures/plans/hook-names/hooks"
    assert deprecated.fix == f"rename it: git mv {hooks}/post_stop {hooks}/post-stop"


def test_interpreters_and_pkg_path_for(paths: PkgPaths) -> None:
    problems = check_plan(BROKEN / "interpreters", paths)
    result = found(problems)
    assert [(s, f, line) for s, f, line, _ in result] == [
        ("error", "interpreters/hooks/health-check", 1),
        ("error", "interpreters/hooks/health-check", 2),
        ("error", "interpreters/hooks/init", 1),
        ("error", "interpreters/hooks/init", 1),
        ("error", "interpreters/hooks/run", 1),
    ]
    messages = "\n".join(m for *_, m in result)
    assert "pysup-no-such-program is not on PATH" in messages
    assert 'pkgPathFor "core/curl" is not one of pkg_deps' in messages
    assert 'pkgPathFor "core/pysup-no-such-package" renders ' in messages
    assert "/hab/pkgs/core/pysup-no-such-package/bin/bash named by its #! line" in messages
    assert "/opt/pysup-no-such-dir/bin/python3 named by its #! line does not exist" in messages
    fixes = "\n".join(p.fix for p in problems)
    assert "PYSUP_PKG_PATHS='core/pysup-no-such-package=/prefix'" in fixes
    assert "add core/curl to pkg_deps" in fixes


def test_declarations(paths: PkgPaths) -> None:
    problems = check_plan(BROKEN / "declarations", paths)
    assert found(problems) == [
        (
            "warning",
            "declarations/config/app.conf",
            3,
            "bind.cache is used, but the plan declares no bind 'cache'",
        ),
        (
            "warning",
            "declarations/config/app.conf",
            4,
            "cfg.http.timeout is not defined in default.toml: it renders as empty",
        ),
        (
            "error",
            "declarations/plan.sh",
            5,
            "export 'host' names cfg path 'http.hots', which default.toml does not define",
        ),
        (
            "error",
            "declarations/plan.sh",
            8,
            "pkg_binds 'db': 'port,host' is not an export key name",
        ),
    ]
    assert problems[3].fix == 'list export keys separated by spaces: [db]="port host"'


def test_templates(paths: PkgPaths) -> None:
    assert found(check_plan(BROKEN / "templates", paths)) == [
        (
            "error",
            "templates/config/helper.toml",
            2,
            "strJoin: first argument must be a list (column 1)",
        ),
        (
            "error",
            "templates/config/unclosed.conf",
            2,
            "unclosed block '{{#if}}': missing '{{/if}}' (column 1)",
        ),
    ]


def test_a_plan_sh_that_stops_the_shell(paths: PkgPaths) -> None:
    [problem] = check_plan(BROKEN / "plan-sh-stops", paths)
    assert (problem.severity, problem.file.name, problem.line) == ("error", "plan.sh", 4)
    assert problem.message == "NOT_SET_ANYWHERE: unbound variable"
    assert "${NAME:-default}" in problem.fix


def test_windows_line_endings_are_a_warning(tmp_path: Path, paths: PkgPaths) -> None:
    (tmp_path / "hooks").mkdir()
    (tmp_path / "plan.toml").write_text('name = "crlf"\n')
    (tmp_path / "hooks" / "run").write_bytes(b"#!/bin/sh\r\nexec sleep 1\r\n")
    [problem] = check_plan(tmp_path, paths)
    assert (problem.severity, problem.line) == ("warning", 1)
    assert "Windows line endings" in problem.message


def test_run_prints_file_line_and_fix_and_sets_the_exit_status(
    paths: PkgPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    assert run([BROKEN / "declarations", PLANS / "habsup"], paths, out) == 1
    text = out.getvalue()
    assert "tests/fixtures/plans/declarations/plan.sh:8: error: pkg_binds 'db'" in text
    assert '    fix: list export keys separated by spaces: [db]="port host"' in text
    assert text.endswith("2 plans checked: 2 errors, 2 warnings\n")
    assert run([PLANS / "habsuper"], paths, io.StringIO()) == 0
    assert run([PLANS / "habsuper"], paths, io.StringIO(), strict=True) == 1


def test_the_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSUP_PKG_PATHS", "core/curl=/usr")
    monkeypatch.chdir(REPO)
    plans = sorted(f"plans/{p.name}" for p in PLANS.iterdir() if p.is_dir())
    assert main(["plan", "check", *plans]) == 0
    assert capsys.readouterr().out.endswith(f"{len(plans)} plans checked: 0 errors, 1 warning\n")
    assert main(["plan", "check", "tests/fixtures/plans/templates"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("tests/fixtures/plans/templates/config/helper.toml:2: error: strJoin")
    assert main(["plan", "check", "no/such/plan"]) == 2

"""plan.sh as real plans write it (issue 14, item 3): empty, single-element and associative arrays
load; a plan that really stops the shell is reported with bash's own words and the line.

Each plan here is sourced by a real, clean bash (as ``load_plan`` always does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysup.service.plan import PlanError, load_plan


def sh_plan(tmp_path: Path, body: str) -> Path:
    plan_dir = tmp_path / "p"
    plan_dir.mkdir(exist_ok=True)
    (plan_dir / "plan.sh").write_text(body)
    return plan_dir


BASE = "pkg_name=p\npkg_svc_run=x\n"


@pytest.mark.parametrize(
    "arrays",
    [
        "pkg_deps=()\n",
        "pkg_deps=()\npkg_exposes=()\npkg_exports=()\npkg_binds=()\npkg_binds_optional=()\n",
        "pkg_build_deps=()\npkg_deps=()\npkg_bin_dirs=()\n",
        "declare -a pkg_deps\n",
        "pkg_deps=( )\npkg_svc_user=root\n",
    ],
    ids=["deps", "every-array", "build-arrays", "declared-unset", "spaces"],
)
def test_empty_arrays_load(tmp_path: Path, arrays: str) -> None:
    """Fails before the fix: an empty array printed one empty field, the reader stopped and the
    plan 'exited while being sourced (no output)'."""
    plan = load_plan(sh_plan(tmp_path, BASE + arrays), tmp_path)
    assert plan.deps == () and plan.exposes == () and dict(plan.exports) == {}
    assert plan.svc_run == "x"


def test_an_empty_array_does_not_swallow_the_variables_after_it(tmp_path: Path) -> None:
    """The reader must stay in step: values emitted after the empty array are still read."""
    body = (
        "pkg_name=p\npkg_deps=()\npkg_exposes=(port)\npkg_exports=([port]=http.port)\n"
        "pkg_svc_run=x\npkg_shutdown_timeout_sec=4\n"
    )
    plan = load_plan(sh_plan(tmp_path, body), tmp_path)
    assert plan.exposes == ("port",) and dict(plan.exports) == {"port": "http.port"}
    assert plan.shutdown_timeout == 4


def test_single_element_arrays(tmp_path: Path) -> None:
    body = BASE + "pkg_deps=(core/curl)\npkg_exposes=( port )\npkg_exports=( [port]=port )\n"
    plan = load_plan(sh_plan(tmp_path, body), tmp_path)
    assert plan.deps == ("core/curl",) and plan.exposes == ("port",)


def test_the_blog_plans_deps_line(tmp_path: Path) -> None:
    body = 'pkg_name=habsuper\npkg_origin=paulczar\npkg_version="0.1.0"\n'
    body += 'pkg_scaffolding="core/scaffolding-go"\npkg_deps=( core/curl core/go )\n'
    (sh_plan(tmp_path, body) / "hooks").mkdir()
    (tmp_path / "p" / "hooks" / "run").write_text("#!/bin/sh\n")
    plan = load_plan(tmp_path / "p", tmp_path)
    assert (plan.origin, plan.name, plan.version) == ("paulczar", "habsuper", "0.1.0")
    assert plan.deps == ("core/curl", "core/go")


@pytest.mark.parametrize(
    "exports",
    [
        "declare -A pkg_exports=([port]=http.port [host]=http.listen)\n",
        "pkg_exports=(\n  [port]=http.port\n  [host]=http.listen\n)\n",
        "pkg_exports[port]=http.port\npkg_exports[host]=http.listen\n",
        "typeset -A pkg_exports\npkg_exports=([port]=http.port)\n"
        "pkg_exports+=([host]=http.listen)\n",
    ],
    ids=["declare-A", "multi-line", "element-assignments", "typeset-append"],
)
def test_associative_arrays(tmp_path: Path, exports: str) -> None:
    body = BASE + exports + 'pkg_binds=([db]="port host")\ndeclare -A pkg_binds_optional=()\n'
    plan = load_plan(sh_plan(tmp_path, body), tmp_path)
    assert dict(plan.exports) == {"port": "http.port", "host": "http.listen"}
    assert dict(plan.binds) == {"db": ("port", "host")} and dict(plan.binds_optional) == {}


def test_array_elements_with_spaces_and_empty_strings_stay_elements(tmp_path: Path) -> None:
    body = BASE + "pkg_exposes=('' 8080)\n"
    with pytest.raises(PlanError, match="pkg_exposes must be a list of non-empty strings"):
        load_plan(sh_plan(tmp_path, body), tmp_path)


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("pkg_name=p\nset -u\necho $undefined_thing\npkg_svc_run=x\n", 3, "unbound variable"),
        ('pkg_name=p\n\n: "${NEEDED:?set NEEDED first}"\n', 3, "NEEDED: set NEEDED first"),
        ("pkg_name=p\nset -e\n\nfalse\npkg_svc_run=x\n", 4, "exited with status 1"),
        ("pkg_name=p\nstop() {\n  exit 5\n}\nstop\n", 3, "exited with status 5"),
    ],
    ids=["set-u", "colon-question", "set-e", "exit-in-function"],
)
def test_a_plan_that_stops_the_shell_reports_bashs_error_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    """Fails before the fix: 'plan exited while being sourced (...)' without a line number."""
    plan_dir = sh_plan(tmp_path, body)
    with pytest.raises(PlanError) as info:
        load_plan(plan_dir, tmp_path)
    err = info.value
    assert (err.path, err.line) == (plan_dir / "plan.sh", line), str(err)
    assert message in err.detail
    assert str(err).startswith(f"{plan_dir}/plan.sh:{line}: ")


def test_a_command_that_fails_without_stopping_the_shell_is_not_an_error(tmp_path: Path) -> None:
    body = "pkg_name=p\nno_such_command_here\npkg_svc_run=x\n"
    assert load_plan(sh_plan(tmp_path, body), tmp_path).svc_run == "x"

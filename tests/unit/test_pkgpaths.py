"""pkgPathFor on a host without Habitat packages (issue 14, item 2): explicit mappings, installed
Habitat packages, the PATH fallback, and what is rendered when none answers. File systems are
built under tmp_path, so these tests do not depend on what this machine has installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pysup.service.context import pkg_context
from pysup.service.handlebars import compile_template
from pysup.service.pkgpaths import (
    PkgPathError,
    PkgPaths,
    parse_mapping,
    path_for,
    resolve,
)
from pysup.service.plan import load_plan
from pysup.settings import SettingsError, load_settings


def tool(prefix: Path, name: str, sub: str = "bin") -> Path:
    path = prefix / sub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def paths(tmp_path: Path, *dirs: Path, mapping: dict[str, str] | None = None) -> PkgPaths:
    return PkgPaths(
        mapping=mapping or {},
        search_path=tuple(str(d) for d in dirs),
        hab_root=tmp_path / "hab" / "pkgs",
    )


def test_path_fallback_gives_the_prefix_of_a_namesake_program(tmp_path: Path) -> None:
    usr = tmp_path / "usr"
    tool(usr, "curl")
    res = resolve("core/curl", paths(tmp_path, tmp_path / "nothing" / "bin", usr / "bin"))
    assert (res.path, res.source, res.found) == (str(usr), "path", True)
    assert str(usr / "bin" / "curl") in res.detail


def test_path_fallback_takes_the_first_directory_and_sbin_too(tmp_path: Path) -> None:
    tool(tmp_path / "local", "nginx", "sbin")
    tool(tmp_path / "usr", "nginx", "sbin")
    res = resolve("core/nginx", paths(tmp_path, tmp_path / "local/sbin", tmp_path / "usr/sbin"))
    assert res.path == str(tmp_path / "local")


def test_path_fallback_ignores_non_bin_dirs_and_non_executables(tmp_path: Path) -> None:
    shim = tool(tmp_path / "pyenv", "curl", "shims")  # not <prefix>/bin: no prefix to give
    plain = tmp_path / "usr" / "bin" / "curl"
    plain.parent.mkdir(parents=True)
    plain.write_text("not executable")
    res = resolve("core/curl", paths(tmp_path, shim.parent, plain.parent))
    assert (res.source, res.found) == ("none", False)
    assert res.path == str(tmp_path / "hab" / "pkgs" / "core" / "curl")


def test_a_tool_in_slash_bin_gives_the_empty_prefix() -> None:
    """``{{pkgPathFor "core/sh"}}/bin/sh`` must render /bin/sh, not //bin/sh."""
    res = resolve("core/sh", PkgPaths(search_path=("/bin",), hab_root=Path("/nonexistent")))
    assert os.access("/bin/sh", os.X_OK)
    assert (res.path, res.source) == ("", "path")


def test_the_fallback_can_be_switched_off(tmp_path: Path) -> None:
    tool(tmp_path / "usr", "curl")
    p = PkgPaths(fallback=False, search_path=(str(tmp_path / "usr/bin"),), hab_root=tmp_path)
    res = resolve("core/curl", p)
    assert (res.source, res.path) == ("none", str(tmp_path / "core" / "curl"))


def test_installed_habitat_package_beats_the_fallback_newest_first(tmp_path: Path) -> None:
    tool(tmp_path / "usr", "curl")
    root = tmp_path / "hab" / "pkgs" / "core" / "curl"
    for rel in ("7.9.1/20200101000000", "7.10.0/20190101000000", "7.10.0/20210101000000"):
        (root / rel).mkdir(parents=True)
    p = paths(tmp_path, tmp_path / "usr/bin")
    assert resolve("core/curl", p).path == str(root / "7.10.0" / "20210101000000")
    assert resolve("core/curl", p).source == "installed"
    assert resolve("core/curl/7.9.1", p).path == str(root / "7.9.1" / "20200101000000")
    assert resolve("core/curl/8.0.0", p).source == "path"


def test_an_explicit_mapping_beats_everything(tmp_path: Path) -> None:
    tool(tmp_path / "usr", "curl")
    (tmp_path / "hab" / "pkgs" / "core" / "curl" / "1" / "2").mkdir(parents=True)
    p = paths(tmp_path, tmp_path / "usr/bin", mapping={"core/curl": "/opt/curl"})
    res = resolve("core/curl/7.0.0/20200101000000", p)
    assert (res.path, res.source) == ("/opt/curl", "mapping")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "core/curl=/usr core/jdk=/usr/lib/jvm/java-17/",
            {"core/curl": "/usr", "core/jdk": "/usr/lib/jvm/java-17"},
        ),
        ("core/curl=/usr,core/bash=/", {"core/curl": "/usr", "core/bash": ""}),
        ({"core/curl": "/usr"}, {"core/curl": "/usr"}),
        ("", {}),
    ],
)
def test_parse_mapping(raw: str | dict[str, str], expected: dict[str, str]) -> None:
    assert parse_mapping(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("core/curl", "expected ORIGIN/NAME=PREFIX"),
        ("curl=/usr", "expected ORIGIN/NAME"),
        ("core/curl/7.0=/usr", "expected ORIGIN/NAME"),
        ("core/curl=usr", "expected an absolute path"),
        ({"core/curl": 1}, "expected an absolute path"),
    ],
)
def test_bad_mappings_are_refused_with_the_entry(raw: str | dict[str, object], error: str) -> None:
    with pytest.raises(PkgPathError, match=error):
        parse_mapping(raw)  # type: ignore[arg-type]


def test_settings_from_env_and_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "pysup.toml"
    conf.write_text('pkg_path_fallback = false\n[pkg_paths]\n"core/curl" = "/opt/curl"\n')
    s = load_settings({}, env={}, config_file=str(conf))
    assert (dict(s.pkg_paths), s.pkg_path_fallback) == ({"core/curl": "/opt/curl"}, False)
    env = {"PYSUP_PKG_PATHS": "core/curl=/usr", "PYSUP_PKG_PATH_FALLBACK": "on"}
    s = load_settings({}, env=env, config_file=str(conf))
    assert (dict(s.pkg_paths), s.pkg_path_fallback) == ({"core/curl": "/usr"}, True)
    defaults = load_settings({}, env={})
    assert (dict(defaults.pkg_paths), defaults.pkg_path_fallback) == ({}, True)
    with pytest.raises(SettingsError, match="PYSUP_PKG_PATHS: pkg_paths key 'curl'"):
        load_settings({}, env={"PYSUP_PKG_PATHS": "curl=/usr"})


def test_path_for_is_what_the_helper_renders() -> None:
    deps = [{"ident": "core/curl/7/1", "path": "/usr"}, {"ident": "core/bash/5/2", "path": ""}]
    assert path_for("core/curl", deps) == "/usr"
    assert path_for("core/bash", deps) == ""  # /bin/bash: found, with the empty prefix
    assert path_for("core/curl/8", deps) == ""
    assert path_for("core/jq", [{"ident": "core/jq/1.6/3"}]) == "/hab/pkgs/core/jq/1.6/3"
    assert path_for("core", deps) is None


def test_a_loaded_plans_hook_renders_the_resolved_path(tmp_path: Path) -> None:
    """The whole wiring: plan.sh's pkg_deps -> load_plan(pkg_paths=...) -> the template context ->
    pkgPathFor. Before issue 14 this rendered /hab/pkgs/core/curl on every host."""
    tool(tmp_path / "usr", "curl")
    d = tmp_path / "p"
    (d / "hooks").mkdir(parents=True)
    (d / "plan.sh").write_text("pkg_name=p\npkg_deps=( core/curl core/missing )\n")
    (d / "hooks" / "run").write_text('{{pkgPathFor "core/curl"}}/bin/curl\n')
    plan = load_plan(d, tmp_path / "svc", pkg_paths=paths(tmp_path, tmp_path / "usr/bin"))
    assert dict(plan.dep_paths) == {"core/curl": str(tmp_path / "usr")}
    ctx = {"pkg": pkg_context(plan, {})}
    hook = compile_template((d / "hooks" / "run").read_text())
    assert hook.render(ctx) == f"{tmp_path}/usr/bin/curl\n"
    missing = compile_template('{{pkgPathFor "core/missing"}}').render(ctx)
    assert missing == "/hab/pkgs/core/missing"

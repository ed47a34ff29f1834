"""Plan loading from plan.toml and (through a real, clean bash) Habitat plan.sh; the example plans.

The last tests start the example plans' programs directly (real processes, real sockets on
127.0.0.1, bounded waits) to prove the shipped plans work before any Supervisor runs them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pysup.service.cfg import lookup_path
from pysup.service.plan import HOOK_NAMES, PlanError, load_plan
from tests.util import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
PLANS = REPO / "plans"
EXAMPLES = sorted(p.name for p in PLANS.iterdir() if p.is_dir())


def write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def sh_plan(tmp_path: Path, body: str, name: str = "p") -> Path:
    plan_dir = tmp_path / name
    write(plan_dir / "plan.sh", body)
    return plan_dir


# --- the example plans ----------------------------------------------------------------------------


def test_the_example_plans_exist() -> None:
    assert {"habsup", "greeter", "kvstore", "habsuper"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_plan_loads(name: str, tmp_path: Path) -> None:
    plan = load_plan(PLANS / name, tmp_path / "svc")
    assert plan.name == name
    assert plan.ident == f"{plan.origin}/{name}/{plan.version}/{plan.release}"
    assert re.fullmatch(r"\d{14}", plan.release)
    assert plan.svc_path == tmp_path / "svc" / name
    assert "run" in plan.hooks or plan.svc_run
    assert set(plan.hooks) <= HOOK_NAMES
    assert all(p.is_file() and os.access(p, os.X_OK) for p in plan.hooks.values())
    assert plan.default_cfg, "every example ships a default.toml"
    if name != "habsuper":  # the blog's shape: its program takes flags, no config file
        assert plan.config_dir is not None and any(plan.config_dir.iterdir())
    assert re.fullmatch(r"[0-9a-f]{64}", plan.fingerprint)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_templates_and_exports_only_use_keys_default_toml_defines(
    name: str, tmp_path: Path
) -> None:
    plan = load_plan(PLANS / name, tmp_path)
    configs = list(plan.config_dir.iterdir()) if plan.config_dir is not None else []
    templates = [*configs, *plan.hooks.values()]
    used = {
        m.group(1)
        for t in templates
        for m in re.finditer(r"\{\{[#/]?(?:if |unless )?cfg\.([\w.-]+)", t.read_text())
    }
    assert used, f"{name} templates use no cfg at all"
    for path in sorted(used | set(plan.exports.values())):
        lookup_path(plan.default_cfg, path)  # KeyError names the undefined key


def test_habsup_plan(tmp_path: Path) -> None:
    plan = load_plan(PLANS / "habsup", tmp_path)
    assert (plan.origin, plan.version) == ("pysup", "0.1.0")
    assert dict(plan.exports) == {"port": "http.port"}
    assert plan.exposes == ("port",)
    assert plan.default_cfg["http"] == {
        "listen": "0.0.0.0",
        "port": 8080,
        "message": "hello from habsup",
    }
    assert set(plan.hooks) == {"run", "health-check"}
    assert plan.svc_run is None


def test_habsuper_plan_has_the_blogs_shape(tmp_path: Path) -> None:
    """habitat/plan.sh with pkg_deps=( core/curl ... ), hooks/run exec'ing bin/habsuper, and the
    underscore hooks/health_check, which is the health-check hook."""
    plan = load_plan(PLANS / "habsuper", tmp_path)
    hooks_dir = PLANS / "habsuper" / "habitat" / "hooks"
    assert plan.plan_file == PLANS / "habsuper" / "habitat" / "plan.sh"
    assert dict(plan.hooks) == {
        "run": hooks_dir / "run",
        "health-check": hooks_dir / "health_check",
    }
    assert plan.deps[0] == "core/curl"
    assert "exec {{pkg.path}}/bin/habsuper" in (hooks_dir / "run").read_text()
    health = (hooks_dir / "health_check").read_text()
    assert '{{pkgPathFor "core/curl"}}/bin/curl -sS --head --fail --max-time 1' in health
    assert "exit 2" in health
    program = PLANS / "habsuper" / "bin" / "habsuper"
    assert os.access(program, os.X_OK) and program.read_bytes().startswith(b"#!/usr/bin/env ")
    assert plan.default_cfg["http"]["port"] != 8080, "must not collide with habsup"


def test_greeter_plan_has_lifecycle_hooks(tmp_path: Path) -> None:
    plan = load_plan(PLANS / "greeter", tmp_path)
    assert {"init", "run", "reconfigure", "post-stop"} <= set(plan.hooks)
    assert plan.shutdown_timeout == 5


def test_kvstore_plan_sh_expands_preset_variables(tmp_path: Path) -> None:
    plan = load_plan(PLANS / "kvstore", tmp_path / "svc")
    kv_conf = tmp_path / "svc" / "kvstore" / "config" / "kv.conf"
    assert plan.svc_run == f"python3 -u {PLANS / 'kvstore' / 'kv.py'} {kv_conf}"
    assert dict(plan.exports) == {"port": "port", "backlog": "tcp-backlog"}
    assert plan.exposes == ("port",)
    assert plan.deps == ("core/python",)
    assert (plan.shutdown_signal, plan.shutdown_timeout) == ("TERM", 3)
    assert plan.hooks == {}
    assert plan.plan_file == PLANS / "kvstore" / "plan.sh"


# --- plan.sh through bash -------------------------------------------------------------------------


def test_plan_sh_fields_and_defaults(tmp_path: Path) -> None:
    plan_dir = sh_plan(
        tmp_path,
        """
pkg_name=web
pkg_origin=acme
pkg_version=1.2.3
pkg_svc_run="web --conf ${pkg_svc_config_path}/web.conf --data $pkg_svc_data_path"
pkg_svc_user=nobody
pkg_svc_group=nogroup
pkg_exports=([port]=http.port [host]=http.host)
pkg_exposes=(port)
pkg_binds=([database]="port host" [cache]=port)
pkg_binds_optional=([metrics]="port")
pkg_shutdown_signal=SIGINT
pkg_shutdown_timeout_sec=12
pkg_deps=(core/a core/b)
""",
    )
    plan = load_plan(plan_dir, tmp_path / "svc")
    svc = tmp_path / "svc" / "web"
    assert plan.ident.startswith("acme/web/1.2.3/")
    assert plan.svc_run == f"web --conf {svc}/config/web.conf --data {svc}/data"
    assert (plan.svc_user, plan.svc_group) == ("nobody", "nogroup")
    assert dict(plan.exports) == {"port": "http.port", "host": "http.host"}
    assert plan.exposes == ("port",)
    assert dict(plan.binds) == {"database": ("port", "host"), "cache": ("port",)}
    assert dict(plan.binds_optional) == {"metrics": ("port",)}
    assert (plan.shutdown_signal, plan.shutdown_timeout) == ("INT", 12)
    assert plan.deps == ("core/a", "core/b")


def test_every_preset_variable_is_set_before_sourcing(tmp_path: Path) -> None:
    names = [
        "pkg_prefix",
        "pkg_svc_path",
        "pkg_svc_config_path",
        "pkg_svc_data_path",
        "pkg_svc_files_path",
        "pkg_svc_var_path",
        "pkg_svc_static_path",
        "pkg_svc_pid_file",
        "PLAN_CONTEXT",
    ]
    run = " ".join(f"{n}=${{{n}}}" for n in names)
    plan_dir = sh_plan(tmp_path, f'pkg_name=p\npkg_svc_run="{run}"\n')
    plan = load_plan(plan_dir, tmp_path / "svc")
    assert plan.svc_run is not None
    got = dict(item.split("=", 1) for item in plan.svc_run.split())
    svc = tmp_path / "svc" / "p"
    assert got == {
        "pkg_prefix": str(plan_dir),
        "pkg_svc_path": str(svc),
        "pkg_svc_config_path": f"{svc}/config",
        "pkg_svc_data_path": f"{svc}/data",
        "pkg_svc_files_path": f"{svc}/files",
        "pkg_svc_var_path": f"{svc}/var",
        "pkg_svc_static_path": f"{svc}/static",
        "pkg_svc_pid_file": f"{svc}/PID",
        "PLAN_CONTEXT": str(plan_dir),
    }


def test_plan_sh_defaults(tmp_path: Path) -> None:
    plan = load_plan(sh_plan(tmp_path, "pkg_name=p\npkg_svc_run=true\n"), tmp_path)
    assert (plan.origin, plan.version) == ("local", "0.0.0")
    assert (plan.svc_user, plan.svc_group) == ("hab", "hab")
    assert (plan.shutdown_signal, plan.shutdown_timeout) == ("TERM", 8)
    assert plan.exports == {} and plan.binds == {} and plan.exposes == () and plan.deps == ()


def test_plan_sh_runs_in_a_clean_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYSUP_LEAK", "leaked")
    monkeypatch.setenv("BASH_ENV", str(write(tmp_path / "env.sh", "pkg_version=from-bash-env\n")))
    body = 'pkg_name=p\npkg_version="v-${PYSUP_LEAK:-clean}"\npkg_svc_run="$PATH"\n'
    plan = load_plan(sh_plan(tmp_path, body), tmp_path)
    assert plan.version == "v-clean"
    assert plan.svc_run == "/usr/bin:/bin"


def test_build_callbacks_are_defined_but_never_called(tmp_path: Path) -> None:
    marker = tmp_path / "built"
    body = f"""pkg_name=p
pkg_svc_run=true
do_build() {{ touch {marker}; }}
do_install() {{ touch {marker}; }}
do_begin() {{ touch {marker}; }}
"""
    load_plan(sh_plan(tmp_path, body), tmp_path)
    assert not marker.exists()


def test_top_level_output_of_a_plan_does_not_confuse_the_reader(tmp_path: Path) -> None:
    body = (
        "echo pkg_name=evil\nprintf 'END\\0S\\0pkg_name\\0evil\\0'\npkg_name=good\npkg_svc_run=x\n"
    )
    assert load_plan(sh_plan(tmp_path, body), tmp_path).name == "good"


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    plan_dir = sh_plan(tmp_path, "pkg_name=p\n\nif true; then\n  echo\n}\npkg_svc_run=x\n")
    with pytest.raises(PlanError) as info:
        load_plan(plan_dir, tmp_path)
    err = info.value
    assert (err.path, err.line) == (plan_dir / "plan.sh", 5)
    assert str(err).startswith(f"{plan_dir}/plan.sh:5: syntax error near unexpected token")


def test_unterminated_block_is_a_syntax_error_at_end_of_file(tmp_path: Path) -> None:
    plan_dir = sh_plan(tmp_path, "pkg_name=p\nif true; then\n  echo\n")
    with pytest.raises(PlanError, match=r"plan\.sh:4: syntax error: unexpected end of file") as i:
        load_plan(plan_dir, tmp_path)
    assert i.value.line == 4


def test_relative_plan_dir_is_reported_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sh_plan(tmp_path, "pkg_name=p\n)\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PlanError) as info:
        load_plan(Path("p"), Path("svc"))
    assert str(info.value).startswith("p/plan.sh:2: syntax error")
    write(tmp_path / "p" / "plan.sh", "pkg_name=p\npkg_svc_run=x\n")
    plan = load_plan(Path("p"), Path("svc"))
    assert plan.plan_file == tmp_path / "p" / "plan.sh" and plan.path == tmp_path / "p"
    assert plan.svc_path == tmp_path / "svc" / "p"


@pytest.mark.parametrize(
    "body",
    ["pkg_origin=a\npkg_svc_run=x\n", 'pkg_name=""\npkg_svc_run=x\n', "pkg_name=\npkg_svc_run=x\n"],
)
def test_missing_pkg_name_is_an_error(tmp_path: Path, body: str) -> None:
    with pytest.raises(PlanError, match="pkg_name is missing") as info:
        load_plan(sh_plan(tmp_path, body), tmp_path)
    assert info.value.path == tmp_path / "p" / "plan.sh"


def test_top_level_exit_is_reported_with_its_status_and_line(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="exited with status 3 while being sourced") as info:
        load_plan(sh_plan(tmp_path, "pkg_name=p\npkg_svc_run=x\nexit 3\n"), tmp_path)
    assert info.value.line == 3


def test_a_plan_that_hangs_is_killed_after_the_timeout(tmp_path: Path) -> None:
    plan_dir = sh_plan(tmp_path, "pkg_name=p\npkg_svc_run=x\nsleep 30\n")
    start = time.monotonic()
    with pytest.raises(PlanError, match=r"longer than 0\.5s"):
        load_plan(plan_dir, tmp_path, timeout=0.5)
    assert time.monotonic() - start < 5


def test_background_jobs_of_a_plan_do_not_outlive_loading(tmp_path: Path) -> None:
    pid_file = tmp_path / "bg.pid"
    body = (
        f"pkg_name=p\npkg_svc_run=x\nsleep 60 >/dev/null 2>&1 </dev/null &\necho $! > {pid_file}\n"
    )
    load_plan(sh_plan(tmp_path, body), tmp_path)
    pid = int(pid_file.read_text())
    wait_for(lambda: _gone_or_zombie(pid), timeout=5, what=f"background sleep {pid} killed")


def test_a_plan_flooding_stderr_is_capped_and_still_loads(tmp_path: Path) -> None:
    """Output past 1 MiB fails with EFBIG instead of filling the disk or killing bash."""
    body = "pkg_name=p\npkg_svc_run=x\nhead -c 5000000 /dev/zero >&2\npkg_version=2.0\n"
    assert load_plan(sh_plan(tmp_path, body), tmp_path).version == "2.0"


def _gone_or_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_exports_without_declare_are_associative(tmp_path: Path) -> None:
    """Without Habitat's `declare -A`, `[port]=x` would silently become index 0 of a plain array."""
    body = "pkg_name=p\npkg_svc_run=x\npkg_exports=(\n  [port]=srv.port\n  [ssl-port]=srv.ssl\n)\n"
    plan = load_plan(sh_plan(tmp_path, body), tmp_path)
    assert dict(plan.exports) == {"port": "srv.port", "ssl-port": "srv.ssl"}


def test_scalar_where_a_list_is_expected_is_split_like_bash_words(tmp_path: Path) -> None:
    body = 'pkg_name=p\npkg_svc_run=x\npkg_deps="core/a  core/b"\npkg_exposes=8080\n'
    plan = load_plan(sh_plan(tmp_path, body), tmp_path)
    assert plan.deps == ("core/a", "core/b")
    assert plan.exposes == ("8080",)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("pkg_exposes=(nope)", "exposes 'nope' is neither an export key nor a port number"),
        ("pkg_exports=([port]='')", "export 'port' needs a dotted cfg path"),
        ("pkg_exports=([port]='a..b')", "export 'port' needs a dotted cfg path"),
        ("pkg_shutdown_signal=FOO", "not a signal name"),
        ("pkg_shutdown_timeout_sec=soon", "whole number of seconds"),
        ("pkg_version=1/2", "may not be empty or contain '/'"),
        ("pkg_origin='a b'", "pkg_origin 'a b' may hold only"),
    ],
)
def test_malformed_fields_are_errors(tmp_path: Path, extra: str, reason: str) -> None:
    body = f"pkg_name=p\npkg_svc_run=x\n{extra}\n"
    with pytest.raises(PlanError, match=re.escape(reason)):
        load_plan(sh_plan(tmp_path, body), tmp_path)


def test_habitat_subdirectory_layout(tmp_path: Path) -> None:
    root = tmp_path / "app"
    write(root / "habitat" / "plan.sh", 'pkg_name=app\npkg_svc_run="run ${PLAN_CONTEXT}"\n')
    write(root / "habitat" / "default.toml", "port = 1\n")
    write(root / "habitat" / "hooks" / "init", "#!/bin/sh\n", 0o755)
    write(root / "habitat" / "config" / "c.conf", "{{cfg.port}}\n")
    write(root / "src" / "main.py", "print(1)\n")
    plan = load_plan(root, tmp_path)
    assert plan.path == root
    assert plan.context == root / "habitat"
    assert plan.svc_run == f"run {root / 'habitat'}"
    assert plan.default_cfg == {"port": 1}
    assert set(plan.hooks) == {"init"}
    assert plan.config_dir == root / "habitat" / "config"


def test_no_plan_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"no plan\.toml or plan\.sh") as info:
        load_plan(tmp_path, tmp_path)
    assert info.value.path == tmp_path and info.value.line is None


# --- plan.toml ------------------------------------------------------------------------------------

FULL_TOML = """
origin = "acme"
name = "api"
version = "2.0.0"
svc_run = "api --config ${pkg_svc_config_path}/api.toml ${HOME}"
svc_user = "api"
svc_group = "api"
exposes = ["port", "9000"]
shutdown_signal = "QUIT"
shutdown_timeout = 20
deps = ["core/openssl"]

[exports]
port = "http.port"

[binds]
router = ["port"]

[binds_optional]
cache = ["port", "host"]
"""


def test_plan_toml_fields(tmp_path: Path) -> None:
    write(tmp_path / "api" / "plan.toml", FULL_TOML)
    plan = load_plan(tmp_path / "api", tmp_path / "svc")
    assert plan.ident.startswith("acme/api/2.0.0/")
    assert plan.svc_run == f"api --config {tmp_path}/svc/api/config/api.toml ${{HOME}}"
    assert (plan.svc_user, plan.svc_group) == ("api", "api")
    assert plan.exposes == ("port", "9000")
    assert dict(plan.exports) == {"port": "http.port"}
    assert dict(plan.binds) == {"router": ("port",)}
    assert dict(plan.binds_optional) == {"cache": ("port", "host")}
    assert (plan.shutdown_signal, plan.shutdown_timeout) == ("QUIT", 20)
    assert plan.deps == ("core/openssl",)


def test_plan_toml_is_preferred_over_plan_sh(tmp_path: Path) -> None:
    write(tmp_path / "p" / "plan.toml", 'name = "from-toml"\nsvc_run = "x"\n')
    write(tmp_path / "p" / "plan.sh", "this is not bash (\n")
    assert load_plan(tmp_path / "p", tmp_path).name == "from-toml"


def test_bad_plan_toml_names_the_line(tmp_path: Path) -> None:
    plan_file = write(tmp_path / "p" / "plan.toml", 'name = "p"\nsvc_run = "x"\nexposes = [\n')
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "p", tmp_path)
    assert (info.value.path, info.value.line) == (plan_file, 4)
    assert str(info.value).startswith(f"{plan_file}:4: invalid TOML")


def test_bad_default_toml_names_its_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / "p" / "plan.toml", 'name = "p"\nsvc_run = "x"\n')
    default = write(tmp_path / "p" / "default.toml", "[http]\nport = 80\nport = 81\n")
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "p", tmp_path)
    assert (info.value.path, info.value.line) == (default, 3)


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ('svc_run = "x"\n', "name is missing"),
        ('name = "a/b"\nsvc_run = "x"\n', "name 'a/b' may hold only"),
        ('name = "p"\nsvc_run = "x"\nport = 1\n', "unknown key(s) port"),
        ('name = "p"\nsvc_run = "x"\nexposes = "port"\n', "exposes must be a list"),
        ('name = "p"\nsvc_run = "x"\nshutdown_timeout = -1\n', "whole number of seconds"),
        ('name = "p"\nsvc_run = "x"\nshutdown_timeout = true\n', "whole number of seconds"),
        ('name = "p"\nsvc_run = "x"\n[binds]\ndb = []\n', "binds.db names no export keys"),
        ('name = "p"\nsvc_run = 3\n', "svc_run must be a string"),
        ('name = "p"\n', "neither a hooks/run nor svc_run"),
    ],
)
def test_bad_plan_toml_fields(tmp_path: Path, toml: str, reason: str) -> None:
    write(tmp_path / "p" / "plan.toml", toml)
    with pytest.raises(PlanError, match=re.escape(reason)):
        load_plan(tmp_path / "p", tmp_path)


def test_unknown_hook_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path / "p" / "plan.toml", 'name = "p"\n')
    write(tmp_path / "p" / "hooks" / "run", "#!/bin/sh\n", 0o755)
    write(tmp_path / "p" / "hooks" / "README.md", "notes\n")
    write(tmp_path / "p" / "hooks" / ".run.swp", "x\n")
    plan = load_plan(tmp_path / "p", tmp_path)
    assert dict(plan.hooks) == {"run": tmp_path / "p" / "hooks" / "run"}
    assert plan.config_dir is None and plan.default_cfg == {}


# --- fingerprint, release, immutability -----------------------------------------------------------


def _toml_plan(tmp_path: Path) -> Path:
    write(tmp_path / "p" / "plan.toml", 'name = "p"\n')
    write(tmp_path / "p" / "hooks" / "run", "#!/bin/sh\nexec sleep 1\n", 0o755)
    write(tmp_path / "p" / "default.toml", "a = 1\n")
    return tmp_path / "p"


def test_fingerprint_is_stable_and_tracks_every_plan_file(tmp_path: Path) -> None:
    plan_dir = _toml_plan(tmp_path)
    first = load_plan(plan_dir, tmp_path).fingerprint
    assert load_plan(plan_dir, tmp_path / "elsewhere").fingerprint == first
    write(plan_dir / "__pycache__" / "x.pyc", "junk")
    write(plan_dir / ".git" / "HEAD", "junk")
    assert load_plan(plan_dir, tmp_path).fingerprint == first, "caches and dot-dirs are ignored"
    write(plan_dir / "hooks" / "run", "#!/bin/sh\nexec sleep 2\n")
    second = load_plan(plan_dir, tmp_path).fingerprint
    assert second != first
    (plan_dir / "hooks" / "run").rename(plan_dir / "hooks" / "init")
    write(plan_dir / "hooks" / "run", "#!/bin/sh\n")
    assert load_plan(plan_dir, tmp_path).fingerprint not in {first, second}


def test_release_is_the_newest_file_mtime_unless_plan_toml_sets_it(tmp_path: Path) -> None:
    plan_dir = _toml_plan(tmp_path)
    for f in plan_dir.rglob("*"):
        os.utime(f, (1_536_689_926, 1_536_689_926))  # 2018-09-11 18:18:46 UTC
    os.utime(plan_dir / "default.toml", (1_536_689_935, 1_536_689_935))
    assert load_plan(plan_dir, tmp_path).release == "20180911181855"
    write(plan_dir / "plan.toml", 'name = "p"\nrelease = "20200101000000"\n')
    assert load_plan(plan_dir, tmp_path).release == "20200101000000"


def test_plan_is_immutable(tmp_path: Path) -> None:
    plan = load_plan(_toml_plan(tmp_path), tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.exports["x"] = "y"  # type: ignore[index]
    assert isinstance(hash(plan), int)
    assert plan == load_plan(_toml_plan(tmp_path), tmp_path)


def test_plan_error_str_and_pickle() -> None:
    err = PlanError(Path("plans/x/plan.sh"), "boom", 7)
    assert str(err) == "plans/x/plan.sh:7: boom"
    assert str(PlanError(Path("plans/x"), "no plan")) == "plans/x: no plan"
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.line, again.detail, str(again)) == (err.path, 7, "boom", str(err))


# --- the example programs, run for real -----------------------------------------------------------


def render_simple(template: str, context: dict[str, Any]) -> str:
    """Just enough Handlebars for templates made of plain `{{a.b}}` references."""
    assert "{{#" not in template, "render_simple handles plain references only"
    return re.sub(
        r"\{\{\s*([\w.-]+)\s*\}\}", lambda m: str(lookup_path(context, m.group(1))), template
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


def http_get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status), resp.read()
    except OSError:
        return None


@pytest.mark.integration
def test_habsup_app_serves_health_and_message(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    plan = load_plan(PLANS / "habsup", tmp_path)
    port = free_port()
    assert plan.config_dir is not None
    cfg = {"http": {**plan.default_cfg["http"], "listen": "127.0.0.1", "port": port}}
    rendered = render_simple(
        (plan.config_dir / "app.toml").read_text(), {"cfg": cfg, "sys": {"member_id": "m1"}}
    )
    assert tomllib.loads(rendered)["http"]["port"] == port
    conf = write(tmp_path / "app.toml", rendered)
    app = plan.path / "app.py"
    check = [sys.executable, str(app), "--check", str(conf)]
    assert subprocess.run(check, capture_output=True, timeout=10).returncode == 2, "down: CRITICAL"

    procs.append(subprocess.Popen([sys.executable, "-u", str(app), str(conf)]))
    answer = wait_for(
        lambda: http_get(f"http://127.0.0.1:{port}/health/"), timeout=10, what="habsup /health/"
    )
    assert answer is not None
    status, body = answer
    assert status == 200
    assert json.loads(body) == {"status": "ok", "member_id": "m1"}
    assert http_get(f"http://127.0.0.1:{port}/") == (200, b"hello from habsup\n")
    assert subprocess.run(check, capture_output=True, timeout=10).returncode == 0, "up: OK"

    procs[0].send_signal(signal.SIGTERM)
    assert procs[0].wait(timeout=10) == 0


@pytest.mark.integration
def test_greeter_reloads_its_config_on_sighup(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    conf = write(tmp_path / "greeter.toml", 'greeting = "Hello"\nname = "world"\nshout = false\n')
    data, pid_file = tmp_path / "data", tmp_path / "var" / "greeter.pid"
    script = PLANS / "greeter" / "greeter.py"
    proc = subprocess.Popen(
        [sys.executable, "-u", str(script), str(conf), str(data), str(pid_file)]
    )
    procs.append(proc)
    greeting = data / "greeting.txt"
    wait_for(pid_file.exists, timeout=10, what="greeter pid file")
    assert int(pid_file.read_text()) == proc.pid
    assert greeting.read_text() == "Hello, world!\n"

    write(conf, 'greeting = "Hi"\nname = "pysup"\nshout = true\n')
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: greeting.read_text() == "HI, PYSUP!\n", timeout=10, what="reloaded greeting")
    assert proc.poll() is None, "SIGHUP reloads, it does not stop"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not pid_file.exists()
    events = (data / "events.log").read_text().splitlines()
    assert events == ["started Hello, world!", "reloaded HI, PYSUP!"]


@pytest.mark.parametrize(
    "hook",
    [
        str(p.relative_to(PLANS))
        for p in sorted([*PLANS.glob("*/hooks/*"), *PLANS.glob("*/habitat/hooks/*")])
    ],
)
def test_example_hooks_are_valid_posix_sh(hook: str) -> None:
    result = subprocess.run(["sh", "-n", str(PLANS / hook)], timeout=10)
    assert result.returncode == 0


@pytest.mark.integration
def test_greeter_hooks_drive_a_full_lifecycle(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """init, run, reconfigure (SIGHUP, no restart), post-stop, rendered and run in order."""
    plan = load_plan(PLANS / "greeter", tmp_path / "svc")
    assert plan.svc_path is not None
    svc = plan.svc_path
    pkg = {
        "path": str(plan.path),
        "svc_config_path": f"{svc}/config",
        "svc_data_path": f"{svc}/data",
        "svc_var_path": f"{svc}/var",
    }
    hooks = tmp_path / "hooks"
    for name, template in plan.hooks.items():
        write(hooks / name, render_simple(template.read_text(), {"pkg": pkg}), 0o755)
    conf = write(svc / "config" / "greeter.toml", 'greeting = "Hello"\nname = "world"\n')
    data, pid_file = svc / "data", svc / "var" / "greeter.pid"

    assert subprocess.run([hooks / "init"], timeout=10).returncode == 0
    run = subprocess.Popen([hooks / "run"])
    procs.append(run)
    wait_for(pid_file.exists, timeout=10, what="greeter pid file")
    assert int(pid_file.read_text()) == run.pid, "run execs the program: the Supervisor's pid is it"

    write(conf, 'greeting = "Bonjour"\nname = "pysup"\n')
    assert subprocess.run([hooks / "reconfigure"], timeout=10).returncode == 0
    greeting = data / "greeting.txt"
    wait_for(lambda: greeting.read_text() == "Bonjour, pysup!\n", timeout=10, what="reload")
    assert run.poll() is None

    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=10) == 0
    assert subprocess.run([hooks / "post-stop"], timeout=10).returncode == 0
    assert subprocess.run([hooks / "reconfigure"], timeout=10).returncode == 1, "nothing to signal"
    events = [line.split()[0] for line in (data / "events.log").read_text().splitlines()]
    assert events == ["init", "started", "reconfigure", "reloaded", "post-stop", "reconfigure"]


@pytest.mark.integration
def test_kvstore_serves_its_line_protocol(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    conf = write(
        tmp_path / "kv.conf",
        f"bind 127.0.0.1\nport {port}\ntcp-backlog 16\nmax-value-bytes 8\nrequirepass s3cret\n",
    )
    procs.append(
        subprocess.Popen([sys.executable, "-u", str(PLANS / "kvstore" / "kv.py"), str(conf)])
    )
    sock = wait_for(lambda: _connect(port), timeout=10, what="kvstore listening")
    assert sock is not None
    with sock, sock.makefile("rwb") as f:

        def ask(line: str) -> str:
            f.write(line.encode() + b"\n")
            f.flush()
            return f.readline().decode().strip()

        assert ask("PING") == "+PONG"
        assert ask("SET k v") == "-NOAUTH authentication required"
        assert ask("AUTH wrong") == "-ERR invalid password"
        assert ask("AUTH s3cret") == "+OK"
        assert ask("SET k hello") == "+OK"
        assert ask("GET k") == "$hello"
        assert ask("SET big 123456789") == "-ERR value too large"
        assert ask("DEL k") == ":1"
        assert ask("GET k") == "-nil"


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None

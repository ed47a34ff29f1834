"""Plans written for Habitat, run by a ServiceManager with real hook processes (issue 14):

* item 1: underscore hook files (health_check, post_run, post_stop) run under their dashed names;
* item 2: ``{{pkgPathFor "core/curl"}}/bin/curl`` finds curl on this host (PATH fallback, or the
  explicit mapping), instead of the ``/hab/pkgs/...`` path that exists only under Habitat;
* item 6: a hook whose #! interpreter is missing is reported naming the interpreter.

Each test fails on the code before issue 14 (said per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.service.health import HealthStatus
from pysup.service.manager import ServiceManager
from pysup.service.pkgpaths import PkgPaths
from pysup.service.service import ServiceState
from pysup.service.spec import ServiceSpec
from tests.integration.test_service import make_manager, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def managers() -> AsyncIterator[list[ServiceManager]]:
    made: list[ServiceManager] = []
    yield made
    for m in made:
        await m.stop_all(10.0)


def habitat_plan(root: Path, name: str, plan_sh: str, hooks: dict[str, str]) -> Path:
    """A plan in Habitat's in-repo layout: habitat/plan.sh and habitat/hooks/."""
    d = root / name
    (d / "habitat" / "hooks").mkdir(parents=True)
    (d / "habitat" / "plan.sh").write_text(f"pkg_name={name}\npkg_origin=test\n{plan_sh}")
    for hook, body in hooks.items():
        (d / "habitat" / "hooks" / hook).write_text(body)
    return d


def fake_tool(prefix: Path, name: str, marker: Path) -> None:
    """An executable `prefix`/bin/`name` that records its arguments in `marker` and exits 0."""
    path = prefix / "bin" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\nexit 0\n')
    path.chmod(0o755)


async def test_underscore_hooks_run_under_their_dashed_names(
    tmp_path: Path, managers: list[ServiceManager]
) -> None:
    """health_check exits 1, so the service is WARNING only if that hook runs (without a
    health-check hook an up process is OK: what the old code reported, ignoring the file)."""
    plan = habitat_plan(
        tmp_path,
        "legacy",
        "pkg_deps=()\n",
        {
            "run": "#!/bin/sh\nexec sleep 100\n",
            "health_check": "#!/bin/sh\necho checked\nexit 1\n",
            "post_run": "#!/bin/sh\necho ran > {{pkg.svc_data_path}}/post_run\n",
            "post_stop": "#!/bin/sh\necho ran > {{pkg.svc_data_path}}/post_stop\n",
        },
    )
    manager, _ = make_manager(tmp_path)
    managers.append(manager)
    with capture_logs() as logs:
        svc = await manager.load(ServiceSpec(plan, health_check_interval_s=1))
    await until(lambda: svc.health is HealthStatus.WARNING, what="health_check ran (WARNING)")
    data = svc.svc_path / "data"
    await until(lambda: (data / "post_run").is_file(), what="post_run ran")
    hooks = svc.svc_path / "hooks"
    assert {"health-check", "post-run", "post-stop", "run"} <= {p.name for p in hooks.iterdir()}
    assert "checked" in (svc.svc_path / "logs" / "health-check.stdout.log").read_text()
    deprecated = [e for e in logs if e["event"] == "plan.hook_deprecated"]
    assert sorted(e["hook"] for e in deprecated) == ["health-check", "post-run", "post-stop"]
    assert "Deprecated hook file detected: health_check. You should use health-check instead." in [
        e["msg"] for e in deprecated
    ]
    await manager.stop("legacy")
    assert svc.state is ServiceState.STOPPED
    assert (data / "post_stop").read_text() == "ran\n"


HEALTH_CHECK = """#!/bin/sh
{{pkgPathFor "core/curl"}}/bin/curl -sS --head --fail --max-time 1 http://localhost:1/health/ \\
  || exit 2
"""


async def test_pkg_path_for_finds_curl_on_path(
    tmp_path: Path, managers: list[ServiceManager]
) -> None:
    """On the old code the hook called /hab/pkgs/core/curl/bin/curl: not found, CRITICAL."""
    marker = tmp_path / "curl-calls"
    tools = tmp_path / "tools"
    fake_tool(tools, "curl", marker)
    plan = habitat_plan(
        tmp_path,
        "web",
        "pkg_deps=( core/curl )\n",
        {"run": "#!/bin/sh\nexec sleep 100\n", "health-check": HEALTH_CHECK},
    )
    manager, _ = make_manager(tmp_path, env={"PATH": f"{tools}/bin:/usr/bin:/bin"})
    managers.append(manager)
    svc = await manager.load(ServiceSpec(plan, health_check_interval_s=1))
    await until(lambda: svc.health is HealthStatus.OK, what="health OK through the fake curl")
    rendered = (svc.svc_path / "hooks" / "health-check").read_text()
    assert f"{tools}/bin/curl -sS --head" in rendered
    assert marker.read_text().startswith(f"{tools}/bin/curl -sS --head --fail")


async def test_an_explicit_mapping_beats_the_tool_on_path(
    tmp_path: Path, managers: list[ServiceManager]
) -> None:
    on_path, mapped = tmp_path / "on-path", tmp_path / "mapped"
    fake_tool(on_path, "curl", tmp_path / "wrong")
    fake_tool(mapped, "curl", tmp_path / "right")
    plan = habitat_plan(
        tmp_path,
        "web",
        "pkg_deps=( core/curl )\n",
        {"run": "#!/bin/sh\nexec sleep 100\n", "health-check": HEALTH_CHECK},
    )
    manager, _ = make_manager(tmp_path)
    manager.pkg_paths = PkgPaths(
        mapping={"core/curl": str(mapped)}, search_path=(f"{on_path}/bin",)
    )
    managers.append(manager)
    svc = await manager.load(ServiceSpec(plan, health_check_interval_s=1))
    await until(lambda: svc.health is HealthStatus.OK, what="health OK through the mapped curl")
    assert (tmp_path / "right").is_file() and not (tmp_path / "wrong").exists()


async def test_missing_interpreters_are_named(
    tmp_path: Path, managers: list[ServiceManager]
) -> None:
    """init's and run's #! name an interpreter that does not exist. The old code said
    "No such file or directory: '<svc>/hooks/init'", naming the hook, which exists."""
    plan = habitat_plan(
        tmp_path,
        "shebang",
        "pkg_deps=( core/bash )\n",
        {
            "init": '#!{{pkgPathFor "core/bash"}}/bin/bash\ntrue\n',
            "run": "#!/no/such/dir/python3\n",
        },
    )
    manager, _ = make_manager(tmp_path)
    manager.pkg_paths = PkgPaths(fallback=False, hab_root=tmp_path / "hab")
    managers.append(manager)
    init_interp = "/hab/pkgs/core/bash/bin/bash"  # not found: Habitat's path is rendered
    assert not Path(init_interp).exists()  # noqa: ASYNC240 (one stat)
    svc = await manager.load(ServiceSpec(plan))
    await until(lambda: init_interp in (svc.last_error or ""), what="init failure reported")
    assert "named by its #! line does not exist" in (svc.last_error or "")
    assert "No such file or directory" not in (svc.last_error or "")
    # The run hook goes through the process supervisor: same message, in service.start_failed.
    (plan / "habitat" / "hooks" / "init").write_text("#!/bin/sh\ntrue\n")
    with capture_logs() as logs:
        await manager.unload("shebang")
        svc = await manager.load(ServiceSpec(plan))
        await until(
            lambda: any(e["event"] == "service.start_failed" for e in logs),
            what="run failure reported",
        )
    failed = next(e for e in logs if e["event"] == "service.start_failed")
    assert "the interpreter /no/such/dir/python3 named by its #! line" in failed["error"]

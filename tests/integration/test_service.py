"""Services with real /bin/sh hooks and real processes: the hook sequence, crash-loop backoff, hung
health checks, restart vs reconfigure, post-run and post-stop."""

from __future__ import annotations

import itertools
import json
import os
import random
import socket
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.butterfly.member import Member
from pysup.butterfly.messages import Rumor, ServiceRumor
from pysup.butterfly.rumors import RumorStore
from pysup.census import Census
from pysup.census_build import build_census
from pysup.service.backoff import RestartBackoff
from pysup.service.health import HealthStatus
from pysup.service.manager import ServiceManager
from pysup.service.process import ProcessState
from pysup.service.service import ServiceState, ServiceTuning
from pysup.service.spec import ServiceSpec
from pysup.statedir import StateDir
from tests.util import async_wait_for, free_port, process_alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
PLANS = REPO / "plans"
MEMBER_ID = "0123456789abcdef0123456789abcdef"

FAST = ServiceTuning(
    hook_timeout_s=10.0,
    hook_kill_grace_s=0.2,
    init_retry_base_s=0.1,
    init_retry_max_s=0.5,
    post_run_retry_s=0.1,
    restart_backoff=lambda: RestartBackoff(base_s=0.2, max_s=1.0, cooldown_s=300.0),
)


class Ring:
    """A one-member ring in memory: what services publish lands in a rumor store, the census is
    rebuilt from it, and the manager hears about every change (what the daemon does)."""

    def __init__(self) -> None:
        self.store = RumorStore()
        self.local = Member(MEMBER_ID, 0, "127.0.0.1", 9638)
        self.published: list[ServiceRumor] = []
        self.manager: ServiceManager | None = None

    def census(self) -> Census:
        return build_census(self.local, [self.local], self.store)

    def publish(self, rumor: Rumor) -> None:
        if isinstance(rumor, ServiceRumor):
            self.published.append(rumor)
        self.gossip(rumor)

    def gossip(self, rumor: Rumor) -> None:
        stored = self.store.merge(rumor)  # type: ignore[arg-type]
        if stored is not None and self.manager is not None:
            self.manager.on_rumor(stored)


def make_manager(
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    tuning: ServiceTuning = FAST,
    hook_timeout_s: float = 10.0,
    poll_s: float = 0.1,
) -> tuple[ServiceManager, Ring]:
    ring = Ring()
    manager = ServiceManager(
        state=StateDir(tmp_path / "state"),
        sys_info={"ip": "127.0.0.1", "hostname": "test-host"},
        member_id=MEMBER_ID,
        census=ring.census,
        publish=ring.publish,
        hook_timeout_s=hook_timeout_s,
        rng=random.Random(7),
        tuning=tuning,
        env={**os.environ, **(env or {})},
        user_toml_poll_s=poll_s,
        census_debounce_s=0.02,
    )
    ring.manager = manager
    return manager, ring


@pytest.fixture
async def managed(tmp_path: Path) -> AsyncIterator[list[ServiceManager]]:
    """Managers made by a test are stopped at its end, whatever happened."""
    managers: list[ServiceManager] = []
    yield managers
    for m in managers:
        await m.stop_all(10.0)


async def until(cond: Callable[[], object], within: float = 10.0, what: str = "") -> None:
    async def check() -> bool:
        return bool(cond())

    await async_wait_for(check, timeout=within, what=what)


def write_plan(root: Path, name: str, hooks: dict[str, str], **files: str) -> Path:
    """A plan.toml plan `name` with `hooks` (name -> body) and extra files (default.toml ...)."""
    d = root / name
    (d / "hooks").mkdir(parents=True)
    plan_toml = files.pop("plan_toml", "")
    (d / "plan.toml").write_text(f'origin = "test"\nname = "{name}"\n{plan_toml}')
    for hook, body in hooks.items():
        (d / "hooks" / hook).write_text(body)
    for rel, text in files.items():
        path = d / rel.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return d


def habsup_env(port: int) -> dict[str, str]:
    return {"HAB_HABSUP": json.dumps({"http": {"listen": "127.0.0.1", "port": port}})}


async def test_habsup_up_rendered_healthy_and_gossiped(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """habsup starts: hooks rendered 0755 and config rendered from cfg; the first health check
    runs as soon as it is up and is OK; its output is in logs/; the Service rumor is initialized and
    carries only the exported key (port), not the whole config."""
    port = free_port()
    manager, ring = make_manager(tmp_path, env=habsup_env(port))
    managed.append(manager)
    # the first check may race the app's bind (CRITICAL); the recheck comes within the interval
    svc = await manager.load(ServiceSpec(PLANS / "habsup", health_check_interval_s=1))
    await until(lambda: svc.health is HealthStatus.OK, what="habsup healthy")
    assert svc.state is ServiceState.UP and svc.process.state is ProcessState.UP
    for hook in ("run", "health-check"):
        mode = stat.S_IMODE((svc.svc_path / "hooks" / hook).stat().st_mode)
        assert mode == 0o755
    config = (svc.svc_path / "config" / "app.toml").read_text()
    assert f"port = {port}" in config and f'member_id = "{MEMBER_ID}"' in config
    assert "200" in (svc.svc_path / "logs" / "health-check.stdout.log").read_text()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := s.recv(4096):  # HTTP/1.0: the server closes after the body
            reply += chunk
    assert b"hello from habsup" in reply
    await until(lambda: ring.published and ring.published[-1].initialized)
    rumor = ring.published[-1]
    assert rumor.cfg == {"port": port}
    assert rumor.service_group == "habsup.default" and rumor.pkg == svc.plan.ident
    assert rumor.sys["ip"] == "127.0.0.1"
    incarnations = [r.incarnation for r in ring.published]
    assert incarnations == sorted(set(incarnations))


async def test_kvstore_plan_sh_runs_pkg_svc_run(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """A plan.sh plan without hooks runs pkg_svc_run; no health-check hook -> health follows the
    process (OK while up)."""
    port = free_port()
    manager, _ = make_manager(tmp_path, env={"HAB_KVSTORE": f'bind = "127.0.0.1"\nport = {port}\n'})
    managed.append(manager)
    svc = await manager.load(ServiceSpec(PLANS / "kvstore"))
    await until(lambda: svc.process.state is ProcessState.UP)

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    await until(listening, what="kvstore listening")
    assert svc.health_status() is HealthStatus.OK
    assert "run" not in svc.templates.hooks and svc.process.run_cmd is not None


async def test_crash_loop_backs_off(tmp_path: Path, managed: list[ServiceManager]) -> None:
    """A run hook that exits at once is restarted with decorrelated-jitter backoff: the first delay
    is the base, each next one in [base, 3 * previous] and capped; restart_count counts them."""
    plan = write_plan(tmp_path, "crasher", {"run": "#!/bin/sh\necho crashing\nexit 3\n"})
    manager, _ = make_manager(tmp_path)
    managed.append(manager)
    with capture_logs() as logs:
        svc = await manager.load(ServiceSpec(plan))
        await until(lambda: svc.process.restart_count >= 4, within=15, what="4 restarts")
    delays = [e["delay_s"] for e in logs if e["event"] == "service.restart" and "delay_s" in e]
    assert len(delays) >= 4
    assert delays[0] == pytest.approx(0.2)
    for prev, cur in itertools.pairwise(delays):
        assert 0.2 - 1e-3 <= cur <= min(1.0, prev * 3) + 1e-3
    exits = [e for e in logs if e["event"] == "service.exited"]
    assert exits and exits[0]["exit_code"] == 3
    assert svc.state is ServiceState.UP  # supervised, between a crash and its restart
    assert "exited with 3" in (svc.last_error or "")


async def test_hung_health_check_is_killed_and_unknown(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """A health-check hook that hangs is killed after the hook timeout (its process group with it)
    and reported UNKNOWN, with the timeout in last_error; the run process is untouched."""
    plan = write_plan(
        tmp_path,
        "hangs",
        {
            "run": "#!/bin/sh\nexec sleep 100\n",
            "health-check": "#!/bin/sh\necho $$ > {{pkg.svc_var_path}}/hc.pid\nexec sleep 100\n",
        },
    )
    manager, _ = make_manager(tmp_path, hook_timeout_s=0.5)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    await until(lambda: svc.health is HealthStatus.UNKNOWN, what="health UNKNOWN")
    hc_pid = int((svc.svc_path / "var" / "hc.pid").read_text())
    assert not process_alive(hc_pid)
    assert "health-check hook timed out" in (svc.last_error or "")
    assert svc.process.state is ProcessState.UP
    result = svc.last_hook["health-check"]
    assert result.timed_out and result.exit_code is None and result.duration_s < 5


async def test_load_gossips_one_service_rumor_after_the_first_health_check(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """A plan with a health check is gossiped once when loaded, with the first check's result:
    not first with health Unknown and again ~0.1 s later (at N=100 every member decodes each
    version ~6 times and rebuilds its census for it; bench/README.md, goal 6)."""
    plan = write_plan(
        tmp_path,
        "checked",
        {"run": "#!/bin/sh\nexec sleep 100\n", "health-check": "#!/bin/sh\nexit 0\n"},
    )
    manager, ring = make_manager(tmp_path)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(plan, health_check_interval_s=60))
    await until(lambda: any(r.health_check == "Ok" for r in ring.published), what="Ok gossiped")
    assert svc.state is ServiceState.UP
    assert [(r.initialized, r.health_check) for r in ring.published] == [(True, "Ok")]


async def test_a_slow_first_health_check_holds_the_rumor_only_so_long(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """A first check slower than `first_check_hold_s` does not keep the service out of the
    ring: it is gossiped Unknown once the hold is over, then with the result."""
    plan = write_plan(
        tmp_path,
        "slowcheck",
        {"run": "#!/bin/sh\nexec sleep 100\n", "health-check": "#!/bin/sh\nsleep 1.5\nexit 0\n"},
    )
    manager, ring = make_manager(tmp_path, tuning=replace(FAST, first_check_hold_s=0.3))
    managed.append(manager)
    await manager.load(ServiceSpec(plan, health_check_interval_s=60))
    await until(lambda: ring.published, what="gossiped before the check answered")
    assert [(r.initialized, r.health_check) for r in ring.published] == [(True, "Unknown")]
    await until(lambda: len(ring.published) == 2, what="the check's result gossiped")
    assert ring.published[-1].health_check == "Ok"


RECONF_PLAN = {
    "run": (
        "#!/bin/sh\n# flavor {{cfg.flavor}}\necho started >> {{pkg.svc_data_path}}/events\n"
        "exec sleep 100\n"
    ),
    "reconfigure": "#!/bin/sh\necho reconfigured >> {{pkg.svc_data_path}}/events\n",
}


async def test_config_change_with_reconfigure_hook_keeps_the_process(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """Config-only change + reconfigure hook: reconfigure runs, same pid. A change that alters the
    run hook restarts (new pid) although there is a reconfigure hook."""
    plan = write_plan(
        tmp_path,
        "reconf",
        RECONF_PLAN,
        default_toml='flavor = "vanilla"\ngreeting = "hi"\n',
        config__app_conf="greeting={{cfg.greeting}}\n",
    )
    (plan / "default.toml").write_text('flavor = "vanilla"\ngreeting = "hi"\n')
    manager, _ = make_manager(tmp_path)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    await until(lambda: svc.process.pid is not None)
    pid = svc.process.pid
    events = svc.svc_path / "data" / "events"
    user_toml = manager.state.user_toml_path("reconf")
    user_toml.parent.mkdir(parents=True)
    user_toml.write_text('greeting = "hello"\n')
    await until(lambda: "reconfigured" in events.read_text(), what="reconfigure ran")
    assert (svc.svc_path / "config" / "app_conf").read_text() == "greeting=hello\n"
    assert svc.process.pid == pid and process_alive(pid or 0)
    assert svc.last_render.config == ["app_conf"] and svc.last_render.hooks == []

    user_toml.write_text('greeting = "hello"\nflavor = "mint"\n')
    await until(lambda: svc.process.pid not in (None, pid), what="restart after run change")
    assert "# flavor mint" in (svc.svc_path / "hooks" / "run").read_text()
    assert events.read_text().splitlines() == ["started", "reconfigured", "started"]
    assert not process_alive(pid or 0)


async def test_config_change_without_reconfigure_hook_restarts(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """No reconfigure hook: a changed rendered config restarts the process (new pid)."""
    plan = write_plan(
        tmp_path,
        "noreconf",
        {"run": "#!/bin/sh\nexec sleep 100\n"},
        config__app_conf="greeting={{cfg.greeting}}\n",
    )
    (plan / "default.toml").write_text('greeting = "hi"\n')
    manager, _ = make_manager(tmp_path)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    await until(lambda: svc.process.pid is not None)
    pid = svc.process.pid
    user_toml = manager.state.user_toml_path("noreconf")
    user_toml.parent.mkdir(parents=True)
    user_toml.write_text('greeting = "bye"\n')
    await until(lambda: svc.process.pid not in (None, pid), what="restart")
    assert (svc.svc_path / "config" / "app_conf").read_text() == "greeting=bye\n"
    assert svc.process.restart_count == 0  # a config restart is not a crash


async def test_greeter_reconfigure_reloads_in_place(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """The greeter plan: init runs before the first start; a gossip-free user.toml change runs
    reconfigure (SIGHUP), the greeting file changes and the pid does not."""
    manager, _ = make_manager(tmp_path)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(PLANS / "greeter"))
    greeting = svc.svc_path / "data" / "greeting.txt"
    await until(lambda: greeting.is_file() and (svc.svc_path / "var" / "greeter.pid").is_file())
    pid = svc.process.pid
    assert greeting.read_text() == "Hello, world!\n"
    user_toml = manager.state.user_toml_path("greeter")
    user_toml.parent.mkdir(parents=True)
    user_toml.write_text('name = "pysup"\n')
    await until(lambda: greeting.read_text() == "Hello, pysup!\n", what="reloaded greeting")
    assert svc.process.pid == pid
    log_lines = (svc.svc_path / "data" / "events.log").read_text().splitlines()
    assert log_lines[0].startswith("init ")
    assert any(line.startswith("reconfigure ") for line in log_lines)


async def test_init_retried_with_backoff_then_up(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """A failing init is retried (the run hook does not start meanwhile); once it succeeds the
    service comes up."""
    plan = write_plan(
        tmp_path,
        "initretry",
        {
            "init": (
                "#!/bin/sh\necho try >> {{pkg.svc_data_path}}/tries\n"
                "[ $(wc -l < {{pkg.svc_data_path}}/tries) -ge 3 ]\n"
            ),
            "run": "#!/bin/sh\nexec sleep 100\n",
        },
    )
    manager, _ = make_manager(tmp_path)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    await until(lambda: svc.state is ServiceState.UP, what="up after init retries")
    assert (svc.svc_path / "data" / "tries").read_text().count("try") == 3
    await until(lambda: svc.process.pid is not None)


async def test_post_run_retried_until_zero(tmp_path: Path, managed: list[ServiceManager]) -> None:
    plan = write_plan(
        tmp_path,
        "postrun",
        {
            "run": "#!/bin/sh\nexec sleep 100\n",
            "post-run": (
                "#!/bin/sh\necho try >> {{pkg.svc_data_path}}/tries\n"
                "[ $(wc -l < {{pkg.svc_data_path}}/tries) -ge 3 ]\n"
            ),
        },
    )
    manager, _ = make_manager(tmp_path)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    tries = svc.svc_path / "data" / "tries"
    await until(lambda: svc.last_hook.get("post-run") and svc.last_hook["post-run"].ok)
    assert tries.read_text().count("try") == 3


async def test_stop_sends_term_then_post_stop(
    tmp_path: Path, managed: list[ServiceManager]
) -> None:
    """stop: the run process gets the shutdown signal (TERM), then post-stop runs; the service is
    STOPPED and start brings it back with a new process."""
    plan = write_plan(
        tmp_path,
        "stopper",
        {
            "run": (
                "#!/bin/sh\ntrap 'echo got-TERM >> {{pkg.svc_data_path}}/events; exit 0' TERM\n"
                "echo ready >> {{pkg.svc_data_path}}/events\nwhile :; do sleep 0.1; done\n"
            ),
            "post-stop": "#!/bin/sh\necho post-stop >> {{pkg.svc_data_path}}/events\n",
        },
    )
    manager, _ = make_manager(tmp_path)
    managed.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    events = svc.svc_path / "data" / "events"
    await until(lambda: events.is_file() and "ready" in events.read_text())
    pid = svc.process.pid
    await manager.stop("stopper")
    assert svc.state is ServiceState.STOPPED and svc.process.state is ProcessState.DOWN
    assert events.read_text().splitlines() == ["ready", "got-TERM", "post-stop"]
    assert not process_alive(pid or 0)
    await manager.start("stopper")
    await until(lambda: svc.process.pid not in (None, pid), what="started again")

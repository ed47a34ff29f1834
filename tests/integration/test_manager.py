"""The service manager with real services: config layering and gossip, gossiped files, load errors
that leave other services running, leader topology gating, and the HTTP routes (aiohttp client)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    RumorKind,
    ServiceConfigRumor,
    ServiceFileRumor,
)
from pysup.gateway.service_routes import add_service_routes
from pysup.service.health import HealthStatus
from pysup.service.manager import ServiceLoadError, ServiceManager
from pysup.service.process import ProcessState
from pysup.service.service import ServiceState
from pysup.service.spec import ServiceSpec, Topology
from tests.integration.test_service import (
    MEMBER_ID,
    PLANS,
    habsup_env,
    make_manager,
    until,
    write_plan,
)
from tests.util import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LAYERS_PLAN = {
    "run": "#!/bin/sh\nexec sleep 100\n",
    "reconfigure": "#!/bin/sh\nexit 0\n",
    "file-updated": "#!/bin/sh\nls {{pkg.svc_files_path}} > {{pkg.svc_data_path}}/seen\n",
}
LAYERS_DEFAULT = 'a = "default"\nb = "default"\nc = "default"\nd = "default"\n[t]\nx = 1\ny = 1\n'
LAYERS_TEMPLATE = "{{cfg.a}} {{cfg.b}} {{cfg.c}} {{cfg.d}} {{cfg.t.x}} {{cfg.t.y}}\n"


@pytest.fixture
async def managers() -> object:
    made: list[ServiceManager] = []
    yield made
    for m in made:
        await m.stop_all(10.0)


async def test_config_layers_env_user_toml_then_gossip(tmp_path: Path, managers: list) -> None:
    """default.toml < HAB_<PKG> (JSON here) < user.toml < gossip, tables merged key by key; a
    user.toml edit is picked up by the watcher; a gossiped config applies only with a higher
    incarnation."""
    plan = write_plan(
        tmp_path, "layers", LAYERS_PLAN, default_toml=LAYERS_DEFAULT, config__out=LAYERS_TEMPLATE
    )
    (plan / "default.toml").write_text(LAYERS_DEFAULT)
    env = {"HAB_LAYERS": json.dumps({"b": "env", "c": "env", "d": "env", "t": {"x": 2}})}
    manager, ring = make_manager(tmp_path, env=env)
    managers.append(manager)
    user = manager.state.user_toml_path("layers")
    user.parent.mkdir(parents=True)
    user.write_text('c = "user"\nd = "user"\n')
    svc = await manager.load(ServiceSpec(plan))
    out = svc.svc_path / "config" / "out"
    await until(lambda: out.is_file())
    assert out.read_text() == "default env user user 2 1\n"

    user.write_text('c = "user"\nd = "user2"\n')
    await until(lambda: out.read_text() == "default env user user2 2 1\n", what="user.toml edit")

    ring.gossip(ServiceConfigRumor("layers.default", 5, b'd = "gossip"\n[t]\ny = 5\n'))
    await until(lambda: out.read_text() == "default env user gossip 2 5\n", what="gossip v5")
    assert svc.gossip_incarnation == 5
    ring.gossip(ServiceConfigRumor("layers.default", 4, b'd = "old"\n'))
    ring.gossip(ServiceConfigRumor("other.default", 9, b'd = "x"\n'))
    assert svc.take_gossip() is False and svc.gossip_incarnation == 5
    ring.gossip(ServiceConfigRumor("layers.default", 6, b'd = "newer"\n'))
    await until(lambda: out.read_text() == "default env user newer 2 1\n", what="gossip v6")
    assert svc.cfg["d"] == "newer" and svc.state is ServiceState.UP


async def test_bad_env_and_gossip_config_are_errors_not_crashes(
    tmp_path: Path, managers: list
) -> None:
    """A HAB_<PKG> that is neither TOML nor JSON, or gossip config over 64 KiB, is recorded in
    last_error; the service still runs on the other layers."""
    plan = write_plan(
        tmp_path, "layers", LAYERS_PLAN, default_toml=LAYERS_DEFAULT, config__out=LAYERS_TEMPLATE
    )
    (plan / "default.toml").write_text(LAYERS_DEFAULT)
    manager, ring = make_manager(tmp_path, env={"HAB_LAYERS": "{not json"})
    managers.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    await until(lambda: svc.process.pid is not None)
    assert "HAB_LAYERS" in (svc.last_error or "")
    big = ServiceConfigRumor("layers.default", 2, b"a = '" + b"x" * 70000 + b"'\n")
    ring.gossip(big)
    assert svc.take_gossip() is False
    assert "byte limit" in (svc.last_error or "")


async def test_gossiped_file_lands_and_runs_file_updated(tmp_path: Path, managers: list) -> None:
    """A ServiceFileRumor for our group is written to files/ and file-updated runs; names with path
    separators or '..' are rejected; a lower incarnation is ignored."""
    plan = write_plan(
        tmp_path, "layers", LAYERS_PLAN, default_toml=LAYERS_DEFAULT, config__out=LAYERS_TEMPLATE
    )
    (plan / "default.toml").write_text(LAYERS_DEFAULT)
    manager, ring = make_manager(tmp_path)
    managers.append(manager)
    svc = await manager.load(ServiceSpec(plan))
    await until(lambda: svc.process.pid is not None)
    ring.gossip(ServiceFileRumor("layers.default", "cert.pem", 3, b"PEM DATA\n"))
    seen = svc.svc_path / "data" / "seen"
    await until(lambda: seen.is_file() and "cert.pem" in seen.read_text(), what="file-updated")
    assert (svc.svc_path / "files" / "cert.pem").read_bytes() == b"PEM DATA\n"
    for bad in ("../escape", "a/b", "..", ""):
        ring.gossip(ServiceFileRumor("layers.default", bad, 9, b"x"))
        assert svc.take_gossip() is False
    assert not (svc.svc_path / "escape").exists()
    assert "rejected" in (svc.last_error or "")
    stale = ServiceFileRumor("layers.default", "cert.pem", 2, b"OLD")
    ring.gossip(stale)
    assert svc.take_gossip() is False


async def test_bad_plan_and_broken_template_leave_others_running(
    tmp_path: Path, managers: list
) -> None:
    """A plan with bad TOML and a template with a syntax error each fail to load with one clear
    error naming file and line; the service already running keeps its process."""
    port = free_port()
    manager, _ = make_manager(tmp_path, env=habsup_env(port))
    managers.append(manager)
    good = await manager.load(ServiceSpec(PLANS / "habsup"))
    await until(lambda: good.process.pid is not None)
    pid = good.process.pid

    bad_plan = tmp_path / "badplan"
    bad_plan.mkdir()
    (bad_plan / "plan.toml").write_text('name = "badplan"\norigin = "x"\nversion = \n')
    with capture_logs() as logs, pytest.raises(ServiceLoadError) as err:
        await manager.load(ServiceSpec(bad_plan))
    assert f"{bad_plan / 'plan.toml'}:3" in str(err.value)
    failures = [e for e in logs if e["event"] == "service.load_failed"]
    assert len(failures) == 1 and failures[0]["error"] == str(err.value)
    assert manager.load_errors[str(bad_plan)] == str(err.value)

    broken = write_plan(
        tmp_path, "broken", {"run": "#!/bin/sh\n# ok\n{{#if cfg.x}}\nexec sleep 1\n"}
    )
    with pytest.raises(ServiceLoadError) as err2:
        await manager.load(ServiceSpec(broken))
    message = str(err2.value)
    assert message.startswith(f"{broken / 'hooks' / 'run'}:3:")
    assert manager.by_name("broken") is None

    helper_fail = write_plan(
        tmp_path,
        "renderfail",
        {"run": "#!/bin/sh\nexec sleep 100\n"},
        config__c="{{toToml cfg.absent}}\n",  # TOML has no null: toToml fails, as in Habitat
    )
    svc = await manager.load(ServiceSpec(helper_fail))
    await until(lambda: svc.state is ServiceState.FAILED, what="render failure")
    assert str(helper_fail / "config" / "c") in (svc.last_error or "")
    assert svc.process.pid is None

    assert good.process.pid == pid and good.state is ServiceState.UP
    assert [s.name for s in manager.services()] == ["habsup", "renderfail"]


async def test_a_lone_leader_topology_member_waits_and_runs_no_hooks(
    tmp_path: Path, managers: list
) -> None:
    """Topology leader in a ring of one: as in Habitat, the member does not elect itself. It
    stands at term 0 with status NoQuorum, /services says ElectionNoQuorum, the service waits
    saying it needs 2 more members, and no hook runs. (The election once three members are
    there, and hooks only after it: test_leader.py.) On the old code it elected itself at once."""
    plan = write_plan(
        tmp_path,
        "leaderly",
        {
            "init": "#!/bin/sh\ntouch {{pkg.svc_data_path}}/init-ran\n",
            "run": "#!/bin/sh\nexec sleep 100\n",
        },
    )
    manager, ring = make_manager(tmp_path)
    managers.append(manager)
    svc = await manager.load(ServiceSpec(plan, topology=Topology.LEADER))
    await until(lambda: "waiting for 2 more" in (svc.reason or ""), what="the wait, said")
    # The wait is reported only once the coordinator published its standing: a settled state.
    election = ring.store.get(RumorKind.ELECTION, "leaderly.default", "election")
    assert isinstance(election, ElectionRumor)
    assert election.status is ElectionStatus.NO_QUORUM and election.member_id == MEMBER_ID
    assert svc.state is ServiceState.WAITING and svc.process.pid is None
    assert svc.election_status.value == "ElectionNoQuorum"
    assert not (svc.svc_path / "data" / "init-ran").exists()
    assert svc.reason == (
        "Waiting to execute hooks; election in progress, and we have no quorum: 1 of the 3 "
        "members a leader group needs for its first election; waiting for 2 more"
    )


async def test_http_routes(tmp_path: Path, managers: list) -> None:
    """/services, one service, config and health via aiohttp; 400 for an invalid group, 404 for an
    unknown service; /census lists the group with this member."""
    port = free_port()
    manager, ring = make_manager(tmp_path, env=habsup_env(port))
    managers.append(manager)
    svc = await manager.load(ServiceSpec(PLANS / "habsup", health_check_interval_s=1))
    await until(lambda: svc.health is HealthStatus.OK, what="healthy")
    await until(lambda: ring.published[-1].initialized)
    app = web.Application()
    add_service_routes(app, manager, ring.census)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/services")
        assert resp.status == 200
        services = await resp.json()
        assert len(services) == 1
        entry = services[0]
        assert entry["service_group"] == "habsup.default"
        assert entry["health_check"] == "Ok"
        assert entry["desired_state"] == "Up" and entry["initialized"] is True
        assert entry["process"]["state"] == "up" and entry["process"]["pid"] == svc.process.pid
        assert isinstance(entry["process"]["state_entered"], int)
        assert entry["cfg"]["http"]["port"] == port
        assert entry["pkg"]["exports"] == {"port": "http.port"}
        assert entry["pkg"]["exposes"] == [str(port)]
        assert entry["health_check_interval"] == {"secs": 1, "nanos": 0}
        assert entry["hooks"]["health_check"]["render_pair"].endswith("/hooks/health-check")
        assert entry["hooks"]["init"] is None
        assert entry["sys"]["member_id"] == MEMBER_ID
        assert entry["topology"] == "standalone" and entry["update_strategy"] == "none"
        assert entry["last_election_status"] == "None" and entry["restart_count"] == 0

        one = await client.get("/services/habsup/default")
        assert one.status == 200 and (await one.json())["service_group"] == "habsup.default"
        cfg = await client.get("/services/habsup/default/config")
        assert (await cfg.json())["http"]["port"] == port
        health = await client.get("/services/habsup/default/health")
        body = await health.json()
        assert health.status == 200 and body["status"] == "OK" and "200" in body["stdout"]
        assert set(body) == {"status", "stdout", "stderr"}

        assert (await client.get("/services/habsup/bad.group")).status == 400
        assert (await client.get("/services/habsup/default/b@d")).status == 400
        assert (await client.get("/services/nope/default")).status == 404
        assert (await client.get("/services/habsup/other/health")).status == 404
        assert (await client.get("/services/habsup/default/acme")).status == 404

        census = await (await client.get("/census")).json()
        group = census["census_groups"]["habsup.default"]
        member = group["population"][MEMBER_ID]
        assert member["alive"] is True and member["cfg"] == {"port": port}
        assert member["pkg"]["name"] == "habsup"
        assert census["local_member_id"] == MEMBER_ID

        await manager.stop("habsup")
        health = await client.get("/services/habsup/default/health")
        assert health.status == 500 and (await health.json())["status"] == "UNKNOWN"
        stopped = await (await client.get("/services/habsup/default")).json()
        assert stopped["process"] == {
            "pid": None,
            "state": "down",
            "state_entered": stopped["process"]["state_entered"],
        }


async def test_stop_all_stops_dependents_first(tmp_path: Path, managers: list) -> None:
    """stop_all: a service binding to another loaded group stops before it; all end down and
    their post-stop hooks ran."""
    order = tmp_path / "order"
    stop_hook = f"#!/bin/sh\necho {{{{pkg.name}}}} >> {order}\n"
    provider = write_plan(
        tmp_path,
        "provider",
        {"run": "#!/bin/sh\nexec sleep 100\n", "post-stop": stop_hook},
        plan_toml='[exports]\nport = "port"\n',
    )
    (provider / "default.toml").write_text("port = 1\n")
    consumer = write_plan(
        tmp_path,
        "consumer",
        {"run": "#!/bin/sh\nexec sleep 100\n", "post-stop": stop_hook},
        plan_toml='[binds]\nbackend = ["port"]\n',
    )
    manager, _ = make_manager(tmp_path)
    consumer_svc = await manager.load(
        ServiceSpec(consumer, binds=(("backend", "provider.default"),))
    )
    provider_svc = await manager.load(ServiceSpec(provider))
    await until(lambda: provider_svc.process.pid is not None)
    await until(lambda: consumer_svc.process.pid is not None, what="consumer up once bound")
    await manager.stop_all(10.0)
    assert order.read_text().split() == ["consumer", "provider"]
    assert consumer_svc.process.state is ProcessState.DOWN
    assert provider_svc.process.state is ProcessState.DOWN
    assert manager.services() == []

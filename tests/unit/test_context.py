"""The template context (sys, pkg, cfg, svc, bind) and the strict-binds gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import ElectionRumor, ElectionStatus, ServiceRumor
from pysup.butterfly.rumors import RumorStore
from pysup.census import Census
from pysup.census_build import build_census
from pysup.service.context import binds_not_ready, render_context
from pysup.service.handlebars import compile_template
from pysup.service.plan import Plan, load_plan
from pysup.service.spec import BindingMode, ServiceSpec, Topology

ME, OTHER, DB1, DB2 = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
SYS = {
    "ip": "10.0.0.9",
    "hostname": "web-0",
    "gossip_ip": "0.0.0.0",
    "gossip_port": 9638,
    "http_gateway_ip": "0.0.0.0",
    "http_gateway_port": 9631,
    "ctl_gateway_ip": "127.0.0.1",
    "ctl_gateway_port": 9632,
    "permanent": False,
    "version": "0.1.0",
}

PLAN_TOML = """
origin = "acme"
name = "web"
version = "2.0.0"
release = "20240101000000"
svc_user = "www"
exposes = ["port", "9000"]
deps = ["core/python/3.11.0/20230101000000"]
[exports]
port = "http.port"
[binds]
database = ["port"]
"""


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    d = tmp_path / "plan"
    (d / "hooks").mkdir(parents=True)
    (d / "plan.toml").write_text(PLAN_TOML)
    (d / "default.toml").write_text("[http]\nport = 8080\n")
    (d / "hooks" / "run").write_text("#!/bin/sh\nexec sleep 1\n")
    return load_plan(d, tmp_path / "svc")


def db_rumor(mid: str, port: int | None) -> ServiceRumor:
    cfg = {"port": port} if port is not None else {}
    return ServiceRumor(mid, "db.prod", 1, "core/db/1.0/20200101000000", True, cfg, {"ip": mid[:1]})


def census_with(*rumors: object, members: list[Member] | None = None) -> Census:
    store = RumorStore()
    for r in rumors:
        store.merge(r)  # type: ignore[arg-type]
    local = Member(ME, 0, "127.0.0.1", 9638)
    return build_census(local, members or [], store)


def ctx_for(plan: Plan, census: Census, spec: ServiceSpec | None = None) -> dict[str, object]:
    return render_context(
        plan=plan,
        spec=spec or ServiceSpec(plan.path, group="blue", binds=(("database", "db.prod"),)),
        sys_info=SYS,
        member_id=ME,
        cfg={"http": {"port": 8181}},
        exported={"port": 8181},
        census=census,
        initialized=True,
    )


def test_sys_and_pkg(plan: Plan) -> None:
    """sys carries every key with our member id; pkg has ident, svc paths, resolved exposes and
    deps (pkgPathFor finds them)."""
    ctx = ctx_for(plan, census_with())
    assert ctx["sys"] == {**SYS, "member_id": ME}
    pkg = ctx["pkg"]
    assert isinstance(pkg, dict)
    svc = plan.svc_path
    assert pkg["ident"] == "acme/web/2.0.0/20240101000000"
    assert (pkg["origin"], pkg["name"], pkg["version"], pkg["release"]) == (
        "acme",
        "web",
        "2.0.0",
        "20240101000000",
    )
    assert pkg["path"] == str(plan.path)
    assert pkg["svc_path"] == str(svc)
    for key, sub in [
        ("svc_config_path", "config"),
        ("svc_data_path", "data"),
        ("svc_files_path", "files"),
        ("svc_static_path", "static"),
        ("svc_var_path", "var"),
        ("svc_pid_file", "PID"),
    ]:
        assert pkg[key] == f"{svc}/{sub}", key
    assert pkg["svc_user"] == "www" and pkg["svc_group"] == "hab"
    assert pkg["exports"] == {"port": "http.port"}
    assert pkg["exposes"] == ["8181", "9000"]
    assert ctx["cfg"] == {"http": {"port": 8181}}
    tpl = compile_template('{{pkgPathFor "core/python"}}')
    assert tpl.render(ctx) == "/hab/pkgs/core/python/3.11.0/20230101000000"


def test_svc_without_census_group_has_me_as_only_member(plan: Plan) -> None:
    """Before our own rumor is in the census, svc.me/members/first are still us (fresh cfg)."""
    svc = ctx_for(plan, census_with())["svc"]
    assert isinstance(svc, dict)
    assert (svc["service"], svc["group"], svc["org"]) == ("web", "blue", None)
    assert svc["me"]["member_id"] == ME and svc["me"]["cfg"] == {"port": 8181}
    assert svc["me"]["alive"] is True
    assert [m["member_id"] for m in svc["members"]] == [ME]
    assert svc["first"]["member_id"] == ME
    assert svc["leader"] is None
    assert not svc["election_is_running"] and not svc["election_is_finished"]


def test_svc_members_leader_and_election_flags(plan: Plan) -> None:
    """Our stale rumor is replaced by the fresh me; the Finished election's leader is svc.leader
    and svc.first; me.follower is set."""
    mine = ServiceRumor(ME, "web.blue", 1, "acme/web/2.0.0/1", False, {"port": 1}, {})
    other = ServiceRumor(OTHER, "web.blue", 1, "acme/web/2.0.0/1", True, {"port": 2}, {})
    election = ElectionRumor("web.blue", OTHER, 1, 1, ElectionStatus.FINISHED)
    census = census_with(mine, other, election, members=[Member(OTHER, 1, "10.0.0.2", 9638)])
    svc = ctx_for(plan, census)["svc"]
    assert isinstance(svc, dict)
    assert [m["member_id"] for m in svc["members"]] == [ME, OTHER]
    assert svc["members"][0]["cfg"] == {"port": 8181}
    assert svc["leader"]["member_id"] == OTHER and svc["first"]["member_id"] == OTHER
    assert svc["me"]["follower"] is True and svc["me"]["leader"] is False
    assert svc["election_is_finished"] is True


def test_bind_context_and_each_alive(plan: Plan) -> None:
    """bind.<name> has first, leader and members with sys/cfg/health; eachAlive skips the dead."""
    census = census_with(
        db_rumor(DB1, 5432),
        db_rumor(DB2, 5433),
        members=[
            Member(DB1, 1, "10.0.1.1", 9638),
            Member(DB2, 1, "10.0.1.2", 9638, Health.CONFIRMED),
        ],
    )
    ctx = ctx_for(plan, census)
    bind = ctx["bind"]
    assert isinstance(bind, dict)
    db = bind["database"]
    assert [m["member_id"] for m in db["members"]] == [DB1, DB2]
    assert db["first"]["member_id"] == DB1 and db["leader"] is None
    assert db["members"][1]["confirmed"] is True and db["members"][1]["alive"] is False
    tpl = compile_template(
        "{{#eachAlive bind.database.members as |m|}}{{m.sys.gossip_ip}}:{{m.cfg.port}} "
        "{{/eachAlive}}"
    )
    assert tpl.render(ctx) == "10.0.1.1:5432 "


def test_strict_binds_wait_for_group_and_exports(plan: Plan) -> None:
    """Strict: not ready without the bind, without the group, or when it lacks an export; ready
    once it exports the keys. Relaxed: always ready."""
    spec = ServiceSpec(plan.path, binds=(("database", "db.prod"),))
    assert "not given" in str(binds_not_ready(plan, ServiceSpec(plan.path), census_with()))
    assert "no members" in str(binds_not_ready(plan, spec, census_with()))
    lacking = census_with(db_rumor(DB1, None), members=[Member(DB1, 1, "10.0.1.1", 9638)])
    assert "does not export port" in str(binds_not_ready(plan, spec, lacking))
    ready = census_with(db_rumor(DB1, 5432), members=[Member(DB1, 1, "10.0.1.1", 9638)])
    assert binds_not_ready(plan, spec, ready) is None
    relaxed = ServiceSpec(plan.path, binding_mode=BindingMode.RELAXED)
    assert binds_not_ready(plan, relaxed, census_with()) is None
    ctx = ctx_for(plan, census_with(), relaxed.__class__(plan.path, binds=(("database", "x.y"),)))
    assert ctx["bind"] == {"database": {"first": None, "leader": None, "members": []}}


def test_spec_round_trip_and_errors(tmp_path: Path) -> None:
    """A spec survives TOML; bad values are SpecErrors naming the field."""
    from pysup.service.spec import SpecError

    spec = ServiceSpec(
        tmp_path,
        group="prod",
        org="acme",
        topology="leader",  # type: ignore[arg-type]
        strategy="rolling",  # type: ignore[arg-type]
        binds=("db:db.prod@acme",),  # type: ignore[arg-type]
        health_check_interval_s=5,
        shutdown_timeout_s=3,
    )
    assert spec.topology is Topology.LEADER
    again = ServiceSpec.from_toml(spec.to_toml())
    assert again == spec
    for kwargs, word in [
        ({"group": "a.b"}, "group"),
        ({"topology": "mesh"}, "topology"),
        ({"binds": ("nocolon",)}, "bind"),
        ({"binds": ("x:a.b", "x:c.d")}, "twice"),
        ({"health_check_interval_s": 0}, "health_check_interval"),
        ({"shutdown_timeout_s": -1}, "shutdown_timeout"),
    ]:
        with pytest.raises(SpecError, match=word):
            ServiceSpec(tmp_path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="unknown key"):
        ServiceSpec.from_toml(f'plan_dir = "{tmp_path}"\ntopolgy = "leader"\n', "x.spec")

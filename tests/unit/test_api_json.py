"""The /services JSON, field by field against HABITAT.md's example entry (real Habitat output)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from pysup.census import Census
from pysup.service.api_json import config_json, duration_json, health_json, service_json
from pysup.service.health import HealthStatus
from pysup.service.hooks import HookResult
from pysup.service.plan import load_plan
from pysup.service.service import Service, ServiceTuning, compile_templates
from pysup.service.spec import ServiceSpec

MEMBER = "be57ce74c75d4b29a4d8602c28397364"

# HABITAT.md's /services entry ("real Habitat output, trimmed; keep these field names").
HABITAT_EXAMPLE: dict[str, Any] = json.loads("""
{"binding_mode":"strict","binds":["router:builder-router.default"],
 "cfg":{"http":{"listen":"0.0.0.0","port":9636}},"desired_state":"Up","health_check":"Ok",
 "health_check_interval":{"secs":30,"nanos":0},
 "hooks":{"health_check":null,"init":null,"post_run":null,"post_stop":null,"reconfigure":null,
          "run":{"render_pair":"/hab/svc/api/hooks/run","stdout_log_path":"...",
                 "stderr_log_path":"..."}},
 "initialized":true,"last_election_status":"None",
 "pkg":{"ident":"core/api/1.0.0/20180906202535","origin":"core","name":"api","version":"1.0.0",
        "release":"20180906202535","exports":{"port":"http.port"},"exposes":["9636"],"path":"...",
        "svc_path":"/hab/svc/api","svc_user":"hab","svc_group":"hab","shutdown_signal":"TERM",
        "shutdown_timeout":8},
 "process":{"pid":221,"state":"up","state_entered":1536689926},
 "restart_count":0,"service_group":"api.default","spec_ident":{"origin":"core","name":"api"},
 "sys":{"ctl_gateway_ip":"127.0.0.1","ctl_gateway_port":9632,"gossip_ip":"0.0.0.0",
        "gossip_port":9638,"hostname":"api-0","http_gateway_ip":"0.0.0.0",
        "http_gateway_port":9631,"ip":"172.25.0.3",
        "member_id":"be57ce74c75d4b29a4d8602c28397364","permanent":false,"version":"..."},
 "topology":"standalone","update_strategy":"none"}
""")

SYS = {
    "ctl_gateway_ip": "127.0.0.1",
    "ctl_gateway_port": 9632,
    "gossip_ip": "0.0.0.0",
    "gossip_port": 9638,
    "hostname": "api-0",
    "http_gateway_ip": "0.0.0.0",
    "http_gateway_port": 9631,
    "ip": "172.25.0.3",
    "permanent": False,
    "version": "0.1.0",
}


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    """An `api` service like the example's, built but not started (no process, no task)."""
    d = tmp_path / "api"
    (d / "hooks").mkdir(parents=True)
    (d / "plan.toml").write_text(
        'origin = "core"\nname = "api"\nversion = "1.0.0"\nrelease = "20180906202535"\n'
        'exposes = ["port"]\n[exports]\nport = "http.port"\n'
    )
    (d / "default.toml").write_text('[http]\nlisten = "0.0.0.0"\nport = 9636\n')
    (d / "hooks" / "run").write_text("#!/bin/sh\nexec sleep 100\n")
    plan = load_plan(d, tmp_path / "svc")
    spec = ServiceSpec(d, binds=(("router", "builder-router.default"),))
    return Service(
        plan=plan,
        spec=spec,
        templates=compile_templates(plan),
        member_id=MEMBER,
        sys_info=SYS,
        census=lambda: Census(local_member_id=MEMBER),
        publish=lambda r: None,
        user_toml=tmp_path / "user.toml",
        env={},
        tuning=ServiceTuning(),
        rng=random.Random(0),
        wall_clock=lambda: 1536689926.5,
    )


def test_every_example_field_is_present_with_the_same_type(svc: Service) -> None:
    """Each key of the example (recursively, where it is an object) exists with the same JSON type
    (null hooks stay null, the run hook is an object)."""
    out = service_json(svc)
    json.dumps(out)

    def same_shape(example: Any, ours: Any, path: str) -> None:
        if isinstance(example, dict):
            assert isinstance(ours, dict), path
            for key, value in example.items():
                assert key in ours, f"{path}.{key} missing"
                same_shape(value, ours[key], f"{path}.{key}")
        elif example is None:
            assert ours is None, path
        elif isinstance(example, bool):
            assert isinstance(ours, bool), path
        elif isinstance(example, int):
            assert isinstance(ours, int) and not isinstance(ours, bool), path
        else:
            assert isinstance(ours, type(example)), path

    example = dict(HABITAT_EXAMPLE)
    example["process"] = {"pid": None, "state": "down", "state_entered": 1}  # not started
    same_shape(example, out, "")


def test_values_field_by_field(svc: Service) -> None:
    """The values that the example's service would have under pysup."""
    svc.initialized = True
    out = service_json(svc)
    ex = HABITAT_EXAMPLE
    for key in (
        "binding_mode",
        "binds",
        "cfg",
        "desired_state",
        "health_check_interval",
        "initialized",
        "last_election_status",
        "restart_count",
        "service_group",
        "topology",
        "update_strategy",
    ):
        assert out[key] == ex[key], key
    assert out["health_check"] == "Critical"  # no health-check hook and the process is down
    for key in ("ident", "origin", "name", "version", "release", "exports", "exposes"):
        assert out["pkg"][key] == ex["pkg"][key], key
    for key in ("svc_user", "svc_group", "shutdown_signal", "shutdown_timeout"):
        assert out["pkg"][key] == ex["pkg"][key], key
    assert out["pkg"]["svc_path"] == str(svc.svc_path)
    assert out["pkg"]["path"] == str(svc.plan.path)
    assert out["process"] == {"pid": None, "state": "down", "state_entered": 1536689926}
    assert out["spec_ident"]["origin"] == "core" and out["spec_ident"]["name"] == "api"
    assert out["sys"] == {**SYS, "member_id": MEMBER}
    hooks = out["hooks"]
    for key in ("health_check", "init", "post_run", "post_stop", "reconfigure"):
        assert hooks[key] is None, key
    assert hooks["run"] == {
        "render_pair": f"{svc.svc_path}/hooks/run",
        "stdout_log_path": f"{svc.svc_path}/logs/run.stdout.log",
        "stderr_log_path": f"{svc.svc_path}/logs/run.stderr.log",
    }
    assert out["pysup"]["state"] == "loaded"


def test_health_json_status_codes(svc: Service) -> None:
    """/health: status names and HTTP codes per HealthStatus; stdout/stderr of the last check."""
    body, code = health_json(svc)
    assert body == {"status": "CRITICAL", "stdout": "", "stderr": ""} and code == 503
    svc.templates = compile_templates(svc.plan).__class__(
        config={}, hooks={**svc.templates.hooks, "health-check": svc.templates.hooks["run"]}
    )
    body, code = health_json(svc)
    assert body["status"] == "UNKNOWN" and code == 500  # a hook, not run yet
    svc.last_hook["health-check"] = HookResult("health-check", 1, False, "slow\n", "warn\n", 0.1)
    for status, expected in [
        (HealthStatus.OK, 200),
        (HealthStatus.WARNING, 200),
        (HealthStatus.CRITICAL, 503),
        (HealthStatus.UNKNOWN, 500),
    ]:
        svc.health = status
        body, code = health_json(svc)
        assert body == {"status": status.value, "stdout": "slow\n", "stderr": "warn\n"}
        assert code == expected


def test_config_json_and_duration(svc: Service) -> None:
    assert config_json(svc) == {"http": {"listen": "0.0.0.0", "port": 9636}}
    assert duration_json(30) == {"secs": 30, "nanos": 0}
    assert duration_json(1.5) == {"secs": 1, "nanos": 500_000_000}

"""Kubernetes-native mode end to end: three real `pysup run --mode kubernetes` processes (pods
pysup-native-0..2 on 127.0.0.121-123) against the fake API server, RBAC limited to exactly the
rules the native Role grants, running a tiny leader-topology plan whose config template renders
`{{cfg.x}}` and `{{svc.me.leader}}`.

Proves: exactly one member renders leader = true, and it is the Lease holder; `/census` and
`/services` have the gossip mode's shape (compared with a gossip-mode supervisor running the same
plan); a ConfigMap change re-renders the config on every member; the holder stopped with SIGTERM
releases the Lease and another member leads within the renew period (plus slack); a holder that
stops renewing (SIGSTOP) is replaced within leaseDurationSeconds + the renew period (plus slack),
and once resumed it steps down instead of leading a second time.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from pysup.discovery.runtime import required_rules
from pysup.native_state import member_id_for
from pysup.settings import Settings
from pysup.testing.fake_kube import FakeEndpoint, config_map, endpoint_slice
from tests.integration.daemons import Fleet, Sup, fleet, report
from tests.integration.test_kube_ring import NS, ThreadedFake, kube, kube_env
from tests.integration.test_service import write_plan
from tests.util import wait_for

__all__ = ["fleet", "kube"]  # the fixtures, imported for pytest

pytestmark = [pytest.mark.integration]

SVC = "pysup-native"
SG = "nativeapp.default"
HOSTS = [f"127.0.0.{121 + i}" for i in range(3)]
PODS = [f"pysup-native-{i}" for i in range(3)]
LEASE_S = 3.0
RENEW_S = 0.5
SLACK_S = 4.0
"""Re-render (census debounce, the service loop) and process scheduling on 2 busy cores."""


def native_plan(root: Path) -> Path:
    # The run hook loops in a shell (its command line names the hook path under the test's
    # directory), so the fleet's cleanup finds it even if its supervisor was killed.
    return write_plan(
        root,
        "nativeapp",
        {"run": "#!/bin/sh\nwhile :; do sleep 0.2; done\n"},
        **{
            "default.toml": "x = 0\n",
            "config__out.toml": "x = {{cfg.x}}\nleader = {{svc.me.leader}}\n",
        },
    )


def rendered(sup: Sup) -> dict[str, str]:
    """`config/out.toml` of the service as key -> raw value ({} before the first render)."""
    try:
        text = (sup.state_dir / "svc" / "nativeapp" / "config" / "out.toml").read_text()
    except OSError:
        return {}
    return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)


def leaders(sups: list[Sup]) -> list[Sup]:
    return [s for s in sups if rendered(s).get("leader") == "true"]


def holder(kube: ThreadedFake) -> str | None:
    lease = kube.call(kube.fake.get_object, "leases", NS, SVC)
    return (lease or {}).get("spec", {}).get("holderIdentity") or None


def one_leader_agreed(kube: ThreadedFake, sups: list[Sup]) -> Sup | None:
    """The single member rendering leader = true, the others rendering false, and it holds the
    Lease; None until then."""
    if any(rendered(s).get("leader") not in ("true", "false") for s in sups):
        return None
    lead = leaders(sups)
    if len(lead) != 1 or holder(kube) != lead[0].name:
        return None
    return lead[0]


def shape(value: Any, depth: int = 2) -> Any:
    """The keys of nested objects down to `depth` (values ignored)."""
    if isinstance(value, dict) and depth > 0:
        return {k: shape(v, depth - 1) for k, v in value.items()}
    return type(value).__name__ if depth > 0 else None


def group_shape(sup: Sup) -> tuple[Any, Any] | None:
    """(shape of the /census group, shape of one population member)."""
    status, data = sup.get_json("/census")
    if status != 200:
        return None
    g = data["census_groups"].get(SG)
    if g is None or not g["population"]:
        return None
    member = next(iter(g["population"].values()))
    g = {k: v for k, v in g.items() if k != "population"}
    return sorted(g), shape(member, 1)


def services_shape(sup: Sup) -> Any:
    status, data = sup.get_json("/services")
    assert status == 200 and isinstance(data, list) and len(data) == 1, data
    entry = data[0]
    return {k: sorted(v) if isinstance(v, dict) else None for k, v in entry.items()}


@pytest.fixture
def pods(fleet: Fleet, kube: ThreadedFake, tmp_path: Path) -> Iterator[list[Sup]]:
    """The fake holds the EndpointSlice of the three pods and the ConfigMap (x = 1); RBAC allows
    exactly what the native Role grants; the three supervisors are up."""
    f = kube.fake
    settings = Settings(mode="kubernetes", kubernetes_service=SVC)
    for group, res, verb in required_rules(settings):
        kube.call(f.allow, group, res, verb)
    eps = [FakeEndpoint(h, p) for h, p in zip(HOSTS, PODS, strict=True)]
    kube.call(f.put, "endpointslices", endpoint_slice(f"{SVC}-abc", SVC, eps))
    kube.call(f.put, "configmaps", config_map(SVC, {"user.toml": "x = 1\n"}))
    plan = native_plan(tmp_path / "plans")
    sups = []
    for host, name in zip(HOSTS, PODS, strict=True):
        env = kube_env(f.host, f.port, tmp_path, POD_NAME=name, POD_IP=host)
        env.update(PYSUP_LEASE_DURATION_S=str(LEASE_S), PYSUP_LEASE_RENEW_S=str(RENEW_S))
        args = [str(plan), "--topology", "leader", "--mode", "kubernetes"]
        args += ["--kubernetes-service", SVC, "--json-logging"]
        sups.append(fleet.new(name, host=host, extra=args, env=env))
    try:
        for s in sups:
            fleet.launch(s)
        for s in sups:
            s.wait_http()
        yield sups
    finally:
        for s in sups:  # a stopped process would sit out the fleet's SIGTERM
            if s.alive():
                with suppress(ProcessLookupError):
                    s.signal(signal.SIGCONT)


def forbidden(sups: list[Sup]) -> list[str]:
    out = []
    for s in sups:
        for line in s.log_text().splitlines():
            with suppress(ValueError):
                ev = json.loads(line)
                if isinstance(ev, dict) and ev.get("event") == "discovery.forbidden":
                    out.append(f"{s.name}: {line}")
    return out


@pytest.mark.timeout(150)
def test_native_mode_lease_leader_failover_and_configmap(
    fleet: Fleet, kube: ThreadedFake, pods: list[Sup], tmp_path: Path
) -> None:
    sups = pods
    t0 = time.monotonic()

    # One leader, the Lease holder; the ConfigMap's x everywhere.
    lead = wait_for(lambda: one_leader_agreed(kube, sups), 30, what=f"one leader\n{fleet.logs()}")
    assert lead is not None
    report("native: first leader rendered", time.monotonic() - t0)
    wait_for(lambda: all(rendered(s).get("x") == "1" for s in sups), 10, what="x = 1 everywhere")

    # /census and /services as in gossip mode.
    status, census = lead.get_json("/census")
    assert status == 200
    group = census["census_groups"][SG]
    assert sorted(group["population"]) == sorted(member_id_for(p) for p in PODS)
    assert group["leader_id"] == member_id_for(lead.name)
    assert group["election_status"] == "ElectionFinished"
    assert group["service_config"]["value"] == {"x": 1}
    assert all(m["alive"] for m in group["population"].values())
    # Derived members carry their pod's IP and name (my own hostname is this machine's; in a
    # pod it is the pod name too).
    by_ip = {m["sys"]["ip"]: m["sys"]["hostname"] for m in group["population"].values()}
    assert by_ip.pop(lead.host) and by_ip == {
        h: p for h, p in zip(HOSTS, PODS, strict=True) if h != lead.host
    }
    gossip = fleet.start(
        "gossip",
        host="127.0.0.124",
        extra=[str(native_plan(tmp_path / "gplan")), "--topology", "leader"],
    )
    want = wait_for(lambda: group_shape(gossip), 30, what=f"gossip census\n{gossip.log_tail()}")
    assert group_shape(lead) == want
    assert services_shape(lead) == services_shape(gossip)
    gossip.signal(signal.SIGTERM)

    # A ConfigMap change re-renders every member.
    t1 = time.monotonic()
    kube.call(kube.fake.put, "configmaps", config_map(SVC, {"user.toml": "x = 2\n"}))
    wait_for(lambda: all(rendered(s).get("x") == "2" for s in sups), 10, what="x = 2 everywhere")
    report("native: ConfigMap change rendered on all 3", time.monotonic() - t1)

    # SIGTERM of the holder: it releases the Lease; another member leads without waiting for
    # the lease to expire.
    rest = [s for s in sups if s is not lead]
    t2 = time.monotonic()
    lead.signal(signal.SIGTERM)
    assert lead.wait_exit(20) == 0
    new = wait_for(
        lambda: one_leader_agreed(kube, rest),
        RENEW_S * 1.2 + SLACK_S,
        what=f"a leader after SIGTERM\n{fleet.logs()}",
    )
    assert new is not None
    report("native: leader after the holder's SIGTERM", time.monotonic() - t2)
    assert "lease.released" in lead.log_text()

    # A holder that stops renewing (SIGSTOP): the other takes over once the lease expired.
    other = next(s for s in rest if s is not new)
    t3 = time.monotonic()
    new.signal(signal.SIGSTOP)
    wait_for(
        lambda: holder(kube) == other.name and rendered(other).get("leader") == "true",
        LEASE_S + RENEW_S * 1.2 + SLACK_S,
        what=f"takeover from a silent holder\n{fleet.logs()}",
    )
    report("native: leader after the holder stopped renewing", time.monotonic() - t3)
    # Resumed, the old holder finds the Lease taken and renders itself a follower.
    new.signal(signal.SIGCONT)
    wait_for(
        lambda: rendered(new).get("leader") == "false",
        10,
        what=f"resumed follower\n{new.log_tail()}",
    )
    assert holder(kube) == other.name
    assert forbidden(sups) == []  # nothing asked beyond the native Role

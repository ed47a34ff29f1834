"""The Kubernetes manifests in `kubernetes/`: every object validates against the Kubernetes
OpenAPI schemas bundled with PyPI `kubernetes-validate` (offline, strict: unknown fields fail),
each Role grants exactly the (apiGroup, resource, verb) set the code calls with the flags its
StatefulSet passes, and the objects fit together (selectors, names, ports, probes, hooks, the
image's user)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pysup.cli import build_parser
from pysup.discovery.runtime import Rule, required_rules
from pysup.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "kubernetes"
SETS = ("gossip", "native")
K8S_VERSIONS = ("1.29.0", "1.33.0")
"""Oldest and a recent Kubernetes the manifests must be valid for (both bundled offline)."""

Obj = dict[str, Any]


def load(set_name: str) -> list[tuple[str, Obj]]:
    out: list[tuple[str, Obj]] = []
    for path in sorted((MANIFESTS / set_name).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def only(objs: list[tuple[str, Obj]], kind: str, name: str | None = None) -> Obj:
    found = [o for _, o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def every(objs: list[tuple[str, Obj]], kind: str) -> Iterator[Obj]:
    return (o for _, o in objs if o["kind"] == kind)


def container(sts: Obj) -> Obj:
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    result: Obj = c
    return result


def settings_of(sts: Obj) -> Settings:
    """The Settings `pysup run` builds from the StatefulSet's args (parsed by the real CLI)."""
    args = build_parser().parse_args(["run", *container(sts)["args"]])
    flags = {k: v for k, v in vars(args).items() if k not in ("func", "config_file", "command")}
    return load_settings(flags, env={})


def granted(role: Obj) -> set[Rule]:
    out: set[Rule] = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, res, verb), f"wildcard in {role['metadata']['name']}"
                    out.add((group, res, verb))
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------------------------------------


def test_every_set_has_the_objects_the_issue_asks_for() -> None:
    kinds = {s: sorted(o["kind"] for _, o in load(s)) for s in SETS}
    common = ["PodDisruptionBudget", "Role", "RoleBinding", "Service", "Service"]
    common += ["ServiceAccount", "StatefulSet"]
    assert kinds["gossip"] == sorted(common)
    assert kinds["native"] == sorted([*common, "ConfigMap", "Lease"])


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("set_name", SETS)
def test_manifests_validate_against_the_bundled_schemas(set_name: str, version: str) -> None:
    """kubernetes-validate ships the JSON schemas: no network. Strict: a misspelt field fails."""
    objs = load(set_name)
    assert objs
    for fname, obj in objs:
        try:
            got = kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{set_name}/{fname} {obj['kind']}: {path}: {e.message}")
        assert got == version.rsplit(".", 1)[0]


def test_the_validator_rejects_a_broken_manifest() -> None:
    """The schema check can fail: a misspelt field and a wrong type are caught."""
    sts = only(load("gossip"), "StatefulSet")
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["podManagmentPolicy"] = "Parallel"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


@pytest.mark.parametrize("set_name", SETS)
def test_role_grants_exactly_what_the_code_calls(set_name: str) -> None:
    """The code's set comes from the rule registries the client modules declare
    (`REQUIRED_RULES`, checked against real requests in tests/integration/test_kube_ring.py),
    for the flags the StatefulSet passes. Nothing more, nothing less."""
    objs = load(set_name)
    sts = only(objs, "StatefulSet")
    want = required_rules(settings_of(sts))
    assert want, "the StatefulSet's flags use no Kubernetes API at all?"
    (role,) = every(objs, "Role")
    assert granted(role) == set(want)
    sa = sts["spec"]["template"]["spec"]["serviceAccountName"]
    only(objs, "ServiceAccount", sa)
    binding = only(objs, "RoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa}]


def test_native_lease_rules_are_limited_to_the_lease_name() -> None:
    objs = load("native")
    lease = only(objs, "Lease")
    role = only(objs, "Role")
    for rule in role["rules"]:
        if rule["resources"] == ["leases"] and set(rule["verbs"]) & {"get", "update"}:
            assert rule["resourceNames"] == [lease["metadata"]["name"]]


@pytest.mark.parametrize("set_name", SETS)
def test_statefulset_pods_probes_hooks_and_security(set_name: str) -> None:
    objs = load(set_name)
    sts = only(objs, "StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert selects(spec["selector"]["matchLabels"], labels)
    c = container(sts)
    env = {e["name"]: e for e in c["env"]}
    for var, path in (
        ("POD_IP", "status.podIP"),
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ):
        assert env[var]["valueFrom"]["fieldRef"]["fieldPath"] == path
    assert env["PYSUP_STATEFULSET"]["value"] == sts["metadata"]["name"]
    ports = {p["name"]: p for p in c["ports"]}
    assert ports["http"]["containerPort"] == 9631
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # preStop: the hook the image ships (hooks/ -> /hab/hooks/), within the grace period.
    (hook,) = c["lifecycle"]["preStop"]["exec"]["command"]
    assert hook.startswith("/hab/hooks/")
    assert (ROOT / "hooks" / Path(hook).name).is_file()
    assert int(env["PYSUP_PRESTOP_TIMEOUT"]["value"]) < pod["terminationGracePeriodSeconds"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The image's user: uid HAB_UID, gid HAB_GID from the Dockerfile.
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"ARG HAB_UID=(\d+)", dockerfile)[1])  # type: ignore[index]
    gid = int(re.search(r"ARG HAB_GID=(\d+)", dockerfile)[1])  # type: ignore[index]
    sc = pod["securityContext"]
    assert (sc["runAsNonRoot"], sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]) == (
        True,
        uid,
        gid,
        gid,
    )
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    if c["securityContext"].get("readOnlyRootFilesystem"):
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/hab/sup", "/hab/svc", "/tmp"} <= mounts  # everything pysup writes
    pdb = only(objs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    for svc in every(objs, "Service"):
        assert selects(svc["spec"]["selector"], labels), svc["metadata"]["name"]
    api = [s for s in every(objs, "Service") if s["spec"].get("clusterIP") != "None"]
    assert [p["port"] for s in api for p in s["spec"]["ports"]] == [9631]


def test_gossip_service_and_discovery_flags_agree() -> None:
    objs = load("gossip")
    sts = only(objs, "StatefulSet")
    s = settings_of(sts)
    assert (s.peer_discovery, s.readiness, s.mode) == ("kubernetes", "ring", "gossip")
    svc = only(objs, "Service", s.kubernetes_service)
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    host, port = s.gossip_addr()
    assert host == "$(POD_IP)"  # expanded by the kubelet from the env var
    by_proto = {p["protocol"]: p for p in svc["spec"]["ports"]}
    assert set(by_proto) == {"UDP", "TCP"}
    assert by_proto["UDP"]["name"] == "gossip"  # the port name discovery reads
    assert all(p["port"] == port for p in by_proto.values())
    cports = {(p["name"], p["protocol"]): p["containerPort"] for p in container(sts)["ports"]}
    for p in by_proto.values():
        assert cports[(p["targetPort"], p["protocol"])] == port


def test_native_set_uses_the_kubernetes_mode() -> None:
    objs = load("native")
    sts = only(objs, "StatefulSet")
    s = settings_of(sts)
    assert (s.mode, s.peer_discovery) == ("kubernetes", None)
    svc = only(objs, "Service", s.kubernetes_service)
    # The census reads `ready` from the EndpointSlices: not-ready pods must stay not ready.
    assert svc["spec"]["publishNotReadyAddresses"] is False
    assert "user.toml" in only(objs, "ConfigMap")["data"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_tls_statefulset_mounts_the_secrets_and_probes_over_https(version: str) -> None:
    """kubernetes/tls/: the gossip StatefulSet with TLS on both gateways. Valid; the files the
    supervisor reads (PYSUP_TLS_* env, --ctl-server-* args, parsed by the real CLI) lie in
    read-only Secret volumes; every probe is HTTPS; otherwise it is the gossip set's pod."""
    objs = load("tls")
    sts = only(objs, "StatefulSet")
    kubernetes_validate.validate(sts, version, strict=True)
    c = container(sts)
    env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    args = build_parser().parse_args(["run", *c["args"]])
    flags = {k: v for k, v in vars(args).items() if k not in ("func", "config_file", "command")}
    s = load_settings(flags, env=env)
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    for path in (s.tls_certs, s.tls_key, s.ctl_server_certificate, s.ctl_server_key):
        assert path, "TLS not configured on both gateways"
        mount = mounts[str(Path(path).parent)]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["secret"]["secretName"].startswith("pysup-")
        assert Path(path).name in ("tls.crt", "tls.key")  # kubernetes.io/tls Secret keys
    assert s.tls_ca_certs is None  # the kubelet's probes present no client certificate
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS"
    gossip = only(load("gossip"), "StatefulSet")
    assert settings_of(gossip).peer_discovery == s.peer_discovery == "kubernetes"
    assert c["lifecycle"] == container(gossip)["lifecycle"]

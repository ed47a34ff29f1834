"""Kubernetes objects for tests, in the real JSON shapes (EndpointSlice discovery.k8s.io/v1, Pod,
ConfigMap), and the label/field selector matching the fake API server applies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

JsonObj = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Selectors


def parse_label_selector(sel: str) -> list[tuple[str, str, set[str]]]:
    """`a=b,c!=d,e in (x,y),f notin (z),g,!h` -> [(key, op, values)]."""
    reqs: list[tuple[str, str, set[str]]] = []
    parts: list[str] = []
    depth, cur = 0, ""
    for ch in sel:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    parts.append(cur)
    for raw in (p.strip() for p in parts):
        if not raw:
            continue
        if " notin " in raw or " in " in raw:
            op = "notin" if " notin " in raw else "in"
            key, vals = raw.split(f" {op} ", 1)
            values = {v.strip() for v in vals.strip().strip("()").split(",") if v.strip()}
            reqs.append((key.strip(), op, values))
        elif "!=" in raw:
            k, v = raw.split("!=", 1)
            reqs.append((k.strip(), "!=", {v.strip()}))
        elif "=" in raw:
            k, v = raw.replace("==", "=").split("=", 1)
            reqs.append((k.strip(), "=", {v.strip()}))
        elif raw.startswith("!"):
            reqs.append((raw[1:].strip(), "!exists", set()))
        else:
            reqs.append((raw, "exists", set()))
    return reqs


def labels_match(labels: Mapping[str, str], reqs: list[tuple[str, str, set[str]]]) -> bool:
    for key, op, values in reqs:
        has = key in labels
        val = labels.get(key)
        ok = {
            "=": has and val in values,
            "in": has and val in values,
            "!=": not has or val not in values,
            "notin": not has or val not in values,
            "exists": has,
            "!exists": not has,
        }[op]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class ObjectFilter:
    labels: list[tuple[str, str, set[str]]]
    fields: dict[str, str]

    def match(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if not labels_match(meta.get("labels") or {}, self.labels):
            return False
        for f, want in self.fields.items():
            node: Any = obj
            for part in f.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if (node or "") != want:
                return False
        return True


SUPPORTED_FIELDS = {"metadata.name", "metadata.namespace", "status.phase", "spec.nodeName"}


# ------------------------------------------------------------------------------------------------
# Builders


@dataclass(frozen=True)
class FakeEndpoint:
    ip: str
    pod: str | None = None
    ready: bool | None = True
    serving: bool | None = None
    terminating: bool | None = None
    node: str | None = None


def endpoint_slice(
    name: str,
    service: str,
    endpoints: Iterable[FakeEndpoint],
    *,
    namespace: str = "default",
    port: int = 9638,
    port_name: str = "gossip",
) -> JsonObj:
    eps: list[JsonObj] = []
    for e in endpoints:
        cond: JsonObj = {"ready": e.ready}
        cond["serving"] = e.ready if e.serving is None else e.serving
        cond["terminating"] = bool(e.terminating)
        ep: JsonObj = {"addresses": [e.ip], "conditions": cond}
        if e.pod:
            ep["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": e.pod, "uid": ""}
        if e.node:
            ep["nodeName"] = e.node
        eps.append(ep)
    return {
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": port_name, "protocol": "UDP", "port": port}],
    }


def pod(
    name: str,
    ip: str | None,
    labels: Mapping[str, str],
    *,
    namespace: str = "default",
    phase: str = "Running",
    ready: bool = True,
) -> JsonObj:
    st: JsonObj = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if ip:
        st["podIP"] = ip
        st["podIPs"] = [{"ip": ip}]
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"containers": [{"name": "pysup", "image": "pysup"}]},
        "status": st,
    }


def config_map(name: str, data: Mapping[str, str], *, namespace: str = "default") -> JsonObj:
    return {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace},
        "data": dict(data),
    }

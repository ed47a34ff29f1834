"""Peer discovery through the Kubernetes API, and the pure rules around it.

`KubernetesPeerSource` lists then watches the EndpointSlices of a Service (label
`kubernetes.io/service-name=<svc>`), or the pods matching a label selector when EndpointSlices are
forbidden or absent, and reports the set of gossip addresses of the *other* members. Endpoints that
are not ready are used (a ring has to form before anything is ready: bootstrap); terminating
endpoints, pods being deleted, finished pods and this pod itself are skipped.

RBAC: a 403 logs `discovery.forbidden` naming the exact missing Role rule, then the next source is
tried (EndpointSlices -> pods -> the fallback, e.g. DNS); without a fallback the node runs
standalone and retries the API later. Discovery never raises out of `run` for API trouble: no
crash loop.

Split brain at a parallel start: `should_bootstrap` (``pysup.discovery.founder``, re-exported)
decides who may form a new ring when no seed answers.

Census for the Kubernetes-native mode (`census_from_slices`) maps EndpointSlice conditions to
gossip health:
- `terminating: true` -> DEPARTED (the pod is going away, even while it still serves),
- `ready: true` (or unset, which the API defines as ready) -> ALIVE,
- `ready: false` and not terminating -> SUSPECT (running but failing its readiness probe).
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from pysup.discovery.founder import DEFAULT_GOSSIP_PORT as DEFAULT_GOSSIP_PORT
from pysup.discovery.founder import OnPeers as OnPeers
from pysup.discovery.founder import Peer as Peer
from pysup.discovery.founder import StableSet as StableSet
from pysup.discovery.founder import ordinal_of as ordinal_of
from pysup.discovery.founder import should_bootstrap as should_bootstrap
from pysup.discovery.kube_client import KubeClient, KubeForbidden, KubeNotFound, log_forbidden
from pysup.discovery.reflector import ListWatcher, WatchTuning

log = structlog.get_logger(__name__)

PeerRun = Callable[[OnPeers], Awaitable[None]]
"""A peer source's `run`: how a fallback source is handed to `KubernetesPeerSource`."""

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Rule = tuple[str, str, str]
"""(apiGroup, resource, verb), as a Role rule grants it."""
ENDPOINTSLICE_RULES: frozenset[Rule] = frozenset(
    {
        ("discovery.k8s.io", "endpointslices", "list"),
        ("discovery.k8s.io", "endpointslices", "watch"),
    }
)
"""What `_run_slices` calls (list, then watch). Checked against the fake API server's request log
and against the Roles in `kubernetes/` by the tests."""
POD_RULES: frozenset[Rule] = frozenset({("", "pods", "list"), ("", "pods", "watch")})
"""What `_run_pods` calls (only with a label selector)."""
REQUIRED_RULES: frozenset[Rule] = ENDPOINTSLICE_RULES | POD_RULES
"""Everything this module may call."""


def required_rules(service: str | None, selector: str | None) -> frozenset[Rule]:
    """The rules `KubernetesPeerSource(service=..., selector=...)` calls."""
    return (ENDPOINTSLICE_RULES if service else frozenset()) | (
        POD_RULES if selector else frozenset()
    )


# --------------------------------------------------------------------------------------------------
# Pure helpers


def _slice_port(slice_: Mapping[str, Any], port_name: str, default: int) -> int:
    for p in slice_.get("ports") or []:
        if p.get("name") == port_name and p.get("port"):
            return int(p["port"])
    return default


def endpoints_from_slices(
    slices: Iterable[Mapping[str, Any]],
    self_ip: str | None,
    *,
    port: int = DEFAULT_GOSSIP_PORT,
    port_name: str = "gossip",
    self_pod: str | None = None,
) -> set[Peer]:
    """Gossip addresses of the other members: every address of every endpoint that is not
    terminating, ready or not; the port is the slice's port named `port_name`, else `port`."""
    out: set[Peer] = set()
    for s in slices:
        if s.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        p = _slice_port(s, port_name, port)
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("terminating") is True:
                continue
            ref = ep.get("targetRef") or {}
            if self_pod and ref.get("kind") == "Pod" and ref.get("name") == self_pod:
                continue
            for addr in ep.get("addresses") or []:
                if addr != self_ip:
                    out.add((str(addr), p))
    return out


def endpoints_from_pods(
    pods: Iterable[Mapping[str, Any]],
    self_ip: str | None,
    *,
    port: int = DEFAULT_GOSSIP_PORT,
    self_pod: str | None = None,
) -> set[Peer]:
    """Pod IPs of the other members: skips pods being deleted, finished pods, pods without an IP."""
    out: set[Peer] = set()
    for p in pods:
        meta = p.get("metadata") or {}
        st = p.get("status") or {}
        if meta.get("deletionTimestamp") or st.get("phase") in ("Succeeded", "Failed"):
            continue
        ip = st.get("podIP")
        if not ip or ip == self_ip or (self_pod and meta.get("name") == self_pod):
            continue
        out.add((str(ip), port))
    return out


class EndpointHealth(enum.IntEnum):
    """Health of a member as the Kubernetes-native census sees it (same order as gossip health)."""

    ALIVE = 1
    SUSPECT = 2
    DEPARTED = 4


@dataclass(frozen=True)
class CensusEntry:
    ip: str
    pod: str | None
    node: str | None
    zone: str | None
    health: EndpointHealth


def endpoint_health(conditions: Mapping[str, Any]) -> EndpointHealth:
    """ready/serving/terminating -> health; see the module docstring for the table."""
    if conditions.get("terminating") is True:
        return EndpointHealth.DEPARTED
    if conditions.get("ready") is False:
        return EndpointHealth.SUSPECT
    return EndpointHealth.ALIVE


def census_from_slices(slices: Iterable[Mapping[str, Any]]) -> dict[str, CensusEntry]:
    """Every endpoint address -> CensusEntry. An address listed twice (slices being rebalanced)
    keeps its best health."""
    out: dict[str, CensusEntry] = {}
    for s in slices:
        for ep in s.get("endpoints") or []:
            health = endpoint_health(ep.get("conditions") or {})
            ref = ep.get("targetRef") or {}
            pod = ref.get("name") if ref.get("kind") == "Pod" else None
            for addr in ep.get("addresses") or []:
                entry = CensusEntry(addr, pod, ep.get("nodeName"), ep.get("zone"), health)
                old = out.get(addr)
                if old is None or entry.health < old.health:
                    out[addr] = entry
    return out


# --------------------------------------------------------------------------------------------------
# The source


class KubernetesPeerSource:
    """Discovers peers from EndpointSlices (by Service) or pods (by label selector)."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        service: str | None = None,
        selector: str | None = None,
        self_ip: str | None = None,
        self_pod: str | None = None,
        port: int = DEFAULT_GOSSIP_PORT,
        port_name: str = "gossip",
        fallback: PeerRun | None = None,
        forbidden_retry_s: float = 60.0,
        tuning: WatchTuning | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not service and not selector:
            raise ValueError("kubernetes discovery needs a service name or a label selector")
        self.client = client
        self.namespace = namespace
        self.service = service
        self.selector = selector
        self.self_ip = self_ip
        self.self_pod = self_pod
        self.port = port
        self.port_name = port_name
        self.fallback = fallback
        self.forbidden_retry_s = forbidden_retry_s
        self.tuning = tuning or WatchTuning()
        self.rng = rng or random.Random()
        self.mode = ""
        """"endpointslices", "pods", "fallback" or "standalone": what is feeding peers now."""
        self.peers: frozenset[Peer] | None = None
        self.watcher: ListWatcher | None = None

    def _deliver(self, peers: set[Peer], on_peers: OnPeers) -> None:
        fs = frozenset(peers)
        if fs != self.peers:
            self.peers = fs
            log.info("discovery.peers", mode=self.mode, count=len(fs), peers=sorted(fs))
            on_peers(fs)

    async def _run_slices(self, on_peers: OnPeers) -> None:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        params = {"labelSelector": f"{SERVICE_NAME_LABEL}={self.service}"}
        self.watcher = ListWatcher(self.client, path, params, tuning=self.tuning, rng=self.rng)

        def changed(objs: Mapping[str, Any]) -> None:
            eps = endpoints_from_slices(
                objs.values(),
                self.self_ip,
                port=self.port,
                port_name=self.port_name,
                self_pod=self.self_pod,
            )
            self._deliver(eps, on_peers)

        await self.watcher.run(changed)

    async def _run_pods(self, on_peers: OnPeers) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        params = {"labelSelector": self.selector or ""}
        self.watcher = ListWatcher(self.client, path, params, tuning=self.tuning, rng=self.rng)

        def changed(objs: Mapping[str, Any]) -> None:
            eps = endpoints_from_pods(
                objs.values(), self.self_ip, port=self.port, self_pod=self.self_pod
            )
            self._deliver(eps, on_peers)

        await self.watcher.run(changed)

    async def run(self, on_peers: OnPeers) -> None:
        """Feed `on_peers` with every change of the peer set. Returns only when a fallback source
        took over and returned; API errors are logged and retried, never raised."""
        modes: list[tuple[str, Callable[[OnPeers], Awaitable[None]]]] = []
        if self.service:
            modes.append(("endpointslices", self._run_slices))
        if self.selector:
            modes.append(("pods", self._run_pods))
        while True:
            for mode, runner in modes:
                self.mode = mode
                try:
                    await runner(on_peers)
                except KubeForbidden as e:
                    log_forbidden(e, mode, self.namespace)
                except KubeNotFound as e:
                    log.warning("discovery.api_absent", source=mode, message=e.message)
            if self.fallback is not None:
                self.mode = "fallback"
                log.warning("discovery.fallback", to=getattr(self.fallback, "__qualname__", "?"))
                await self.fallback(on_peers)
                return
            self.mode = "standalone"
            log.warning("discovery.standalone", retry_in_s=self.forbidden_retry_s)
            await asyncio.sleep(self.forbidden_retry_s * (1 + 0.2 * self.rng.random()))

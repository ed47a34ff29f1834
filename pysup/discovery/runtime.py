"""The peer discovery the daemon owns: `--peer-discovery kubernetes` or `--peer-discovery dns:NAME`.

`Discovery` is built from the Settings and the environment, runs one peer source in the
background (`run`, which never raises) and answers the daemon's three questions:

- `seeds()`: whom to join while we are alone (the discovered gossip addresses, self excluded);
- `strangers(members, now)`: discovered addresses that are *not* live members of our ring, to
  contact even though we are not alone (see "split brain" below);
- `may_stand_alone(now)`: may a lone member call itself the ring's founder (and be ready)?

Sources: the Kubernetes API (EndpointSlices of `--kubernetes-service`, else pods matching
`--kubernetes-selector`; on 403/404 the A records of `<service>.<namespace>.svc` for a while, then
the API again), or the A records of a name. Outside a cluster (no KUBERNETES_SERVICE_HOST, no
token) `kubernetes` discovery logs `discovery.not_in_cluster` and uses the DNS fallback; nothing
crash-loops.

Split brain at a parallel start, and what "forming a ring" means in SWIM
------------------------------------------------------------------------
A SWIM member never *forms* a ring in the Raft sense: a lone member is a ring of one, and any
contact (a push-pull from a join) merges two rings into one. So two things matter:

1. Rings that never meet. Members join their seeds only while alone; two pairs that found each
   other first ({a,b} and {c,d}) are no longer alone and would stay apart forever. Hence
   `strangers()`: discovered addresses that are not members of our ring (or only Confirmed
   dead ones, which may be partitioned into a ring of their own), once they have been listed
   for `stranger_grace_s` (a new pod usually joins us by itself first, and N members all
   pushing full state at every newcomer would be a storm), retried with a doubling backoff.
   Every process watches the same EndpointSlices, so every partial ring keeps reaching for the
   rest until there is exactly one.
2. Who may report itself as a whole ring. `may_stand_alone` is the split-brain rule of the
   issue: only ordinal 0 of the StatefulSet (POD_NAME, checked against PYSUP_STATEFULSET when
   set), or, without ordinals, the numerically lowest address once the discovered set has been
   stable for `stable_for_s`. It decides readiness (`--readiness ring`: a lone member that may
   not stand alone answers 503 "waiting for peers") and whether a lone member calls itself the
   founder. It never gates joining or discovery: everyone keeps trying every seed, ready or not
   (the gossip Service publishes not-ready addresses).

With discovery off, `may_stand_alone` is True (a plain `pysup run` is a ring of one).

Environment (the in-cluster defaults can be redirected, so real processes can be pointed at a
fake API server): KUBERNETES_SERVICE_HOST/PORT, POD_IP, POD_NAME, POD_NAMESPACE (else the
namespace file), PYSUP_STATEFULSET, PYSUP_KUBE_SCHEME (`http` for the fake), PYSUP_KUBE_TOKEN_PATH,
PYSUP_KUBE_CA_PATH, PYSUP_KUBE_NAMESPACE_PATH, and the tunables PYSUP_DISCOVERY_STABLE_S,
PYSUP_DISCOVERY_RETRY_S, PYSUP_DISCOVERY_STRANGER_GRACE_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

from pysup.butterfly.member import Health, Member
from pysup.discovery.dns import DnsPeerSource, Resolver, resolve_a
from pysup.discovery.founder import (
    DEFAULT_GOSSIP_PORT,
    OnPeers,
    Peer,
    StableSet,
    ordinal_of,
    should_bootstrap,
)
from pysup.settings import Settings

if TYPE_CHECKING:  # the Kubernetes client loads only when asked for (issue 18: start-up)
    from pysup.discovery.kube_client import InClusterConfig
    from pysup.discovery.kubernetes import KubernetesPeerSource

log = structlog.get_logger(__name__)

Rule = tuple[str, str, str]
"""(apiGroup, resource, verb) as a Role rule grants it."""


class DiscoveryConfigError(ValueError):
    """The discovery flags cannot work (e.g. `kubernetes` without a service or selector)."""


def required_rules(settings: Settings) -> frozenset[Rule]:
    """Exactly the Role rules the code calls for these settings (the manifests are tested
    against this)."""
    from pysup.discovery import configmap, lease
    from pysup.discovery import kubernetes as kube_discovery

    rules: frozenset[Rule] = frozenset()
    if settings.peer_discovery == "kubernetes":
        rules |= kube_discovery.required_rules(
            settings.kubernetes_service, settings.kubernetes_selector
        )
    if settings.mode == "kubernetes":
        rules |= kube_discovery.ENDPOINTSLICE_RULES | lease.REQUIRED_RULES
        rules |= configmap.REQUIRED_RULES
    return rules


@dataclass(frozen=True)
class DiscoveryTuning:
    """Timings of discovery (defaults suit a cluster; tests shorten them through the env)."""

    stable_for_s: float = 10.0
    """Without StatefulSet ordinals, the lowest address may stand alone only once the discovered
    set has not changed for this long, seconds. Longer = safer against members that have not
    seen the same set yet; shorter = the lone first pod becomes ready sooner."""
    retry_s: float = 60.0
    """After a 403/404 from the API: how long the DNS fallback runs (or, without one, how long
    to stay standalone) before the API is tried again, seconds. Bounds API load and log volume
    against how fast a fixed Role is noticed."""
    dns_interval_s: float = 5.0
    """Seconds between DNS lookups while alone."""
    dns_joined_interval_s: float = 30.0
    """Seconds between DNS lookups once joined (new members are still found for `strangers`)."""
    stranger_grace_s: float = 10.0
    """A discovered address becomes a stranger to contact only after it has been listed this
    long without joining us, seconds: a new pod normally joins by itself within a few seconds."""
    stranger_retry_max_s: float = 60.0
    """Cap of the doubling retry delay per stranger address, seconds."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DiscoveryTuning:
        t = cls()
        pairs = {
            "stable_for_s": "PYSUP_DISCOVERY_STABLE_S",
            "retry_s": "PYSUP_DISCOVERY_RETRY_S",
            "stranger_grace_s": "PYSUP_DISCOVERY_STRANGER_GRACE_S",
        }
        for attr, var in pairs.items():
            if env.get(var):
                try:
                    t = replace(t, **{attr: float(env[var])})
                except ValueError:
                    raise DiscoveryConfigError(f"{var}={env[var]!r}: expected seconds") from None
        return t


def kube_config_from_env(env: Mapping[str, str]) -> InClusterConfig:
    """The in-cluster API config, with every path overridable (PYSUP_KUBE_*); raises
    KubeConfigError outside a pod."""
    from pysup.discovery.kube_client import InClusterConfig

    overrides: dict[str, str] = {}
    for field_name, var in (
        ("scheme", "PYSUP_KUBE_SCHEME"),
        ("token_path", "PYSUP_KUBE_TOKEN_PATH"),
        ("ca_path", "PYSUP_KUBE_CA_PATH"),
        ("namespace_path", "PYSUP_KUBE_NAMESPACE_PATH"),
    ):
        if env.get(var):
            overrides[field_name] = env[var]
    if env.get("POD_NAMESPACE"):
        overrides["namespace_override"] = env["POD_NAMESPACE"]
    return InClusterConfig.from_env(env, **overrides)


class Discovery:
    """Discovered peers and the split-brain rule; see the module docstring."""

    def __init__(
        self,
        kind: str,
        *,
        self_ip: str,
        gossip_port: int,
        service: str | None = None,
        selector: str | None = None,
        dns_spec: str | None = None,
        pod_name: str | None = None,
        statefulset: str | None = None,
        env: Mapping[str, str] | None = None,
        tuning: DiscoveryTuning | None = None,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        resolve: Resolver = resolve_a,
    ) -> None:
        if kind not in ("off", "kubernetes", "dns"):
            raise DiscoveryConfigError(f"unknown discovery kind {kind!r}")
        if kind == "kubernetes" and not service and not selector:
            raise DiscoveryConfigError(
                "--peer-discovery kubernetes needs --kubernetes-service or --kubernetes-selector"
            )
        if kind == "dns" and not dns_spec:
            raise DiscoveryConfigError("--peer-discovery dns:NAME needs a NAME")
        self.kind = kind
        self.self_ip = self_ip
        self.gossip_port = gossip_port or DEFAULT_GOSSIP_PORT
        self.service = service
        self.selector = selector
        self.dns_spec = dns_spec
        self.pod_name = pod_name
        self.statefulset = statefulset
        self.env = dict(env or {})
        self.tuning = tuning or DiscoveryTuning()
        self.on_change = on_change
        self._clock = clock
        self._rng = rng or random.Random()
        self._resolve = resolve
        self._peers: frozenset[Peer] = frozenset()
        self._stable = StableSet()
        self._stable.observe((), clock())
        self._first_seen: dict[Peer, float] = {}
        self._retry: dict[Peer, tuple[float, float]] = {}
        self._joined = False
        self._wake: asyncio.Event | None = None
        self.source: KubernetesPeerSource | None = None
        self._mode = kind

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        env: Mapping[str, str],
        *,
        self_ip: str,
        on_change: Callable[[], None] | None = None,
    ) -> Discovery:
        """`--peer-discovery` off -> a Discovery that finds nothing and may stand alone."""
        pd = settings.peer_discovery
        kind = "off" if not pd else "kubernetes" if pd == "kubernetes" else "dns"
        return cls(
            kind,
            self_ip=env.get("POD_IP") or self_ip,
            gossip_port=settings.gossip_addr()[1],
            service=settings.kubernetes_service,
            selector=settings.kubernetes_selector,
            dns_spec=pd[4:] if pd and pd.startswith("dns:") else None,
            pod_name=env.get("POD_NAME") or None,
            statefulset=env.get("PYSUP_STATEFULSET") or None,
            env=env,
            tuning=DiscoveryTuning.from_env(env),
            on_change=on_change,
        )

    # --- what the daemon asks -------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.kind != "off"

    @property
    def mode(self) -> str:
        """What feeds peers now: off, dns, endpointslices, pods, fallback, standalone."""
        if self.source is not None and self._mode == "kubernetes":
            return self.source.mode or "kubernetes"
        return self._mode

    def seeds(self) -> list[Peer]:
        """The discovered gossip addresses of the other members, sorted. The daemon asks only
        while alone, so this also tells DNS discovery to resolve at the fast interval again."""
        if self._joined:
            self._joined = False
            if self._wake is not None:
                self._wake.set()
        return sorted(self._peers)

    def mark_joined(self) -> None:
        """The daemon has joined a ring: DNS lookups slow down to `dns_joined_interval_s`."""
        self._joined = True

    def may_stand_alone(self, now: float | None = None) -> bool:
        """May a lone member count as a whole ring (ready, the founder)? See the module
        docstring. `now` is on this object's clock (time.monotonic by default)."""
        if not self.enabled:
            return True
        t = self._clock() if now is None else now
        candidates = {ip for ip, _ in self._peers}
        return should_bootstrap(
            self.pod_name,
            self.self_ip,
            candidates,
            self.tuning.stable_for_s,
            t,
            self._stable.changed_at,
            statefulset=self.statefulset,
        )

    def founder_rule(self) -> str:
        """Which rule `may_stand_alone` applies, for logs and readiness reasons."""
        if not self.enabled:
            return "discovery off"
        if ordinal_of(self.pod_name, self.statefulset) is not None:
            return f"only ordinal 0 may stand alone (I am {self.pod_name})"
        return f"lowest address after {self.tuning.stable_for_s:g}s stable"

    def strangers(self, members: Iterable[Member], now: float | None = None) -> list[Peer]:
        """Discovered addresses that are not Alive/Suspect/Departed members of our ring, listed
        for at least `stranger_grace_s`, and not tried within their backoff. Each call that
        returns an address counts as one try (the delay doubles up to `stranger_retry_max_s`)."""
        t = self._clock() if now is None else now
        # Alive/Suspect: already in our ring. Departed: left for good (a new pod at that
        # address is alone and joins us by itself). Confirmed stays a stranger: it may be a
        # partitioned member that now runs a ring of its own.
        known = {m.addr for m in members if m.health != Health.CONFIRMED}
        out: list[Peer] = []
        for addr in sorted(self._peers - known):
            if t - self._first_seen.get(addr, t) < self.tuning.stranger_grace_s:
                continue
            next_at, delay = self._retry.get(addr, (float("-inf"), 0.0))
            if t < next_at:
                continue
            delay = min(self.tuning.stranger_retry_max_s, max(1.0, delay * 2))
            self._retry[addr] = (t + delay, delay)
            out.append(addr)
        for addr in list(self._retry):
            if addr in known or addr not in self._peers:
                del self._retry[addr]
        if out:
            log.info("discovery.strangers", peers=[f"{h}:{p}" for h, p in out])
        return out

    # --- peer updates ---------------------------------------------------------------------

    def _on_peers(self, peers: frozenset[Peer]) -> None:
        now = self._clock()
        mine = {(self.self_ip, self.gossip_port)}
        new = frozenset(p for p in peers if p not in mine)
        for p in new - self._peers:
            self._first_seen.setdefault(p, now)
        for p in self._peers - new:
            self._first_seen.pop(p, None)
        changed = new != self._peers
        self._peers = new
        self._stable.observe({ip for ip, _ in new}, now)
        if changed and self.on_change is not None:
            self.on_change()

    # --- the background task --------------------------------------------------------------

    async def run(self) -> None:
        """Feed the peer set forever. Never raises (except cancellation): API trouble is
        handled by the sources; anything unexpected is logged and the source restarted."""
        self._wake = asyncio.Event()
        if not self.enabled:
            return
        delay = 1.0
        while True:
            try:
                if self.kind == "dns":
                    assert self.dns_spec is not None
                    await self._run_dns(self.dns_spec, None)
                else:
                    await self._run_kubernetes()
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("discovery.failed", kind=self.kind, retry_in_s=delay)
            await asyncio.sleep(delay * (1 + 0.2 * self._rng.random()))
            delay = min(self.tuning.retry_s, delay * 2)

    def _fallback_dns_spec(self, namespace: str | None) -> str | None:
        if not self.service:
            return None
        name = f"{self.service}.{namespace}.svc" if namespace else self.service
        return f"{name}:{self.gossip_port}"

    async def _run_kubernetes(self) -> None:
        # The Kubernetes client: only with `--peer-discovery kubernetes` (issue 18: start-up).
        from pysup.discovery.kube_client import KubeClient, KubeConfigError
        from pysup.discovery.kubernetes import KubernetesPeerSource
        from pysup.discovery.reflector import WatchTuning

        try:
            config = kube_config_from_env(self.env)
            namespace = config.namespace()
            client = KubeClient(config)
        except KubeConfigError as e:
            spec = self._fallback_dns_spec(self.env.get("POD_NAMESPACE"))
            log.warning("discovery.not_in_cluster", error=e.message, fallback=spec)
            self._mode = "fallback" if spec else "standalone"
            if spec is None:
                await asyncio.sleep(self.tuning.retry_s)
            else:
                await self._run_dns(spec, self._clock() + self.tuning.retry_s)
            return
        spec = self._fallback_dns_spec(namespace)

        async def fallback(on_peers: OnPeers) -> None:
            assert spec is not None
            await self._run_dns(spec, self._clock() + self.tuning.retry_s)

        self._mode = "kubernetes"
        try:
            while True:
                self.source = KubernetesPeerSource(
                    client,
                    namespace,
                    service=self.service,
                    selector=self.selector,
                    self_ip=self.self_ip,
                    self_pod=self.pod_name,
                    port=self.gossip_port,
                    fallback=fallback if spec else None,
                    forbidden_retry_s=self.tuning.retry_s,
                    tuning=WatchTuning(),
                    rng=self._rng,
                )
                # Returns only after the DNS fallback has run for `retry_s`: then the API is
                # tried again (a Role may have been fixed meanwhile).
                await self.source.run(self._on_peers)
        finally:
            await client.close()

    async def _run_dns(self, spec: str, until: float | None) -> None:
        """Resolve `NAME[:PORT]` until `until` (forever when None)."""
        src = DnsPeerSource.from_spec(spec, self.gossip_port, self_ip=self.self_ip)
        if self._wake is None:
            self._wake = asyncio.Event()
        last: frozenset[Peer] | None = None
        while until is None or self._clock() < until:
            try:
                found = await self._resolve(src.name, src.port)
            except OSError as e:  # NXDOMAIN, no records yet, resolver down
                log.info("discovery.dns_failed", name=src.name, error=str(e))
            else:
                peers = frozenset(p for p in found if p[0] != self.self_ip)
                if peers != last:
                    last = peers
                    log.info("discovery.peers", mode="dns", name=src.name, count=len(peers))
                self._on_peers(peers)
            t = self.tuning
            wait = t.dns_joined_interval_s if self._joined else t.dns_interval_s
            if until is not None:
                wait = max(0.0, min(wait, until - self._clock()))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

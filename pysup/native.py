"""Kubernetes-native mode (`--mode kubernetes`): no gossip ring; the Kubernetes API is the ring.

`NativeRing` implements the `pysup.ring.Ring` interface the daemon, the census and the gateways
read, as the gossip ring does, with no stand-ins. It keeps a member table and a `RumorStore`
*synthesized* from three Kubernetes objects, so the census, `/census`, `/services` and the
templates work unchanged:

- **Members** are the pods in the EndpointSlices of `--kubernetes-service`, with
  `census_from_slices`' health (ready -> Alive, not ready -> Suspect, terminating -> Departed). A
  pod that leaves the slices leaves the table (announced once as Departed). Member id =
  `member_id_for(pod name)` (``pysup.native_state``, with the rest of the pure part), the first
  32 hex digits of its SHA-256: stable across restarts and computable by every member (no
  MEMBER_ID file). Myself = POD_NAME (else the hostname), always Alive until I leave.
- **Service rumors**: my own services publish theirs as in gossip mode. For every other pod the
  runtime derives one from mine (its member id, `sys.ip`/`hostname` = the pod's IP and name,
  `initialized` = its endpoint is ready, no health-check result). This assumes a *homogeneous
  StatefulSet*: every pod runs the same plans with the same config, so the others export what I
  export. Only groups loaded here are shown.
- **Config**: the ConfigMap (`user.toml` key) becomes a Service-config rumor for every group loaded
  here, i.e. the layer `hab config apply` fills in gossip mode (default.toml < HAB_<PKG> < the
  local user.toml < the ConfigMap). Its incarnation is the ConfigMap's resourceVersion when numeric
  and greater, else the previous one + 1: it only grows. A deleted ConfigMap (or key) applies an
  empty config. `config apply` and `file upload` have nowhere to go: they are logged and ignored.
- **Leader**: one `coordination.k8s.io/v1` Lease (default name = the Service's, as the manifests in
  `kubernetes/native/` grant `get`/`update` on exactly that name) decides the leader of *every*
  leader-topology group loaded here: a Finished Election rumor naming the holder's member id (the
  holder is its pod name), a Running one while the Lease is free. Groups that need different
  leaders belong in different StatefulSets. The Lease is campaigned for only while a
  leader-topology group is loaded; `leave()` stops campaigning and releases it. The services'
  own election code stays out (`ElectionTuning.external_leader`).

Every change reaches the daemon's listener as `MemberChanged`/`RumorChanged`, as gossip would
deliver it, so services re-render. Nothing synthesized is persisted: `all_rumors()` is empty.

Environment (beyond the in-cluster ones of `pysup.discovery.runtime`): POD_NAME, POD_IP,
PYSUP_LEASE_NAME, PYSUP_CONFIGMAP_NAME, and the tunables of `NativeTuning`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import structlog

from pysup.butterfly.effects import Addr, MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    Rumor,
    RumorKind,
    ServiceRumor,
    by_kind,
    kind_of,
)
from pysup.butterfly.rumors import RumorStore, StoredRumor
from pysup.butterfly.version import next_version
from pysup.discovery.configmap import DEFAULT_KEY, ConfigMapWatcher
from pysup.discovery.kube_client import (
    KubeClient,
    KubeConfigError,
    KubeForbidden,
    KubeNotFound,
    log_forbidden,
)
from pysup.discovery.kubernetes import SERVICE_NAME_LABEL, census_from_slices
from pysup.discovery.lease import LeaseElector
from pysup.discovery.reflector import ListWatcher, WatchTuning
from pysup.discovery.runtime import kube_config_from_env
from pysup.faults import Faults
from pysup.native_state import NativeInputs, me_of, members_of, next_config_incarnation, rumors_of
from pysup.ring import RingEvent, RingListener
from pysup.settings import Settings

if TYPE_CHECKING:
    from pysup.service.manager import ServiceManager

log = structlog.get_logger(__name__)

Groups = Callable[[], Mapping[str, bool]]
"""Loaded service group -> is it in leader topology."""


class NativeConfigError(ValueError):
    """Native mode cannot start (no --kubernetes-service, not in a cluster, bad tunable)."""


def loaded_groups(services: ServiceManager | None) -> dict[str, bool]:
    """The `Groups` of a ServiceManager: every loaded group, and whether it is leader topology."""
    if services is None:
        return {}
    return {str(s.sg): s.spec.topology.value == "leader" for s in services.services()}


@dataclass(frozen=True)
class NativeTuning:
    """Timings of the native mode. Seconds throughout."""

    lease_duration_s: float = 15.0
    """leaseDurationSeconds: how long a holder that stopped renewing keeps the lead. Longer =
    fewer spurious failovers on a slow API server, slower takeover after a crash."""
    renew_s: float = 5.0
    """Seconds between renewals (holder) and checks (the others): a takeover comes at most this
    long (+20% jitter) after the lease expired; each check is one GET per pod."""
    forbidden_retry_s: float = 60.0
    """After a 403/404 on EndpointSlices or the ConfigMap: seconds before asking again."""
    watch: WatchTuning = field(default_factory=WatchTuning)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> NativeTuning:
        t = cls()
        values: dict[str, Any] = {}
        for attr, var in (
            ("lease_duration_s", "PYSUP_LEASE_DURATION_S"),
            ("renew_s", "PYSUP_LEASE_RENEW_S"),
            ("forbidden_retry_s", "PYSUP_NATIVE_RETRY_S"),
        ):
            if env.get(var):
                try:
                    value = float(env[var])
                except ValueError:
                    raise NativeConfigError(f"{var}={env[var]!r}: expected seconds") from None
                if value <= 0:
                    raise NativeConfigError(f"{var}={env[var]!r}: must be positive")
                values[attr] = value
        t = replace(t, **values) if values else t
        if t.renew_s >= t.lease_duration_s:
            raise NativeConfigError("the lease renew period must be shorter than its duration")
        return t


_PUBLISH = by_kind(
    "native publish",
    {
        RumorKind.MEMBER: "ignored",
        RumorKind.SERVICE: "service",  # ours go into the EndpointSlice view
        RumorKind.SERVICE_CONFIG: "ignored",  # config comes from the ConfigMap
        RumorKind.SERVICE_FILE: "ignored",
        RumorKind.DEPARTURE: "ignored",
        RumorKind.ELECTION: "lease",
        RumorKind.ELECTION_UPDATE: "lease",
    },
)
"""What the Kubernetes-native mode does with a rumor its services publish."""


class NativeRing:
    """The `pysup.ring.Ring` of the Kubernetes-native mode (see the module docstring)."""

    def __init__(
        self,
        *,
        client: KubeClient,
        namespace: str,
        service: str,
        pod: str,
        ip: str,
        gossip_port: int,
        groups: Groups,
        listener: RingListener,
        lease_name: str | None = None,
        configmap_name: str | None = None,
        configmap_key: str = DEFAULT_KEY,
        tuning: NativeTuning | None = None,
        rng: random.Random | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.faults = faults if faults is not None else Faults()
        """The watches are critical tasks (pysup/faults.py): without them membership is stale."""
        self.client = client
        self.namespace = namespace
        self.service = service
        self.lease_name = lease_name or service
        self.configmap_name = configmap_name or service
        self.configmap_key = configmap_key
        self.tuning = tuning or NativeTuning()
        self.port = gossip_port
        """No gossip listener in this mode; the port is only reported (and in `sys`)."""
        self._groups = groups
        self._listener = listener
        self._rng = rng or random.Random()
        self._in = NativeInputs(pod=pod, ip=ip, gossip_port=gossip_port)
        self.me = me_of(self._in)
        self.departed = False
        self.store = RumorStore()
        """Synthesized from the inputs; replaced wholesale on every change (read-only outside)."""
        self._members: dict[str, Member] = {}
        self.version = next_version()
        """Takes a new value with every new state (`pysup.ring.RingView.version`)."""
        self._rumors: dict[tuple[Any, ...], StoredRumor] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.elector: LeaseElector | None = None
        self._elector_task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        env: Mapping[str, str],
        *,
        sys_ip: str,
        groups: Groups,
        listener: RingListener,
        faults: Faults | None = None,
    ) -> NativeRing:
        if not settings.kubernetes_service:
            raise NativeConfigError("--mode kubernetes needs --kubernetes-service")
        try:
            config = kube_config_from_env(env)
            namespace = config.namespace()
            client = KubeClient(config)
        except KubeConfigError as e:
            raise NativeConfigError(f"--mode kubernetes: {e.message}") from None
        return cls(
            client=client,
            namespace=namespace,
            service=settings.kubernetes_service,
            pod=env.get("POD_NAME") or socket.gethostname(),
            ip=env.get("POD_IP") or sys_ip,
            gossip_port=settings.gossip_addr()[1],
            groups=groups,
            listener=listener,
            lease_name=env.get("PYSUP_LEASE_NAME") or None,
            configmap_name=env.get("PYSUP_CONFIGMAP_NAME") or None,
            tuning=NativeTuning.from_env(env),
            faults=faults,
        )

    # --- the view -----------------------------------------------------------------------------

    def member(self, member_id: str) -> Member | None:
        if member_id == self.me.id:
            return self.me
        return self._members.get(member_id)

    def members(self) -> Iterator[Member]:
        """Every known member except ourselves."""
        return iter(self._members.values())

    def num_members(self) -> int:
        return 1 + sum(1 for m in self._members.values() if m.health <= Health.SUSPECT)

    def is_alone(self) -> bool:
        return self.num_members() == 1

    def persistent_rumors(self) -> list[Rumor]:
        """Nothing to persist: the state is read from the API at every start."""
        return []

    def problems(self) -> list[str]:
        """The watches are critical tasks: their death stops the supervisor (pysup/faults.py)."""
        return []

    # --- the commands --------------------------------------------------------------------------

    async def start(self) -> None:
        log.info(
            "native.started",
            pod=self._in.pod,
            member_id=self.me.id,
            namespace=self.namespace,
            service=self.service,
            lease=self.lease_name,
            configmap=f"{self.configmap_name}/{self.configmap_key}",
        )
        self._spawn("native.slices", self._watch_slices())
        watcher = ConfigMapWatcher(
            self.client,
            self.namespace,
            self.configmap_name,
            key=self.configmap_key,
            forbidden_retry_s=self.tuning.forbidden_retry_s,
            tuning=self.tuning.watch,
            rng=self._rng,
        )
        self._spawn("native.configmap", watcher.run(self._on_config))

    def join(self, addrs: Iterable[Addr]) -> None:
        """Nothing to join: membership comes from the EndpointSlices."""

    def publish(self, rumor: Rumor) -> None:
        """My services' own Service rumors; anything else has no place in this mode."""
        route = _PUBLISH[kind_of(rumor)]
        mine = isinstance(rumor, ServiceRumor) and rumor.member_id == self.me.id
        if route == "service" and mine:
            assert isinstance(rumor, ServiceRumor)
            local = dict(self._in.local)
            local[rumor.service_group] = rumor
            self._update(local=local)
            return
        if route == "lease":
            return  # the Lease decides; the services' coordinators publish none (external_leader)
        log.warning(
            "native.rumor_ignored",
            kind=type(rumor).__name__,
            message="in --mode kubernetes, config comes from the ConfigMap "
            f"{self.configmap_name} and there is no gossip to carry this",
        )

    async def leave(self) -> None:
        """Stop campaigning and release the Lease if we hold it (successors need not wait for
        it to expire); we show as Departed."""
        if self.departed:
            return
        self.departed = True
        await self._stop_elector()
        self._update(left=True)

    async def close(self) -> None:
        await self._stop_elector()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    # --- inputs ------------------------------------------------------------------------------

    def _spawn(self, name: str, coro: Any, critical: bool = True) -> None:
        self._tasks.append(self.faults.spawn(name, coro, critical=critical))

    async def _watch_slices(self) -> None:
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.namespace}/endpointslices"
        params = {"labelSelector": f"{SERVICE_NAME_LABEL}={self.service}"}
        while True:
            watcher = ListWatcher(
                self.client, path, params, tuning=self.tuning.watch, rng=self._rng
            )
            try:
                await watcher.run(
                    lambda objs: self._update(entries=census_from_slices(objs.values()))
                )
            except KubeForbidden as e:
                log_forbidden(e, "endpointslices", self.namespace)
            except KubeNotFound as e:
                log.warning("discovery.api_absent", source="endpointslices", message=e.message)
            await asyncio.sleep(self.tuning.forbidden_retry_s * (1 + 0.2 * self._rng.random()))

    def _on_config(self, text: str | None, resource_version: str | None) -> None:
        if text is None and self._in.config is None:
            return
        data = b"" if text is None else text.encode("utf-8")
        incarnation = next_config_incarnation(self._in.config_incarnation, resource_version)
        self._update(config=data, config_incarnation=incarnation)

    def _on_lease(self, is_leader: bool, holder: str | None) -> None:
        if self.elector is None:
            return  # a late report after we stopped campaigning
        term = self._in.term + (1 if holder != self._in.holder else 0)
        self._update(lease_known=True, holder=holder, term=term)

    def _ensure_elector(self, want: bool) -> None:
        if want and self.elector is None and not self.departed:
            t = self.tuning
            self.elector = LeaseElector(
                self.client,
                self.namespace,
                self.lease_name,
                self._in.pod,
                lease_duration_s=t.lease_duration_s,
                renew_s=t.renew_s,
                on_change=self._on_lease,
                rng=self._rng,
            )
            self._elector_task = asyncio.ensure_future(self.elector.run())
        elif not want and self.elector is not None:
            self._spawn("native.lease_release", self._stop_elector(), critical=False)

    async def _stop_elector(self) -> None:
        elector, task = self.elector, self._elector_task
        if elector is None or task is None:
            return
        elector.stop()  # run() releases the Lease if we hold it, then returns
        try:
            async with asyncio.timeout(self.tuning.renew_s + 5.0):
                await task
        except TimeoutError:
            task.cancel()
            log.warning("native.lease_release_timeout", lease=self.lease_name)
        except Exception:
            log.exception("native.elector_failed")
        self.elector = self._elector_task = None
        self._in = replace(self._in, lease_known=False, holder=None)

    # --- applying a change --------------------------------------------------------------------

    def _update(self, **changes: Any) -> None:
        self._in = replace(self._in, groups=dict(self._groups()), **changes)
        self._ensure_elector(any(self._in.groups.values()))
        self._apply(emit=True)

    def sync_groups(self) -> None:
        """Take a newly loaded (or unloaded) group in *without* events. The daemon's census
        calls it before it reads the ring, so a service loading now sees its group's ConfigMap
        config in its first render."""
        groups = self._groups()
        if groups != self._in.groups:
            self._in = replace(self._in, groups=dict(groups))
            self._ensure_elector(any(groups.values()))
            self._apply(emit=False)

    def _apply(self, *, emit: bool) -> None:
        inputs = self._in
        events: list[RingEvent] = []
        me = me_of(inputs)
        if me != self.me and me.health is Health.DEPARTED:
            events.append(SelfChanged(me, "left"))
        new_members = members_of(inputs)
        old = {m.id: m for m in self.members()}
        for mid, (m, _name) in new_members.items():
            prev = old.get(mid)
            if prev != m:
                events.append(MemberChanged(m, prev.health if prev else None))
        for mid, prev in old.items():
            if mid not in new_members:
                events.append(MemberChanged(prev.with_health(Health.DEPARTED), prev.health))
        store = RumorStore()
        rumors: dict[tuple[Any, ...], StoredRumor] = {}
        for r in rumors_of(inputs):
            store.merge(r)
            rumors[r.identity] = r
        for key, r in rumors.items():
            if self._rumors.get(key) != r:
                events.append(RumorChanged(r))
        for key, r in self._rumors.items():
            if key not in rumors:
                events.append(RumorChanged(r))  # gone: the census changed all the same
        self.me, self.store = me, store
        self._members = {mid: m for mid, (m, _) in new_members.items()}
        self.version = next_version()
        self._rumors = rumors
        if not emit:
            return
        for e in events:
            with self.faults.guard("native.listener"):
                self._listener(e)

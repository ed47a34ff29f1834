"""Leader election on a `coordination.k8s.io/v1` Lease (Kubernetes-native mode).

`decide` is the pure rule: given the Lease as read (or None), my identity and the wall-clock time,
do I acquire it, renew it, or follow its holder? The holder is considered gone once
`renewTime + leaseDurationSeconds` has passed. Writes are conditional on `metadata.resourceVersion`,
so two candidates that both decide to acquire cannot both win: the loser gets 409 Conflict, re-reads
and follows.

A leader that cannot renew for `renew_deadline_s` (less than the lease duration) steps down on its
own before anyone else may take over, so there is never a moment with two leaders that believe it
(assuming clocks within `lease_duration_s - renew_deadline_s` of each other; nodes run NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from pysup.discovery.kube_client import KubeClient, KubeConflict, KubeError, KubeNotFound

log = structlog.get_logger(__name__)

JsonObj = dict[str, Any]
OnChange = Callable[[bool, str | None], None]
"""on_change(is_leader, leader_identity)."""

REQUIRED_RULES: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
    }
)
"""(apiGroup, resource, verb) the elector calls: get (read), create (first acquire), update
(renew, takeover, release). Checked against the fake's request log and the native Role."""


class Action(enum.Enum):
    ACQUIRE = "acquire"
    """Create the Lease, or take it over (free or expired)."""
    RENEW = "renew"
    """I hold it: bump renewTime."""
    FOLLOW = "follow"
    """Someone else holds a valid lease."""


def format_micro_time(ts: float) -> str:
    """MicroTime, as the API serialises it: `2006-01-02T15:04:05.000000Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def holder_of(lease: Mapping[str, Any] | None) -> str | None:
    if lease is None:
        return None
    return (lease.get("spec") or {}).get("holderIdentity") or None


def expires_at(lease: Mapping[str, Any]) -> float:
    """Wall-clock time after which the holder is gone; -inf when the lease has no times."""
    spec = lease.get("spec") or {}
    stamp = spec.get("renewTime") or spec.get("acquireTime")
    if not stamp:
        return float("-inf")
    try:
        return parse_micro_time(str(stamp)) + float(spec.get("leaseDurationSeconds") or 0)
    except ValueError:
        return float("-inf")


def decide(lease: Mapping[str, Any] | None, identity: str, now: float) -> Action:
    """The election rule. `now` is wall-clock seconds since the epoch."""
    holder = holder_of(lease)
    if lease is None or holder is None:
        return Action.ACQUIRE
    if holder == identity:
        return Action.RENEW
    if now >= expires_at(lease):
        return Action.ACQUIRE
    return Action.FOLLOW


def lease_body(
    lease: Mapping[str, Any] | None,
    action: Action,
    *,
    name: str,
    namespace: str,
    identity: str,
    duration_s: int,
    now: float,
) -> JsonObj:
    """The Lease to write for `action` (ACQUIRE or RENEW), keeping resourceVersion for the
    conditional update."""
    stamp = format_micro_time(now)
    if lease is None:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "holderIdentity": identity,
                "leaseDurationSeconds": duration_s,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        }
    body: JsonObj = copy.deepcopy(dict(lease))
    spec = body.setdefault("spec", {})
    if action is Action.ACQUIRE:
        # The holder changes (from someone else, or from nobody after a release).
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec["holderIdentity"] = identity
        spec["acquireTime"] = stamp
    spec["leaseDurationSeconds"] = duration_s
    spec["renewTime"] = stamp
    return body


class LeaseElector:
    """Campaigns for a Lease forever: `await run()`; `stop()` ends it (and releases the lease)."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_s: float = 15.0,
        renew_s: float = 5.0,
        *,
        renew_deadline_s: float | None = None,
        on_change: OnChange | None = None,
        release_on_stop: bool = True,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.duration_s = max(1, round(lease_duration_s))
        """leaseDurationSeconds written (an integer in the API): how long a silent holder keeps
        the lease. Longer = fewer spurious failovers, slower takeover after a crash."""
        self.renew_s = renew_s
        """Seconds between renewals (leader) and between checks (followers)."""
        self.renew_deadline_s = (
            renew_deadline_s if renew_deadline_s is not None else self.duration_s * 2 / 3
        )
        """A leader that has not renewed for this long steps down (must be < duration)."""
        self.on_change = on_change
        self.release_on_stop = release_on_stop
        self._wall = wall
        self._mono = mono
        self._rng = rng or random.Random()
        self.is_leader = False
        self.leader_identity: str | None = None
        self._last_renew = float("-inf")
        self._stop = asyncio.Event()

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    def _set(self, leader: bool, identity: str | None) -> None:
        if (leader, identity) == (self.is_leader, self.leader_identity):
            return
        was = self.is_leader
        self.is_leader, self.leader_identity = leader, identity
        if leader and not was:
            log.info("lease.acquired", lease=self.name, identity=self.identity)
        elif was and not leader:
            log.warning("lease.lost", lease=self.name, identity=self.identity, leader=identity)
        else:
            log.info("lease.leader", lease=self.name, leader=identity)
        if self.on_change is not None:
            self.on_change(leader, identity)

    async def _read(self) -> JsonObj | None:
        try:
            return await self.client.get(self.path)
        except KubeNotFound:
            return None

    async def step(self, max_conflicts: int = 3) -> Action:
        """One round: read, decide, write. 409 -> re-read and decide again."""
        for _ in range(max_conflicts):
            lease = await self._read()
            action = decide(lease, self.identity, self._wall())
            if action is Action.FOLLOW:
                self._set(False, holder_of(lease))
                return action
            body = lease_body(
                lease,
                action,
                name=self.name,
                namespace=self.namespace,
                identity=self.identity,
                duration_s=self.duration_s,
                now=self._wall(),
            )
            try:
                if lease is None:
                    coll = self.path.rsplit("/", 1)[0]
                    await self.client.create(coll, body)
                else:
                    await self.client.replace(self.path, body)
            except KubeConflict as e:
                log.info("lease.conflict", lease=self.name, reason=e.reason, action=action.value)
                continue
            self._last_renew = self._mono()
            self._set(True, self.identity)
            return action
        return Action.FOLLOW

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.step()
            except KubeError as e:
                log.warning("lease.error", lease=self.name, error=str(e))
            # Errors or endless conflicts: a leader that could not renew in time steps down
            # before anyone may take the lease over.
            if self.is_leader and self._mono() - self._last_renew > self.renew_deadline_s:
                self._set(False, None)
            delay = (
                self.renew_s if self.is_leader else self.renew_s * (1 + 0.2 * self._rng.random())
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        if self.release_on_stop and self.is_leader:
            await self._release()
        self._set(False, None)

    async def _release(self) -> None:
        """Give the lease up so a successor need not wait for it to expire."""
        try:
            lease = await self._read()
            if lease is None or holder_of(lease) != self.identity:
                return
            body = copy.deepcopy(lease)
            spec = body.setdefault("spec", {})
            spec["holderIdentity"] = ""
            spec["leaseDurationSeconds"] = 1
            spec["renewTime"] = format_micro_time(self._wall())
            await self.client.replace(self.path, body)
            log.info("lease.released", lease=self.name, identity=self.identity)
        except KubeError as e:
            log.info("lease.release_failed", lease=self.name, error=str(e))

    def stop(self) -> None:
        self._stop.set()

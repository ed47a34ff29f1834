"""List, then watch from the list's resourceVersion: a local copy of a filtered collection kept
current (a minimal client-go reflector).

BOOKMARKs advance the resourceVersion; `ERROR` 410 (history compacted) lists again at once; a
dropped stream or any other API error lists again after a decorrelated-jitter backoff; a clean end
(`timeoutSeconds`) resumes the watch from the last resourceVersion. `KubeForbidden` and
`KubeNotFound` are raised to the owner, which must decide (fall back, log the missing rule).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from pysup.discovery.kube_client import (
    JsonObj,
    KubeClient,
    KubeError,
    KubeForbidden,
    KubeGone,
    KubeNotFound,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WatchTuning:
    """Timings of the list+watch loop."""

    backoff_base_s: float = 0.5
    """First retry delay after a failed list or dropped stream, seconds."""
    backoff_max_s: float = 30.0
    """Retry delay cap, seconds: bounds API load from many pods against recovery latency."""
    watch_timeout_s: float = 300.0
    """`timeoutSeconds` asked of the server; each watch picks a random value in [t, 2t) so
    many pods do not reconnect at once."""
    bookmarks: bool = True
    """Ask for BOOKMARK events so the resourceVersion stays fresh and a resume rarely hits 410."""
    extra_params: Mapping[str, str] = field(default_factory=dict)


def next_backoff(prev: float, base: float, cap: float, rng: random.Random) -> float:
    """Decorrelated jitter: min(cap, uniform(base, prev * 3))."""
    return min(cap, rng.uniform(base, max(base, prev * 3)))


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class ListWatcher:
    """Keep a local copy of a filtered collection current: list, then watch from the list's
    resourceVersion; BOOKMARKs advance it; on 410 list again at once; on a dropped stream or error
    list again after a jittered backoff. `KubeForbidden` and `KubeNotFound` propagate to the caller
    (they need a decision, not a retry)."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        params: Mapping[str, str],
        *,
        tuning: WatchTuning | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.params = dict(params)
        self.tuning = tuning or WatchTuning()
        self.rng = rng or random.Random()
        self.objects: dict[str, JsonObj] = {}
        self.resource_version: str | None = None
        self.lists = 0
        """How many times the collection was listed (1 + relists), for observability and tests."""

    async def run(self, on_change: Callable[[Mapping[str, JsonObj]], None]) -> None:
        t = self.tuning
        delay = t.backoff_base_s
        need_list = True
        while True:
            try:
                if need_list:
                    lst = await self.client.list(self.path, {**self.params, **t.extra_params})
                    self.lists += 1
                    self.objects = {object_key(o): o for o in lst.get("items") or []}
                    self.resource_version = (lst.get("metadata") or {}).get("resourceVersion")
                    need_list = False
                    on_change(self.objects)
                delay = t.backoff_base_s
                q = {**self.params, **t.extra_params}
                q["timeoutSeconds"] = str(int(t.watch_timeout_s * (1 + self.rng.random())) or 1)
                if t.bookmarks:
                    q["allowWatchBookmarks"] = "true"
                if self.resource_version:
                    q["resourceVersion"] = self.resource_version
                loop = asyncio.get_running_loop()
                started, events = loop.time(), 0
                async for ev in self.client.watch(self.path, q):
                    events += 1
                    self._apply(ev, on_change)
                # A clean end (server timeoutSeconds): resume from the last resourceVersion, but
                # do not spin if the server keeps closing at once.
                if events == 0 and loop.time() - started < 1.0:
                    delay = next_backoff(delay, t.backoff_base_s, t.backoff_max_s, self.rng)
                    await asyncio.sleep(delay)
            except (KubeForbidden, KubeNotFound):
                raise
            except KubeGone:
                log.info(
                    "kube.watch.relist", path=self.path, reason="gone", rv=self.resource_version
                )
                need_list = True
            except KubeError as e:
                delay = next_backoff(delay, t.backoff_base_s, t.backoff_max_s, self.rng)
                log.info(
                    "kube.watch.relist",
                    path=self.path,
                    reason=type(e).__name__,
                    error=str(e),
                    retry_in_s=round(delay, 3),
                )
                need_list = True
                await asyncio.sleep(delay)

    def _apply(self, ev: JsonObj, on_change: Callable[[Mapping[str, JsonObj]], None]) -> None:
        typ = ev.get("type")
        obj = ev.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = str(rv)
        if typ == "BOOKMARK":
            return
        key = object_key(obj)
        if typ in ("ADDED", "MODIFIED"):
            self.objects[key] = obj
        elif typ == "DELETED":
            self.objects.pop(key, None)
        else:
            log.warning("kube.watch.unknown_event", path=self.path, type=typ)
            return
        on_change(self.objects)

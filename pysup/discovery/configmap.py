"""Watch one ConfigMap and hand one of its data keys (TOML config) to a callback.

The ConfigMap is listed and watched with `fieldSelector=metadata.name=<name>`; the Role needs
`list` and `watch` on configmaps. `on_config(text, resource_version)` is called once after the first
list and then whenever the key's text changes; `text` is None while the ConfigMap or the key does
not exist.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from pysup.discovery.kube_client import KubeClient, KubeForbidden, KubeNotFound, log_forbidden
from pysup.discovery.reflector import ListWatcher, WatchTuning

log = structlog.get_logger(__name__)

OnConfig = Callable[[str | None, str | None], None]

DEFAULT_KEY = "user.toml"

REQUIRED_RULES: frozenset[tuple[str, str, str]] = frozenset(
    {("", "configmaps", "list"), ("", "configmaps", "watch")}
)
"""(apiGroup, resource, verb) the watcher calls: list and watch with a field selector (no get).
Checked against the fake's request log and the native Role."""


class ConfigMapWatcher:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        *,
        key: str = DEFAULT_KEY,
        forbidden_retry_s: float = 60.0,
        tuning: WatchTuning | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.key = key
        """The data key holding the TOML text (default `user.toml`, as Habitat's user config)."""
        self.forbidden_retry_s = forbidden_retry_s
        """Seconds before trying again after 403/404 on the configmaps API."""
        self.tuning = tuning or WatchTuning()
        self.rng = rng or random.Random()
        self._delivered = False
        self.text: str | None = None
        self.watcher: ListWatcher | None = None

    def _changed(self, objs: Mapping[str, Any], on_config: OnConfig) -> None:
        cm = next((o for o in objs.values() if o["metadata"].get("name") == self.name), None)
        text: str | None = None
        rv: str | None = None
        if cm is not None:
            text = (cm.get("data") or {}).get(self.key)
            rv = cm["metadata"].get("resourceVersion")
        if self._delivered and text == self.text:
            return
        self._delivered = True
        self.text = text
        log.info(
            "configmap.changed", configmap=self.name, key=self.key, rv=rv, present=text is not None
        )
        on_config(text, rv)

    async def run(self, on_config: OnConfig) -> None:
        """Watch forever; API trouble is logged and retried, never raised."""
        path = f"/api/v1/namespaces/{self.namespace}/configmaps"
        params = {"fieldSelector": f"metadata.name={self.name}"}
        while True:
            self.watcher = ListWatcher(self.client, path, params, tuning=self.tuning, rng=self.rng)
            try:
                await self.watcher.run(lambda objs: self._changed(objs, on_config))
            except KubeForbidden as e:
                log_forbidden(e, "configmap", self.namespace)
            except KubeNotFound as e:
                log.warning("configmap.api_absent", message=e.message)
            await asyncio.sleep(self.forbidden_retry_s * (1 + 0.2 * self.rng.random()))

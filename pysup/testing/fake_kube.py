"""A fake Kubernetes API server (aiohttp) for tests, faithful to the real JSON shapes.

Serves pods, configmaps (v1), endpointslices (discovery.k8s.io/v1) and leases
(coordination.k8s.io/v1) under their real paths. One global resourceVersion counter (like etcd)
stamps every write. Lists answer with `<Kind>List` objects (items without kind/apiVersion, as the
real server sends them), with `limit`/`continue` paging. Watches stream newline-delimited
`{"type","object"}` events: ADDED for the current state when no resourceVersion is given, replayed
history after a given one, BOOKMARKs when asked for, `ERROR` 410 Expired for a resourceVersion
older than the compacted history. Label and field selectors filter lists and watches (an object
that stops matching is sent as DELETED). Errors are `Status` objects with the real messages for
401/403/404/409/410.

Test controls (plain methods, no auth): `put`, `remove`, `mark_pod_deleting`, `get_object`,
`rotate_token`, `allow`/`deny`/`allow_all`, `disable_api`, `drop_watches` (abort the TCP stream),
`close_watches` (clean end, like timeoutSeconds), `expire_watches` (send ERROR 410),
`send_bookmarks`, `compact` (forget history so older resourceVersions get 410). Builders:
`endpoint_slice`, `pod`, `config_map`, `FakeEndpoint`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from pysup.testing.kube_objects import (
    SUPPORTED_FIELDS,
    FakeEndpoint,
    ObjectFilter,
    config_map,
    endpoint_slice,
    parse_label_selector,
    pod,
)

__all__ = ["FakeEndpoint", "FakeKube", "config_map", "endpoint_slice", "pod", "status"]

JsonObj = dict[str, Any]

# (group, resource) -> (version, Kind)
KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("", "pods"): ("v1", "Pod"),
    ("", "configmaps"): ("v1", "ConfigMap"),
    ("", "services"): ("v1", "Service"),
    ("discovery.k8s.io", "endpointslices"): ("v1", "EndpointSlice"),
    ("coordination.k8s.io", "leases"): ("v1", "Lease"),
}
RESOURCE_GROUP = {res: grp for (grp, res) in KINDS}

_DROP = "DROP"
_CLOSE = "CLOSE"
_EXPIRE = "EXPIRE"


def status(code: int, reason: str, message: str, details: JsonObj | None = None) -> JsonObj:
    body: JsonObj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# ------------------------------------------------------------------------------------------------
# Server


@dataclass
class _Event:
    rv: int
    group: str
    resource: str
    namespace: str
    type: str
    obj: JsonObj
    old: JsonObj | None


@dataclass
class _Watcher:
    group: str
    resource: str
    namespace: str
    filt: ObjectFilter
    queue: asyncio.Queue[tuple[str, JsonObj] | str]


class FakeKube:
    """The fake API server. `await start()` then point an InClusterConfig at `host`/`port`."""

    def __init__(
        self,
        *,
        token: str = "token-1",
        user: str = "system:serviceaccount:default:pysup",
        bookmark_interval_s: float = 60.0,
    ) -> None:
        self.tokens = {token}
        self.user = user
        self.bookmark_interval_s = bookmark_interval_s
        self.rv = 100
        self.oldest_rv = 100
        self.objects: dict[tuple[str, str, str, str], JsonObj] = {}
        self.history: list[_Event] = []
        self.watchers: list[_Watcher] = []
        self.allowed: set[tuple[str, str, str]] | None = None
        self.denied: set[tuple[str, str, str]] = set()
        self.disabled_groups: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []
        """(method, path, query) of every request, for assertions."""
        self.host = "127.0.0.1"
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{version}/namespaces/{ns}/{resource}", self._handle)
        app.router.add_route("*", "/api/{version}/namespaces/{ns}/{resource}/{name}", self._handle)
        base = "/apis/{group}/{version}/namespaces/{ns}/{resource}"
        app.router.add_route("*", base, self._handle)
        app.router.add_route("*", base + "/{name}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host = host
        self.port = port or int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- controls ----------------------------------------------------------------------------

    def rotate_token(self, new: str, *, keep_old: bool = False) -> None:
        """Accept `new`; the old token(s) get 401 unless `keep_old`."""
        self.tokens = ({*self.tokens, new}) if keep_old else {new}

    def allow(self, group: str, resource: str, *verbs: str) -> None:
        """Switch to an explicit RBAC allow-list (first call) and add (group, resource, verb)s."""
        if self.allowed is None:
            self.allowed = set()
        self.allowed |= {(group, resource, v) for v in verbs}

    def deny(self, group: str, resource: str, *verbs: str) -> None:
        self.denied |= {(group, resource, v) for v in verbs}

    def allow_all(self) -> None:
        self.allowed = None
        self.denied.clear()

    def disable_api(self, group: str) -> None:
        """Make a whole API group 404 (e.g. a cluster without discovery.k8s.io/v1)."""
        self.disabled_groups.add(group)

    def get_object(self, resource: str, namespace: str, name: str) -> JsonObj | None:
        obj = self.objects.get((RESOURCE_GROUP[resource], resource, namespace, name))
        return copy.deepcopy(obj) if obj else None

    def put(self, resource: str, obj: JsonObj) -> JsonObj:
        """Create or replace an object (no auth, no conflict check); returns the stored copy."""
        meta = obj.get("metadata") or {}
        return self._write(
            RESOURCE_GROUP[resource], resource, meta.get("namespace", "default"), obj
        )

    def remove(self, resource: str, namespace: str, name: str) -> JsonObj | None:
        return self._delete(RESOURCE_GROUP[resource], resource, namespace, name)

    def mark_pod_deleting(self, namespace: str, name: str) -> JsonObj:
        """Graceful pod deletion: set metadata.deletionTimestamp (a MODIFIED event)."""
        obj = self.get_object("pods", namespace, name)
        if obj is None:
            raise KeyError(name)
        obj["metadata"]["deletionTimestamp"] = _now_rfc3339()
        obj["metadata"]["deletionGracePeriodSeconds"] = 30
        return self.put("pods", obj)

    def drop_watches(self) -> None:
        """Abort every open watch connection mid-stream (no terminating chunk)."""
        self._signal(_DROP)

    def close_watches(self) -> None:
        """End every open watch cleanly, as the server does when timeoutSeconds passes."""
        self._signal(_CLOSE)

    def expire_watches(self) -> None:
        """Send `ERROR` 410 Expired on every open watch, then end it."""
        self._signal(_EXPIRE)

    def send_bookmarks(self) -> None:
        """Send a BOOKMARK at the current resourceVersion on watches that allow bookmarks."""
        for w in self.watchers:
            w.queue.put_nowait(("BOOKMARK", self._bookmark(w, self.rv)))

    def compact(self) -> None:
        """Forget all history: watches from any older resourceVersion now get 410 Expired."""
        self.oldest_rv = self.rv
        self.history.clear()

    def _signal(self, what: str) -> None:
        for w in self.watchers:
            w.queue.put_nowait(what)

    # -- storage -----------------------------------------------------------------------------

    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def _write(self, group: str, resource: str, ns: str, obj: JsonObj) -> JsonObj:
        key = (group, resource, ns, obj["metadata"]["name"])
        old = self.objects.get(key)
        new = copy.deepcopy(obj)
        version, kind = KINDS[(group, resource)]
        new["kind"] = kind
        new["apiVersion"] = f"{group}/{version}" if group else version
        meta = new.setdefault("metadata", {})
        meta["namespace"] = ns
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now_rfc3339()
        meta["resourceVersion"] = str(self._bump())
        self.objects[key] = new
        self._emit(_Event(self.rv, group, resource, ns, "MODIFIED" if old else "ADDED", new, old))
        return copy.deepcopy(new)

    def _delete(self, group: str, resource: str, ns: str, name: str) -> JsonObj | None:
        old = self.objects.pop((group, resource, ns, name), None)
        if old is None:
            return None
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        self._emit(_Event(self.rv, group, resource, ns, "DELETED", gone, old))
        return copy.deepcopy(gone)

    def _emit(self, ev: _Event) -> None:
        self.history.append(ev)
        for w in self.watchers:
            out = self._translate(ev, w)
            if out is not None:
                w.queue.put_nowait(out)

    @staticmethod
    def _translate(ev: _Event, w: _Watcher) -> tuple[str, JsonObj] | None:
        if (ev.group, ev.resource, ev.namespace) != (w.group, w.resource, w.namespace):
            return None
        now_match = w.filt.match(ev.obj)
        was_match = ev.old is not None and w.filt.match(ev.old)
        if ev.type == "DELETED":
            return ("DELETED", ev.obj) if was_match else None
        if now_match:
            return ("MODIFIED" if was_match else "ADDED", ev.obj)
        return ("DELETED", ev.obj) if was_match else None

    def _bookmark(self, w: _Watcher, rv: int) -> JsonObj:
        version, kind = KINDS[(w.group, w.resource)]
        return {
            "kind": kind,
            "apiVersion": f"{w.group}/{version}" if w.group else version,
            "metadata": {"resourceVersion": str(rv), "creationTimestamp": None},
        }

    # -- HTTP --------------------------------------------------------------------------------

    def _reply(self, code: int, body: JsonObj) -> web.Response:
        return web.json_response(body, status=code)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        group = m.get("group", "")
        resource, ns, name = m["resource"], m["ns"], m.get("name")
        q = request.query
        self.requests.append((request.method, request.path, request.query_string))
        watch = q.get("watch", "") in ("1", "true")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self._reply(401, status(401, "Unauthorized", "Unauthorized"))
        if group in self.disabled_groups or (group, resource) not in KINDS:
            return self._reply(
                404, status(404, "NotFound", "the server could not find the requested resource")
            )
        verb = {
            "GET": "watch" if watch else ("get" if name else "list"),
            "POST": "create",
            "PUT": "update",
            "DELETE": "delete",
        }.get(request.method)
        if (
            verb is None
            or (verb == "create" and name)
            or (verb in ("update", "delete") and not name)
        ):
            return self._reply(
                405,
                status(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                ),
            )
        if not self._permitted(group, resource, verb):
            qual = _qualified(group, resource)
            what = f'{qual} "{name}"' if name else qual
            msg = (
                f'{what} is forbidden: User "{self.user}" cannot {verb} resource "{resource}" '
                f'in API group "{group}" in the namespace "{ns}"'
            )
            details: JsonObj = (
                {"kind": resource} if not group else {"group": group, "kind": resource}
            )
            if name:
                details["name"] = name
            return self._reply(403, status(403, "Forbidden", msg, details))
        try:
            filt = ObjectFilter(
                parse_label_selector(q.get("labelSelector", "")),
                self._fields(q.get("fieldSelector", "")),
            )
        except ValueError as e:
            return self._reply(400, status(400, "BadRequest", str(e)))
        if verb == "watch":
            return await self._watch(request, group, resource, ns, filt)
        if verb == "list":
            return self._list(group, resource, ns, filt, q)
        key = (group, resource, ns, name or "")
        qual = _qualified(group, resource)
        details = {"name": name, "group": group, "kind": resource}
        if verb == "get":
            obj = self.objects.get(key)
            if obj is None:
                return self._reply(
                    404, status(404, "NotFound", f'{qual} "{name}" not found', details)
                )
            return self._reply(200, obj)
        if verb == "delete":
            gone = self._delete(group, resource, ns, name or "")
            if gone is None:
                return self._reply(
                    404, status(404, "NotFound", f'{qual} "{name}" not found', details)
                )
            return self._reply(200, gone)
        try:
            body = await request.json()
        except ValueError:
            return self._reply(400, status(400, "BadRequest", "invalid JSON body"))
        meta = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(meta, dict) or not meta.get("name"):
            return self._reply(400, status(400, "BadRequest", "metadata.name: Required value"))
        if meta.get("namespace", ns) != ns:
            return self._reply(
                400,
                status(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match "
                    "the namespace sent on the request",
                ),
            )
        details = {"name": meta["name"], "group": group, "kind": resource}
        if verb == "create":
            key = (group, resource, ns, meta["name"])
            if key in self.objects:
                msg = f'{qual} "{meta["name"]}" already exists'
                return self._reply(409, status(409, "AlreadyExists", msg, details))
            meta.pop("resourceVersion", None)
            return self._reply(201, self._write(group, resource, ns, body))
        # update
        if meta["name"] != name:
            return self._reply(
                400,
                status(
                    400, "BadRequest", "the name of the object does not match the name on the URL"
                ),
            )
        cur = self.objects.get(key)
        if cur is None:
            return self._reply(404, status(404, "NotFound", f'{qual} "{name}" not found', details))
        want = meta.get("resourceVersion")
        if want and want != cur["metadata"]["resourceVersion"]:
            msg = (
                f'Operation cannot be fulfilled on {qual} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
            return self._reply(409, status(409, "Conflict", msg, details))
        return self._reply(200, self._write(group, resource, ns, body))

    def _permitted(self, group: str, resource: str, verb: str) -> bool:
        rule = (group, resource, verb)
        if rule in self.denied:
            return False
        return self.allowed is None or rule in self.allowed

    @staticmethod
    def _fields(sel: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in (p.strip() for p in sel.split(",") if p.strip()):
            k, _, v = part.replace("==", "=").partition("=")
            if k not in SUPPORTED_FIELDS:
                raise ValueError(f"field label not supported: {k}")
            out[k] = v
        return out

    def _matching(self, group: str, resource: str, ns: str, filt: ObjectFilter) -> list[JsonObj]:
        return [
            o
            for (g, r, n, _), o in sorted(self.objects.items())
            if (g, r, n) == (group, resource, ns) and filt.match(o)
        ]

    def _list(
        self, group: str, resource: str, ns: str, filt: ObjectFilter, q: Mapping[str, str]
    ) -> web.Response:
        version, kind = KINDS[(group, resource)]
        items = self._matching(group, resource, ns, filt)
        list_rv = self.rv
        start = 0
        if q.get("continue"):
            try:
                tok = json.loads(base64.b64decode(q["continue"]))
                list_rv, start = int(tok["rv"]), int(tok["start"])
            except (ValueError, KeyError, TypeError):
                return self._reply(400, status(400, "BadRequest", "invalid continue token"))
            if list_rv < self.oldest_rv:
                msg = (
                    "The provided continue parameter is too old to display a consistent list "
                    "result."
                )
                return self._reply(410, status(410, "Expired", msg))
        meta: JsonObj = {"resourceVersion": str(list_rv)}
        limit = int(q.get("limit", "0") or 0)
        page = items[start:]
        if limit and len(page) > limit:
            page = page[:limit]
            nxt = {"rv": list_rv, "start": start + limit}
            meta["continue"] = base64.b64encode(json.dumps(nxt).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        stripped = []
        for o in page:
            o2 = dict(o)
            o2.pop("kind", None)
            o2.pop("apiVersion", None)
            stripped.append(o2)
        return self._reply(
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": f"{group}/{version}" if group else version,
                "metadata": meta,
                "items": stripped,
            },
        )

    async def _watch(
        self, request: web.Request, group: str, resource: str, ns: str, filt: ObjectFilter
    ) -> web.StreamResponse:
        q = request.query
        rv_param = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks", "") in ("1", "true")
        timeout = float(q.get("timeoutSeconds", "1800") or 1800)
        w = _Watcher(group, resource, ns, filt, asyncio.Queue())
        initial: list[tuple[str, JsonObj] | str] = []
        if rv_param in ("", "0"):
            initial = [("ADDED", o) for o in self._matching(group, resource, ns, filt)]
        else:
            try:
                since = int(rv_param)
            except ValueError:
                return self._reply(400, status(400, "BadRequest", "invalid resourceVersion"))
            if since < self.oldest_rv:
                msg = f"too old resource version: {since} ({self.oldest_rv})"
                initial = [("ERROR", status(410, "Expired", msg)), _CLOSE]
            else:
                for ev in self.history:
                    out = self._translate(ev, w) if ev.rv > since else None
                    if out is not None:
                        initial.append(out)
        for item in initial:
            w.queue.put_nowait(item)
        self.watchers.append(w)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await resp.prepare(request)
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait = min(left, self.bookmark_interval_s) if bookmarks else left
                try:
                    item = await asyncio.wait_for(w.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and deadline - loop.time() > 0:
                        item = ("BOOKMARK", self._bookmark(w, self.rv))
                    else:
                        break
                if item == _DROP:
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
                if item == _CLOSE:
                    break
                if item == _EXPIRE:
                    msg = f"too old resource version: {self.oldest_rv} ({self.rv})"
                    item = ("ERROR", status(410, "Expired", msg))
                    await resp.write(
                        json.dumps({"type": item[0], "object": item[1]}).encode() + b"\n"
                    )
                    break
                assert isinstance(item, tuple)
                if item[0] == "BOOKMARK" and not bookmarks:
                    continue
                await resp.write(json.dumps({"type": item[0], "object": item[1]}).encode() + b"\n")
            await resp.write_eof()
        except ConnectionError:
            pass
        finally:
            self.watchers.remove(w)
        return resp

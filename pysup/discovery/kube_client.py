"""A small async Kubernetes REST client (aiohttp) for in-cluster use, plus a list+watch reflector.

Only what pysup needs: list (with pagination), watch (newline-delimited JSON events), get, create,
replace, delete. Errors come back as typed exceptions built from the API's `Status` bodies;
`KubeForbidden` carries the verb/resource/apiGroup that was denied so the caller can name the exact
Role rule that is missing.

The service-account token is re-read from its file at least every `token_refresh_s` (projected
tokens rotate about hourly) and immediately after a 401, then the request is retried once.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

log = structlog.get_logger(__name__)

JsonObj = dict[str, Any]

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# --------------------------------------------------------------------------------------------------
# Errors


class KubeError(Exception):
    """Any failure talking to the API server (HTTP status, Status body, transport)."""

    def __init__(self, message: str, *, code: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


class KubeConfigError(KubeError):
    """In-cluster configuration is missing (not in a pod, or no service-account token)."""


class KubeUnavailable(KubeError):
    """The API server could not be reached, or the connection broke (watch stream dropped)."""


class KubeUnauthorized(KubeError):
    """401 even after re-reading the token."""


class KubeNotFound(KubeError):
    """404: the object, or the whole API (e.g. no discovery.k8s.io/v1), does not exist."""


class KubeConflict(KubeError):
    """409: resourceVersion mismatch on update (reason Conflict) or create of an existing object
    (reason AlreadyExists)."""


class KubeGone(KubeError):
    """410: the resourceVersion asked for is older than the server's history (reason Expired)."""


@dataclass(frozen=True)
class ResourceRef:
    """What a request path addresses, as RBAC sees it."""

    api_group: str
    version: str
    resource: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


class KubeForbidden(KubeError):
    """403: RBAC denied `verb` on `resource` in `api_group`; `rule()` names the missing rule."""

    def __init__(self, message: str, *, verb: str, ref: ResourceRef) -> None:
        super().__init__(message, code=403, reason="Forbidden")
        self.verb = verb
        self.ref = ref

    @property
    def api_group(self) -> str:
        return self.ref.api_group

    @property
    def resource(self) -> str:
        return self.ref.resource

    def rule(self, verbs: tuple[str, ...] | None = None) -> str:
        """The Role rule to add, e.g. `apiGroups: [""], resources: ["pods"], verbs: ["list"]`."""
        return format_rule(self.ref.api_group, self.ref.resource, verbs or (self.verb,))


def format_rule(api_group: str, resource: str, verbs: tuple[str, ...]) -> str:
    vs = ", ".join(f'"{v}"' for v in verbs)
    return f'apiGroups: ["{api_group}"], resources: ["{resource}"], verbs: [{vs}]'


_PATH_RE = re.compile(
    r"^/(?:api/(?P<cver>v1)|apis/(?P<group>[^/]+)/(?P<gver>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?/?$"
)


def parse_resource_path(path: str) -> ResourceRef:
    """`/apis/coordination.k8s.io/v1/namespaces/ns/leases/x` -> ResourceRef(group, v1, ...)."""
    m = _PATH_RE.match(path)
    if m is None:
        raise ValueError(f"not a resource path: {path}")
    group = m["group"] or ""
    version = m["gver"] or m["cver"]
    return ResourceRef(group, version, m["res"], m["ns"], m["name"], m["sub"])


def verb_for(method: str, ref: ResourceRef, watch: bool) -> str:
    """The RBAC verb of an HTTP request (list vs get vs watch on GET)."""
    if method == "GET":
        if watch:
            return "watch"
        return "get" if ref.name else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if ref.name else "deletecollection",
    }.get(method, method.lower())


# --------------------------------------------------------------------------------------------------
# Configuration and token


@dataclass(frozen=True)
class InClusterConfig:
    """Where the API server is and how to authenticate; every path is overridable for tests."""

    host: str
    """API server host (KUBERNETES_SERVICE_HOST); IPv6 literals are bracketed automatically."""
    port: int = 443
    """API server port (KUBERNETES_SERVICE_PORT)."""
    scheme: str = "https"
    """`https` in a cluster; `http` only for the fake server in tests."""
    token_path: str = f"{SA_DIR}/token"
    """Service-account token file, re-read every `token_refresh_s` and after any 401."""
    ca_path: str = f"{SA_DIR}/ca.crt"
    """CA bundle that signs the API server certificate (https only)."""
    namespace_path: str = f"{SA_DIR}/namespace"
    """File holding this pod's namespace."""
    namespace_override: str | None = None
    """Use this namespace instead of reading `namespace_path`."""
    token_refresh_s: float = 60.0
    """Seconds between token re-reads. Kubelet rotates projected tokens well before expiry, so a
    minute keeps us current at the cost of one small file read a minute."""
    request_timeout_s: float = 30.0
    """Timeout for non-watch requests, seconds."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> InClusterConfig:
        """Build from KUBERNETES_SERVICE_HOST/PORT; raises KubeConfigError outside a cluster."""
        env = os.environ if env is None else env
        host = overrides.pop("host", None) or env.get("KUBERNETES_SERVICE_HOST")
        if not host:
            raise KubeConfigError("KUBERNETES_SERVICE_HOST is not set: not running in a pod")
        port = int(overrides.pop("port", None) or env.get("KUBERNETES_SERVICE_PORT") or 443)
        return cls(host=host, port=port, **overrides)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def namespace(self) -> str:
        if self.namespace_override:
            return self.namespace_override
        try:
            with open(self.namespace_path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise KubeConfigError(f"cannot read namespace file {self.namespace_path}: {e}") from e

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.scheme != "https":
            return None
        try:
            return ssl.create_default_context(cafile=self.ca_path)
        except OSError as e:
            raise KubeConfigError(f"cannot read CA bundle {self.ca_path}: {e}") from e


class TokenSource:
    """The bearer token, cached for `refresh_s` and re-read on demand (after a 401)."""

    def __init__(
        self, path: str, refresh_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._path = path
        self._refresh_s = refresh_s
        self._clock = clock
        self._token: str | None = None
        self._read_at = 0.0

    def get(self) -> str:
        now = self._clock()
        if self._token is None or now - self._read_at >= self._refresh_s:
            try:
                with open(self._path, encoding="utf-8") as f:
                    self._token = f.read().strip()
            except OSError as e:
                if self._token is None:
                    raise KubeConfigError(f"cannot read token file {self._path}: {e}") from e
                log.warning("kube.token_reread_failed", path=self._path, error=str(e))
            self._read_at = now
        return self._token

    def invalidate(self) -> None:
        """Force a re-read on the next `get` (called after a 401)."""
        self._read_at = float("-inf")


# --------------------------------------------------------------------------------------------------
# Client


def _status_error(code: int, body: Any, method: str, path: str, watch: bool) -> KubeError:
    reason = ""
    message = f"HTTP {code} on {method} {path}"
    if isinstance(body, dict) and body.get("kind") == "Status":
        reason = str(body.get("reason", ""))
        message = str(body.get("message") or message)
    if code == 401:
        return KubeUnauthorized(message, code=code, reason=reason or "Unauthorized")
    if code == 403:
        ref = parse_resource_path(path)
        return KubeForbidden(message, verb=verb_for(method, ref, watch), ref=ref)
    if code == 404:
        return KubeNotFound(message, code=code, reason=reason or "NotFound")
    if code == 409:
        return KubeConflict(message, code=code, reason=reason or "Conflict")
    if code == 410:
        return KubeGone(message, code=code, reason=reason or "Expired")
    return KubeError(message, code=code, reason=reason)


class KubeClient:
    """Async REST client. Use as `async with KubeClient(config) as client:` or call `close()`."""

    def __init__(
        self,
        config: InClusterConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        list_page_size: int = 500,
    ) -> None:
        self.config = config
        self.tokens = TokenSource(config.token_path, config.token_refresh_s, clock)
        self._page = list_page_size
        self._session: aiohttp.ClientSession | None = None
        self._ssl = config.ssl_context()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl else False)
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.tokens.get()}",
            "Accept": "application/json",
            "User-Agent": "pysup",
        }

    async def _open(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: JsonObj | None,
        limits: aiohttp.ClientTimeout,
        watch: bool = False,
    ) -> aiohttp.ClientResponse:
        """Send a request, retrying once with a re-read token on 401; raise on any error status."""
        url = self.config.base_url + path
        for attempt in (1, 2):
            try:
                resp = await self._sess().request(
                    method, url, params=params, json=body, headers=self._headers(), timeout=limits
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise KubeUnavailable(f"{method} {path}: {e!r}") from e
            if resp.status < 400:
                return resp
            try:
                err_body: Any = await resp.json(content_type=None)
            except (ValueError, aiohttp.ClientError):
                err_body = None
            finally:
                resp.release()
            err = _status_error(resp.status, err_body, method, path, watch)
            if isinstance(err, KubeUnauthorized) and attempt == 1:
                log.info("kube.token_reread", reason="401", path=path)
                self.tokens.invalidate()
                continue
            raise err
        raise AssertionError("unreachable")

    async def _json(
        self, method: str, path: str, params: Mapping[str, str] | None, body: JsonObj | None
    ) -> JsonObj:
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout_s)
        resp = await self._open(method, path, params, body, timeout)
        try:
            data: Any = await resp.json(content_type=None)
        except (ValueError, aiohttp.ClientError, TimeoutError) as e:
            raise KubeUnavailable(f"{method} {path}: bad response: {e!r}") from e
        finally:
            resp.release()
        if not isinstance(data, dict):
            raise KubeError(f"{method} {path}: expected a JSON object")
        return data

    async def list(self, path: str, params: Mapping[str, str] | None = None) -> JsonObj:
        """GET a collection, following `metadata.continue` pages; returns one merged List whose
        `metadata.resourceVersion` is the one to watch from."""
        q = dict(params or {})
        q.setdefault("limit", str(self._page))
        first = await self._json("GET", path, q, None)
        items: list[Any] = list(first.get("items") or [])
        cont = (first.get("metadata") or {}).get("continue")
        while cont:
            page = await self._json("GET", path, {**q, "continue": str(cont)}, None)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
        meta = dict(first.get("metadata") or {})
        meta.pop("continue", None)
        meta.pop("remainingItemCount", None)
        first["metadata"] = meta
        first["items"] = items
        return first

    async def watch(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[JsonObj]:
        """Stream watch events (`{"type": ..., "object": ...}`) for a collection.

        An `ERROR` event raises `KubeGone` (code 410) or `KubeError`; a broken connection raises
        `KubeUnavailable`; the iterator ends normally when the server closes the stream
        (`timeoutSeconds`)."""
        q = dict(params or {})
        q["watch"] = "true"
        try:
            server_timeout = float(q.get("timeoutSeconds", "300"))
        except ValueError:
            server_timeout = 300.0
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.config.request_timeout_s, sock_read=server_timeout + 30
        )
        resp = await self._open("GET", path, q, None, timeout, watch=True)
        buf = b""
        try:
            try:
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            yield _event(line, path)
                if buf.strip():
                    yield _event(buf, path)
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                raise KubeUnavailable(f"watch {path} dropped: {e!r}") from e
        finally:
            resp.release()
            resp.close()

    async def get(self, path: str) -> JsonObj:
        return await self._json("GET", path, None, None)

    async def create(self, path: str, body: JsonObj) -> JsonObj:
        """POST to a collection path."""
        return await self._json("POST", path, None, body)

    async def replace(self, path: str, body: JsonObj) -> JsonObj:
        """PUT to an object path; `metadata.resourceVersion` in the body makes it conditional."""
        return await self._json("PUT", path, None, body)

    async def delete(self, path: str) -> JsonObj:
        return await self._json("DELETE", path, None, None)


def _event(line: bytes, path: str) -> JsonObj:
    try:
        ev: Any = json.loads(line)
    except ValueError as e:
        raise KubeUnavailable(f"watch {path}: undecodable event: {e}") from e
    if not isinstance(ev, dict) or "type" not in ev:
        raise KubeUnavailable(f"watch {path}: malformed event")
    if ev["type"] == "ERROR":
        obj = ev.get("object") or {}
        code = int(obj.get("code", 0) or 0)
        err = _status_error(code or 500, obj, "GET", path, True)
        if code == 410:
            raise KubeGone(err.message, code=410, reason=err.reason)
        raise err
    return ev


def log_forbidden(e: KubeForbidden, source: str, namespace: str) -> None:
    """Log a 403 once, naming the exact Role rule that is missing (never crash on it)."""
    log.warning(
        "discovery.forbidden",
        source=source,
        namespace=namespace,
        verb=e.verb,
        rule=e.rule(),
        needed=e.rule(("list", "watch")),
        message=e.message,
    )

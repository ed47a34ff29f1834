"""The control gateway (``--listen-ctl``, 127.0.0.1:9632): authenticated commands over TCP.

A connection's first frame must be ``{"op": "auth", "secret": ...}`` with the state dir's
``CTL_SECRET`` within ``AUTH_TIMEOUT_S``; anything else is answered with an error, counted
(``pysup_rejected_inputs{source="ctl"}``), logged as ``ctl.refused`` (never with the secret) and the
connection is closed. Then each frame is one request and gets one response (see ``ctl_proto``).

Service specs loaded here are saved by the service layer (``pysup.service.saved``) so a restarted
supervisor loads them again. ``config apply`` and ``file upload`` publish a
versioned rumor; the rumor store and anti-entropy carry it to every member (also those down at the
time). What is acknowledged is on disk first (etcd's rule): the rumor store is saved *with* the new
rumor before it is published, and when that save fails (a full disk) nothing is published and the
operator gets ``NOT applied: ...`` with the reason; a spec is saved before the answer too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import structlog

from pysup.butterfly.codec import rumor_problem
from pysup.butterfly.messages import (
    DepartureRumor,
    Rumor,
    RumorKind,
    ServiceConfigRumor,
    ServiceFileRumor,
)
from pysup.census import ServiceGroup
from pysup.crypto.sealed import check_sealed
from pysup.crypto.tls import looks_like_tls
from pysup.faults import Faults
from pysup.gateway.ctl_auth import constant_time_equal
from pysup.gateway.ctl_proto import (
    HEADER,
    MAX_BODY,
    MAX_FRAME,
    AnyRequest,
    Auth,
    ConfigApply,
    CtlProtocolError,
    FileUpload,
    SupDepart,
    SupTerm,
    SvcLoad,
    SvcStart,
    SvcStatus,
    SvcStop,
    SvcUnload,
    decode_body,
    encode_frame,
    error,
    frame_length,
    ok,
    parse_request,
)
from pysup.gateway.host import CtlHost
from pysup.listener import ConnectionLimits, Listener
from pysup.service.api_json import status_row
from pysup.service.cfg import ConfigError, parse_gossip_config
from pysup.service.errors import ServiceLoadError
from pysup.service.manager import ServiceManager
from pysup.service.saved import forget_spec, save_desired, save_spec
from pysup.service.spec import DesiredState, ServiceSpec

if TYPE_CHECKING:  # the service layer loads with the first plan (issue 18)
    from pysup.service.service import Service

log = structlog.get_logger(__name__)

AUTH_TIMEOUT_S: Final = 5.0
"""A client must prove the secret within this many seconds of connecting, or is cut off."""
IDLE_TIMEOUT_S: Final = 60.0
"""An authenticated connection with no request for this long is closed."""
READ_TIMEOUT_S: Final = 10.0
"""Once a frame's header has arrived its body must follow within this many seconds."""
WRITE_TIMEOUT_S: Final = 10.0
"""A response that cannot be written within this many seconds ends the connection."""
MAX_AUTH_FRAME: Final = 16 * 1024
"""Largest first (auth) frame: an unauthenticated client cannot make us buffer a megabyte."""
MAX_CONNECTIONS: Final = 32
"""Concurrent control connections; more are refused (the gateway is for operators, not load)."""
LISTENER_LIMITS: Final = ConnectionLimits(max_connections=2 * MAX_CONNECTIONS, backlog=64)
"""Up to MAX_CONNECTIONS are served and as many again are answered "too many" and closed; beyond
that the listener closes them unanswered, so a flood holds at most 64 descriptors."""


class CtlOpError(Exception):
    """An operation refused for a reason the operator can fix; the message is one line.
    ``reason`` labels it in ``pysup_rejected_inputs{source="ctl"}``."""

    def __init__(self, message: str, reason: str = "op_refused") -> None:
        super().__init__(message)
        self.reason = reason


USER_ERRORS: Final = (CtlOpError, CtlProtocolError, ConfigError, ServiceLoadError, ValueError)
"""Errors answered as the operator's to fix (SpecError is a ValueError); others are logged as
bugs with their traceback, and the client still gets one line."""


def _not_saved(what: str, e: OSError) -> CtlOpError:
    where = f" ({e.filename})" if e.filename else ""
    return CtlOpError(
        f"NOT applied: cannot save {what} to the state dir: {e.strerror or e}{where}",
        reason="not_persisted",
    )


# --- the server ---------------------------------------------------------------------------------


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class _Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CtlGateway:
    """Serves control connections for one supervisor."""

    def __init__(self, host: CtlHost, secret: str, auth_timeout_s: float = AUTH_TIMEOUT_S) -> None:
        self.host = host
        self._secret = secret
        self.auth_timeout_s = auth_timeout_s
        self._connections = 0
        self._ops_lock = asyncio.Lock()
        """Ops run one at a time: two `config apply` of the same version cannot both pass."""

    # --- connection ---------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
        self._connections += 1
        try:
            if self._connections > MAX_CONNECTIONS:
                await self._refuse(writer, where, "too_many", "too many control connections")
                return
            try:
                async with asyncio.timeout(self.auth_timeout_s):  # the whole frame, not the header
                    first = await self._read(reader, self.auth_timeout_s, MAX_AUTH_FRAME)
            except TimeoutError:
                await self._refuse(
                    writer, where, "auth_timeout", f"no auth within {self.auth_timeout_s:g}s"
                )
                return
            except CtlProtocolError as e:
                await self._refuse(writer, where, e.reason, str(e))
                return
            if first is None:
                return
            try:
                self._authenticate(first)
            except _Refused as e:
                await self._refuse(writer, where, e.reason, str(e))
                return
            log.debug("ctl.authenticated", peer=where)
            await self._send(writer, ok())
            await self._session(reader, writer, where)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    def _authenticate(self, msg: dict[str, Any]) -> None:
        if msg.get("op") != "auth":
            raise _Refused("no_auth", "authenticate first: the first message must be auth")
        try:
            req = parse_request(msg)
        except CtlProtocolError:
            raise _Refused("bad_auth", "auth needs a secret") from None
        assert isinstance(req, Auth)
        if not constant_time_equal(req.secret, self._secret):
            raise _Refused("bad_secret", "wrong control gateway secret (CTL_SECRET)")

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str
    ) -> None:
        while True:
            try:
                msg = await self._read(reader, IDLE_TIMEOUT_S)
            except TimeoutError:
                return
            except CtlProtocolError as e:
                self.host.metrics.reject("ctl", e.reason)
                log.warning("ctl.bad_frame", peer=where, reason=e.reason, error=str(e))
                await self._send(writer, error(str(e)))
                return
            if msg is None:
                return
            try:
                req = parse_request(msg)
            except CtlProtocolError as e:
                self.host.metrics.reject("ctl", e.reason)
                await self._send(writer, error(str(e)))
                continue
            async with self._ops_lock:
                response = await self._handle(req, where)
            await self._send(writer, response)
            if isinstance(req, SupTerm):
                # Answer first, then stop: the client sees the request was accepted.
                self.host.terminate()
                return

    async def _read(
        self, reader: asyncio.StreamReader, timeout: float, max_len: int = MAX_FRAME
    ) -> dict[str, Any] | None:
        """One message; None on a clean end of stream between frames."""
        async with asyncio.timeout(timeout):
            try:
                header = await reader.readexactly(HEADER.size)
            except asyncio.IncompleteReadError as e:
                if not e.partial:
                    return None
                raise CtlProtocolError("truncated", "truncated frame header") from None
        if looks_like_tls(header):
            raise CtlProtocolError(
                "tls_client", "this control gateway does not use TLS (plain TCP only)"
            )
        length = frame_length(header)
        if length > max_len:
            raise CtlProtocolError("oversized", f"frame of {length} bytes exceeds {max_len}")
        async with asyncio.timeout(READ_TIMEOUT_S):
            try:
                body = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                raise CtlProtocolError("truncated", "connection closed inside a frame") from None
        return decode_body(body)

    async def _send(self, writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
        writer.write(encode_frame(msg))
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()

    async def _refuse(
        self, writer: asyncio.StreamWriter, where: str, reason: str, message: str
    ) -> None:
        self.host.metrics.reject("ctl", reason)
        log.warning("ctl.refused", peer=where, reason=reason)
        with contextlib.suppress(ConnectionError, TimeoutError):
            await self._send(writer, error(message))

    # --- operations ---------------------------------------------------------------------------

    async def _handle(self, req: AnyRequest, where: str) -> dict[str, Any]:
        try:
            result = await self._dispatch(req)
        except USER_ERRORS as e:
            reason = e.reason if isinstance(e, CtlOpError | CtlProtocolError) else "op_refused"
            self.host.metrics.reject("ctl", reason)
            log.info("ctl.op_refused", op=req.op, peer=where, reason=reason, error=_one_line(e))
            return error(_one_line(e))
        except Exception as e:
            log.exception("ctl.op_failed", op=req.op, peer=where)
            return error(f"{req.op} failed: {_one_line(e)}")
        log.info("ctl.op", op=req.op, peer=where)
        return result

    async def _dispatch(self, req: AnyRequest) -> dict[str, Any]:
        if isinstance(req, Auth):
            return ok()  # re-authenticating is harmless
        if isinstance(req, SvcLoad):
            return await self._svc_load(req)
        if isinstance(req, SvcUnload):
            return await self._svc_unload(req.name)
        if isinstance(req, SvcStart | SvcStop):
            return await self._svc_desired(req)
        if isinstance(req, SvcStatus):
            return self._svc_status(req.name)
        if isinstance(req, ConfigApply):
            return self._config_apply(req)
        if isinstance(req, FileUpload):
            return self._file_upload(req)
        if isinstance(req, SupDepart):
            return self._sup_depart(req.member_id)
        assert isinstance(req, SupTerm)
        log.info("ctl.term", message="terminating on request of the control gateway")
        return ok()

    # svc ...

    def _manager(self) -> ServiceManager:
        manager = self.host.services
        if manager is None:
            raise CtlOpError("this supervisor does not run services")
        return manager

    def _find(self, name: str) -> Service:
        """A loaded service by name (or origin/name[/version[/release]])."""
        parts = name.split("/")
        short = parts[1] if len(parts) >= 2 else name
        for svc in self._manager().services():
            if svc.name == short:
                return svc
        raise CtlOpError(f"service {name} is not loaded")

    @staticmethod
    def _spec_for(req: SvcLoad) -> ServiceSpec:
        plan_dir = Path(req.plan_dir)
        if not plan_dir.is_absolute():
            raise CtlOpError(f"plan directory {req.plan_dir} must be an absolute path")
        if not plan_dir.is_dir():
            raise CtlOpError(f"plan directory {req.plan_dir} does not exist on the supervisor")
        kwargs: dict[str, Any] = {"plan_dir": plan_dir, "binds": req.binds}
        for key, value in (
            ("group", req.group),
            ("topology", req.topology),
            ("strategy", req.strategy),
            ("binding_mode", req.binding_mode),
            ("health_check_interval_s", req.health_check_interval_s),
            ("shutdown_timeout_s", req.shutdown_timeout_s),
        ):
            if value is not None:
                kwargs[key] = value
        return ServiceSpec(**kwargs)

    async def _svc_load(self, req: SvcLoad) -> dict[str, Any]:
        spec = self._spec_for(req)
        plan_dir = spec.plan_dir
        manager = self._manager()
        for svc in manager.services():
            if Path(svc.spec.plan_dir) == plan_dir:
                raise CtlOpError(f"{plan_dir} is already loaded as {svc.name}")
        svc = await manager.load(spec)
        name = svc.name
        try:
            save_spec(self.host.state, name, spec)
        except OSError as e:
            with contextlib.suppress(Exception):
                await manager.unload(name)
            raise _not_saved(f"the spec of {name}", e) from None
        return ok(name=name, service_group=str(svc.service_group))

    async def _svc_unload(self, name: str) -> dict[str, Any]:
        svc = self._find(name)
        await self._manager().unload(svc.name)
        forget_spec(self.host.state, svc.name)
        return ok(name=svc.name)

    async def _svc_desired(self, req: SvcStart | SvcStop) -> dict[str, Any]:
        svc = self._find(req.name)
        desired = DesiredState.UP if isinstance(req, SvcStart) else DesiredState.DOWN
        try:  # persist first: a restart in between must not undo the operator's intent
            save_desired(self.host.state, svc.name, svc.spec, desired)
        except OSError as e:
            raise _not_saved(f"the spec of {svc.name}", e) from None
        manager = self._manager()
        if desired is DesiredState.UP:
            await manager.start(svc.name)
        else:
            await manager.stop(svc.name)
        return ok(name=svc.name, desired=desired.value)

    def _svc_status(self, name: str | None) -> dict[str, Any]:
        services = [self._find(name)] if name else list(self._manager().services())
        now = time.time()
        return ok(services=[status_row(s, now) for s in sorted(services, key=lambda s: s.name)])

    # config apply / file upload

    def _publish(self, rumor: Rumor) -> None:
        """Persist, then publish: nothing is gossiped (or acknowledged) that is not on disk."""
        problem = rumor_problem(rumor)  # the rule every member applies on receipt
        if problem is not None:
            raise CtlOpError(f"the ring would refuse it: {problem.detail}", reason="bad_request")
        try:
            self.host.persist_rumors([rumor])
        except OSError as e:
            raise _not_saved("the rumor store", e) from None
        self.host.publish(rumor)

    def _config_apply(self, req: ConfigApply) -> dict[str, Any]:
        sg = _service_group(req.service_group)
        if req.encrypted:
            _check_sealed(req.config, sg)  # only members holding the service key can parse it
        elif len(req.config) > MAX_BODY:
            raise CtlOpError(
                f"config is {len(req.config)} bytes, over the {MAX_BODY} byte limit (64 KiB)",
                reason="oversized",
            )
        else:
            parse_gossip_config(req.config)  # ConfigError names the line
        current = self.host.rumor_store().get(RumorKind.SERVICE_CONFIG, sg, "config")
        cur = current.incarnation if isinstance(current, ServiceConfigRumor) else 0
        if req.version <= cur:
            raise CtlOpError(
                f"version {req.version} of {sg}'s config must be greater than the current "
                f"version {cur}"
            )
        self._publish(ServiceConfigRumor(sg, req.version, req.config, req.encrypted))
        return ok(service_group=sg, version=req.version)

    def _file_upload(self, req: FileUpload) -> dict[str, Any]:
        sg = _service_group(req.service_group)
        if req.encrypted:
            _check_sealed(req.body, sg)
        elif len(req.body) > MAX_BODY:
            raise CtlOpError(
                f"file is {len(req.body)} bytes, over the {MAX_BODY} byte limit (64 KiB)",
                reason="oversized",
            )
        current = self.host.rumor_store().get(RumorKind.SERVICE_FILE, sg, req.filename)
        cur = current.incarnation if isinstance(current, ServiceFileRumor) else 0
        if req.version <= cur:
            raise CtlOpError(
                f"version {req.version} of {sg}'s file {req.filename} must be greater than the "
                f"current version {cur}"
            )
        self._publish(ServiceFileRumor(sg, req.filename, req.version, req.body, req.encrypted))
        return ok(service_group=sg, filename=req.filename, version=req.version)

    # sup ...

    def _sup_depart(self, member_id: str) -> dict[str, Any]:
        known = {self.host.local_member().id, *(m.id for m in self.host.ring_members())}
        if member_id not in known:
            raise CtlOpError(f"no member {member_id} in the ring")
        if self.host.rumor_store().is_departed(member_id):
            raise CtlOpError(f"member {member_id} has already departed")
        log.warning("ctl.depart", member_id=member_id)
        self._publish(DepartureRumor(member_id))
        return ok(member_id=member_id)


def _service_group(text: str) -> str:
    try:
        return str(ServiceGroup.parse(text))
    except ValueError as e:
        raise CtlOpError(str(e)) from None


def _check_sealed(data: bytes, service_group: str) -> None:
    problem = check_sealed(data, service_group)
    if problem is not None:
        raise CtlOpError(problem, reason="bad_encrypted_payload")


# --- wiring -------------------------------------------------------------------------------------


async def start_ctl_server(
    host: CtlHost,
    address: str,
    port: int,
    *,
    auth_timeout_s: float = AUTH_TIMEOUT_S,
    faults: Faults | None = None,
    tls: ssl.SSLContext | None = None,
) -> Listener:
    """Listen for control connections; the secret is the state dir's CTL_SECRET. With ``tls``
    only TLS clients are served (the secret is then proven inside the TLS session). The caller
    owns the listener: it closes it (the daemon, first in its shutdown)."""
    gateway = CtlGateway(host, host.state.ctl_secret(), auth_timeout_s)
    faults = faults if faults is not None else Faults(host.metrics)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with faults.guard("ctl.connection"):  # a bug ends one connection, not the gateway
            await gateway.serve(reader, writer)

    def protocol() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=MAX_FRAME + HEADER.size)
        return asyncio.StreamReaderProtocol(reader, serve)

    def refused(reason: str, peer: tuple[str, int]) -> None:
        host.metrics.reject("ctl", reason)

    listener = Listener(
        "ctl",
        protocol,
        LISTENER_LIMITS,
        faults,
        refused,
        tls=tls,
        tls_handshake_timeout_s=auth_timeout_s,
    )
    await listener.start(address, port)
    bound = [s.getsockname() for s in listener.sockets]
    log.info("ctl.listening", addresses=[f"{a[0]}:{a[1]}" for a in bound], tls=tls is not None)
    return listener

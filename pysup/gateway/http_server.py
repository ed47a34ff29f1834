"""Serving the HTTP gateway's aiohttp application through a bounded ``Listener``.

aiohttp alone keeps a connection that sends nothing (or a header a byte at a time) open for an hour,
admits connections until the process runs out of descriptors, and writes plain-text tracebacks for
malformed requests through the standard library logger. Here the application is served by a
``pysup.listener.Listener`` (cap, eviction of the longest-idle connection, idle/header deadline,
accept backoff), and aiohttp's server log goes to structlog: a malformed request is one counted
rejected input (``pysup_rejected_inputs{source="http",reason="bad_request"}``) and a rate-limited
``http.bad_request`` line; an exception in a handler is a fault of ``http.handler``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Final

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from pysup.events.hub import EventLimits
from pysup.faults import Faults, RateLimiter, one_line
from pysup.listener import ConnectionLimits, Listener
from pysup.metrics import Metrics

log = structlog.get_logger(__name__)

HTTP_REQUEST_CONNECTIONS: Final = 128
"""HTTP connections for ordinary requests: probes, scrapes and a few operators, each a short
request; 128 is far above that. At the cap the connection idle the longest is closed to admit
the new one, so a probe gets through while idle connections hold every slot."""
HTTP_MAX_CONNECTIONS: Final = HTTP_REQUEST_CONNECTIONS + EventLimits().max_clients
"""Concurrent HTTP connections (384): the 128 above plus one per ``/events`` client the event
hub admits (256). An event stream is a request in progress for its whole life, so it is never
evicted; without its own share, 128 streams would leave no slot for a ``/healthz`` probe. With
the gossip streams (256) and the control gateway (64) the supervisor's sockets stay near 700,
inside the common 1024-descriptor limit."""
HTTP_IDLE_TIMEOUT_S: Final = 10.0
"""Seconds a connection may stay without a request in progress: from its accept until its first
request's head has arrived (a slowloris sending a byte at a time is cut here), and between
keep-alive requests. A probe or curl sends its request within milliseconds; 10 s also covers a
slow client on a loaded machine."""
HTTP_BACKLOG: Final = 512
"""Connections the kernel queues for accept: under a connection flood a full queue drops SYNs
and a probe waits out a 1 s retransmit, so it is deep (kernel memory, not descriptors)."""
HTTP_LIMITS: Final = ConnectionLimits(
    max_connections=HTTP_MAX_CONNECTIONS,
    evict_idle=True,
    idle_timeout_s=HTTP_IDLE_TIMEOUT_S,
    backlog=HTTP_BACKLOG,
)
REJECT_LOG_INTERVAL_S: Final = 10.0
"""At most one ``http.bad_request`` / ``http.connection_closed`` line per reason in this window."""


class _AiohttpLog(logging.Handler):
    """aiohttp's server logger, into structlog and the metrics."""

    def __init__(self, metrics: Metrics, faults: Faults, limiter: RateLimiter) -> None:
        super().__init__(logging.DEBUG)
        self._metrics = metrics
        self._faults = faults
        self._limiter = limiter

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return  # debug chatter ("Ignored premature client disconnection"): nothing to count
        if isinstance(exc, HttpProcessingError):
            self._metrics.reject("http", "bad_request")
            held = self._limiter.allow("bad_request")
            if held is not None:
                log.warning("http.bad_request", error=one_line(exc), not_logged=held)
        else:
            self._faults.record("http.handler", exc)


def _server_logger(metrics: Metrics, faults: Faults, limiter: RateLimiter) -> logging.Logger:
    logger = logging.Logger("pysup.gateway.aiohttp", logging.DEBUG)  # not in the global registry
    logger.propagate = False
    logger.addHandler(_AiohttpLog(metrics, faults, limiter))
    return logger


class HttpServer:
    """The gateway's application on one listening address."""

    def __init__(
        self,
        app: web.Application,
        metrics: Metrics,
        faults: Faults,
        limits: ConnectionLimits = HTTP_LIMITS,
    ) -> None:
        self._metrics = metrics
        self._limiter = RateLimiter(REJECT_LOG_INTERVAL_S)
        self.listener: Listener | None = None
        self._limits = limits
        self._faults = faults
        app.middlewares.insert(0, self._track)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            logger=_server_logger(metrics, faults, self._limiter),
            # aiohttp's own keep-alive close is only a backstop: the listener's sweep closes idle
            # connections first, and counts those that never sent a request.
            keepalive_timeout=2 * (limits.idle_timeout_s or HTTP_IDLE_TIMEOUT_S),
        )

    @web.middleware
    async def _track(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """A request head has arrived: the connection is busy until the handler returns."""
        listener, protocol = self.listener, request.protocol
        if listener is not None:
            listener.busy(protocol)
        try:
            return await handler(request)
        finally:
            if listener is not None:
                listener.idle(protocol)

    def _refused(self, reason: str, peer: tuple[str, int]) -> None:
        self._metrics.reject("http", reason)
        held = self._limiter.allow(reason)
        if held is not None:
            log.warning(
                "http.connection_closed",
                reason=reason,
                peer=f"{peer[0]}:{peer[1]}",
                not_logged=held,
                connections=self.listener.connections if self.listener else 0,
            )

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Listen (HTTPS with ``tls``); returns the bound port. Raises OSError when the address
        cannot be bound."""
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set by setup()
        self.listener = Listener(
            "http",
            server,
            self._limits,
            self._faults,
            self._refused,
            tls=tls,
            tls_handshake_timeout_s=self._limits.idle_timeout_s or HTTP_IDLE_TIMEOUT_S,
        )
        try:
            await self.listener.start(host, port)
        except OSError:
            await self._runner.cleanup()
            raise
        return self.listener.port

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            await self.listener.wait_closed()
        await self._runner.cleanup()

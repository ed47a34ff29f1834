"""Drives one SwimCore on the event loop: bytes -> codec -> core -> effects, and one timer.

Many runners can share a process and a loop (the benchmark hosts hundreds per process). The
clock is the loop's monotonic clock; the core never sees wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import structlog

from pysup.butterfly import codec
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import (
    Addr,
    Effect,
    MemberChanged,
    ProbeFailed,
    ProbeRtt,
    Rejected,
    RumorChanged,
    SelfChanged,
    Send,
    StreamSend,
)
from pysup.butterfly.messages import Message, PushPull, Rumor
from pysup.butterfly.transport import Transport, TransportError
from pysup.faults import Faults
from pysup.metrics import Metrics

log = structlog.get_logger(__name__)

EventListener = Callable[[MemberChanged | RumorChanged | SelfChanged], None]
REJECT_LOG_INTERVAL_S = 10.0
"""At most one log line per reason per this many seconds for rejected packets."""
TIMER_FAULT_DELAY_S = 0.1
"""After a tick that raised, the timer fires again no sooner than this: the deadline that failed
is still due, and re-arming at it would spin the loop on a fault that repeats. 0.1 s is a tenth of
the LAN probe interval, so one lost tick delays probing by that much at most."""
TIMER_STALL_S = 5.0
"""The gossip timer counts as stalled (``problems``: /healthz fails) when its earliest deadline is
this many seconds overdue: the loop is answering HTTP, so only a timer that is no longer armed can
be that late. Longer than any honest scheduling delay on a loaded machine."""


def _kind(msg: Message) -> str:
    return type(msg).__name__.lower()


class Runner:
    def __init__(
        self,
        core: SwimCore,
        host: str,
        port: int,
        *,
        key: codec.Cipher | None = None,
        metrics: Metrics | None = None,
        listener: EventListener | None = None,
        udp_backend: str = "asyncio-dgram",
        faults: Faults | None = None,
    ) -> None:
        self.core = core
        self.key = key
        self.metrics = metrics
        self.listener = listener
        self.faults = faults if faults is not None else Faults(metrics)
        self.transport = Transport(
            host,
            port,
            self._on_datagram,
            self._on_stream,
            on_reject=self._reject,
            udp_backend=udp_backend,
            faults=self.faults,
            check_header=lambda header: codec.header_problem(header, self.key),
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_reject_log: dict[str, float] = {}
        self.rejected: dict[str, int] = {}

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transport.start()
        self._rearm()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.transport.close()

    # --- commands -----------------------------------------------------------------------

    def join(self, addrs: Iterable[Addr]) -> None:
        self._handle(self.core.join(list(addrs), self.now()))

    def publish(self, rumor: Rumor) -> None:
        self._handle(self.core.publish(rumor, self.now()))

    async def leave(self, linger_s: float = 0.2) -> None:
        """Tell the ring we are going, then give the datagrams a moment to leave the socket.
        Not started (a start that failed before binding, e.g. the HTTP port in use): nobody
        knows us, so there is nothing to tell (this used to raise during that shutdown)."""
        if self._loop is None:
            return
        self._handle(self.core.leave(self.now()))
        await asyncio.sleep(linger_s)

    # --- input --------------------------------------------------------------------------

    def _reject(self, reason: str, src: Addr, detail: str = "") -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        if self.metrics is not None:
            self.metrics.reject("gossip", reason)
        now = self.now()
        if now - self._last_reject_log.get(reason, -1e9) >= REJECT_LOG_INTERVAL_S:
            self._last_reject_log[reason] = now
            log.warning(
                "gossip.rejected",
                reason=reason,
                source=f"{src[0]}:{src[1]}",
                total=self.rejected[reason],
                **({"detail": detail} if detail else {}),
            )

    def _decode(self, data: bytes, src: Addr, limit: int) -> Message | None:
        try:
            return codec.decode(data, self.key, limit)
        except codec.CodecError as e:
            self._reject(e.reason, src)
            return None

    def _on_datagram(self, data: bytes, src: Addr) -> None:
        msg = self._decode(data, src, codec.MAX_DATAGRAM)
        if msg is None:
            return
        if isinstance(msg, PushPull):
            self._reject("stream_message_on_udp", src)
            return
        self._count_in(msg, len(data))
        self._handle(self.core.receive(src, msg, self.now()))

    async def _on_stream(self, data: bytes, src: Addr) -> bytes | None:
        reply: bytes | None = None
        with self.faults.guard("gossip.stream"):
            reply = self._on_stream_frame(data, src)
        return reply

    def _on_stream_frame(self, data: bytes, src: Addr) -> bytes | None:
        msg = self._decode(data, src, codec.MAX_FRAME)
        if msg is None:
            return None
        if not isinstance(msg, PushPull) and type(msg).__name__ != "RumorPush":
            self._reject("datagram_message_on_stream", src)
            return None
        self._count_in(msg, len(data))
        reply, effects = self.core.receive_stream(src, msg, self.now())  # type: ignore[arg-type]
        self._handle(effects)
        if reply is None:
            return None
        out = codec.encode(reply, self.key)
        self._count_out(reply, len(out))
        return out

    # --- effects ------------------------------------------------------------------------

    def _count_in(self, msg: Message, size: int) -> None:
        if self.metrics is not None:
            kind = _kind(msg)
            self.metrics.packets_received.labels(kind=kind).inc()
            self.metrics.bytes_received.labels(kind=kind).inc(size)

    def _count_out(self, msg: Message, size: int) -> None:
        if self.metrics is not None:
            kind = _kind(msg)
            self.metrics.packets_sent.labels(kind=kind).inc()
            self.metrics.bytes_sent.labels(kind=kind).inc(size)

    def _handle(self, effects: list[Effect]) -> None:
        for e in effects:
            # One effect that fails (an event listener that cannot save, a message that cannot
            # be encoded) must not drop the ones after it: the refutation it carries, say.
            try:
                self._apply(e)
            except Exception as exc:
                self.faults.record("gossip.effect", exc, effect=type(e).__name__)
        self._rearm()

    def _apply(self, e: Effect) -> None:
        if isinstance(e, Send):
            data = codec.encode(e.msg, self.key)
            self._count_out(e.msg, len(data))
            self.transport.send(data, e.addr)
        elif isinstance(e, StreamSend):
            self._spawn(self._stream(e))
        elif isinstance(e, ProbeRtt):
            if self.metrics is not None:
                self.metrics.probe_rtt.observe(e.seconds)
        elif isinstance(e, ProbeFailed):
            # Info, like memberlist's "Suspect X has failed": one line per failed probe (rare on
            # a healthy network), what an operator reads first when members flap.
            log.info(
                "gossip.probe_failed",
                member_id=e.member_id,
                nacks=e.nacks,
                expected_nacks=e.expected_nacks,
            )
        elif isinstance(e, Rejected):
            self._reject(e.reason, e.source or ("local", 0), e.detail)
        elif self.listener is not None:
            self.listener(e)

    async def _stream(self, e: StreamSend) -> None:
        with self.faults.guard("gossip.stream"):
            await self._stream_exchange(e)

    async def _stream_exchange(self, e: StreamSend) -> None:
        data = codec.encode(e.msg, self.key)
        self._count_out(e.msg, len(data))
        want_reply = isinstance(e.msg, PushPull) and not e.msg.reply
        try:
            reply = await self.transport.request(e.addr, data, want_reply)
        except TransportError as err:
            log.debug("gossip.stream_failed", peer=f"{e.addr[0]}:{e.addr[1]}", error=str(err))
            self._handle(self.core.stream_failed(e.addr, self.now()))
            return
        if reply is None:
            return
        msg = self._decode(reply, e.addr, codec.MAX_FRAME)
        if msg is None:
            return
        self._count_in(msg, len(reply))
        self._handle(self.core.receive(e.addr, msg, self.now()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the one timer ------------------------------------------------------------------

    def _rearm(self, not_before: float = 0.0) -> None:
        if self._loop is None:
            return
        deadline = max(self.core.next_deadline(), not_before)
        if deadline == self._timer_at and self._timer is not None:
            return  # the common case: the earliest deadline did not move
        # Re-arm when it moved either way: earlier (a new timer) or later (the earliest was
        # cancelled, e.g. a probe timeout after the ack), which spares a wakeup for nothing.
        if self._timer is not None:
            self._timer.cancel()
        if deadline == float("inf"):
            self._timer, self._timer_at = None, deadline
            return
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        with self.faults.guard("gossip.timer") as fault:
            self._handle(self.core.tick(self.now()))
        if fault.error is not None:  # the tick raised before _handle re-armed
            self._rearm(not_before=self.now() + TIMER_FAULT_DELAY_S)

    def problems(self) -> list[str]:
        """Why this member no longer gossips although its process runs (for /healthz)."""
        if self._loop is None:
            return []
        overdue = self.now() - self.core.next_deadline()
        if overdue > TIMER_STALL_S:
            return [f"the gossip timer is {overdue:.0f}s overdue"]
        return []

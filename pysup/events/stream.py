"""The event hub on an asyncio loop: publish from loop code, stream chunks to each client.

Thin: the hub (``hub.py``) decides what each client gets and when a heartbeat is due; this
module only sleeps until a publish or that deadline. A publish wakes every waiting client through
one shared ``asyncio.Event`` that is replaced on each publish (O(1) for the publisher).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator

from pysup.events.history import StoredEvent
from pysup.events.hub import EventHub, Subscription
from pysup.events.model import Payload
from pysup.events.sse import ResumePoint

Clock = Callable[[], float]


class EventStream:
    """What the daemon publishes into and what ``/events`` reads from."""

    def __init__(
        self, hub: EventHub, *, wall: Clock = time.time, mono: Clock = time.monotonic
    ) -> None:
        self.hub = hub
        self._wall = wall
        self._mono = mono
        self._tick = asyncio.Event()
        self._on_close: set[Callable[[], None]] = set()

    def publish(self, payload: Payload) -> StoredEvent:
        """Record an event and wake the clients. Never blocks, whatever the clients do."""
        event = self.hub.publish(payload, self._wall())
        self._wake()
        return event

    def close(self) -> None:
        """End every stream (shutdown): each client gets ``stream.closing``; a client whose
        write is blocked (it stopped reading) is told through ``on_close`` to give up now."""
        self.hub.close()
        self._wake()
        for callback in list(self._on_close):
            callback()

    @contextlib.contextmanager
    def on_close(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call `callback` at ``close`` while inside this block."""
        self._on_close.add(callback)
        try:
            yield
        finally:
            self._on_close.discard(callback)

    def stalled(self) -> None:
        self.hub.stalled(self._wall())

    def subscribe(self, resume: ResumePoint) -> AsyncGenerator[bytes, None]:
        """A client's stream of SSE chunks. Raises ``TooManyClients`` at once (before the
        response starts); the slot is freed when the iterator ends or is closed."""
        sub = self.hub.open(resume, self._wall(), self._mono())
        return self._chunks(sub)

    async def _chunks(self, sub: Subscription) -> AsyncGenerator[bytes, None]:
        try:
            while True:
                tick = self._tick  # taken before reading, so a publish in between is not missed
                chunk = sub.next_chunk(self._mono(), self._wall())
                if chunk is not None:
                    yield chunk
                    continue
                if sub.finished:
                    return
                try:
                    async with asyncio.timeout(max(0.0, sub.deadline() - self._mono())):
                        await tick.wait()
                except TimeoutError:
                    pass
        finally:
            sub.close()

    def _wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

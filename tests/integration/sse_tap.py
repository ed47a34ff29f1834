"""A client of one supervisor's ``/events`` in a thread, for tests with real processes: it
records every message with its arrival time, so a test can wait for one and check when it came."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable

from pysup.events.sse import SseMessage, SseParser
from tests.util import wait_for

Arrival = tuple[float, SseMessage]
"""(time.monotonic() when the message was parsed, the message)."""

READ_TIMEOUT_S = 60.0
"""A read that hears nothing (not even a heartbeat, every 15 s) for this long ends the tap."""


class SseTap:
    """``GET /events`` on `host:port` (with `headers`: a token, a ``Last-Event-ID``)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self._conn = http.client.HTTPConnection(host, port, timeout=READ_TIMEOUT_S)
        self._conn.request("GET", "/events", headers=headers or {})
        self._resp = self._conn.getresponse()
        if self._resp.status != 200:
            raise AssertionError(f"/events answered {self._resp.status}: {self._resp.read()!r}")
        self._lock = threading.Lock()
        self._arrivals: list[Arrival] = []
        self.ended = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        parser = SseParser()
        try:
            while True:
                chunk = self._resp.read1(65536)
                if not chunk:
                    return
                now = time.monotonic()
                with self._lock:
                    self._arrivals += [(now, m) for m in parser.feed(chunk)]
        except (OSError, http.client.HTTPException, ValueError):
            return
        finally:
            self.ended = True

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def messages(self) -> list[SseMessage]:
        return [m for _, m in self.arrivals()]

    def wait(self, what: str, match: Callable[[SseMessage], bool], bound_s: float) -> Arrival:
        """The first arrival matching `match`, waiting at most `bound_s` for it."""
        found: list[Arrival] = []

        def seen() -> bool:
            found[:] = [a for a in self.arrivals() if match(a[1])][:1]
            return bool(found)

        wait_for(seen, bound_s, interval=0.05, what=what)
        return found[0]

    def close(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # ends the reader's read; then close
        self._thread.join(timeout=5)
        self._conn.close()


def named(event: str, **data: object) -> Callable[[SseMessage], bool]:
    """A matcher: the event `event` whose payload has these values."""

    def match(m: SseMessage) -> bool:
        if m.event != event:
            return False
        payload = m.json()["data"]
        return all(payload.get(k) == v for k, v in data.items())

    return match

"""Certificate rotation without restart: rebuild a server ``SSLContext`` when its files change.

A :class:`CertWatcher` holds the current context and the identity of the files it was built from
(device, inode, size, mtime, following symlinks, so a Kubernetes secret volume's ``..data``
symlink swap counts as a change). :meth:`CertWatcher.poll` rebuilds when that identity changes:
a good new set of files becomes the current context; a bad one (half-written, key of another
certificate, garbage) is refused, the old context stays, and the reason is logged once for that
state of the files (``tls.reload_failed``) and kept in ``last_error``.

The gateways hand :attr:`CertWatcher.context` to their server once. Every context the watcher
builds carries an SNI callback (OpenSSL calls it for each ClientHello, with or without SNI) that
polls at most every ``min_interval_s`` and switches the connection to the newest context, so new
connections use the new certificate while the listening socket and open connections are
untouched. The client-certificate requirement (``verify_mode``) is taken from the first context
for the whole life of the server (OpenSSL keeps the original one when switching); changing
whether client certificates are required needs a restart, changing the CA file does not.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import structlog

from pysup.crypto.tls import TlsConfigError

log = structlog.get_logger(__name__)

CHECK_INTERVAL_S: Final = 1.0
"""Seconds between checks from the SNI callback: at most three ``stat`` calls a second (about
10 microseconds), and a rotated certificate is served within a second of the last file landing."""


@dataclass(frozen=True)
class FileStamp:
    """What identifies a file's content without reading it. None fields: the file is missing."""

    device: int | None
    inode: int | None
    size: int | None
    mtime_ns: int | None


def stamp(paths: Sequence[Path]) -> tuple[FileStamp, ...]:
    """The stamps of ``paths`` (following symlinks); a missing file gets an all-None stamp."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(FileStamp(None, None, None, None))
            continue
        out.append(FileStamp(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class CertWatcher:
    """Keeps a server context current with the files it is built from.

    ``build`` makes a context from the files (``lambda: server_context(files)``) and raises
    TlsConfigError when they are unusable; the first build happens here and its error propagates
    (a gateway must not start with bad files). ``clock`` is monotonic seconds.
    """

    def __init__(
        self,
        build: Callable[[], ssl.SSLContext],
        paths: Sequence[Path],
        clock: Callable[[], float] = time.monotonic,
        min_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self._build = build
        self.paths = tuple(Path(p) for p in paths)
        self._clock = clock
        self.min_interval_s = min_interval_s
        self._stamp = stamp(self.paths)  # before building: a change during the build is seen
        self._context = self._install(build())
        self._failed_stamp: tuple[FileStamp, ...] | None = None
        self._next_check = clock() + min_interval_s
        self.reloads = 0
        """Successful rebuilds after the first (for metrics)."""
        self.failures = 0
        """Rebuilds refused because the new files were unusable (for metrics)."""
        self.last_error: str | None = None
        """Why the last rebuild was refused; None after a successful one."""

    @property
    def context(self) -> ssl.SSLContext:
        """The newest good context (give the first one to the server; it follows by itself)."""
        return self._context

    def poll(self) -> ssl.SSLContext | None:
        """Rebuild if the files changed; returns the fresh context, or None when nothing changed
        or the new files are unusable (then the current context stays)."""
        now_stamp = stamp(self.paths)
        if now_stamp == self._stamp or now_stamp == self._failed_stamp:
            return None
        try:
            fresh = self._install(self._build())
        except TlsConfigError as e:
            self._failed_stamp = now_stamp
            self.failures += 1
            self.last_error = str(e)
            log.warning("tls.reload_failed", reason=str(e), files=[str(p) for p in self.paths])
            return None
        self._stamp = now_stamp
        self._failed_stamp = None
        self._context = fresh
        self.reloads += 1
        self.last_error = None
        log.info("tls.reloaded", files=[str(p) for p in self.paths])
        return fresh

    def poll_if_due(self) -> ssl.SSLContext | None:
        """``poll`` at most every ``min_interval_s`` (by ``clock``)."""
        now = self._clock()
        if now < self._next_check:
            return None
        self._next_check = now + self.min_interval_s
        return self.poll()

    def _install(self, ctx: ssl.SSLContext) -> ssl.SSLContext:
        ctx.sni_callback = self._on_client_hello
        return ctx

    def _on_client_hello(
        self, conn: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext
    ) -> int | None:
        try:
            self.poll_if_due()
        except Exception as e:  # never fail a handshake because the check itself broke
            self.last_error = f"certificate check failed: {e}"
            log.warning("tls.check_failed", error=str(e))
        if conn.context is not self._context:
            conn.context = self._context
        return None

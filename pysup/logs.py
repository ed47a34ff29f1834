"""structlog set-up: readable console lines by default, one JSON object a line with
--json-logging.

Libraries that log through the standard library (asyncio, aiohttp, the Kubernetes client's
urllib3 ...) go through structlog too (``StdlibBridge``): one event ``library.log`` with the
library's logger name and message, JSON under --json-logging, never a plain-text traceback on
stderr, and at most one line per logger and message template per ``STDLIB_LOG_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import sys

import structlog

from pysup.faults import RateLimiter

STDLIB_LOG_INTERVAL_S = 10.0
"""At most one line per (library logger, message template) in this many seconds: a library that
logs on every failed accept or request cannot flood the log (measured before this: 220 MB in 20 s
of asyncio accept tracebacks)."""


class StdlibBridge(logging.Handler):
    """Standard-library log records, re-emitted through structlog (rate-limited)."""

    def __init__(self, interval_s: float = STDLIB_LOG_INTERVAL_S) -> None:
        super().__init__(logging.INFO)
        self._limiter = RateLimiter(interval_s)

    def emit(self, record: logging.LogRecord) -> None:
        held = self._limiter.allow(f"{record.name}\0{record.msg}")
        if held is None:
            return
        fields: dict[str, object] = {"logger": record.name, "message": record.getMessage()}
        if held:
            fields["not_logged"] = held
        if record.exc_info and record.exc_info[1] is not None:
            fields["exc_info"] = record.exc_info[1]
        structlog.get_logger("pysup.library").log(record.levelno, "library.log", **fields)


def configure_logging(json_logging: bool = False, verbose: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if json_logging:
        processors.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, StdlibBridge)]:
        root.removeHandler(handler)
    root.addHandler(StdlibBridge())
    root.setLevel(logging.INFO)

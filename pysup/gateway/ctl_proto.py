"""The control gateway's wire protocol (pure): frames, requests and responses.

A frame is a 4-byte big-endian length followed by that many bytes of one msgpack map with string
keys. A client's first frame is ``{"op": "auth", "secret": ...}``; after an ``{"ok": true}`` reply
it sends one request per frame and reads one response per request. Responses are
``{"ok": true, ...}`` or ``{"ok": false, "error": "one clear line"}``.

Requests are frozen dataclasses; ``parse_request`` turns a decoded map into one (or raises
:class:`CtlProtocolError` saying which field is wrong), ``Request.to_wire`` does the reverse. Both
the server and the client use this module, so their shapes cannot drift apart.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final

import msgpack

from pysup.butterfly.config import MAX_INCARNATION
from pysup.butterfly.validate import file_name_problem

MAX_BODY: Final = 64 * 1024
"""Largest config (``config apply``) or file (``file upload``) body, in bytes: Habitat's limit."""
MAX_FRAME: Final = 1024 * 1024 + 64 * 1024
"""Largest frame body in bytes (1 MiB plus a margin for the map around a body)."""
HEADER: Final = struct.Struct(">I")
MAX_STR: Final = 4096
"""Longest string field (paths, names, secrets), in characters."""
MAX_VERSION: Final = MAX_INCARNATION
"""Largest config/file version: the ring's incarnation bound (it must fit a signed 64-bit
integer)."""


class CtlProtocolError(Exception):
    """A frame or request that cannot be accepted. ``reason`` is a short label for metrics
    (``oversized``, ``undecodable``, ``bad_request`` ...); the message is one line for the user."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --- framing ------------------------------------------------------------------------------------


def encode_frame(msg: Mapping[str, Any]) -> bytes:
    """One frame: length header + msgpack map. Raises CtlProtocolError if it would be too big."""
    body = msgpack.packb(dict(msg), use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise CtlProtocolError("oversized", f"message of {len(body)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    """The body length announced by a 4-byte header; refuses empty and oversized frames."""
    if len(header) != HEADER.size:
        raise CtlProtocolError("truncated", "truncated frame header")
    (length,) = HEADER.unpack(header)
    if length == 0:
        raise CtlProtocolError("undecodable", "empty frame")
    if length > MAX_FRAME:
        raise CtlProtocolError("oversized", f"frame of {length} bytes exceeds {MAX_FRAME}")
    return int(length)


def decode_body(body: bytes) -> dict[str, Any]:
    """Decode one frame body: a msgpack map with string keys, nothing trailing."""
    try:
        value = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_str_len=MAX_FRAME,
            max_bin_len=MAX_FRAME,
            max_array_len=1024,
            max_map_len=1024,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises many types (ValueError, ExtraData, FormatError, ...)
        raise CtlProtocolError(
            "undecodable", f"not a msgpack message: {type(e).__name__}"
        ) from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CtlProtocolError("undecodable", "a message must be a map with string keys")
    return value


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, take whole messages out (sans-IO)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf.extend(data)
        out: list[dict[str, Any]] = []
        while len(self._buf) >= HEADER.size:
            length = frame_length(bytes(self._buf[: HEADER.size]))
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            body = bytes(self._buf[HEADER.size : end])
            del self._buf[:end]
            out.append(decode_body(body))
        return out

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)

    def close(self) -> None:
        """The stream ended: a partial frame left over is an error."""
        if self._buf:
            raise CtlProtocolError(
                "truncated", f"connection closed inside a frame ({self.pending} bytes)"
            )


# --- field checks -------------------------------------------------------------------------------


def _bad(message: str) -> CtlProtocolError:
    return CtlProtocolError("bad_request", message)


def _opt_str(msg: Mapping[str, Any], key: str) -> str | None:
    return None if msg.get(key) is None else _str(msg, key)


def _str(msg: Mapping[str, Any], key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"{key} must be a non-empty string")
    if len(value) > MAX_STR:
        raise _bad(f"{key} is longer than {MAX_STR} characters")
    return value


def _int(msg: Mapping[str, Any], key: str) -> int:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{key} must be an integer")
    return value


def _num(msg: Mapping[str, Any], key: str) -> float | None:
    value = msg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{key} must be a number")
    return float(value)


def _bytes(msg: Mapping[str, Any], key: str) -> bytes:
    value = msg.get(key)
    if not isinstance(value, bytes):
        raise _bad(f"{key} must be bytes")
    return value


def _flag(msg: Mapping[str, Any], key: str) -> bool:
    """An optional boolean (absent: False; older clients do not send it)."""
    value = msg.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"{key} must be true or false")
    return value


def _strs(msg: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = msg.get(key, [])
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _bad(f"{key} must be a list of strings")
    return tuple(value)


def check_version(version: int) -> None:
    """A config/file version: a positive integer that fits an incarnation."""
    if not 1 <= version <= MAX_VERSION:
        raise _bad(f"version must be a positive integer (at most {MAX_VERSION}), got {version}")


def check_filename(name: str) -> None:
    """A file uploaded to a service group lands in ``files/``: a plain name only (the same rule
    refuses gossiped file rumors on receipt)."""
    problem = file_name_problem(name)
    if problem is not None:
        raise _bad(problem)


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    op: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class Auth(Request):
    op: ClassVar[str] = "auth"
    secret: str

    def __repr__(self) -> str:  # never show the secret, not even in a traceback
        return "Auth(secret=<redacted>)"


@dataclass(frozen=True)
class SvcLoad(Request):
    op: ClassVar[str] = "svc.load"
    plan_dir: str
    group: str | None = None
    topology: str | None = None
    strategy: str | None = None
    binds: tuple[str, ...] = ()
    binding_mode: str | None = None
    health_check_interval_s: float | None = None
    shutdown_timeout_s: float | None = None


@dataclass(frozen=True)
class SvcUnload(Request):
    op: ClassVar[str] = "svc.unload"
    name: str


@dataclass(frozen=True)
class SvcStart(Request):
    op: ClassVar[str] = "svc.start"
    name: str


@dataclass(frozen=True)
class SvcStop(Request):
    op: ClassVar[str] = "svc.stop"
    name: str


@dataclass(frozen=True)
class SvcStatus(Request):
    op: ClassVar[str] = "svc.status"
    name: str | None = None


@dataclass(frozen=True)
class ConfigApply(Request):
    op: ClassVar[str] = "config.apply"
    service_group: str
    version: int
    config: bytes
    encrypted: bool = False
    """``config`` is a ``BOX-1`` payload for the group's service key (``--user``)."""


@dataclass(frozen=True)
class FileUpload(Request):
    op: ClassVar[str] = "file.upload"
    service_group: str
    version: int
    filename: str
    body: bytes
    encrypted: bool = False
    """``body`` is a ``BOX-1`` payload for the group's service key (``--user``)."""


@dataclass(frozen=True)
class SupDepart(Request):
    op: ClassVar[str] = "sup.depart"
    member_id: str


@dataclass(frozen=True)
class SupTerm(Request):
    op: ClassVar[str] = "sup.term"


AnyRequest = (
    Auth
    | SvcLoad
    | SvcUnload
    | SvcStart
    | SvcStop
    | SvcStatus
    | ConfigApply
    | FileUpload
    | SupDepart
    | SupTerm
)

OPS: Final[tuple[str, ...]] = (
    "auth",
    "svc.load",
    "svc.unload",
    "svc.start",
    "svc.stop",
    "svc.status",
    "config.apply",
    "file.upload",
    "sup.depart",
    "sup.term",
)


def parse_request(msg: Mapping[str, Any]) -> AnyRequest:
    """A decoded map -> a typed request; CtlProtocolError("bad_request", ...) names the problem."""
    op = msg.get("op")
    if not isinstance(op, str):
        raise _bad("a request needs an op")
    if op == "auth":
        return Auth(_str(msg, "secret"))
    if op == "svc.load":
        return SvcLoad(
            plan_dir=_str(msg, "plan_dir"),
            group=_opt_str(msg, "group"),
            topology=_opt_str(msg, "topology"),
            strategy=_opt_str(msg, "strategy"),
            binds=_strs(msg, "binds"),
            binding_mode=_opt_str(msg, "binding_mode"),
            health_check_interval_s=_num(msg, "health_check_interval_s"),
            shutdown_timeout_s=_num(msg, "shutdown_timeout_s"),
        )
    if op == "svc.unload":
        return SvcUnload(_str(msg, "name"))
    if op == "svc.start":
        return SvcStart(_str(msg, "name"))
    if op == "svc.stop":
        return SvcStop(_str(msg, "name"))
    if op == "svc.status":
        return SvcStatus(_opt_str(msg, "name"))
    if op == "config.apply":
        version = _int(msg, "version")
        check_version(version)
        return ConfigApply(
            _str(msg, "service_group"), version, _bytes(msg, "config"), _flag(msg, "encrypted")
        )
    if op == "file.upload":
        version = _int(msg, "version")
        check_version(version)
        filename = _str(msg, "filename")
        check_filename(filename)
        return FileUpload(
            _str(msg, "service_group"),
            version,
            filename,
            _bytes(msg, "body"),
            _flag(msg, "encrypted"),
        )
    if op == "sup.depart":
        return SupDepart(_str(msg, "member_id"))
    if op == "sup.term":
        return SupTerm()
    raise CtlProtocolError(
        "unknown_op", f"unknown op {op[:64]!r}; expected one of {', '.join(OPS)}"
    )


# --- responses ----------------------------------------------------------------------------------


def ok(**fields_: Any) -> dict[str, Any]:
    return {"ok": True, **fields_}


def error(message: str) -> dict[str, Any]:
    """An error response; the message is reduced to its first line."""
    line = message.strip().splitlines()[0] if message.strip() else "request failed"
    return {"ok": False, "error": line}


def check_response(msg: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded response -> its fields; raises CtlProtocolError("refused", error) for ok=false."""
    ok_ = msg.get("ok")
    if ok_ is True:
        return dict(msg)
    if ok_ is False:
        err = msg.get("error")
        raise CtlProtocolError("refused", err if isinstance(err, str) and err else "request failed")
    raise CtlProtocolError("undecodable", "a response needs ok: true or false")

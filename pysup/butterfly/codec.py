"""Messages to bytes and back: msgpack in a versioned envelope, optional ring encryption (pure).

Envelope: `b"PS"`, a version byte, a flags byte (bit 0: encrypted), then the body: msgpack of the
message, or `nonce + secretbox(msgpack)` under the ring key. Decoding raises only `CodecError`,
whose `reason` names the failure for metrics: malformed, oversized, version, decrypt, unencrypted,
encrypted (a packet with a key when we have none), unknown, and for well-formed but hostile
content: limits (a msgpack length or object count beyond what an honest message has),
incarnation (beyond `MAX_INCARNATION`), address (not an IP literal), value (a cfg/sys value
TOML and JSON cannot both hold), name (a service group or file name that would be refused).

Every check runs before anything reaches the core, the store or the disk: size, then envelope,
then authentication (the ring key), then msgpack with limits sized from the largest honest message
(`DATAGRAM_LIMITS`, `FRAME_LIMITS`), then each field (`pysup/butterfly/validate.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgpack
import structlog

from pysup.butterfly.config import MAX_DATAGRAM as MAX_DATAGRAM
from pysup.butterfly.config import MAX_FRAME as MAX_FRAME
from pysup.butterfly.messages import (
    Ack,
    Gossip,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Rumor,
    RumorPush,
)
from pysup.butterfly.records import (
    MAX_BLOB,
    REASONS,
    CodecError,
    array_header,
    expect,
    is_uint,
    member_wire,
    pack_rumor,
    rumor_wire,
    unpack_id,
    unpack_member,
    unpack_rumor,
    unpack_rumors,
    wire_list,
)

__all__ = [  # re-exported: the codec's error vocabulary lives with the records it checks
    "MAX_BLOB",
    "REASONS",
    "CodecError",
]

log = structlog.get_logger(__name__)

MAGIC = b"PS"
VERSION = 1
FLAG_ENCRYPTED = 0x01
HEADER_LEN = 4
_HEADER_PLAIN = MAGIC + bytes((VERSION, 0))
_HEADER_SEALED = MAGIC + bytes((VERSION, FLAG_ENCRYPTED))


@dataclass(frozen=True, slots=True)
class Limits:
    """msgpack's own limits: a length header beyond one is refused before anything is built."""

    max_array_len: int
    max_map_len: int
    max_str_len: int | None = None
    """None: msgpack's default, the length of the body (all a datagram needs)."""
    max_bin_len: int | None = None

    def unpacker(
        self,
        list_hook: Callable[[list[Any]], Any] | None = None,
        object_hook: Callable[[dict[Any, Any]], Any] | None = None,
    ) -> Callable[[bytes], Any]:
        """`msgpack.unpackb` with these limits, bound once and with only the arguments that
        differ from msgpack's defaults (each one costs on the datagram path, which is hot)."""
        given = {
            "list_hook": list_hook,
            "object_hook": object_hook,
            "max_str_len": self.max_str_len,
            "max_bin_len": self.max_bin_len,
        }
        kwargs: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        return functools.partial(
            msgpack.unpackb,
            max_array_len=self.max_array_len,
            max_map_len=self.max_map_len,
            max_ext_len=0,  # we never send msgpack extension types
            **kwargs,
        )


DATAGRAM_LIMITS: Final = Limits(max_array_len=1024, max_map_len=512)
"""msgpack limits for a datagram body (at most MAX_DATAGRAM = 8,972 bytes). Its longest honest
array is the piggyback list: a rumor takes at least 20 bytes (a Departure), so at most
8,972 / 20 = 448 of them; a list inside one rumor (a rumor bigger than `stream_rumor_bytes`,
1,024 B, travels by stream) has at most 1,024 one-byte items. A map entry takes at least two
bytes, so a rumor holds at most 512. No string can be longer than the datagram (msgpack's
default string limit is the body's length)."""

FRAME_LIMITS: Final = Limits(
    max_str_len=MAX_BLOB, max_bin_len=MAX_BLOB, max_array_len=1 << 17, max_map_len=1 << 14
)
"""msgpack limits for a stream frame (at most MAX_FRAME bytes). Its longest honest array is a
push-pull's rumor list: a Service rumor per service per member, for `max_members` (10,000)
members with up to 8 services each, plus a config, files and two elections per group, fits in
2^17 = 131,072 (the member list, at most 10,001, too). Its largest honest map is an exported cfg
table parsed from at most 64 KiB of TOML: 65,536 / 4 bytes (`a=1` and a newline) = 2^14 keys.
The longest string or bytes value is a config or file body (MAX_BLOB)."""

_unpack_datagram = DATAGRAM_LIMITS.unpacker()
_unpack_small_frame = FRAME_LIMITS.unpacker()

FRAME_MAX_OBJECTS: Final = 1 << 21
"""Most lists and maps, plus the items in them, that one stream frame may decode to. Length
limits bound each container but not how many there are: 32 MiB of empty maps in nested lists
decoded to 2.5 GB of dicts and blocked the loop for 4.5 s. An honest push-pull at `max_members`
(10,000 x (7 for a member record + 5 Service rumors x ~35: 10 sys keys, a small cfg)) stays under
2 x 10^6; 2^21 caps what a hostile frame can build at about 2M x 64 B = 128 MB, and the decode
stops as soon as it is exceeded. Every list or map and every item takes at least one byte, so a
body of at most FRAME_MAX_OBJECTS / 2 bytes cannot exceed it: those (nearly every honest frame)
are decoded without counting."""


class Cipher(Protocol):
    """What the codec needs of a ring key (see `pysup.butterfly.keys.RingKey`)."""

    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


# --- messages -----------------------------------------------------------------------------

_T_PING, _T_ACK, _T_PINGREQ, _T_NACK, _T_GOSSIP, _T_PUSHPULL, _T_RUMORPUSH = range(1, 8)


def _body(msg: Message) -> bytes:
    """The message's msgpack array, spliced from its records' cached encodings (`records`):
    the same bytes as packing the whole list, with each member record and rumor encoded once."""
    if isinstance(msg, Ping):
        return b"".join(
            (
                _HEAD_PING,
                _packb(msg.seq),
                member_wire(msg.sender),
                _packb(bytes.fromhex(msg.target_id)),
                wire_list(msg.rumors),
            )
        )
    if isinstance(msg, Ack):
        return b"".join(
            (_HEAD_ACK, _packb(msg.seq), member_wire(msg.sender), wire_list(msg.rumors))
        )
    if isinstance(msg, PingReq):
        return b"".join(
            (
                _HEAD_PINGREQ,
                _packb(msg.seq),
                member_wire(msg.sender),
                member_wire(msg.target),
                wire_list(msg.rumors),
            )
        )
    if isinstance(msg, Nack):
        return b"".join((_HEAD_NACK, _packb(msg.seq), member_wire(msg.sender)))
    if isinstance(msg, Gossip):
        return b"".join((_HEAD_GOSSIP, member_wire(msg.sender), wire_list(msg.rumors)))
    if isinstance(msg, PushPull):
        members = [member_wire(m) for m in msg.members]
        return b"".join(
            (
                _HEAD_PUSHPULL,
                member_wire(msg.sender),
                array_header(len(members)),
                *members,
                wire_list(msg.rumors),
                _packb(msg.join),
                _packb(msg.reply),
            )
        )
    return b"".join((_HEAD_RUMORPUSH, member_wire(msg.sender), wire_list(msg.rumors)))


def _packb(v: Any) -> bytes:
    return msgpack.packb(v, use_bin_type=True)


# Each message's array header and type tag (a positive fixint, one byte).
_HEAD_PING = array_header(5) + bytes((_T_PING,))
_HEAD_ACK = array_header(4) + bytes((_T_ACK,))
_HEAD_PINGREQ = array_header(5) + bytes((_T_PINGREQ,))
_HEAD_NACK = array_header(3) + bytes((_T_NACK,))
_HEAD_GOSSIP = array_header(3) + bytes((_T_GOSSIP,))
_HEAD_PUSHPULL = array_header(6) + bytes((_T_PUSHPULL,))
_HEAD_RUMORPUSH = array_header(3) + bytes((_T_RUMORPUSH,))


def _unpack_message(v: Any) -> Message:
    expect(isinstance(v, list) and len(v) >= 2, "message")
    t = v[0]
    if t == _T_PING and len(v) == 5:
        expect(is_uint(v[1], 32), "seq")
        return Ping(v[1], unpack_member(v[2]), unpack_id(v[3]), unpack_rumors(v[4]))
    if t == _T_ACK and len(v) == 4:
        expect(is_uint(v[1], 32), "seq")
        return Ack(v[1], unpack_member(v[2]), unpack_rumors(v[3]))
    if t == _T_PINGREQ and len(v) == 5:
        expect(is_uint(v[1], 32), "seq")
        return PingReq(v[1], unpack_member(v[2]), unpack_member(v[3]), unpack_rumors(v[4]))
    if t == _T_NACK and len(v) == 3:
        expect(is_uint(v[1], 32), "seq")
        return Nack(v[1], unpack_member(v[2]))
    if t == _T_GOSSIP and len(v) == 3:
        return Gossip(unpack_member(v[1]), unpack_rumors(v[2]))
    if t == _T_PUSHPULL and len(v) == 6:
        expect(isinstance(v[2], list), "member list")
        expect(isinstance(v[4], bool) and isinstance(v[5], bool), "push-pull flags")
        members = tuple(unpack_member(m) for m in v[2])
        return PushPull(unpack_member(v[1]), members, unpack_rumors(v[3]), v[4], v[5])
    if t == _T_RUMORPUSH and len(v) == 3:
        return RumorPush(unpack_member(v[1]), unpack_rumors(v[2]))
    raise CodecError("unknown", f"message type {t!r}")


# --- public API ---------------------------------------------------------------------------


def encode_body(msg: Message) -> bytes:
    """The msgpack body alone (used for sizing and for the rumor store's file)."""
    return _body(msg)


def rumor_size(rumor: Rumor) -> int:
    """Encoded size of one rumor inside a message, for the piggyback byte budget (the rumor is
    encoded here once; the messages that carry it reuse the bytes)."""
    return len(rumor_wire(rumor))


def rumor_problem(rumor: Rumor) -> CodecError | None:
    """Why a rumor made here would be refused by its receivers (None: it would not). The same
    checks as decoding, on the encoded rumor, so what we publish is what the ring accepts."""
    try:
        packed = msgpack.packb(pack_rumor(rumor), use_bin_type=True)
        unpack_rumor(_unpack_small_frame(packed))
    except CodecError as e:
        return e
    except Exception as e:  # a value msgpack cannot pack (a datetime), a number too large
        return CodecError("value", f"{type(e).__name__}: {e}")
    return None


def encode(msg: Message, key: Cipher | None = None) -> bytes:
    body = encode_body(msg)
    if key is None:
        return MAGIC + bytes((VERSION, 0)) + body
    return MAGIC + bytes((VERSION, FLAG_ENCRYPTED)) + key.encrypt(body)


def header_problem(header: bytes, key: Cipher | None) -> CodecError | None:
    """What is wrong with an envelope's first HEADER_LEN bytes, given our ring key (None: fine).
    The stream transport checks it before reading the rest of a frame."""
    if len(header) < HEADER_LEN or header[:2] != MAGIC:
        return CodecError("malformed", "bad magic")
    if header[2] != VERSION:
        return CodecError("version", f"version {header[2]}")
    encrypted = bool(header[3] & FLAG_ENCRYPTED)
    if key is not None and not encrypted:
        return CodecError("unencrypted", "plain packet while a ring key is set")
    if key is None and encrypted:
        return CodecError("encrypted", "encrypted packet while no ring key is set")
    return None


def decode(data: bytes, key: Cipher | None = None, limit: int = MAX_FRAME) -> Message:
    """Bytes to a message. Raises only `CodecError`. A `limit` above MAX_DATAGRAM means a stream
    frame: FRAME_LIMITS and the FRAME_MAX_OBJECTS count apply; otherwise DATAGRAM_LIMITS."""
    if len(data) > limit:
        raise CodecError("oversized", f"{len(data)} bytes > {limit}")
    header = data[:HEADER_LEN]
    if header != (_HEADER_SEALED if key is not None else _HEADER_PLAIN):
        problem = header_problem(header, key)
        if problem is not None:
            raise problem
    body = data[HEADER_LEN:]
    if key is not None:
        try:
            body = key.decrypt(body)
        except Exception as e:  # any failure of the cipher is a decrypt failure
            raise CodecError("decrypt", type(e).__name__) from None
    try:
        if limit <= MAX_DATAGRAM:
            raw = _unpack_datagram(body)
        elif len(body) <= FRAME_MAX_OBJECTS // 2:
            raw = _unpack_small_frame(body)
        else:
            raw = _unpack_frame(body)
        return _unpack_message(raw)
    except CodecError:
        raise
    except _TooManyObjects:
        raise CodecError("limits", f"more than {FRAME_MAX_OBJECTS} objects") from None
    except Exception as e:  # msgpack and recursion errors: all malformed input
        raise _msgpack_error(e) from None


class _TooManyObjects(Exception):
    pass


def _unpack_frame(body: bytes) -> Any:
    """msgpack with FRAME_LIMITS, stopped as soon as the lists and maps decoded so far (and their
    items) exceed FRAME_MAX_OBJECTS."""
    left = FRAME_MAX_OBJECTS

    def count(container: Any) -> Any:
        nonlocal left
        left -= 1 + len(container)
        if left < 0:
            raise _TooManyObjects
        return container

    return FRAME_LIMITS.unpacker(list_hook=count, object_hook=count)(body)


def _msgpack_error(e: Exception) -> CodecError:
    if isinstance(e, ValueError) and "exceeds max_" in str(e):
        return CodecError("limits", str(e))
    return CodecError("malformed", type(e).__name__)


def encode_rumors(rumors: list[Rumor]) -> bytes:
    """The rumor store's on-disk form: a msgpack list of rumors."""
    return msgpack.packb([pack_rumor(r) for r in rumors], use_bin_type=True)


def decode_rumors(data: bytes) -> list[Rumor]:
    """The rumor file back to rumors. An entry that is not a valid rumor today (saved by an
    older version that let poison values in, say) is skipped and logged with a count, so a
    poisoned state dir recovers at the next start; only a file that is not a list of rumors at
    all raises `CodecError`."""
    try:
        raw = msgpack.unpackb(data, max_ext_len=0)
    except Exception as e:
        raise _msgpack_error(e) from None
    expect(isinstance(raw, list), "rumor list")
    out: list[Rumor] = []
    skipped: dict[str, int] = {}
    for entry in raw:
        try:
            out.append(unpack_rumor(entry))
        except CodecError as e:
            skipped[e.reason] = skipped.get(e.reason, 0) + 1
        except Exception as e:
            skipped[type(e).__name__] = skipped.get(type(e).__name__, 0) + 1
    if skipped:
        log.warning("state.rumors_skipped", skipped=sum(skipped.values()), reasons=skipped)
    return out

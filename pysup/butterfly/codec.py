"""Messages to bytes and back: msgpack in a versioned envelope, optional ring encryption (pure).

Envelope: `b"PS"`, a version byte, a flags byte (bit 0: encrypted), then the body: msgpack of the
message, or `nonce + secretbox(msgpack)` under the ring key. Decoding raises only `CodecError`,
whose `reason` names the failure for metrics: malformed, oversized, version, decrypt, unencrypted,
encrypted (a packet with a key when we have none), unknown.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgpack

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    Ack,
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    Gossip,
    MemberRumor,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Rumor,
    RumorPush,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)

MAGIC = b"PS"
VERSION = 1
FLAG_ENCRYPTED = 0x01
HEADER_LEN = 4
MAX_DATAGRAM = 65_507
"""Largest UDP payload; anything bigger cannot have come from a peer."""
MAX_FRAME = 32 * 1024 * 1024
"""Largest stream frame (a full-state push-pull of a big ring with many configs)."""
MAX_BLOB = 1024 * 1024
"""Largest single config/file body inside a rumor (the API limits them to 64 KiB)."""


class CodecError(Exception):
    """Input that is not a valid pysup message. `reason` is a short stable label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class Cipher(Protocol):
    """What the codec needs of a ring key (see `pysup.butterfly.keys.RingKey`)."""

    def encrypt(self, plaintext: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


# --- members and rumors -------------------------------------------------------------------


def _pack_member(m: Member) -> list[Any]:
    return [
        bytes.fromhex(m.id),
        m.incarnation,
        m.address,
        m.gossip_port,
        int(m.health),
        m.persistent,
    ]


_HEALTHS = (None, Health.ALIVE, Health.SUSPECT, Health.CONFIRMED, Health.DEPARTED)
_U64 = 1 << 64


def _unpack_member(v: Any) -> Member:
    # The hottest path of decoding (every packet carries member records): exact type checks
    # in one expression instead of helper calls.
    if type(v) is not list or len(v) != 6:
        raise CodecError("malformed", "member")
    raw_id, inc, address, port, health, persistent = v
    if (
        type(raw_id) is not bytes
        or len(raw_id) != 16
        or type(inc) is not int
        or not 0 <= inc < _U64
        or type(address) is not str
        or len(address) > 255
        or type(port) is not int
        or not 0 <= port < 65536
        or type(health) is not int
        or not 1 <= health <= 4
        or type(persistent) is not bool
    ):
        raise CodecError("malformed", "member")
    return Member(raw_id.hex(), inc, address, port, _HEALTHS[health], persistent)  # type: ignore[arg-type]


_K_MEMBER, _K_SERVICE, _K_CONFIG, _K_FILE, _K_DEPARTURE, _K_ELECTION = range(1, 7)


def _pack_rumor(r: Rumor) -> list[Any]:
    if isinstance(r, MemberRumor):
        return [_K_MEMBER, _pack_member(r.member), bytes.fromhex(r.by)]
    if isinstance(r, ServiceRumor):
        return [
            _K_SERVICE,
            bytes.fromhex(r.member_id),
            r.service_group,
            r.incarnation,
            r.pkg,
            r.initialized,
            dict(r.cfg),
            dict(r.sys),
            r.health_check,
            r.plan_fingerprint,
        ]
    if isinstance(r, ServiceConfigRumor):
        return [_K_CONFIG, r.service_group, r.incarnation, r.config, r.encrypted]
    if isinstance(r, ServiceFileRumor):
        return [_K_FILE, r.service_group, r.filename, r.incarnation, r.body, r.encrypted]
    if isinstance(r, DepartureRumor):
        return [_K_DEPARTURE, bytes.fromhex(r.member_id)]
    return [
        _K_ELECTION,
        r.service_group,
        bytes.fromhex(r.member_id),
        r.term,
        r.suitability,
        r.status.value,
        [bytes.fromhex(v) for v in r.votes],
        r.update,
    ]


def _unpack_id(v: Any) -> str:
    _expect(isinstance(v, bytes) and len(v) == 16, "member id")
    return bytes(v).hex()


def _unpack_str(v: Any, what: str, limit: int = 1024) -> str:
    _expect(isinstance(v, str) and len(v) <= limit, what)
    return str(v)


def _unpack_map(v: Any, what: str) -> dict[str, Any]:
    _expect(isinstance(v, dict) and all(isinstance(k, str) for k in v), what)
    return dict(v)


def _unpack_rumor(v: Any) -> Rumor:
    _expect(isinstance(v, list) and len(v) >= 2, "rumor")
    kind = v[0]
    if kind == _K_MEMBER and len(v) == 3:
        by = v[2]
        _expect(isinstance(by, bytes) and len(by) in (0, 16), "suspector id")
        return MemberRumor(_unpack_member(v[1]), bytes(by).hex())
    if kind == _K_SERVICE and len(v) in (8, 10):
        # 8 fields: a sender from before health_check/plan_fingerprint were gossiped.
        _, mid, group, inc, pkg, initialized, cfg, sys, *status = v
        _expect(_is_uint(inc, 64) and isinstance(initialized, bool), "service")
        health, fingerprint = status or ("", "")
        return ServiceRumor(
            _unpack_id(mid),
            _unpack_str(group, "service group"),
            inc,
            _unpack_str(pkg, "pkg"),
            initialized,
            _unpack_map(cfg, "service cfg"),
            _unpack_map(sys, "service sys"),
            _unpack_str(health, "service health"),
            _unpack_str(fingerprint, "plan fingerprint"),
        )
    if kind == _K_CONFIG and len(v) == 5:
        _, group, inc, config, encrypted = v
        _expect(_is_uint(inc, 64) and isinstance(encrypted, bool), "service config")
        _expect(isinstance(config, bytes) and len(config) <= MAX_BLOB, "config body")
        return ServiceConfigRumor(_unpack_str(group, "service group"), inc, config, encrypted)
    if kind == _K_FILE and len(v) == 6:
        _, group, filename, inc, body, encrypted = v
        _expect(_is_uint(inc, 64) and isinstance(encrypted, bool), "service file")
        _expect(isinstance(body, bytes) and len(body) <= MAX_BLOB, "file body")
        return ServiceFileRumor(
            _unpack_str(group, "service group"),
            _unpack_str(filename, "filename", 255),
            inc,
            body,
            encrypted,
        )
    if kind == _K_DEPARTURE and len(v) == 2:
        return DepartureRumor(_unpack_id(v[1]))
    if kind == _K_ELECTION and len(v) == 8:
        _, group, mid, term, suit, status, votes, update = v
        _expect(_is_uint(term, 64) and _is_uint(suit, 64), "election numbers")
        _expect(status in {s.value for s in ElectionStatus}, "election status")
        _expect(isinstance(votes, list) and len(votes) <= 100_000, "votes")
        _expect(isinstance(update, bool), "election update flag")
        return ElectionRumor(
            _unpack_str(group, "service group"),
            _unpack_id(mid),
            term,
            suit,
            ElectionStatus(status),
            tuple(_unpack_id(x) for x in votes),
            update,
        )
    raise CodecError("unknown", f"rumor kind {kind!r}")


def _unpack_rumors(v: Any) -> tuple[Rumor, ...]:
    _expect(isinstance(v, list), "rumor list")
    return tuple(_unpack_rumor(x) for x in v)


# --- messages -----------------------------------------------------------------------------

_T_PING, _T_ACK, _T_PINGREQ, _T_NACK, _T_GOSSIP, _T_PUSHPULL, _T_RUMORPUSH = range(1, 8)


def _pack_message(msg: Message) -> list[Any]:
    if isinstance(msg, Ping):
        rumors = [_pack_rumor(r) for r in msg.rumors]
        return [_T_PING, msg.seq, _pack_member(msg.sender), bytes.fromhex(msg.target_id), rumors]
    if isinstance(msg, Ack):
        return [_T_ACK, msg.seq, _pack_member(msg.sender), [_pack_rumor(r) for r in msg.rumors]]
    if isinstance(msg, PingReq):
        return [
            _T_PINGREQ,
            msg.seq,
            _pack_member(msg.sender),
            _pack_member(msg.target),
            [_pack_rumor(r) for r in msg.rumors],
        ]
    if isinstance(msg, Nack):
        return [_T_NACK, msg.seq, _pack_member(msg.sender)]
    if isinstance(msg, Gossip):
        return [_T_GOSSIP, _pack_member(msg.sender), [_pack_rumor(r) for r in msg.rumors]]
    if isinstance(msg, PushPull):
        return [
            _T_PUSHPULL,
            _pack_member(msg.sender),
            [_pack_member(m) for m in msg.members],
            [_pack_rumor(r) for r in msg.rumors],
            msg.join,
            msg.reply,
        ]
    return [_T_RUMORPUSH, _pack_member(msg.sender), [_pack_rumor(r) for r in msg.rumors]]


def _unpack_message(v: Any) -> Message:
    _expect(isinstance(v, list) and len(v) >= 2, "message")
    t = v[0]
    if t == _T_PING and len(v) == 5:
        _expect(_is_uint(v[1], 32), "seq")
        return Ping(v[1], _unpack_member(v[2]), _unpack_id(v[3]), _unpack_rumors(v[4]))
    if t == _T_ACK and len(v) == 4:
        _expect(_is_uint(v[1], 32), "seq")
        return Ack(v[1], _unpack_member(v[2]), _unpack_rumors(v[3]))
    if t == _T_PINGREQ and len(v) == 5:
        _expect(_is_uint(v[1], 32), "seq")
        return PingReq(v[1], _unpack_member(v[2]), _unpack_member(v[3]), _unpack_rumors(v[4]))
    if t == _T_NACK and len(v) == 3:
        _expect(_is_uint(v[1], 32), "seq")
        return Nack(v[1], _unpack_member(v[2]))
    if t == _T_GOSSIP and len(v) == 3:
        return Gossip(_unpack_member(v[1]), _unpack_rumors(v[2]))
    if t == _T_PUSHPULL and len(v) == 6:
        _expect(isinstance(v[2], list), "member list")
        _expect(isinstance(v[4], bool) and isinstance(v[5], bool), "push-pull flags")
        members = tuple(_unpack_member(m) for m in v[2])
        return PushPull(_unpack_member(v[1]), members, _unpack_rumors(v[3]), v[4], v[5])
    if t == _T_RUMORPUSH and len(v) == 3:
        return RumorPush(_unpack_member(v[1]), _unpack_rumors(v[2]))
    raise CodecError("unknown", f"message type {t!r}")


# --- public API ---------------------------------------------------------------------------


def encode_body(msg: Message) -> bytes:
    """The msgpack body alone (used for sizing and for the rumor store's file)."""
    return msgpack.packb(_pack_message(msg), use_bin_type=True)


def rumor_size(rumor: Rumor) -> int:
    """Encoded size of one rumor inside a message, for the piggyback byte budget."""
    return len(msgpack.packb(_pack_rumor(rumor), use_bin_type=True))


def encode(msg: Message, key: Cipher | None = None) -> bytes:
    body = encode_body(msg)
    if key is None:
        return MAGIC + bytes((VERSION, 0)) + body
    return MAGIC + bytes((VERSION, FLAG_ENCRYPTED)) + key.encrypt(body)


def decode(data: bytes, key: Cipher | None = None, limit: int = MAX_FRAME) -> Message:
    """Bytes to a message. Raises only `CodecError`."""
    if len(data) > limit:
        raise CodecError("oversized", f"{len(data)} bytes > {limit}")
    if len(data) < HEADER_LEN or data[:2] != MAGIC:
        raise CodecError("malformed", "bad magic")
    if data[2] != VERSION:
        raise CodecError("version", f"version {data[2]}")
    encrypted = bool(data[3] & FLAG_ENCRYPTED)
    body = data[HEADER_LEN:]
    if key is not None and not encrypted:
        raise CodecError("unencrypted", "plain packet while a ring key is set")
    if key is None and encrypted:
        raise CodecError("encrypted", "encrypted packet while no ring key is set")
    if key is not None:
        try:
            body = key.decrypt(body)
        except Exception as e:  # any failure of the cipher is a decrypt failure
            raise CodecError("decrypt", type(e).__name__) from None
    try:
        raw = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
        return _unpack_message(raw)
    except CodecError:
        raise
    except Exception as e:  # msgpack and recursion errors: all malformed input
        raise CodecError("malformed", type(e).__name__) from None


def encode_rumors(rumors: list[Rumor]) -> bytes:
    """The rumor store's on-disk form: a msgpack list of rumors."""
    return msgpack.packb([_pack_rumor(r) for r in rumors], use_bin_type=True)


def decode_rumors(data: bytes) -> list[Rumor]:
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
        return list(_unpack_rumors(raw))
    except CodecError:
        raise
    except Exception as e:
        raise CodecError("malformed", type(e).__name__) from None


def _is_uint(v: Any, bits: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << bits)


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise CodecError("malformed", what)

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
from typing import Any, Final, NamedTuple, Protocol

import msgpack
import structlog

from pysup.butterfly.config import MAX_DATAGRAM as MAX_DATAGRAM
from pysup.butterfly.config import MAX_FRAME as MAX_FRAME
from pysup.butterfly.config import MAX_INCARNATION
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
    RumorKind,
    RumorPush,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
    by_kind,
)
from pysup.butterfly.validate import (
    IP_LITERALS,
    file_name_problem,
    is_ip_literal,
    plain_map_problem,
    service_group_problem,
)
from pysup.gossipcfg import ConfigError, parse_gossip_config

log = structlog.get_logger(__name__)

MAGIC = b"PS"
VERSION = 1
FLAG_ENCRYPTED = 0x01
HEADER_LEN = 4
_HEADER_PLAIN = MAGIC + bytes((VERSION, 0))
_HEADER_SEALED = MAGIC + bytes((VERSION, FLAG_ENCRYPTED))
MAX_BLOB: Final = 128 * 1024
"""Largest config/file body inside a rumor: the 64 KiB the control gateway accepts (Habitat's
limit), with room for the same body sealed for a service group (a box with base64, x4/3)."""


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


REASONS: Final = frozenset(
    {
        "malformed",
        "oversized",
        "version",
        "decrypt",
        "unencrypted",
        "encrypted",
        "unknown",
        "limits",
        "incarnation",
        "address",
        "value",
        "name",
    }
)
"""Every `CodecError.reason` (the labels of rejected gossip in `/metrics`)."""


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


MEMO_MAX: Final = 8192
"""Entries each record memo below keeps before it starts over. A ring has one current record
per member (a few during a change), and the many members of one process (the scale mode) share
the memos, so 8192 covers N=1000 with room; at ~300 B an entry that is ~2.5 MB at most. Forged
ever-new records only make a memo start over more often: each still costs one full decode."""

_PACKED: dict[Member, list[Any]] = {}
"""Member -> its wire list: a record is encoded once per change, not once per message that
carries it (a join burst sends each record to every member; each rumor is resent ~10 times)."""
_MEMBERS: dict[tuple[Any, ...], Member] = {}
"""A member record's wire fields -> the Member already decoded from them (after validation)."""
_MEMBER_RUMORS: dict[tuple[Any, ...], MemberRumor] = {}
"""The same for a member rumor: the record's six fields and the suspector's raw id."""


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[key] = value


def _pack_member(m: Member) -> list[Any]:
    packed = _PACKED.get(m)
    if packed is None:
        packed = [
            bytes.fromhex(m.id),
            m.incarnation,
            m.address,
            m.gossip_port,
            int(m.health),
            m.persistent,
        ]
        _remember(_PACKED, m, packed)
    return packed


_HEALTHS = (None, Health.ALIVE, Health.SUSPECT, Health.CONFIRMED, Health.DEPARTED)
_U64 = 1 << 64


def _unpack_member(v: Any) -> Member:
    # The hottest path of decoding (every packet carries member records): exact type checks
    # in one expression instead of helper calls; the rarer cases go to `_member_problem`.
    if type(v) is not list or len(v) != 6:
        raise CodecError("malformed", "member")
    raw_id, inc, address, port, health, persistent = v
    # A record seen before (most of a join burst) is a dict lookup. Keys compare by value, where
    # 5.0 == 5 and True == 1: the exact-type check keeps such a record refused as before.
    try:
        seen = _MEMBERS.get((raw_id, inc, address, port, health, persistent))
    except TypeError:  # an unhashable field (a list, a map): refused below
        seen = None
    if (
        seen is not None
        and type(inc) is int
        and type(port) is int
        and type(health) is int
        and type(persistent) is bool
    ):
        return seen
    if (
        type(raw_id) is not bytes
        or len(raw_id) != 16
        or type(inc) is not int
        or not 0 <= inc < MAX_INCARNATION
        or type(address) is not str
        or (address not in IP_LITERALS and not is_ip_literal(address))
        or type(port) is not int
        or not 0 <= port < 65536
        or type(health) is not int
        or not 1 <= health <= 4
        or type(persistent) is not bool
    ):
        problem = _member_problem(v)
        if problem is not None:
            raise CodecError(problem, "member")
    m = Member(raw_id.hex(), inc, address, port, _HEALTHS[health], persistent)  # type: ignore[arg-type]
    _remember(_MEMBERS, (raw_id, inc, address, port, health, persistent), m)
    return m


def _member_problem(v: list[Any]) -> str | None:
    """The reason a member record is refused, or None for the one record the fast check above
    does not pass: an Alive member at exactly MAX_INCARNATION (see its docstring)."""
    raw_id, inc, address, port, health, persistent = v
    if (
        type(raw_id) is not bytes
        or len(raw_id) != 16
        or type(inc) is not int
        or inc < 0
        or type(address) is not str
        or type(port) is not int
        or not 0 <= port < 65536
        or type(health) is not int
        or not 1 <= health <= 4
        or type(persistent) is not bool
    ):
        return "malformed"
    if not is_ip_literal(address):
        return "address"
    if inc > MAX_INCARNATION or (inc == MAX_INCARNATION and health != Health.ALIVE):
        return "incarnation"
    return None


def _pack_member_rumor(r: MemberRumor) -> list[Any]:
    return [_K_MEMBER, _pack_member(r.member), bytes.fromhex(r.by)]


def _pack_service(r: ServiceRumor) -> list[Any]:
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


def _pack_config(r: ServiceConfigRumor) -> list[Any]:
    return [_K_CONFIG, r.service_group, r.incarnation, r.config, r.encrypted]


def _pack_file(r: ServiceFileRumor) -> list[Any]:
    return [_K_FILE, r.service_group, r.filename, r.incarnation, r.body, r.encrypted]


def _pack_departure(r: DepartureRumor) -> list[Any]:
    return [_K_DEPARTURE, bytes.fromhex(r.member_id)]


def _pack_election(r: ElectionRumor) -> list[Any]:
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


def _pack_rumor(r: Rumor) -> list[Any]:
    return _PACK_BY_CLASS[type(r)](r)


def _unpack_id(v: Any) -> str:
    _expect(isinstance(v, bytes) and len(v) == 16, "member id")
    return bytes(v).hex()


def _unpack_str(v: Any, what: str, limit: int = 1024) -> str:
    _expect(isinstance(v, str) and len(v) <= limit, what)
    return str(v)


def _unpack_group(v: Any) -> str:
    group = _unpack_str(v, "service group", 255)
    problem = service_group_problem(group)
    if problem is not None:
        raise CodecError("name", problem)
    return group


def _unpack_map(v: Any, what: str) -> dict[str, Any]:
    _expect(type(v) is dict, what)
    problem = plain_map_problem(v)
    if problem is not None:
        raise CodecError("value", f"{what}: {problem}")
    return dict(v)


def _unpack_inc(v: Any, what: str) -> int:
    _expect(_is_uint(v, 64), what)
    if v > MAX_INCARNATION:
        raise CodecError("incarnation", what)
    return int(v)


def _check_config(body: bytes) -> None:
    """A plain `config apply` body: UTF-8 TOML within the API's size limit whose values JSON
    can hold too (no dates), as the census and `/services/.../config` will read it."""
    try:
        parsed = parse_gossip_config(body)
    except ConfigError as e:
        raise CodecError("value", f"config: {e}") from None
    problem = plain_map_problem(parsed)
    if problem is not None:
        raise CodecError("value", f"config: {problem}")


def _unpack_member_rumor(v: list[Any]) -> MemberRumor:
    record, by = v[1], v[2]
    if type(record) is list and len(record) == 6:
        try:
            seen = _MEMBER_RUMORS.get((*record, by))
        except TypeError:
            seen = None
        if (
            seen is not None
            and type(record[1]) is int
            and type(record[3]) is int
            and type(record[4]) is int
            and type(record[5]) is bool
        ):
            return seen
    _expect(isinstance(by, bytes) and len(by) in (0, 16), "suspector id")
    rumor = MemberRumor(_unpack_member(record), bytes(by).hex())
    _remember(_MEMBER_RUMORS, (*record, by), rumor)
    return rumor


def _unpack_service(v: list[Any]) -> ServiceRumor:
    # 8 fields: a sender from before health_check/plan_fingerprint were gossiped.
    _, mid, group, inc, pkg, initialized, cfg, sys, *status = v
    _expect(isinstance(initialized, bool), "service")
    health, fingerprint = status or ("", "")
    return ServiceRumor(
        _unpack_id(mid),
        _unpack_group(group),
        _unpack_inc(inc, "service incarnation"),
        _unpack_str(pkg, "pkg"),
        initialized,
        _unpack_map(cfg, "service cfg"),
        _unpack_map(sys, "service sys"),
        _unpack_str(health, "service health"),
        _unpack_str(fingerprint, "plan fingerprint"),
    )


def _unpack_config(v: list[Any]) -> ServiceConfigRumor:
    _, group, inc, config, encrypted = v
    _expect(isinstance(encrypted, bool), "service config")
    _expect(isinstance(config, bytes) and len(config) <= MAX_BLOB, "config body")
    if not encrypted:
        _check_config(config)
    return ServiceConfigRumor(
        _unpack_group(group), _unpack_inc(inc, "config version"), config, encrypted
    )


def _unpack_file(v: list[Any]) -> ServiceFileRumor:
    _, group, filename, inc, body, encrypted = v
    _expect(isinstance(encrypted, bool), "service file")
    _expect(isinstance(body, bytes) and len(body) <= MAX_BLOB, "file body")
    name = _unpack_str(filename, "filename", 255)
    problem = file_name_problem(name)
    if problem is not None:
        raise CodecError("name", problem)
    return ServiceFileRumor(
        _unpack_group(group), name, _unpack_inc(inc, "file version"), body, encrypted
    )


def _unpack_departure(v: list[Any]) -> DepartureRumor:
    return DepartureRumor(_unpack_id(v[1]))


def _unpack_election(v: list[Any]) -> ElectionRumor:
    _, group, mid, term, suit, status, votes, update = v
    _expect(_is_uint(suit, 64), "election suitability")
    _expect(status in _ELECTION_STATUSES, "election status")
    _expect(isinstance(votes, list), "votes")
    _expect(isinstance(update, bool), "election update flag")
    return ElectionRumor(
        _unpack_group(group),
        _unpack_id(mid),
        _unpack_inc(term, "election term"),
        suit,
        ElectionStatus(status),
        tuple(_unpack_id(x) for x in votes),
        update,
    )


_ELECTION_STATUSES = frozenset(s.value for s in ElectionStatus)


class _Wire(NamedTuple):
    """One rumor kind on the wire: `[tag, fields...]`, a list of one of `lengths`."""

    tag: int
    cls: type[Any]
    pack: Callable[[Any], list[Any]]
    unpack: Callable[[list[Any]], Rumor]
    lengths: tuple[int, ...]


# The tags are the wire format: never renumber one (Election and ElectionUpdate share a tag and
# class; the `update` flag tells them apart).
_K_MEMBER, _K_SERVICE, _K_CONFIG, _K_FILE, _K_DEPARTURE, _K_ELECTION = range(1, 7)
_ELECTION_WIRE = _Wire(_K_ELECTION, ElectionRumor, _pack_election, _unpack_election, (8,))
_WIRE = by_kind(
    "codec wire format",
    {
        RumorKind.MEMBER: _Wire(
            _K_MEMBER, MemberRumor, _pack_member_rumor, _unpack_member_rumor, (3,)
        ),
        RumorKind.SERVICE: _Wire(_K_SERVICE, ServiceRumor, _pack_service, _unpack_service, (8, 10)),
        RumorKind.SERVICE_CONFIG: _Wire(
            _K_CONFIG, ServiceConfigRumor, _pack_config, _unpack_config, (5,)
        ),
        RumorKind.SERVICE_FILE: _Wire(_K_FILE, ServiceFileRumor, _pack_file, _unpack_file, (6,)),
        RumorKind.DEPARTURE: _Wire(
            _K_DEPARTURE, DepartureRumor, _pack_departure, _unpack_departure, (2,)
        ),
        RumorKind.ELECTION: _ELECTION_WIRE,
        RumorKind.ELECTION_UPDATE: _ELECTION_WIRE,
    },
)
_PACK_BY_CLASS = {w.cls: w.pack for w in _WIRE.values()}
_WIRE_BY_TAG = {w.tag: w for w in _WIRE.values()}


def _unpack_rumor(v: Any) -> Rumor:
    _expect(isinstance(v, list) and len(v) >= 2, "rumor")
    tag = v[0]
    try:
        wire = _WIRE_BY_TAG.get(tag)
    except TypeError:  # a list or map where the tag goes
        wire = None
    if wire is None or len(v) not in wire.lengths:
        raise CodecError("unknown", f"rumor kind {tag!r}")
    return wire.unpack(v)


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


def rumor_problem(rumor: Rumor) -> CodecError | None:
    """Why a rumor made here would be refused by its receivers (None: it would not). The same
    checks as decoding, on the encoded rumor, so what we publish is what the ring accepts."""
    try:
        packed = msgpack.packb(_pack_rumor(rumor), use_bin_type=True)
        _unpack_rumor(_unpack_small_frame(packed))
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
    return msgpack.packb([_pack_rumor(r) for r in rumors], use_bin_type=True)


def decode_rumors(data: bytes) -> list[Rumor]:
    """The rumor file back to rumors. An entry that is not a valid rumor today (saved by an
    older version that let poison values in, say) is skipped and logged with a count, so a
    poisoned state dir recovers at the next start; only a file that is not a list of rumors at
    all raises `CodecError`."""
    try:
        raw = msgpack.unpackb(data, max_ext_len=0)
    except Exception as e:
        raise _msgpack_error(e) from None
    _expect(isinstance(raw, list), "rumor list")
    out: list[Rumor] = []
    skipped: dict[str, int] = {}
    for entry in raw:
        try:
            out.append(_unpack_rumor(entry))
        except CodecError as e:
            skipped[e.reason] = skipped.get(e.reason, 0) + 1
        except Exception as e:
            skipped[type(e).__name__] = skipped.get(type(e).__name__, 0) + 1
    if skipped:
        log.warning("state.rumors_skipped", skipped=sum(skipped.values()), reasons=skipped)
    return out


def _is_uint(v: Any, bits: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << bits)


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise CodecError("malformed", what)

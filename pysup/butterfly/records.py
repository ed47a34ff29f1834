"""Member records and rumors on the wire: each kind's msgpack list, packed and unpacked with every
field checked (``CodecError`` with a stable reason), and memos so a record seen before costs one
lookup. ``codec.py`` frames these into messages, envelopes and encryption."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final, NamedTuple

import msgpack

from pysup.butterfly.config import MAX_DATAGRAM as MAX_DATAGRAM
from pysup.butterfly.config import MAX_FRAME as MAX_FRAME
from pysup.butterfly.config import MAX_INCARNATION
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    MemberRumor,
    Rumor,
    RumorKind,
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

MAX_BLOB: Final = 128 * 1024
"""Largest config/file body inside a rumor: the 64 KiB the control gateway accepts (Habitat's
limit), with room for the same body sealed for a service group (a box with base64, x4/3)."""


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


# --- members and rumors -------------------------------------------------------------------


MEMO_MAX: Final = 8192
"""Entries each record memo below keeps before it starts over. A ring has one current record
per member (a few during a change), and the many members of one process (the scale mode) share
the memos, so 8192 covers N=1000 with room; at ~300 B an entry that is ~2.5 MB at most. Forged
ever-new records only make a memo start over more often: each still costs one full decode."""

_MEMBERS: dict[tuple[Any, ...], Member] = {}
"""A member record's wire fields -> the Member already decoded from them (after validation)."""
_MEMBER_RUMORS: dict[tuple[Any, ...], MemberRumor] = {}
"""The same for a member rumor: the record's six fields and the suspector's raw id."""
_MEMBER_WIRE: dict[Member, bytes] = {}
"""Member -> its encoded record: a record is encoded once per change, not once per message that
carries it (a join burst sends each record to every member; each rumor is resent ~10 times, and
the many members of one process share it)."""
_MEMBER_RUMOR_WIRE: dict[tuple[Member, str], bytes] = {}
"""(member, suspector) -> the encoded member rumor, for the same reason."""
RUMOR_WIRE_MAX: Final = 2048
"""Entries `_RUMOR_WIRE` keeps before it starts over: a ring's current service, config, file and
election rumors (one Service rumor per service per member: 2048 covers N=1000 with two
services each)."""
RUMOR_WIRE_MAX_BYTES: Final = 1024
"""Larger rumors are not kept in `_RUMOR_WIRE`: it holds the rumor and its bytes, and a config or
file rumor may be 128 KiB (replaced ones would stay alive until the memo starts over). They are
rare and go by stream, where their encoding is a small part of the cost. With this bound the
memo holds at most ~2048 x 2 KB = 4 MB. 1024 B is `stream_rumor_bytes`' default: what is
piggybacked on datagrams is memoised."""
_RUMOR_WIRE: dict[int, tuple[Rumor, bytes]] = {}
"""id(rumor) -> (the rumor, its encoding), for the other kinds (whose maps are not hashable).
The entry holds the rumor, so its id cannot be reused while the entry lives; the store and the
gossip queue hand out the same object for as long as the rumor is current."""


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> None:
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[key] = value


def pack_member(m: Member) -> list[Any]:
    return [
        bytes.fromhex(m.id),
        m.incarnation,
        m.address,
        m.gossip_port,
        int(m.health),
        m.persistent,
    ]


def member_wire(m: Member) -> bytes:
    """A member record's msgpack bytes, encoded once per record (`_MEMBER_WIRE`)."""
    wire = _MEMBER_WIRE.get(m)
    if wire is None:
        wire = _packb(pack_member(m))
        _remember(_MEMBER_WIRE, m, wire)
    return wire


def rumor_wire(r: Rumor) -> bytes:
    """A rumor's msgpack bytes, encoded once per rumor: what `pack_rumor` gives, packed."""
    if type(r) is MemberRumor:
        key = (r.member, r.by)
        wire = _MEMBER_RUMOR_WIRE.get(key)
        if wire is None:
            wire = _MEMBER_RUMOR_HEAD + member_wire(r.member) + _packb(bytes.fromhex(r.by))
            _remember(_MEMBER_RUMOR_WIRE, key, wire)
        return wire
    seen = _RUMOR_WIRE.get(id(r))
    if seen is not None and seen[0] is r:
        return seen[1]
    wire = _packb(pack_rumor(r))
    if len(wire) <= RUMOR_WIRE_MAX_BYTES:
        if len(_RUMOR_WIRE) >= RUMOR_WIRE_MAX:
            _RUMOR_WIRE.clear()
        _RUMOR_WIRE[id(r)] = (r, wire)
    return wire


def array_header(n: int) -> bytes:
    """msgpack's header of an array of `n` items: with the items' own bytes after it, the same
    bytes msgpack makes of the whole list (a message is spliced from records encoded once)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def wire_list(rumors: Iterable[Rumor]) -> bytes:
    """A msgpack array of rumors, from their cached encodings."""
    parts = [rumor_wire(r) for r in rumors]
    return array_header(len(parts)) + b"".join(parts)


def _packb(v: Any) -> bytes:
    return msgpack.packb(v, use_bin_type=True)


_HEALTHS = (None, Health.ALIVE, Health.SUSPECT, Health.CONFIRMED, Health.DEPARTED)
_U64 = 1 << 64


def unpack_member(v: Any) -> Member:
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
    return [_K_MEMBER, pack_member(r.member), bytes.fromhex(r.by)]


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


def pack_rumor(r: Rumor) -> list[Any]:
    return _PACK_BY_CLASS[type(r)](r)


def unpack_id(v: Any) -> str:
    expect(isinstance(v, bytes) and len(v) == 16, "member id")
    return bytes(v).hex()


def _unpack_str(v: Any, what: str, limit: int = 1024) -> str:
    expect(isinstance(v, str) and len(v) <= limit, what)
    return str(v)


def _unpack_group(v: Any) -> str:
    group = _unpack_str(v, "service group", 255)
    problem = service_group_problem(group)
    if problem is not None:
        raise CodecError("name", problem)
    return group


def _unpack_map(v: Any, what: str) -> dict[str, Any]:
    expect(type(v) is dict, what)
    problem = plain_map_problem(v)
    if problem is not None:
        raise CodecError("value", f"{what}: {problem}")
    return dict(v)


def _unpack_inc(v: Any, what: str) -> int:
    expect(is_uint(v, 64), what)
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
    expect(isinstance(by, bytes) and len(by) in (0, 16), "suspector id")
    rumor = MemberRumor(unpack_member(record), bytes(by).hex())
    _remember(_MEMBER_RUMORS, (*record, by), rumor)
    return rumor


def _unpack_service(v: list[Any]) -> ServiceRumor:
    # 8 fields: a sender from before health_check/plan_fingerprint were gossiped.
    _, mid, group, inc, pkg, initialized, cfg, sys, *status = v
    expect(isinstance(initialized, bool), "service")
    health, fingerprint = status or ("", "")
    return ServiceRumor(
        unpack_id(mid),
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
    expect(isinstance(encrypted, bool), "service config")
    expect(isinstance(config, bytes) and len(config) <= MAX_BLOB, "config body")
    if not encrypted:
        _check_config(config)
    return ServiceConfigRumor(
        _unpack_group(group), _unpack_inc(inc, "config version"), config, encrypted
    )


def _unpack_file(v: list[Any]) -> ServiceFileRumor:
    _, group, filename, inc, body, encrypted = v
    expect(isinstance(encrypted, bool), "service file")
    expect(isinstance(body, bytes) and len(body) <= MAX_BLOB, "file body")
    name = _unpack_str(filename, "filename", 255)
    problem = file_name_problem(name)
    if problem is not None:
        raise CodecError("name", problem)
    return ServiceFileRumor(
        _unpack_group(group), name, _unpack_inc(inc, "file version"), body, encrypted
    )


def _unpack_departure(v: list[Any]) -> DepartureRumor:
    return DepartureRumor(unpack_id(v[1]))


def _unpack_election(v: list[Any]) -> ElectionRumor:
    _, group, mid, term, suit, status, votes, update = v
    expect(is_uint(suit, 64), "election suitability")
    expect(status in _ELECTION_STATUSES, "election status")
    expect(isinstance(votes, list), "votes")
    expect(isinstance(update, bool), "election update flag")
    return ElectionRumor(
        _unpack_group(group),
        unpack_id(mid),
        _unpack_inc(term, "election term"),
        suit,
        ElectionStatus(status),
        tuple(unpack_id(x) for x in votes),
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
_MEMBER_RUMOR_HEAD: Final = bytes((0x93, _K_MEMBER))
"""A member rumor's array header (3 items) and tag (a positive fixint)."""
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


def unpack_rumor(v: Any) -> Rumor:
    expect(isinstance(v, list) and len(v) >= 2, "rumor")
    tag = v[0]
    try:
        wire = _WIRE_BY_TAG.get(tag)
    except TypeError:  # a list or map where the tag goes
        wire = None
    if wire is None or len(v) not in wire.lengths:
        raise CodecError("unknown", f"rumor kind {tag!r}")
    return wire.unpack(v)


def unpack_rumors(v: Any) -> tuple[Rumor, ...]:
    expect(isinstance(v, list), "rumor list")
    out: list[Rumor] = []
    for x in v:
        # Member rumors, most of every piggyback, go straight to their memo; anything else (or
        # anything odd) takes the general path, which decides as it always did.
        if type(x) is list and len(x) == 3 and type(x[0]) is int and x[0] == _K_MEMBER:
            out.append(_unpack_member_rumor(x))
        else:
            out.append(unpack_rumor(x))
    return tuple(out)


def is_uint(v: Any, bits: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << bits)


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise CodecError("malformed", what)

"""Well-formed hostile gossip: messages a real encoder produces, carrying values no honest member
sends (issue 13, items 1-5). Shared by the semantic fuzz target (`bench/fuzz.py`), the live-ring
run (`bench/fuzz_ring.py`) and the hostile-ring integration test.

Every builder returns bytes ready for the wire: a datagram (`codec.encode`) or a stream frame
(4-byte length prefix, then the envelope). Invented members live at documentation addresses
(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) where nobody answers.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import msgpack

from pysup.butterfly import codec
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    Gossip,
    MemberRumor,
    PushPull,
    Rumor,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)

ATTACKER_ID = "e" * 32
U64_MAX = 2**64 - 1
ENVELOPE = codec.MAGIC + bytes((codec.VERSION, 0))


def attacker(host: str = "127.0.0.1", port: int = 9) -> Member:
    return Member(ATTACKER_ID, 1, host, port)


def gossip(*rumors: Rumor, sender: Member | None = None) -> bytes:
    return codec.encode(Gossip(sender or attacker(), rumors))


def suspect(member_id: str, host: str, port: int, incarnation: int = U64_MAX) -> bytes:
    """Item 1: "member X is Suspect at incarnation 2^64-1" (refuting it needed 2^64)."""
    x = Member(member_id, incarnation, host, port, Health.SUSPECT)
    return gossip(MemberRumor(x, ATTACKER_ID))


def poison_service(group: str = "redis.default", value: Any = b"\x01") -> bytes:
    """Item 3: a Service rumor whose exported cfg holds a value JSON cannot render (it made
    `/butterfly` and `/census` answer 500 on every member, and was saved to disk)."""
    rumor = ServiceRumor("d" * 32, group, 1, "core/redis/7.0.0", True, {"port": value})
    return gossip(rumor)


def bad_file(name: str = "../../etc/cron.d/evil", group: str = "redis.default") -> bytes:
    """Item 3: a file rumor whose name `file upload` refuses at write time."""
    return gossip(ServiceFileRumor(group, name, 1, b"* * * * * root id\n"))


def name_address(name: str = "attacker.example.com") -> bytes:
    """Item 5: a member whose address is a host name (sending to it resolves in the loop)."""
    return gossip(MemberRumor(Member("c" * 32, 1, name, 9638)))


def deep_cfg(depth: int = 200) -> bytes:
    """Item 3: a cfg value nested `depth` lists deep (every template and encoder walks it)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return poison_service(value=value)


def invented_members(n: int, start: int = 0) -> list[Member]:
    return [
        Member(f"{start + k + 1:08x}" + "f" * 24, 1, f"198.51.{k // 250 % 256}.{k % 250 + 1}", 9638)
        for k in range(n)
    ]


def member_flood(n: int = 2000, per: int = 25, start: int = 0) -> list[bytes]:
    """Item 4: `n` invented Alive members, `per` to a Gossip datagram (2,000 in 80)."""
    members = invented_members(n, start)
    return [
        gossip(*(MemberRumor(m) for m in members[i : i + per])) for i in range(0, len(members), per)
    ]


def empty_maps_datagram(size: int = 65_000) -> bytes:
    """Item 2: a datagram of `size` bytes: an array of empty msgpack maps behind a valid
    envelope (54% of a core at 200/s before datagrams were bounded by size)."""
    n = size - len(ENVELOPE) - 5
    return ENVELOPE + b"\xdd" + struct.pack(">I", n) + b"\x80" * n


def empty_maps_frame(size: int = 32 * 1024 * 1024, nested: bool = False) -> bytes:
    """Item 2: a stream frame of `size` bytes of empty maps: one array32 of them (refused at its
    length header now), or `nested` lists of 2^17 each, which pass every length limit and stop
    at the frame's object budget (2.5 GB of dicts and a 4.5 s stall before)."""
    room = size - 4 - len(ENVELOPE) - 5
    if not nested:
        body = b"\xdd" + struct.pack(">I", room) + b"\x80" * room
    else:
        per = 1 << 17
        lists = room // (per + 5)
        body = (
            b"\xdd"
            + struct.pack(">I", lists)
            + (b"\xdd" + struct.pack(">I", per) + b"\x80" * per) * lists
        )
    frame = ENVELOPE + body
    return struct.pack(">I", len(frame)) + frame


def frame_header_only(length: int = codec.MAX_FRAME) -> bytes:
    """Item 2: a frame announcing `length` bytes, of which only the envelope is ever sent (a
    stalled stream: each one used to buffer up to 32 MiB)."""
    return struct.pack(">I", length) + ENVELOPE


# --- the semantic fuzz target: random well-formed messages with extreme values --------------

EXTREME_INCARNATIONS = [0, 1, 2**32, 2**53 + 1, 2**63 - 2, 2**63 - 1, 2**63, U64_MAX]
EXTREME_ADDRESSES = [
    "10.0.0.1",
    "::1",
    "fe80::1%eth0",
    "localhost",
    "attacker.example.com",
    "",
    "1.2.3.4.5",
    "x" * 64,
    "::ffff:10.0.0.1",
]
EXTREME_NAMES = ["ok.txt", "../x", "a/b", ".", "..", "", "\x00", "\t", "é" * 200, "a" * 256]
EXTREME_GROUPS = ["redis.default", "a.b@org", "redis", ".x", "a b.c", "a.b\n", "x" * 300]
EXTREME_VALUES: list[Any] = [
    1,
    -(2**63),
    2**63 - 1,
    2**63,
    U64_MAX,
    0.5,
    float("nan"),
    float("inf"),
    None,
    b"\x01",
    "",
    "x" * 2000,
    [],
    {},
    [[[[[[]]]]]],
    {"a": {"b": {"c": b"x"}}},
]


def _nest(rng: random.Random, value: Any) -> Any:
    for _ in range(rng.choice([0, 1, 5, 31, 32, 33, 100])):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def extreme_member(rng: random.Random) -> Member:
    return Member(
        rng.randbytes(16).hex(),
        rng.choice(EXTREME_INCARNATIONS),
        rng.choice(EXTREME_ADDRESSES),
        rng.randrange(65536),
        rng.choice(list(Health)),
        rng.random() < 0.1,
    )


def extreme_rumor(rng: random.Random) -> Rumor:
    k = rng.randrange(5)
    inc = rng.choice(EXTREME_INCARNATIONS)
    group = rng.choice(EXTREME_GROUPS)
    if k == 0:
        return MemberRumor(extreme_member(rng), rng.choice(["", ATTACKER_ID]))
    if k == 1:
        cfg = {rng.choice(["port", "", "k"]): _nest(rng, rng.choice(EXTREME_VALUES))}
        return ServiceRumor(rng.randbytes(16).hex(), group, inc, "core/x/1", True, cfg, {})
    if k == 2:
        return ServiceConfigRumor(group, inc, rng.randbytes(rng.choice([0, 10, 70_000])))
    if k == 3:
        return ServiceFileRumor(group, rng.choice(EXTREME_NAMES), inc, b"x")
    status = rng.choice(list(ElectionStatus))
    return ElectionRumor(
        group, rng.randbytes(16).hex(), inc, rng.choice(EXTREME_INCARNATIONS), status
    )


def extreme_message(rng: random.Random) -> bytes:
    """One well-formed datagram or frame body with extreme field values (packed with msgpack
    directly when the codec's own encoder would refuse a value, e.g. a NaN key)."""
    sender = extreme_member(rng) if rng.random() < 0.3 else attacker()
    rumors = tuple(extreme_rumor(rng) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.3:  # an honest-looking flood of new members, to reach the core's limits
        rumors = tuple(MemberRumor(m) for m in invented_members(25, start=rng.randrange(10**6)))
    if rng.random() < 0.2:
        count = rng.choice([1, 50, 2000])
        members = tuple(
            extreme_member(rng) if rng.random() < 0.5 / count else m
            for m in invented_members(count, start=rng.randrange(10**6))
        )
        msg: Any = PushPull(sender, members, rumors)
    else:
        msg = Gossip(sender, rumors)
    try:
        return codec.encode(msg)
    except (OverflowError, TypeError, ValueError):
        # A value msgpack's encoder refuses (2^64 and above): the envelope with a hand-packed
        # body of plain types instead.
        return ENVELOPE + msgpack.packb([5, [], []], use_bin_type=True)

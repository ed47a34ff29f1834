"""The codec against well-formed hostile messages: each is refused with a stable reason before
anything reaches the core, the store or the disk, and honest values at the edges still pass.

Every case below decoded before the bounds existed (the 2^64-1 Suspect rumor, the nested bytes
cfg value, the `../` file name, the host name address, the 32 MiB frame of empty maps)."""

from __future__ import annotations

import datetime as dt
import math

import msgpack
import pytest
from structlog.testing import capture_logs

from pysup.butterfly import codec, records
from pysup.butterfly.config import MAX_DATAGRAM, MAX_INCARNATION
from pysup.butterfly.keys import generate_ring_key
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    Gossip,
    MemberRumor,
    Message,
    PushPull,
    Rumor,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)
from pysup.butterfly.validate import MAX_VALUE_DEPTH

ME = Member("a" * 32, 3, "10.0.0.1", 9638)
X = Member("b" * 32, 5, "10.0.0.2", 9638)
KEY = generate_ring_key("ring", dt.datetime(2026, 1, 2, tzinfo=dt.UTC))


def reason(msg: Message, limit: int = MAX_DATAGRAM) -> str | None:
    """None if `msg` decodes (and round-trips), else the CodecError reason."""
    data = codec.encode(msg)
    try:
        out = codec.decode(data, None, limit)
    except codec.CodecError as e:
        assert e.reason in codec.REASONS
        return e.reason
    assert out == msg
    return None


def gossip(*rumors: Rumor) -> Gossip:
    return Gossip(ME, rumors)


def service(cfg: object = None, group: str = "redis.default", inc: int = 1) -> ServiceRumor:
    return ServiceRumor("c" * 32, group, inc, "core/redis/7.0.0", True, cfg or {"port": 6379})


# --- item 1: incarnations --------------------------------------------------------------


def test_a_suspect_rumor_at_2_64_minus_1_is_refused_as_incarnation() -> None:
    suspect = X._replace(incarnation=2**64 - 1, health=Health.SUSPECT)
    assert reason(gossip(MemberRumor(suspect, ME.id))) == "incarnation"


@pytest.mark.parametrize("health", [Health.SUSPECT, Health.CONFIRMED, Health.DEPARTED])
def test_at_the_bound_only_alive_passes(health: Health) -> None:
    assert reason(gossip(MemberRumor(X._replace(incarnation=MAX_INCARNATION)))) is None
    at = X._replace(incarnation=MAX_INCARNATION, health=health)
    assert reason(gossip(MemberRumor(at))) == "incarnation"
    assert reason(gossip(MemberRumor(at._replace(incarnation=MAX_INCARNATION - 1)))) is None


@pytest.mark.parametrize(
    "rumor",
    [
        service(inc=MAX_INCARNATION + 1),
        ServiceConfigRumor("redis.default", 2**64 - 1, b"x = 1"),
        ServiceFileRumor("redis.default", "a.txt", 2**63, b"x"),
        ElectionRumor("redis.default", "c" * 32, 2**64 - 1, 1, ElectionStatus.RUNNING),
    ],
    ids=["service", "config", "file", "election_term"],
)
def test_every_versioned_rumor_is_bounded(rumor: Rumor) -> None:
    assert reason(gossip(rumor), codec.MAX_FRAME) == "incarnation"


def test_the_sender_record_is_bounded_too() -> None:
    assert reason(Gossip(ME._replace(incarnation=2**64 - 1))) == "incarnation"


# --- item 5: addresses -----------------------------------------------------------------


@pytest.mark.parametrize("address", ["db.example.com", "localhost", "", "10.0.0.256", "x" * 300])
def test_an_address_that_is_not_an_ip_literal_is_refused(address: str) -> None:
    assert reason(gossip(MemberRumor(X._replace(address=address)))) == "address"


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "192.0.2.1", "::1", "fe80::1%eth0", "::ffff:1.2.3.4"]
)
def test_ip_literals_pass(address: str) -> None:
    assert reason(gossip(MemberRumor(X._replace(address=address)))) is None


# --- item 3: poison values and names -----------------------------------------------------


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "cfg",
    [
        {"port": b"\x01"},  # the value that made /butterfly answer 500 for good
        {"a": {"b": [1, {"c": b"x"}]}},
        {"a": None},  # JSON null: TOML has none
        {"a": math.nan},
        {"a": math.inf},
        {"a": 2**63},  # TOML integers are signed 64-bit
        {"a": nested(MAX_VALUE_DEPTH + 1)},
    ],
    ids=["bytes", "nested_bytes", "null", "nan", "inf", "int_2_63", "too_deep"],
)
def test_a_cfg_value_toml_and_json_cannot_both_hold_is_refused(cfg: object) -> None:
    assert reason(gossip(service(cfg)), codec.MAX_FRAME) == "value"


def test_honest_cfg_values_at_the_edges_pass() -> None:
    cfg = {
        "port": 6379,
        "min": -(2**63),
        "max": 2**63 - 1,
        "ratio": 0.5,
        "tls": {"enabled": False, "ciphers": ["HIGH", "!aNULL"]},
        "": "an empty key is a valid TOML key",
        "deep": nested(MAX_VALUE_DEPTH - 1),
    }
    assert reason(gossip(service(cfg)), codec.MAX_FRAME) is None


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a/b", "a\\b", "..", ".", "", "nul\x00", "tab\t", "é" * 128]
)
def test_a_file_name_refused_at_write_time_is_refused_at_receipt(name: str) -> None:
    assert reason(gossip(ServiceFileRumor("redis.default", name, 1, b"x"))) == "name"


@pytest.mark.parametrize(
    "group", ["redis", "redis.", ".default", "re dis.default", "a.b@", "a.b\n"]
)
def test_a_service_group_the_census_cannot_parse_is_refused(group: str) -> None:
    assert reason(gossip(service(group=group))) == "name"
    assert reason(gossip(ServiceConfigRumor(group, 1, b""))) == "name"


def test_a_saved_rumor_file_keeps_the_valid_entries_and_logs_the_rest() -> None:
    good = service()
    packed = msgpack.unpackb(codec.encode_rumors([good, good]))
    packed[1][6] = {"port": b"\x01"}  # a poison value saved by an older version
    bad_name = msgpack.unpackb(codec.encode_rumors([ServiceFileRumor("a.b", "x", 1, b"")]))[0]
    bad_name[2] = "../x"
    data = msgpack.packb([*packed, bad_name, [99]], use_bin_type=True)
    with capture_logs() as logs:
        assert codec.decode_rumors(data) == [good]
    (event,) = [e for e in logs if e["event"] == "state.rumors_skipped"]
    assert event["skipped"] == 3 and event["reasons"] == {"value": 1, "name": 1, "malformed": 1}


def test_rumor_problem_is_what_receivers_would_say() -> None:
    assert codec.rumor_problem(service()) is None
    problem = codec.rumor_problem(service({"when": dt.datetime(2026, 1, 1)}))
    assert problem is not None and problem.reason == "value"


# --- item 2: sizes and msgpack limits ------------------------------------------------------


def test_a_datagram_over_the_largest_honest_one_is_refused_by_size() -> None:
    data = codec.MAGIC + bytes((codec.VERSION, 0)) + b"\x80" * MAX_DATAGRAM
    with pytest.raises(codec.CodecError) as e:
        codec.decode(data, None, codec.MAX_DATAGRAM)
    assert e.value.reason == "oversized"


def body_decodes_to(body: bytes, limit: int) -> str | None:
    try:
        codec.decode(codec.MAGIC + bytes((codec.VERSION, 0)) + body, None, limit)
    except codec.CodecError as e:
        return e.reason
    return None


def test_a_length_header_beyond_the_datagram_limits_is_refused_before_building() -> None:
    many = b"\xdc" + (2000).to_bytes(2, "big") + b"\x80" * 2000  # array16 of 2000 empty maps
    assert body_decodes_to(many, codec.MAX_DATAGRAM) == "limits"
    wide = b"\xde" + (600).to_bytes(2, "big")  # map16 of 600: refused at its header
    assert body_decodes_to(wide, codec.MAX_DATAGRAM) == "limits"


def test_a_frame_of_nested_empty_maps_stops_at_the_object_budget() -> None:
    # 24 lists of 2^17 empty maps (3 MiB): within every length limit, over FRAME_MAX_OBJECTS.
    inner = b"\xdd" + (1 << 17).to_bytes(4, "big") + b"\x80" * (1 << 17)
    body = b"\xdc" + (24).to_bytes(2, "big") + inner * 24
    assert len(body) > codec.FRAME_MAX_OBJECTS // 2  # so it is counted
    assert body_decodes_to(body, codec.MAX_FRAME) == "limits"


def test_an_honest_push_pull_of_a_large_ring_decodes_within_the_budget() -> None:
    members = tuple(
        Member(f"{i:032x}", 1, f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 9638)
        for i in range(10_000)
    )
    services = tuple(
        ServiceRumor(m.id, "redis.default", 1, "core/redis/7", True, {"port": 6379, "x": "y" * 40},
                     {f"k{j}": "v" * 20 for j in range(10)})
        for m in members
    )  # fmt: skip
    msg = PushPull(ME, members, services)
    assert len(codec.encode(msg)) > codec.FRAME_MAX_OBJECTS // 2  # the counted path
    assert reason(msg, codec.MAX_FRAME) is None


def test_header_problem_names_the_envelope_fault() -> None:
    plain = codec.MAGIC + bytes((codec.VERSION, 0))
    sealed = codec.MAGIC + bytes((codec.VERSION, codec.FLAG_ENCRYPTED))
    assert codec.header_problem(plain, None) is None
    assert codec.header_problem(sealed, KEY) is None
    faults = {
        "malformed": codec.header_problem(b"XX\x01\x00", None),
        "version": codec.header_problem(codec.MAGIC + b"\x09\x00", None),
        "unencrypted": codec.header_problem(plain, KEY),
        "encrypted": codec.header_problem(sealed, None),
    }
    assert {k: v.reason if v else None for k, v in faults.items()} == {k: k for k in faults}


# --- the decode memos (issue 18): a record seen before is a lookup, and still only honest --


def _raw(msg: Message, edit: object) -> bytes:
    """`msg` encoded after `edit` changed its wire lists (a copy: the codec's own are shared)."""
    wire = msgpack.unpackb(codec.encode_body(msg))
    edit(wire)  # type: ignore[operator]
    return codec._HEADER_PLAIN + msgpack.packb(wire, use_bin_type=True)


@pytest.mark.parametrize(
    ("where", "value"),
    [(1, 5.0), (3, 9638.0), (4, 1.0), (4, True), (5, 0), (1, True)],
    ids=["float-incarnation", "float-port", "float-health", "bool-health", "int-persistent",
         "bool-incarnation"],
)  # fmt: skip
def test_a_record_equal_in_value_to_one_seen_but_of_another_type_is_still_refused(
    where: int, value: object
) -> None:
    """Memo keys compare by value (5.0 == 5, True == 1): after the honest record decoded (and
    was remembered), the same record with one field of another type is refused as it was."""
    honest = Gossip(ME, (MemberRumor(X._replace(incarnation=1)),))
    assert codec.decode(codec.encode(honest)) == honest
    assert codec.decode(codec.encode(honest)) == honest  # from the memo: the same result

    def rumor_field(wire: list) -> None:  # type: ignore[type-arg]
        wire[2][0][1][where] = value

    def sender_field(wire: list) -> None:  # type: ignore[type-arg]
        wire[1][where] = value

    sender_honest = Gossip(ME._replace(incarnation=1), ())
    assert codec.decode(codec.encode(sender_honest)) == sender_honest
    for msg, edit in ((honest, rumor_field), (sender_honest, sender_field)):
        with pytest.raises(codec.CodecError) as e:
            codec.decode(_raw(msg, edit))
        assert e.value.reason == "malformed"


def test_a_memo_that_fills_up_starts_over_and_still_decodes() -> None:
    """Ever-new records (forged) make the memos start over; each record still decodes right."""
    forged = [X._replace(incarnation=i) for i in range(records.MEMO_MAX + 10)]
    for m in forged[:: records.MEMO_MAX // 7]:
        assert codec.decode(codec.encode(Gossip(m, (MemberRumor(m),)))) == Gossip(
            m, (MemberRumor(m),)
        )
    for m in forged:
        records.rumor_wire(MemberRumor(m))
    assert len(records._MEMBER_WIRE) <= records.MEMO_MAX
    assert len(records._MEMBER_RUMOR_WIRE) <= records.MEMO_MAX
    assert codec.encode(Gossip(forged[0])) == codec.encode(Gossip(forged[0]))

"""The wire codec: every message and rumor round-trips, plain and encrypted, and hostile input
of any shape is rejected with `CodecError` (and the right `reason`), never anything else."""

from __future__ import annotations

import datetime as dt

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pysup.butterfly import codec, records
from pysup.butterfly.codec import CodecError
from pysup.butterfly.keys import RingKey, generate_ring_key
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    ElectionRumor,
    ElectionStatus,
    Gossip,
    MemberRumor,
    Message,
    Ping,
    PushPull,
    ServiceConfigRumor,
)
from tests.unit.gossip_strategies import messages, rumors

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
KEY = generate_ring_key("ring", WHEN)
OTHER_KEY = generate_ring_key("ring", WHEN)
ME = Member("a" * 32, 3, "10.0.0.1", 9638)
REASONS = codec.REASONS
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sample_message() -> Message:
    return PushPull(
        ME,
        (ME, Member("b" * 32, 7, "10.0.0.2", 9638, Health.SUSPECT, True)),
        (
            ServiceConfigRumor("redis.default", 4, b"port = 6379\n"),
            ElectionRumor("redis.default", "b" * 32, 2, 10, ElectionStatus.RUNNING, ("a" * 32,)),
        ),
        join=True,
    )


def decode_or_codec_error(data: bytes, key: RingKey | None = None, **kw: int) -> str | None:
    """Decode hostile bytes: returns None if they decoded, the reason if CodecError; any other
    exception escapes and fails the test."""
    try:
        codec.decode(data, key, **kw)
    except CodecError as e:
        assert e.reason in REASONS
        return e.reason
    return None


# --- round trips --------------------------------------------------------------------------


@FAST
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    assert codec.decode(codec.encode(msg)) == msg


@FAST
@given(messages)
def test_a_spliced_body_is_the_bytes_msgpack_makes_of_the_whole_message(msg: Message) -> None:
    """Messages are spliced from records encoded once; the result must be canonical msgpack:
    exactly what packing the decoded structure in one go gives (headers, lengths, order)."""
    body = codec.encode_body(msg)
    assert msgpack.packb(msgpack.unpackb(body), use_bin_type=True) == body


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_array_headers_are_msgpacks_own(n: int) -> None:
    packed = msgpack.packb([0] * n)
    assert records.array_header(n) == packed[: len(packed) - n]


def test_a_rumor_is_encoded_once_and_reused() -> None:
    """Sizing a rumor for the queue encodes it; every message that carries it reuses those bytes
    (the same object), so a rumor resent ~10 times and to hundreds of members is packed once."""
    r = ServiceConfigRumor("redis.default", 4, b"port = 1\n")
    m = MemberRumor(ME._replace(incarnation=41), "b" * 32)
    assert records.rumor_wire(r) is records.rumor_wire(r)
    assert records.rumor_wire(m) is records.rumor_wire(MemberRumor(m.member, m.by))
    assert codec.rumor_size(r) == len(records.rumor_wire(r))
    assert codec.decode(codec.encode(Gossip(ME, (m, r)))) == Gossip(ME, (m, r))


def test_a_large_rumor_is_encoded_but_not_kept() -> None:
    """A config body near the 128 KiB limit is not held by the memo (nor kept alive by it)."""
    big = ServiceConfigRumor("redis.default", 5, b"x" * 100_000, encrypted=True)
    wire = records.rumor_wire(big)
    assert len(wire) > records.RUMOR_WIRE_MAX_BYTES
    assert id(big) not in records._RUMOR_WIRE
    assert codec.decode(codec.encode(Gossip(ME, (big,)))) == Gossip(ME, (big,))


@settings(max_examples=60, deadline=None)
@given(messages)
def test_every_message_round_trips_encrypted(msg: Message) -> None:
    data = codec.encode(msg, KEY)
    assert data[:4] == codec.MAGIC + bytes((codec.VERSION, codec.FLAG_ENCRYPTED))
    assert codec.encode_body(msg) not in data  # the body is not readable on the wire
    assert codec.decode(data, KEY) == msg


@FAST
@given(st.lists(rumors, max_size=6))
def test_rumor_list_round_trips_and_sizes_add_up(rs: list[codec.Rumor]) -> None:
    assert codec.decode_rumors(codec.encode_rumors(rs)) == rs
    for r in rs:
        assert codec.rumor_size(r) == len(codec.encode_rumors([r])) - 1  # minus the list header


def test_encryption_uses_a_fresh_nonce() -> None:
    msg = sample_message()
    assert codec.encode(msg, KEY) != codec.encode(msg, KEY)


# --- hostile input ------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_codec_error(data: bytes) -> None:
    decode_or_codec_error(data)
    decode_or_codec_error(data, KEY)


@FAST
@given(st.binary(max_size=300))
def test_random_body_behind_a_valid_header_raises_only_codec_error(body: bytes) -> None:
    decode_or_codec_error(codec.MAGIC + bytes((codec.VERSION, 0)) + body)
    reason = decode_or_codec_error(codec.MAGIC + bytes((codec.VERSION, 1)) + body, KEY)
    assert reason == "decrypt"  # random bytes are never a valid secretbox


# Any msgpack structure (well-formed msgpack, wrong shapes and types) behind a valid header.
_structures = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)


@FAST
@given(st.integers(1, 9), _structures)
def test_wrong_shapes_raise_only_codec_error(tag: int, rest: object) -> None:
    for value in ([tag, rest], [tag, *rest] if isinstance(rest, list) else rest):
        body = msgpack.packb(value, use_bin_type=True)
        decode_or_codec_error(codec.MAGIC + bytes((codec.VERSION, 0)) + body)


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_every_truncation_is_malformed_or_decrypt(key: RingKey | None) -> None:
    data = codec.encode(sample_message(), key)
    want = "malformed" if key is None else "decrypt"
    for cut in range(len(data)):
        reason = decode_or_codec_error(data[:cut], key)
        assert reason == ("malformed" if cut < codec.HEADER_LEN else want), cut


@FAST
@given(st.data())
def test_bit_flips_raise_only_codec_error(data: st.DataObject) -> None:
    for key in (None, KEY):
        wire = bytearray(codec.encode(sample_message(), key))
        pos = data.draw(st.integers(0, len(wire) - 1))
        wire[pos] ^= 1 << data.draw(st.integers(0, 7))
        reason = decode_or_codec_error(bytes(wire), key)
        if key is not None and pos >= codec.HEADER_LEN:
            assert reason == "decrypt"  # authenticated: any change to the box is caught


def test_every_single_bit_flip_of_a_plain_packet() -> None:
    wire = codec.encode(sample_message())
    for pos in range(len(wire)):
        for bit in range(8):
            flipped = bytearray(wire)
            flipped[pos] ^= 1 << bit
            decode_or_codec_error(bytes(flipped))


def test_header_errors_have_their_reasons() -> None:
    msg = sample_message()
    plain = codec.encode(msg)
    sealed = codec.encode(msg, KEY)
    assert decode_or_codec_error(b"XX" + plain[2:]) == "malformed"
    assert decode_or_codec_error(plain[:2] + bytes((99,)) + plain[3:]) == "version"
    assert decode_or_codec_error(plain, KEY) == "unencrypted"
    assert decode_or_codec_error(sealed) == "encrypted"
    assert decode_or_codec_error(sealed, OTHER_KEY) == "decrypt"
    assert decode_or_codec_error(b"") == "malformed"


def test_oversized_input_is_rejected_before_parsing() -> None:
    data = codec.encode(sample_message())
    assert decode_or_codec_error(data, limit=len(data) - 1) == "oversized"
    assert decode_or_codec_error(data, limit=len(data)) is None
    big = b"PS\x01\x00" + b"\x00" * codec.MAX_DATAGRAM
    assert decode_or_codec_error(big, limit=codec.MAX_DATAGRAM) == "oversized"


def test_unknown_message_and_rumor_kinds() -> None:
    header = codec.MAGIC + bytes((codec.VERSION, 0))
    assert decode_or_codec_error(header + msgpack.packb([42, 1, 2])) == "unknown"
    good = codec.encode_body(Gossip(ME, (MemberRumor(ME),)))
    raw = msgpack.unpackb(good)
    raw[2][0][0] = 42  # the rumor's kind
    assert decode_or_codec_error(header + msgpack.packb(raw, use_bin_type=True)) == "unknown"


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (1, 2**32),  # seq out of range
        (1, -1),
        (1, True),  # a bool is not an int
        (3, b"\x00" * 15),  # target id too short
    ],
)
def test_out_of_range_fields_are_malformed(index: int, value: object) -> None:
    raw = msgpack.unpackb(codec.encode_body(Ping(1, ME, "b" * 32)))
    raw[index] = value
    body = msgpack.packb(raw, use_bin_type=True)
    assert decode_or_codec_error(codec.MAGIC + bytes((codec.VERSION, 0)) + body) == "malformed"


@pytest.mark.parametrize(
    ("field", "value"),
    [(0, b"\x00" * 17), (1, -1), (3, 65536), (4, 0), (4, 5), (5, 1), (2, 7)],
)
def test_bad_member_records_are_malformed(field: int, value: object) -> None:
    raw = msgpack.unpackb(codec.encode_body(Gossip(ME)))
    raw[1][field] = value
    body = msgpack.packb(raw, use_bin_type=True)
    assert decode_or_codec_error(codec.MAGIC + bytes((codec.VERSION, 0)) + body) == "malformed"


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    nested = b"\x91" * 100_000 + b"\xc0"  # [[[[...None...]]]]
    header = codec.MAGIC + bytes((codec.VERSION, 0))
    assert decode_or_codec_error(header + nested) == "malformed"


def test_decode_rumors_rejects_garbage_with_codec_error() -> None:
    """A file that is not a list of rumors at all is refused whole (the daemon quarantines it);
    invalid entries inside a list are skipped (test_codec_hostile.py)."""
    for data in (b"", b"\xc1", msgpack.packb({"a": 1})):
        with pytest.raises(CodecError):
            codec.decode_rumors(data)
    assert codec.decode_rumors(msgpack.packb([[1]])) == []

"""The control gateway's wire protocol: frames round-trip, and no input can do worse than a
CtlProtocolError (no other exception, no hang, no unbounded buffering)."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysup.gateway.ctl_proto import (
    HEADER,
    MAX_FRAME,
    Auth,
    ConfigApply,
    CtlProtocolError,
    FileUpload,
    FrameDecoder,
    SupDepart,
    SupTerm,
    SvcLoad,
    SvcStatus,
    SvcUnload,
    check_filename,
    check_response,
    decode_body,
    encode_frame,
    error,
    frame_length,
    ok,
    parse_request,
)

REQUESTS = [
    Auth("s3cret"),
    SvcLoad("/plans/redis", group="prod", binds=("db:pg.default",), health_check_interval_s=5.0),
    SvcUnload("redis"),
    SvcStatus(),
    SvcStatus("redis"),
    ConfigApply("redis.default", 3, b"port = 1\n"),
    FileUpload("redis.default", 1, "tls.pem", b"\x00\x01binary"),
    SupDepart("a" * 32),
    SupTerm(),
]


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: r.op)
def test_requests_round_trip_through_frames(req: Any) -> None:
    frame = encode_frame(req.to_wire())
    (msg,) = FrameDecoder().feed(frame)
    assert parse_request(msg) == req


def test_decoder_reassembles_frames_split_anywhere() -> None:
    data = b"".join(encode_frame(r.to_wire()) for r in REQUESTS)
    for step in (1, 3, 7, 64):
        dec = FrameDecoder()
        got = []
        for i in range(0, len(data), step):
            got.extend(dec.feed(data[i : i + step]))
        assert [parse_request(m) for m in got] == REQUESTS
        assert dec.pending == 0
        dec.close()


def test_oversized_frame_refused_from_header_alone() -> None:
    with pytest.raises(CtlProtocolError) as e:
        FrameDecoder().feed(HEADER.pack(MAX_FRAME + 1))
    assert e.value.reason == "oversized"
    assert frame_length(HEADER.pack(MAX_FRAME)) == MAX_FRAME
    with pytest.raises(CtlProtocolError, match="empty"):
        frame_length(HEADER.pack(0))


def test_encode_refuses_oversized_message() -> None:
    with pytest.raises(CtlProtocolError, match="exceeds"):
        encode_frame({"op": "file.upload", "body": b"x" * (MAX_FRAME + 1)})


def test_truncated_stream_is_an_error_at_close() -> None:
    frame = encode_frame(SupTerm().to_wire())
    dec = FrameDecoder()
    assert dec.feed(frame[:-1]) == []
    with pytest.raises(CtlProtocolError) as e:
        dec.close()
    assert e.value.reason == "truncated"


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",  # never-used msgpack byte
        msgpack.packb([1, 2]),  # not a map
        msgpack.packb({1: 2}),  # non-string key
        msgpack.packb({"op": "x"}) + b"\x00",  # trailing data
        msgpack.packb({"op": "x"})[:-1],  # truncated
    ],
)
def test_bad_bodies_are_undecodable(body: bytes) -> None:
    with pytest.raises(CtlProtocolError) as e:
        decode_body(body)
    assert e.value.reason == "undecodable"


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        ({}, "needs an op"),
        ({"op": "svc.frobnicate"}, "unknown op"),
        ({"op": "auth"}, "secret"),
        ({"op": "auth", "secret": 7}, "secret"),
        ({"op": "config.apply", "service_group": "a.b", "version": "1", "config": b""}, "version"),
        ({"op": "config.apply", "service_group": "a.b", "version": True, "config": b""}, "version"),
        ({"op": "config.apply", "service_group": "a.b", "version": 0, "config": b""}, "positive"),
        ({"op": "config.apply", "service_group": "a.b", "version": 1, "config": "x"}, "bytes"),
        ({"op": "svc.load", "plan_dir": "/p", "binds": "db:pg.default"}, "binds"),
        ({"op": "svc.load", "plan_dir": "/p", "health_check_interval_s": "5"}, "number"),
        ({"op": "svc.unload", "name": "x" * 5000}, "longer"),
    ],
)
def test_bad_requests_name_the_field(msg: dict[str, Any], needle: str) -> None:
    with pytest.raises(CtlProtocolError, match=needle):
        parse_request(msg)


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../etc/passwd", "a/b", "a\\b", "x..y", "nul\x00", "tab\there"]
)
def test_file_names_with_paths_or_dots_refused(name: str) -> None:
    with pytest.raises(CtlProtocolError):
        check_filename(name)
    msg = {"op": "file.upload", "service_group": "a.b", "version": 1, "filename": name, "body": b""}
    with pytest.raises(CtlProtocolError):
        parse_request(msg)


@pytest.mark.parametrize("name", ["tls.pem", "a-b_c.txt", ".hidden", "файл"])
def test_plain_file_names_accepted(name: str) -> None:
    check_filename(name)


def test_responses() -> None:
    assert check_response(ok(x=1)) == {"ok": True, "x": 1}
    assert error("first line\nsecond line") == {"ok": False, "error": "first line"}
    with pytest.raises(CtlProtocolError, match="first line") as e:
        check_response(error("first line\nsecond"))
    assert e.value.reason == "refused"
    with pytest.raises(CtlProtocolError):
        check_response({"error": "no ok field"})


def test_auth_repr_hides_the_secret() -> None:
    assert "s3cret" not in repr(Auth("s3cret"))


# --- fuzzing: only CtlProtocolError may come out ---------------------------------------------


def _feed_all(chunks: list[bytes]) -> None:
    dec = FrameDecoder()
    for c in chunks:
        for msg in dec.feed(c):
            with contextlib.suppress(CtlProtocolError):
                parse_request(msg)
    dec.close()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_only_raise_protocol_errors(chunks: list[bytes]) -> None:
    with contextlib.suppress(CtlProtocolError):
        _feed_all(chunks)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([r.op for r in REQUESTS] + ["nope"]),
    st.dictionaries(
        st.sampled_from(
            [
                "secret",
                "plan_dir",
                "name",
                "group",
                "binds",
                "service_group",
                "version",
                "config",
                "filename",
                "body",
                "member_id",
                "health_check_interval_s",
                "topology",
            ]
        ),
        msgpack_values,
        max_size=6,
    ),
)
def test_random_well_framed_requests_only_raise_protocol_errors(
    op: str, fields: dict[str, Any]
) -> None:
    frame = encode_frame({"op": op, **fields})
    (msg,) = FrameDecoder().feed(frame)
    with contextlib.suppress(CtlProtocolError):
        parse_request(msg)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(REQUESTS), st.data())
def test_truncated_frames_never_yield_a_message(req: Any, data: st.DataObject) -> None:
    frame = encode_frame(req.to_wire())
    cut = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    dec = FrameDecoder()
    assert dec.feed(frame[:cut]) == []
    if cut:
        with pytest.raises(CtlProtocolError):
            dec.close()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(REQUESTS), st.data())
def test_corrupted_frames_only_raise_protocol_errors(req: Any, data: st.DataObject) -> None:
    frame = bytearray(encode_frame(req.to_wire()))
    i = data.draw(st.integers(min_value=0, max_value=len(frame) - 1))
    frame[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    with contextlib.suppress(CtlProtocolError):
        _feed_all([bytes(frame)])


def test_header_is_big_endian() -> None:
    frame = encode_frame({"op": "sup.term"})
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4

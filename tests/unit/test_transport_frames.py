"""Stream frame reading, without sockets: a frame is refused by its length prefix and by its
envelope header before its body is read (the reader is fed only what the refusal needs, so a
reader that waited for the body would never return), and the byte budget is all or nothing."""

from __future__ import annotations

import asyncio
import struct

import pytest

from pysup.butterfly import codec
from pysup.butterfly.config import MAX_FRAME
from pysup.butterfly.transport import ByteBudget, FrameRefused, read_body, read_length

PLAIN = codec.MAGIC + bytes((codec.VERSION, 0))


def reader_with(data: bytes) -> asyncio.StreamReader:
    """A reader holding `data` and no end of stream: reading past it would wait forever."""
    r = asyncio.StreamReader()
    r.feed_data(data)
    return r


def check_plain(header: bytes) -> codec.CodecError | None:
    return codec.header_problem(header, None)


@pytest.mark.parametrize("length", [MAX_FRAME + 1, 2**32 - 1, 0, codec.HEADER_LEN - 1])
async def test_a_length_no_frame_can_have_is_refused_at_once(length: int) -> None:
    with pytest.raises(FrameRefused) as e:
        await asyncio.wait_for(read_length(reader_with(struct.pack(">I", length))), 5)
    assert e.value.reason == "stream_bad_frame"


@pytest.mark.parametrize(
    ("header", "want"),
    [(b"GET ", "malformed"), (codec.MAGIC + b"\x07\x00", "version"), (b"PS\x01\x01", "encrypted")],
)
async def test_a_bad_envelope_header_is_refused_before_the_body_arrives(
    header: bytes, want: str
) -> None:
    # A 32 MiB frame is announced; only its 4-byte header is ever sent.
    r = reader_with(struct.pack(">I", MAX_FRAME) + header)
    length = await read_length(r)
    with pytest.raises(FrameRefused) as e:
        await asyncio.wait_for(read_body(r, length, check_plain), 5)
    assert e.value.reason == want


async def test_a_good_frame_is_read_whole() -> None:
    frame = PLAIN + b"\x90"
    r = reader_with(struct.pack(">I", len(frame)) + frame)
    assert await read_body(r, await read_length(r), check_plain) == frame


def test_the_byte_budget_admits_whole_frames_only() -> None:
    budget = ByteBudget(100)
    assert budget.take(60) and not budget.take(41) and budget.take(40)
    assert budget.held == 100
    budget.give(60)
    assert budget.take(60) and budget.held == 100

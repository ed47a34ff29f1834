"""The fuzz harness (`python -m bench.fuzz`) in small: a few thousand seeded inputs per target
find no unhandled exception and no 5xx, every target reaches both its accepting and its refusing
paths, and the harness does report an exception it is not told to expect."""

from __future__ import annotations

import asyncio
import random

import pytest

from bench import fuzz
from pysup.butterfly import codec


def test_a_small_seeded_run_of_every_target_is_clean() -> None:
    results = {
        "codec": fuzz.Counts(),
        "ctl": fuzz.Counts(),
        "http": fuzz.Counts(),
    }
    fuzz.fuzz_codec(3000, random.Random("7:codec"), results["codec"])
    fuzz.fuzz_ctl(3000, random.Random("7:ctl"), results["ctl"])
    fuzz.fuzz_http(1200, random.Random("7:http"), results["http"])
    assert results["codec"].inputs == 3000 and results["ctl"].inputs == 3000
    assert results["http"].inputs == 1200
    codec_out = results["codec"].outcomes
    # Both sides of every boundary are reached: decoded (and fed to a core) and refused, with and
    # without a ring key.
    assert codec_out.get("decoded", 0) > 100
    for reason in ("malformed", "decrypt", "unencrypted", "encrypted"):
        assert codec_out.get(f"rejected:{reason}", 0) > 0, codec_out
    ctl_out = results["ctl"].outcomes
    assert ctl_out.get("parsed", 0) > 0
    for reason in ("bad_request", "undecodable", "truncated", "oversized"):
        assert ctl_out.get(f"rejected:{reason}", 0) > 0, ctl_out
    http_out = results["http"].outcomes
    for status in (200, 400, 401, 404):
        assert http_out.get(f"status:{status}", 0) > 0, http_out


def test_the_harness_reports_an_unexpected_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    real = codec.decode

    def flaky(data: bytes, key: codec.Cipher | None = None, limit: int = codec.MAX_FRAME) -> object:
        if len(data) % 7 == 3:
            raise IndexError("a bug")
        return real(data, key, limit)

    monkeypatch.setattr(fuzz.codec, "decode", flaky)
    with pytest.raises(fuzz.FuzzFailure, match="IndexError: a bug"):
        fuzz.fuzz_codec(500, random.Random(1), fuzz.Counts())


def test_the_harness_reports_a_5xx() -> None:
    sup = fuzz.FakeSupervisor(random.Random(1))

    def boom() -> list[object]:
        raise RuntimeError("a bug in a handler")

    sup.ring_members = boom  # type: ignore[method-assign,assignment]
    with pytest.raises(fuzz.FuzzFailure, match="status 500"):
        fuzz.fuzz_http(300, random.Random(2), fuzz.Counts(), sup=sup)


def test_a_non_utf8_authorization_header_is_401_not_500() -> None:
    """Found by the fuzz run (seed 1, input #2217): aiohttp passes header bytes that are not
    UTF-8 as lone surrogates, and the token check's strict encode() raised (a 500)."""

    async def exchange() -> bytes:
        from aiohttp.test_utils import TestServer

        app = fuzz.make_app(fuzz.FakeSupervisor(random.Random(1)), fuzz.TOKEN)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            assert server.port is not None
            raw = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xdd\xff\r\n\r\n"
            return await fuzz._raw_exchange(server.port, raw)
        finally:
            await server.close()

    assert asyncio.run(exchange()).startswith(b"HTTP/1.1 401 ")


def test_a_small_semantic_run_reaches_every_bound_and_keeps_the_core_whole() -> None:
    """Well-formed hostile messages (bench/fuzz_semantic.py): every new codec reason and the
    core's admission limits are reached, and the state invariants held after each input."""
    counts = fuzz.Counts()
    fuzz.fuzz_semantic(1500, random.Random("7:semantic"), counts)
    out = counts.outcomes
    assert out.get("decoded", 0) > 100, out
    for reason in ("incarnation", "address", "value", "name", "limits", "oversized"):
        assert out.get(f"rejected:{reason}", 0) > 0, out
    for limit in ("member_rate", "member_cap"):
        assert any(limit in k for k in out), out


def test_the_semantic_state_check_catches_a_poisoned_store() -> None:
    from bench.fuzz_semantic import check_state, new_core
    from pysup.butterfly.messages import ServiceRumor

    core = new_core(random.Random(1))
    assert check_state(core) is None
    # Straight into the store, past every check: what the old codec let in.
    core.store.merge(ServiceRumor("d" * 32, "redis.default", 1, "p", cfg={"port": b"\x01"}))
    problem = check_state(core)
    assert problem is not None and "round-trip" in problem

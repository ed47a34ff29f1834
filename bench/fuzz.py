"""A bounded, seeded fuzz run over everything that parses input from the network.

    python -m bench.fuzz --inputs 100000 [--seed S] [--targets codec,ctl,http,semantic]
    python -m bench.fuzz --live-ring [--members 3] [--attack-s 10] [--attacks a,b]
                         [--pysup-path DIR]

Targets (the inputs are split evenly between them):

- ``codec``: ``codec.decode`` of mutated valid encodings (plain, and under a ring key: both
  mutated ciphertext and validly encrypted mutated plaintext, so the msgpack layer under the key
  is reached) and of random bytes. What decodes is fed to a real ``SwimCore`` (``receive`` or
  ``receive_stream``): hostile-but-well-formed messages must not break the core either. Allowed:
  ``CodecError`` with a documented reason.
- ``ctl``: the control gateway's ``FrameDecoder`` fed mutated valid frames in random chunks
  (``feed`` then ``close``), and ``parse_request`` on every map that decodes plus on mutated
  request maps (fields dropped, retyped, oversized). Allowed: ``CtlProtocolError``.
- ``http``: a real ``make_app`` (token auth, metrics middleware, service routes) with a fake
  supervisor view, served in process by aiohttp's test server. Three in four inputs are requests
  through aiohttp's test client (random methods, known and random paths with traversal,
  percent-encoding and long segments, Authorization right/wrong/missing, random headers and
  bodies); one in four is a mutated raw HTTP/1.1 request written to the socket. Fails on any 5xx
  or any error the server logs (aiohttp turns a handler's exception into a 500 and a log line).

- ``semantic``: well-formed messages with extreme values (incarnations around 2^63 and 2^64, host
  names as addresses, ``../`` names, cfg values TOML or JSON cannot hold, deep nesting, member
  floods), fed to a real core whose state is checked after every input
  (``bench/fuzz_semantic.py``).

``--live-ring`` runs the stateful attacks of ``bench/fuzz_ring.py`` against real processes
instead, each on a fresh ring, and prints a table of what each attack cost.

Inputs are generated from ``random.Random(seed)`` (no coverage feedback), so a run is
reproducible: a failure prints the target, the input index and the input (repr), and the process
exits 1. Exit 0 means every input was handled with a documented outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import ClientError, ClientResponseError, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from pysup.butterfly import codec
from pysup.butterfly.codec import CodecError
from pysup.butterfly.config import LAN
from pysup.butterfly.core import SwimCore
from pysup.butterfly.keys import generate_ring_key
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
from pysup.butterfly.rumors import RumorStore
from pysup.census_build import build_census
from pysup.gateway import ctl_proto
from pysup.gateway.ctl_proto import CtlProtocolError
from pysup.gateway.http import make_app
from pysup.gateway.service_routes import add_service_routes
from pysup.metrics import Metrics

CODEC_REASONS = codec.REASONS
CTL_REASONS = {"oversized", "undecodable", "truncated", "bad_request", "unknown_op"}
TOKEN = "fuzz-token-3f9a"
KEY = generate_ring_key("fuzz", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


class FuzzFailure(Exception):
    def __init__(self, target: str, index: int, data: Any, error: str) -> None:
        super().__init__(f"{target} input #{index}: {error}\ninput: {data!r}"[:20000])


# --- mutation --------------------------------------------------------------------------------

INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xc0",
    b"\xc1",  # msgpack: never used
    b"\xdc\xff\xff",  # array16 of 65535
    b"\xdd\xff\xff\xff\xff",  # array32 of 2^32-1
    b"\xdf\xff\xff\xff\xff",  # map32 of 2^32-1
    b"\xc6\xff\xff\xff\xff",  # bin32 of 2^32-1
    b"\xdb\x7f\xff\xff\xff",  # str32 huge
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",  # uint64 max
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # int64 min
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # float64 NaN
    b"\x91" * 64,  # deep nesting
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """1-8 random edits: flips, sets, inserts, deletes, truncation, duplication, splices."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(9)
        n = len(buf)
        if op == 0 and n:
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:
            i = rng.randint(0, n)
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and n:
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, 32)]
        elif op == 4 and n:
            del buf[rng.randint(0, n) :]
        elif op == 5 and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 64))
            buf[j:j] = buf[i:j] * rng.randint(1, 4)
        elif op == 6:
            i = rng.randint(0, n)
            buf[i:i] = rng.choice(INTERESTING)
        elif op == 7 and pool:
            other = rng.choice(pool)
            i, j = rng.randint(0, n), rng.randint(0, len(other))
            buf[i:] = other[j:]
        elif op == 8 and n:
            i = rng.randrange(n)
            v = rng.choice(INTERESTING)
            buf[i : i + len(v)] = v
    return bytes(buf)


# --- messages ----------------------------------------------------------------------------------


def rand_id(rng: random.Random) -> str:
    return rng.randbytes(16).hex()


def rand_text(rng: random.Random, n: int = 20) -> str:
    alphabet = "abcdefghij.-_/ \x00\u00e9\u4e2d\U0001f600"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))


def rand_member(rng: random.Random) -> Member:
    # Mostly values a member accepts, so mutations reach the core; the `semantic` target
    # (bench/fuzz_semantic.py) is the one that aims at the bounds.
    return Member(
        rand_id(rng),
        rng.choice([0, 1, 2, rng.randrange(2**63), rng.randrange(2**64)]),
        rng.choice(["127.0.0.1", "10.0.0.9", "::1", "127.0.0.1", rand_text(rng, 10)]),
        rng.randrange(65536),
        rng.choice(list(Health)),
        rng.random() < 0.2,
    )


def rand_rumor(rng: random.Random) -> Rumor:
    k = rng.randrange(6)
    inc = rng.randrange(2**63) if rng.random() < 0.9 else rng.randrange(2**64)
    sg = rng.choice(["redis.default", "a.b", "a.b", rand_text(rng)])
    if k == 0:
        return MemberRumor(rand_member(rng), rng.choice(["", rand_id(rng)]))
    if k == 1:
        cfg = {"port": rng.randrange(65536), "x": [1, "a", None], "n": {"k": 1.5}}
        return ServiceRumor(rand_id(rng), sg, inc, "core/redis/1/2", rng.random() < 0.5, cfg, {})
    if k == 2:
        body = rng.choice([b"port = 6379\n", b'[a]\nb = "c"\n', rng.randbytes(rng.randint(0, 200))])
        return ServiceConfigRumor(sg, inc, body, rng.random() < 0.1)
    if k == 3:
        name = rng.choice(["tls.pem", "motd", rand_text(rng)])
        return ServiceFileRumor(sg, name, inc, rng.randbytes(rng.randint(0, 100)))
    if k == 4:
        return DepartureRumor(rand_id(rng))
    votes = tuple(rand_id(rng) for _ in range(rng.randint(0, 3)))
    status = rng.choice(list(ElectionStatus))
    return ElectionRumor(sg, rand_id(rng), inc, rng.randrange(2**32), status, votes)


def rand_message(rng: random.Random) -> Message:
    rumors = tuple(rand_rumor(rng) for _ in range(rng.randint(0, 4)))
    sender = rand_member(rng)
    k = rng.randrange(7)
    seq = rng.randrange(2**32)
    if k == 0:
        return Ping(seq, sender, rand_id(rng), rumors)
    if k == 1:
        return Ack(seq, sender, rumors)
    if k == 2:
        return PingReq(seq, sender, rand_member(rng), rumors)
    if k == 3:
        return Nack(seq, sender)
    if k == 4:
        return Gossip(sender, rumors)
    if k == 5:
        members = tuple(rand_member(rng) for _ in range(rng.randint(0, 5)))
        return PushPull(sender, members, rumors, rng.random() < 0.5, rng.random() < 0.5)
    return RumorPush(sender, rumors)


# --- targets -----------------------------------------------------------------------------------


@dataclass
class Counts:
    inputs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def saw(self, outcome: str) -> None:
        self.inputs += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def _new_core(rng: random.Random) -> SwimCore:
    me = Member(rand_id(rng), 1, "127.0.0.1", 9638)
    return SwimCore(LAN, me, random.Random(rng.randrange(2**32)), 0.0)


def fuzz_codec(n: int, rng: random.Random, counts: Counts) -> None:
    msgs = [rand_message(rng) for _ in range(200)]
    valid = [codec.encode_body(m) for m in msgs]
    plain = [codec.encode(m) for m in msgs]
    sealed = [codec.encode(m, KEY) for m in msgs]
    pool = valid + plain
    core = _new_core(rng)
    now = 0.0
    for i in range(n):
        kind = rng.randrange(7)
        key = None
        if kind == 6:  # a well-formed message with hostile field values
            data = codec.encode(rand_message(rng))
        elif kind == 0:  # mutated plain packet
            data = mutate(rng, rng.choice(plain), pool)
        elif kind == 1:  # mutated body behind a valid header
            data = plain[0][: codec.HEADER_LEN] + mutate(rng, rng.choice(valid), pool)
        elif kind == 2:  # random bytes, sometimes with a valid header
            data = rng.randbytes(rng.choice([0, 1, 3, 4, 16, 200, 1500]))
            if rng.random() < 0.5:
                data = plain[0][: codec.HEADER_LEN] + data
        elif kind == 3:  # mutated ciphertext under the ring key
            key = KEY
            data = mutate(rng, rng.choice(sealed), sealed)
        elif kind == 4:  # validly encrypted, mutated plaintext: reaches msgpack under the key
            key = KEY
            header = codec.MAGIC + bytes((codec.VERSION, codec.FLAG_ENCRYPTED))
            data = header + KEY.encrypt(mutate(rng, rng.choice(valid), pool))
        else:  # a plain packet while a key is set, or an encrypted one without
            if rng.random() < 0.5:
                key, data = KEY, mutate(rng, rng.choice(plain), pool)
            else:
                data = rng.choice(sealed)
        limit = rng.choice([codec.MAX_DATAGRAM, codec.MAX_FRAME, 1400])
        try:
            msg = codec.decode(data, key, limit)
        except CodecError as e:
            if e.reason not in CODEC_REASONS:
                raise FuzzFailure("codec", i, data, f"undocumented reason {e.reason!r}") from None
            counts.saw(f"rejected:{e.reason}")
            continue
        except Exception as e:
            raise FuzzFailure("codec", i, data, f"{type(e).__name__}: {e}") from e
        # It decoded: the core must take it without raising.
        now += 0.05
        src = ("127.0.0.1", rng.randrange(1, 65536))
        try:
            if isinstance(msg, PushPull | RumorPush):
                core.receive_stream(src, msg, now)
            else:
                core.receive(src, msg, now)
            core.tick(now)
        except Exception as e:
            raise FuzzFailure("codec+core", i, data, f"core: {type(e).__name__}: {e}") from e
        counts.saw("decoded")
        if i % 2000 == 0:
            core, now = _new_core(rng), 0.0


def _wire_requests(rng: random.Random) -> list[dict[str, Any]]:
    reqs: list[ctl_proto.Request] = [
        ctl_proto.Auth("s" * 32),
        ctl_proto.SvcLoad("/tmp/plan", "default", "leader", "rolling", ("db:pg.default",)),
        ctl_proto.SvcUnload("redis"),
        ctl_proto.SvcStart("redis"),
        ctl_proto.SvcStop("redis"),
        ctl_proto.SvcStatus(None),
        ctl_proto.ConfigApply("redis.default", 3, b'port = 1\n[a]\nb = "c"\n'),
        ctl_proto.FileUpload("redis.default", 2, "tls.pem", rng.randbytes(64)),
        ctl_proto.SupDepart(rand_id(rng)),
        ctl_proto.SupTerm(),
    ]
    return [r.to_wire() for r in reqs]


HOSTILE_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**63,
    2**64 - 1,
    -(2**63),
    1.5,
    float("inf"),
    "",
    "..",
    "../../etc/passwd",
    "a/b",
    "\x00",
    "x" * 5000,
    b"\xff" * 10,
    [],
    ["a", 1],
    {"k": "v"},
]


def mutate_map(rng: random.Random, msg: dict[str, Any]) -> dict[str, Any]:
    out = dict(msg)
    for _ in range(rng.randint(1, 3)):
        keys = list(out)
        op = rng.randrange(4)
        if op == 0 and keys:
            del out[rng.choice(keys)]
        elif op == 1 and keys:
            out[rng.choice(keys)] = rng.choice(HOSTILE_VALUES)
        elif op == 2:
            out[rand_text(rng, 8)] = rng.choice(HOSTILE_VALUES)
        else:
            out["op"] = rng.choice([*ctl_proto.OPS, "", "svc", "x" * 100, 7, None])
    return out


def fuzz_ctl(n: int, rng: random.Random, counts: Counts) -> None:
    wire = _wire_requests(rng)
    frames = [ctl_proto.encode_frame(w) for w in wire]
    pool = frames + [f[4:] for f in frames]
    for i in range(n):
        kind = rng.randrange(5)
        if kind == 0:  # a mutated request map, straight to parse_request
            msg = mutate_map(rng, rng.choice(wire))
            try:
                ctl_proto.parse_request(msg)
                counts.saw("parsed")
            except CtlProtocolError as e:
                if e.reason not in CTL_REASONS:
                    raise FuzzFailure("ctl", i, msg, f"undocumented reason {e.reason!r}") from None
                counts.saw(f"rejected:{e.reason}")
            except Exception as e:
                raise FuzzFailure("ctl", i, msg, f"{type(e).__name__}: {e}") from e
            continue
        if kind == 1:  # a valid frame around a mutated map
            stream = ctl_proto.encode_frame(mutate_map(rng, rng.choice(wire)))
        elif kind == 2:  # several mutated frames back to back
            stream = b"".join(
                mutate(rng, rng.choice(frames), pool) for _ in range(rng.randint(1, 3))
            )
        elif kind == 3:  # valid header, mutated body (the length may lie)
            body = mutate(rng, rng.choice(frames)[4:], pool)
            length = len(body) if rng.random() < 0.7 else rng.randrange(2**32)
            stream = ctl_proto.HEADER.pack(length) + body
        else:  # random bytes
            stream = rng.randbytes(rng.choice([1, 3, 4, 5, 64, 1000]))
        decoder = ctl_proto.FrameDecoder()
        outcome = "parsed"
        try:
            pos = 0
            while pos < len(stream):
                step = rng.randint(1, max(1, len(stream) - pos))
                for m in decoder.feed(stream[pos : pos + step]):
                    ctl_proto.parse_request(m)
                pos += step
            decoder.close()
        except CtlProtocolError as e:
            if e.reason not in CTL_REASONS:
                raise FuzzFailure("ctl", i, stream, f"undocumented reason {e.reason!r}") from None
            outcome = f"rejected:{e.reason}"
        except Exception as e:
            raise FuzzFailure("ctl", i, stream, f"{type(e).__name__}: {e}") from e
        counts.saw(outcome)


# --- http ----------------------------------------------------------------------------------------


class FakeManager:
    """The two calls the service routes make: nothing is loaded."""

    def services(self) -> list[Any]:
        return []

    def get(self, svc: str, group: str, org: str | None) -> Any:
        return None


class FakeSupervisor:
    """The HttpHost (pysup.gateway.host) the gateway reads: a few members and rumors to render."""

    def __init__(self, rng: random.Random) -> None:
        self.metrics = Metrics()
        self.me = Member(rand_id(rng), 1, "127.0.0.1", 9638)
        self.members = [rand_member(rng) for _ in range(5)]
        self.store = RumorStore()
        for _ in range(30):
            r = rand_rumor(rng)
            if not isinstance(r, MemberRumor):
                self.store.merge(r)
        self.departs = 0

    def readiness(self) -> tuple[bool, str]:
        return True, "fuzz"

    def liveness(self) -> list[str]:
        return []

    def local_member(self) -> Member:
        return self.me

    def ring_members(self) -> list[Member]:
        return self.members

    def rumor_store(self) -> RumorStore:
        return self.store

    async def depart(self) -> None:
        self.departs += 1


PATHS = [
    "/",
    "/healthz",
    "/readyz",
    "/butterfly",
    "/metrics",
    "/census",
    "/services",
    "/services/redis/default",
    "/services/redis/default/acme",
    "/services/redis/default/config",
    "/services/redis/default/acme/health",
    "/sup/depart",
]
SEGMENTS = [
    "..",
    "%2e%2e",
    "%2F",
    "%00",
    "%ff",
    "%",
    "~",
    "x" * 300,
    "\u00e9",
    "a.b",
    "{svc}",
    ";",
    "?a=1&b",
    "#frag",
    "//",
    " ",
    "%25",
    "services",
]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE"]


def rand_path(rng: random.Random) -> str:
    base = rng.choice(PATHS)
    if rng.random() < 0.6:
        parts = base.split("/")
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            if op == 0:
                parts.insert(rng.randint(1, len(parts)), rng.choice(SEGMENTS))
            elif op == 1 and len(parts) > 1:
                parts[rng.randrange(1, len(parts))] = rng.choice(SEGMENTS)
            else:
                parts.append(rand_text(rng, 12).replace("\x00", "%00"))
        base = "/".join(parts)
    if not base.startswith("/"):
        base = "/" + base
    return base


def rand_headers(rng: random.Random) -> dict[str, str]:
    h: dict[str, str] = {}
    auth = rng.randrange(7)
    if auth < 3:
        h["Authorization"] = f"Bearer {TOKEN}"
    elif auth == 3:
        h["Authorization"] = rng.choice(
            [
                "Bearer",
                "Bearer ",
                f"bearer {TOKEN}",
                f"Bearer {TOKEN}x",
                f"Basic {TOKEN}",
                "x" * 4000,
            ]
        )
    elif auth == 4:
        h["Authorization"] = "Bearer " + "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(20))
    for _ in range(rng.randint(0, 3)):
        name = rng.choice(["Content-Type", "Accept", "X-Forwarded-For", "Range", "Cookie", "X-A"])
        h[name] = "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randint(0, 40)))
    return h


def raw_request(rng: random.Random) -> bytes:
    path = rand_path(rng).encode("utf-8", "replace")
    lines = [rng.choice(METHODS).encode() + b" " + path + b" HTTP/1.1", b"Host: localhost"]
    if rng.random() < 0.5:
        lines.append(f"Authorization: Bearer {TOKEN}".encode())
    body = rng.randbytes(rng.choice([0, 0, 10, 300]))
    lines.append(b"Content-Length: %d" % len(body))
    lines.append(b"Connection: close")
    req = b"\r\n".join(lines) + b"\r\n\r\n" + body
    return mutate(rng, req, []) if rng.random() < 0.8 else req


RAW_SHARE = 0.25
"""Fraction of HTTP inputs written as raw (mutated) bytes rather than through the client."""


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # aiohttp logs a request it cannot parse (and answers it 400): that is the documented
        # refusal of a malformed request, not an error of ours.
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code == 400:
            return
        self.records.append(record)


RAW_READ_TIMEOUT_S = 0.3
"""How long a raw request waits for the first bytes of an answer; a mutated request that the server
still considers incomplete (a longer Content-Length, no blank line) gets none, which is fine."""


async def _raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(RAW_READ_TIMEOUT_S):
            return await reader.read(65536)
    except (ConnectionError, OSError, TimeoutError):
        return b""  # no answer yet: the server waits for the rest of a request (legitimate)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _fuzz_http(
    n: int, rng: random.Random, counts: Counts, sup: FakeSupervisor | None = None
) -> None:
    errors = ErrorLog()
    for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal"):
        logging.getLogger(name).addHandler(errors)
    sup = sup or FakeSupervisor(rng)
    manager = FakeManager()

    def census() -> Any:
        return build_census(sup.me, sup.members, sup.store)

    def routes(app: web.Application) -> None:
        add_service_routes(app, manager, census)  # type: ignore[arg-type]

    app = make_app(sup, TOKEN, routes)
    server = TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    port = server.port
    assert port is not None
    try:
        for i in range(n):
            if rng.random() < RAW_SHARE:
                data = raw_request(rng)
                resp = await _raw_exchange(port, data)
                status_line = resp.split(b"\r\n", 1)[0]
                parts = status_line.split(b" ")
                status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                what: Any = data
            else:
                method = rng.choice(METHODS)
                path = rand_path(rng)
                headers = rand_headers(rng)
                body = rng.randbytes(rng.choice([0, 0, 0, 16, 2048]))
                what = (method, path, headers, body[:64])
                try:
                    url = URL(f"http://127.0.0.1:{port}{path}", encoded=True)
                    req = client.session.request(method, url, headers=headers, data=body)
                    async with req as r:
                        status = r.status
                        await r.read()
                except ClientResponseError as e:
                    # The server refused a request line the client should not have sent (a
                    # space in the path) with a 400 and a body, which a HEAD client cannot parse.
                    status = e.status
                except (ClientError, ValueError, UnicodeError) as e:
                    counts.saw(f"client_refused:{type(e).__name__}")  # never left the client
                    continue
            if status >= 500 or errors.records:
                logged = "; ".join(r.getMessage() for r in errors.records)
                raise FuzzFailure("http", i, what, f"status {status}; server log: {logged}")
            counts.saw(f"status:{status}")
    finally:
        await client.close()
        for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal"):
            logging.getLogger(name).removeHandler(errors)


def fuzz_http(
    n: int, rng: random.Random, counts: Counts, sup: FakeSupervisor | None = None
) -> None:
    asyncio.run(_fuzz_http(n, rng, counts, sup))


def fuzz_semantic(n: int, rng: random.Random, counts: Counts) -> None:
    """Well-formed messages with extreme values, and the core's state checked after each
    (`bench/fuzz_semantic.py`, which imports this module's helpers)."""
    from bench.fuzz_semantic import fuzz_semantic as run

    run(n, rng, counts)


TARGETS: dict[str, Callable[[int, random.Random, Counts], None]] = {
    "codec": fuzz_codec,
    "ctl": fuzz_ctl,
    "http": fuzz_http,
    "semantic": fuzz_semantic,
}


def run(inputs: int, seed: int, targets: list[str]) -> dict[str, Counts]:
    per = -(-inputs // len(targets))
    results: dict[str, Counts] = {}
    for name in targets:
        counts = Counts()
        results[name] = counts
        t0 = time.perf_counter()
        try:
            TARGETS[name](per, random.Random(f"{seed}:{name}"), counts)
        finally:
            counts.seconds = time.perf_counter() - t0
    return results


def summary(results: dict[str, Counts]) -> Iterator[str]:
    for name, c in results.items():
        top = sorted(c.outcomes.items(), key=lambda kv: -kv[1])[:8]
        shown = ", ".join(f"{k} {v}" for k, v in top)
        yield f"{name:6s} {c.inputs:7d} inputs in {c.seconds:6.1f}s  ({shown})"
    total = sum(c.inputs for c in results.values())
    secs = sum(c.seconds for c in results.values())
    yield f"total  {total:7d} inputs in {secs:6.1f}s, no unhandled exception, no 5xx"


def quiet_logs() -> None:
    """The harness watches aiohttp's error log itself; the census's warnings about hostile
    rumors (by design) would only flood the terminal."""
    logging.basicConfig(level=logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--inputs", type=int, default=100_000, help="total, split between targets")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset")
    p.add_argument("--live-ring", action="store_true", help="attack a live ring instead")
    p.add_argument("--members", type=int, default=3, help="live ring size")
    p.add_argument("--profile", default="local", help="live ring gossip profile")
    p.add_argument("--attack-s", type=float, default=10.0, help="seconds each attack runs")
    p.add_argument("--attacks", default="", help="comma-separated subset of the live attacks")
    p.add_argument("--pysup-path", default=None, help="run the members from this source tree")
    a = p.parse_args(argv)
    if a.live_ring:
        return live_ring(a.members, a.profile, a.attack_s, a.pysup_path, a.attacks)
    targets = [t for t in a.targets.split(",") if t]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        p.error(f"unknown targets {unknown}; expected {list(TARGETS)}")
    quiet_logs()
    try:
        results = run(a.inputs, a.seed, targets)
    except FuzzFailure as e:
        print(f"FUZZ FAILURE (seed {a.seed}): {e}", file=sys.stderr)
        return 1
    for line in summary(results):
        print(line)
    return 0


def live_ring(members: int, profile: str, seconds: float, path: str | None, attacks: str) -> int:
    from bench import fuzz_ring
    from bench.measure import RESULTS_DIR, describe_machine, results_path

    only = [a for a in attacks.split(",") if a]
    unknown = [a for a in only if a not in fuzz_ring.ATTACKS]
    if unknown:
        print(f"unknown attacks {unknown}; expected {list(fuzz_ring.ATTACKS)}", file=sys.stderr)
        return 2
    results = fuzz_ring.run(members, profile, seconds, path, only)
    out = results_path("fuzz-ring", RESULTS_DIR)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": describe_machine(), "pysup_path": path, "members": members,
           "profile": profile, "attack_s": seconds, "results": results}  # fmt: skip
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(fuzz_ring.markdown(results))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

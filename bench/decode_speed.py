"""How long the codec takes to decode honest messages (the hot path of every member).

    python -m bench.decode_speed [--repeat 7]

Validation of hostile input (limits, incarnation bound, IP-literal addresses, plain values)
sits on this path, so it is measured here: microseconds per decode of four honest messages, the
best of `--repeat` timing runs (the minimum is the least disturbed by other jobs on the machine).

- ``ack``: an Ack with no piggyback (the most frequent packet);
- ``ping_full``: a Ping whose piggyback fills the 1400-byte datagram with member rumors;
- ``gossip_service``: a Gossip carrying four Service rumors with exported cfg and sys maps;
- ``pushpull_100``: a PushPull of a 100-member ring with a Service rumor per member.
"""

from __future__ import annotations

import argparse
import random
import sys
import timeit

from pysup.butterfly import codec
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import Ack, Gossip, MemberRumor, Message, Ping, PushPull, ServiceRumor
from pysup.service.context import rumor_sys


def _member(rng: random.Random, i: int) -> Member:
    return Member(rng.randbytes(16).hex(), rng.randrange(1, 50), f"10.0.{i // 250}.{i % 250}", 9638)


def _service(rng: random.Random, member_id: str) -> ServiceRumor:
    cfg = {"port": 6379, "bind": ["0.0.0.0"], "tls": {"enabled": False, "ciphers": "HIGH"}}
    # The sys keys a supervisor really gossips (the same function builds them).
    sys_map = rumor_sys({"ip": "10.0.0.1", "hostname": "redis-0"})
    return ServiceRumor(
        member_id, "redis.default", rng.randrange(2**40), "core/redis/7.0.0/20260101000000",
        True, cfg, sys_map, "Ok", "f" * 16,
    )  # fmt: skip


def messages(seed: int = 1) -> dict[str, Message]:
    rng = random.Random(seed)
    me = _member(rng, 0)
    members = [_member(rng, i) for i in range(1, 101)]
    rumors = tuple(MemberRumor(m.with_health(Health.SUSPECT), me.id) for m in members[:22])
    ping = Ping(rng.randrange(2**32), me, members[0].id, rumors)
    assert len(codec.encode(ping)) <= 1400, len(codec.encode(ping))
    services = tuple(_service(rng, m.id) for m in members)
    return {
        "ack": Ack(rng.randrange(2**32), me),
        "ping_full": ping,
        "gossip_service": Gossip(me, services[:4]),
        "pushpull_100": PushPull(me, (me, *members), services),
    }


def measure(repeat: int) -> dict[str, float]:
    """Microseconds per decode, best of `repeat` runs."""
    out: dict[str, float] = {}
    for name, msg in messages().items():
        data = codec.encode(msg)
        limit = codec.MAX_DATAGRAM if not isinstance(msg, PushPull) else codec.MAX_FRAME
        assert codec.decode(data, None, limit) == msg
        timer = timeit.Timer(lambda d=data, lim=limit: codec.decode(d, None, lim))  # type: ignore[misc]
        number, _ = timer.autorange()
        best = min(timer.repeat(repeat, number)) / number
        out[name] = best * 1e6
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.decode_speed", description=__doc__)
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args(argv)
    for name, us in measure(a.repeat).items():
        size = len(codec.encode(messages()[name]))
        print(f"{name:16s} {size:7d} B  {us:9.2f} us/decode")
    return 0


if __name__ == "__main__":
    sys.exit(main())

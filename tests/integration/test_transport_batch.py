"""The `asyncio` datagram back end on real sockets (127.0.0.1): it reads every queued datagram in
one readiness callback, sends, and closes cleanly.

Why it matters: a worker hosting 500 members on one event loop fell behind a join burst, and
asyncio's own datagram endpoint reads one datagram per socket per loop iteration, so an ack
queued behind others waited several full iterations (bench/README.md, "N=1000 on real sockets").
"""

from __future__ import annotations

import asyncio
import socket

from pysup.butterfly.effects import Addr
from pysup.butterfly.transport import RECV_BATCH, Transport


async def _no_stream(data: bytes, src: Addr) -> bytes | None:
    return None


def test_datagrams_queued_while_the_loop_was_busy_arrive_in_one_callback() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], Addr]:
        got: list[bytes] = []
        t = Transport("127.0.0.1", 0, lambda d, a: got.append(d), _no_stream, udp_backend="asyncio")
        await t.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
                peer.bind(("127.0.0.1", 0))
                # Loopback delivers inside sendto: all 10 are queued before the loop runs again.
                for i in range(10):
                    peer.sendto(b"d%d" % i, t.bound)
                # One yield lets the loop poll the socket; the second lets the reader run (it is
                # queued behind our own wake-up). One datagram per callback would give 1 here.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                in_one_callback = list(got)
                peer.setblocking(False)
                t.send(b"reply", peer.getsockname())
                echoed = [peer.recv(100)]
            return in_one_callback, echoed, t.bound
        finally:
            await t.close()

    in_one_callback, echoed, bound = asyncio.run(scenario())
    assert in_one_callback == [b"d%d" % i for i in range(10)]
    assert echoed == [b"reply"]
    assert RECV_BATCH > 10  # the batch bound did not cut this test short
    # Closed: the port is free again for UDP.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(bound)

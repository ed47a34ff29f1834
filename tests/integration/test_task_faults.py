"""A task that dies stays dead (issue 13, item 6): in-process supervisors and runners on real UDP
sockets on 127.0.0.1, with faults injected where the disk or the descriptor table would fail.

What it proves (each test failed on the code before this change, as noted):

- ENOSPC or EMFILE while saving the incarnation during a refutation loses nothing but the save:
  the member still answers probes, its refutation went out, and `state.save_failed` is logged.
  Before: the exception reached the datagram receive task, which died silently; the member stopped
  answering and was Confirmed by its peers while its process ran.
- an event listener that raises loses that one datagram: later probes are answered and the fault
  is counted (`pysup_task_faults_total{task="gossip.effect"}`). Before: the receive task died.
- a gossip timer tick that raises is re-armed: the timer keeps ticking. Before: never re-armed, the
  member stopped probing for good.
- a critical task that dies stops the supervisor with exit status 70, and `/healthz` answers 503
  naming it meanwhile. Before: the task died silently and the process ran on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import random
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncio_dgram
import pytest

from pysup.butterfly import codec
from pysup.butterfly.config import PRESETS
from pysup.butterfly.core import SwimCore
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import Ack, Gossip, MemberRumor, Ping
from pysup.butterfly.runner import Runner
from pysup.daemon import EXIT_TASK_DIED, Supervisor
from pysup.joining import Joiner
from pysup.metrics import Metrics
from tests.integration.daemons import in_process_settings
from tests.util import async_wait_for, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FAKE_ID = "f" * 32
ANSWER_WITHIN_S = 3.0
"""A probe of a live member on loopback is answered in milliseconds; 3 s allows a loaded box."""


class Prober:
    """A fake member on its own UDP socket that pings a member and watches for the ack."""

    def __init__(self, sock: Any, port: int) -> None:
        self.sock = sock
        self.me = Member(FAKE_ID, 1, "127.0.0.1", port)
        self.seq = 0

    @classmethod
    async def open(cls) -> Prober:
        sock = await asyncio_dgram.bind(("127.0.0.1", 0))
        return cls(sock, int(sock.sockname[1]))

    async def send(self, msg: Any, port: int) -> None:
        await self.sock.send(codec.encode(msg), ("127.0.0.1", port))

    async def ping(self, target: Member, within: float = ANSWER_WITHIN_S) -> Ack | None:
        """Ping `target`; its Ack (our seq), or None when none came in time."""
        self.seq += 1
        await self.send(Ping(self.seq, self.me, target.id), target.gossip_port)
        try:
            async with asyncio.timeout(within):
                while True:
                    data, _ = await self.sock.recv()
                    msg = codec.decode(data)
                    if isinstance(msg, Ack) and msg.seq == self.seq:
                        return msg
        except TimeoutError:
            return None

    async def suspect(self, target: Member) -> None:
        """Tell `target` the ring suspects it: it must refute with a higher incarnation."""
        rumor = MemberRumor(target._replace(health=Health.SUSPECT), FAKE_ID)
        await self.send(Gossip(self.me, (rumor,)), target.gossip_port)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def sup(tmp_path: Path) -> AsyncIterator[Supervisor]:
    s = Supervisor(in_process_settings(tmp_path), env={})
    await s.start()
    try:
        yield s
    finally:
        await s.shutdown()


@pytest.fixture
async def prober() -> AsyncIterator[Prober]:
    p = await Prober.open()
    try:
        yield p
    finally:
        p.close()


def failing(err: int) -> Callable[..., None]:
    def save(*args: object) -> None:
        raise OSError(err, errno.errorcode[err].replace("E", "", 1).lower())

    return save


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EMFILE])
async def test_a_refutation_whose_save_fails_keeps_the_member_answering(
    sup: Supervisor, prober: Prober, err: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = sup.ring.me
    assert await prober.ping(me) is not None, "the member answers before the fault"
    monkeypatch.setattr(sup.state, "save_incarnation", failing(err))

    await prober.suspect(me)
    await async_wait_for(
        lambda: _true(sup.ring.me.incarnation > me.incarnation), 5.0, what="a refutation"
    )
    ack = await prober.ping(me)
    assert ack is not None, "the member stopped answering probes after a failed save"
    assert ack.sender.incarnation == me.incarnation + 1, "its refutation is what it gossips"
    # Once the disk is back, the save loop (and shutdown) persist the refuted incarnation.
    monkeypatch.undo()
    sup.save_state()
    assert int((Path(sup.settings.state_dir) / "INCARNATION").read_text()) == me.incarnation + 1


async def _true(value: bool) -> bool:
    return value


async def runner(listener: Callable[[Any], None] | None = None) -> Runner:
    port = free_port()
    me = Member("a" * 32, 1, "127.0.0.1", port)
    core = SwimCore(PRESETS["local"], me, random.Random(1), asyncio.get_running_loop().time())
    r = Runner(core, "127.0.0.1", port, metrics=Metrics(), listener=listener)
    await r.start()
    return r


async def test_a_listener_that_raises_loses_one_datagram_not_the_receive_loop(
    prober: Prober,
) -> None:
    def listener(event: Any) -> None:
        raise RuntimeError("a bug in an event listener")

    r = await runner(listener)
    try:
        # The first ping makes the prober a member: a MemberChanged event, and the listener raises.
        await prober.ping(r.core.me)
        assert r.faults.counts.get("gossip.effect", 0) >= 1
        assert await prober.ping(r.core.me) is not None, "the receive loop died"
        assert r.metrics is not None
        sample = r.metrics.registry.get_sample_value(
            "pysup_task_faults_total", {"task": "gossip.effect", "error": "RuntimeError"}
        )
        assert sample is not None and sample >= 1
    finally:
        await r.close()


async def test_a_timer_tick_that_raises_is_rearmed(monkeypatch: pytest.MonkeyPatch) -> None:
    r = await runner()
    try:
        real_tick = r.core.tick
        calls: list[float] = []

        def tick(now: float) -> Any:
            calls.append(now)
            if len(calls) == 1:
                raise RuntimeError("a bug in one tick")
            return real_tick(now)

        monkeypatch.setattr(r.core, "tick", tick)
        r._rearm(not_before=0.0)  # the first deadline may be far off: fire soon
        r._fire()  # the faulty tick, as the loop would run it
        await async_wait_for(lambda: _true(len(calls) >= 3), 5.0, what="ticks after a fault")
        assert r.faults.counts["gossip.timer"] == 1
    finally:
        await r.close()


async def test_a_critical_task_that_dies_stops_the_supervisor_and_fails_healthz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_seed = dataclasses.replace(in_process_settings(tmp_path), peers=("127.0.0.1:9",))
    s = Supervisor(with_seed, env={})

    async def broken(self: Joiner) -> list[tuple[str, int]]:
        raise RuntimeError("the seed list cannot be read")

    monkeypatch.setattr(Joiner, "seed_addrs", broken)
    await s.start()
    try:
        await asyncio.wait_for(s.stopping.wait(), 10.0)
        assert s.exit_code == EXIT_TASK_DIED
        assert any("ring.join" in p for p in s.liveness()), s.liveness()
        status, body = await asyncio.to_thread(get, f"http://127.0.0.1:{s.http_port}/healthz")
        assert status == 503
        assert "ring.join" in body["reason"] and "seed list" in body["reason"]
    finally:
        await s.shutdown()


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return int(e.code), json.loads(e.read())

"""pysup on real UDP/TCP sockets: many members per process, spread over K worker processes.

    python -m bench.udp --members 100 [--workers 2] [--profile lan] [--uvloop] [--repeat 2]

Each worker process hosts its share of the ring as `Runner`s (one SwimCore each) on 127.0.0.1
ports of its own, on one event loop. Workers watch their members' events and report, per member,
the CLOCK_MONOTONIC time at which a condition first held; CLOCK_MONOTONIC is one clock for all
processes on Linux, so the parent subtracts its own stimulus time from them. The parent (plain
blocking code, no event loop) orchestrates the scenarios:

- ``bootstrap``: every runner is bound first; t0 = the parent sends "join the seed" to all
  workers. Sample per member: when it lists all N members Alive.
- ``join``: a new member, alone in a process of its own (started and bound beforehand); t0 = the
  parent tells it to join. Sample per existing member: when it lists the newcomer Alive.
- ``event``: a ``ServiceConfigRumor`` (a ``config apply`` of a small TOML) published at a random
  member; sample per other member: when the rumor arrives (`RumorChanged`).
- ``failure_detection``: ``kill -9`` of the process hosting that newcomer (so the crash is real);
  sample per survivor: when it lists the victim Confirmed.
- ``cpu`` / ``bytes`` / ``rss``: an idle window on the converged ring: CPU (``/proc``) per member
  per second, gossip bytes sent per member per second (the runners' own counters, UDP and TCP),
  resident MiB per member and per process.
- ``cpu_churn``: CPU per member per second while one member a second crashes and a fresh one joins.
- ``false_positives``: a window with datagram loss injected at every receiver (each datagram
  dropped with probability ``loss`` before decoding, like an iptables ``statistic`` rule);
  sample = live members that anyone marked Confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from bench.measure import (
    Result,
    SampleAccumulator,
    cpu_seconds,
    percentile,
    rss_mib,
    summary_json,
)
from pysup.butterfly.config import PRESETS
from pysup.butterfly.core import SwimCore
from pysup.butterfly.effects import MemberChanged, RumorChanged, SelfChanged
from pysup.butterfly.member import Health, Member, new_member_id
from pysup.butterfly.messages import Message, RumorKind, ServiceConfigRumor
from pysup.butterfly.runner import Runner

HOST = "127.0.0.1"
SYSTEM = "pysup-udp"
FLUSH_S = 0.05
"""Workers batch their reports to the parent for this long."""
PROFILE_ENV = "PYSUP_UDP_PROFILE"
"""Set to a directory: each worker runs under cProfile and writes `worker-<pid>.prof` there when
it is closed (cProfile roughly doubles the CPU cost, so profile at a smaller N than you measure)."""
CONFIG_TOML = b'[http]\nport = 8080\nworkers = 4\n\n[log]\nlevel = "info"\n'
"""The `config apply` payload used for the dissemination rumor (small: piggybacked on UDP)."""

# --- worker side ---------------------------------------------------------------------------


class BenchRunner(Runner):
    """A Runner that counts its traffic in plain ints (prometheus counters are too heavy for
    hundreds of members per process) and can drop received datagrams to emulate packet loss."""

    def __init__(self, *args: Any, loss: list[float], rng: random.Random, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.bytes_out = 0
        self.bytes_in = 0
        self.packets_out = 0
        self.packets_in = 0
        self.dropped = 0
        self._loss = loss
        self._drop_rng = rng

    def _count_in(self, msg: Message, size: int) -> None:
        self.bytes_in += size
        self.packets_in += 1

    def _count_out(self, msg: Message, size: int) -> None:
        self.bytes_out += size
        self.packets_out += 1

    def _on_datagram(self, data: bytes, src: tuple[str, int]) -> None:
        if self._loss[0] and self._drop_rng.random() < self._loss[0]:
            self.dropped += 1
            return
        super()._on_datagram(data, src)


@dataclass
class _Watch:
    kind: str
    args: tuple[Any, ...]
    done: set[int] = field(default_factory=set)


class _Worker:
    """One worker process: its runners, the watches the parent asked for, the command pipe."""

    def __init__(self, conn: Connection, profile: str, seed: int) -> None:
        self.conn = conn
        self.config = PRESETS[profile]
        self.rng = random.Random(seed)
        self.runners: dict[int, BenchRunner] = {}
        self.alive: dict[int, int] = {}
        self.watches: dict[int, _Watch] = {}
        self.pending: dict[int, list[tuple[Any, ...]]] = {}
        self.loss = [0.0]
        self.seed_addr: tuple[str, int] | None = None
        self.retry_at: dict[int, float] = {}
        self.retry_delay: dict[int, float] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stop = asyncio.Event()

    # events ------------------------------------------------------------------------------

    def _listener(self, idx: int) -> Callable[[MemberChanged | RumorChanged | SelfChanged], None]:
        def on_event(e: MemberChanged | RumorChanged | SelfChanged) -> None:
            t = time.monotonic()
            if isinstance(e, MemberChanged):
                h = e.member.health
                if h == Health.ALIVE and e.previous != Health.ALIVE:
                    self.alive[idx] += 1
                elif h != Health.ALIVE and e.previous == Health.ALIVE:
                    self.alive[idx] -= 1
            if self.watches:
                for wid, w in self.watches.items():
                    self._check(wid, w, idx, e, t)

        return on_event

    def _check(
        self, wid: int, w: _Watch, idx: int, e: MemberChanged | RumorChanged | SelfChanged, t: float
    ) -> None:
        if w.kind == "confirm_any":
            if isinstance(e, MemberChanged) and e.member.health == Health.CONFIRMED:
                self._hit(wid, (idx, t, e.member.id))
            return
        if idx in w.done:
            return
        ok = False
        if w.kind == "alive":
            ok = self.alive[idx] >= w.args[0]
        elif w.kind == "member" and isinstance(e, MemberChanged):
            ok = e.member.id == w.args[0] and e.member.health >= w.args[1]
            if w.args[1] == Health.ALIVE:
                ok = ok and e.member.health == Health.ALIVE
        elif w.kind == "rumor" and isinstance(e, RumorChanged):
            r = e.rumor
            ok = r.identity == w.args[0] and getattr(r, "incarnation", 0) >= w.args[1]
        if ok:
            w.done.add(idx)
            self._hit(wid, (idx, t))

    def _holds_now(self, w: _Watch, idx: int) -> bool:
        core = self.runners[idx].core
        if w.kind == "alive":
            return self.alive[idx] >= w.args[0]
        if w.kind == "member":
            m = core.member(w.args[0])
            if m is None:
                return False
            return m.health == Health.ALIVE if w.args[1] == Health.ALIVE else m.health >= w.args[1]
        if w.kind == "rumor":
            kind, key, rid = w.args[0]
            r = core.store.get(kind, key, rid)
            return r is not None and getattr(r, "incarnation", 0) >= w.args[1]
        return False

    def _hit(self, wid: int, hit: tuple[Any, ...]) -> None:
        self.pending.setdefault(wid, []).append(hit)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_S, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        pending, self.pending = self.pending, {}
        for wid, hits in pending.items():
            self.conn.send(("hits", wid, hits))

    # commands ----------------------------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            msg = self.conn.recv()
        except EOFError:
            self.stop.set()
            return
        req, cmd, args = msg
        task = asyncio.ensure_future(self._run(req, cmd, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, req: int, cmd: str, args: tuple[Any, ...]) -> None:
        try:
            reply = await getattr(self, f"cmd_{cmd}")(*args)
        except Exception as e:  # reported to the parent, which raises
            reply = {"error": f"{type(e).__name__}: {e}"}
        self._flush()
        self.conn.send(("reply", req, reply))

    async def _new_runner(self, idx: int) -> BenchRunner:
        loop = asyncio.get_running_loop()
        for _attempt in range(20):
            # The member record carries its port, so pick one before building the core.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((HOST, 0))
                port = int(s.getsockname()[1])
            me = Member(new_member_id(self.rng), 1, HOST, port, Health.ALIVE)
            runner = BenchRunner(
                SwimCore(self.config, me, random.Random(self.rng.getrandbits(64)), loop.time()),
                HOST,
                port,
                loss=self.loss,
                rng=random.Random(self.rng.getrandbits(64)),
                listener=self._listener(idx),
                udp_backend="asyncio",  # hundreds of members a process: the cheaper back end
            )
            try:
                await runner.start()
            except OSError:
                continue  # taken meanwhile, or its TCP twin is: try another port
            self.runners[idx] = runner
            self.alive[idx] = 0
            return runner
        raise RuntimeError("could not bind a UDP+TCP port pair")

    async def cmd_start(self, indices: list[int]) -> list[tuple[int, str, int]]:
        out = []
        for idx in indices:
            r = await self._new_runner(idx)
            out.append((idx, r.core.me.id, r.transport.port))
        return out

    async def cmd_join(self, seed: tuple[str, int], indices: list[int] | None) -> float:
        """Join every runner (or `indices`) to the seed; retried with backoff while alone."""
        self.seed_addr = tuple(seed)  # type: ignore[assignment]
        now = time.monotonic()
        for idx in self.runners if indices is None else indices:
            r = self.runners[idx]
            if r.transport.bound[1] == seed[1]:
                continue
            r.join([self.seed_addr])  # type: ignore[list-item]
            self.retry_delay[idx] = self.config.join_retry_base_s
            self.retry_at[idx] = now + self.config.join_retry_base_s * self.rng.uniform(0.5, 1.5)
        return now

    async def _join_retry_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for idx, at in list(self.retry_at.items()):
                r = self.runners.get(idx)
                if r is None or not r.core.is_alone():
                    del self.retry_at[idx]
                    continue
                if now >= at and self.seed_addr is not None:
                    r.join([self.seed_addr])
                    d = min(self.config.join_retry_max_s, self.retry_delay[idx] * 2)
                    self.retry_delay[idx] = d
                    self.retry_at[idx] = now + d * self.rng.uniform(0.5, 1.5)

    async def cmd_watch(self, wid: int, kind: str, args: tuple[Any, ...]) -> int:
        if kind == "rumor":
            args = ((RumorKind(args[0][0]), args[0][1], args[0][2]), args[1])
        elif kind == "member":
            args = (args[0], Health(args[1]))
        w = _Watch(kind, tuple(args))
        self.watches[wid] = w
        t = time.monotonic()
        if kind != "confirm_any":
            for idx in self.runners:
                if self._holds_now(w, idx):
                    w.done.add(idx)
                    self._hit(wid, (idx, t))
        return len(self.runners)

    async def cmd_unwatch(self, wid: int) -> None:
        self.watches.pop(wid, None)

    async def cmd_publish(self, idx: int, group: str, incarnation: int) -> float:
        t0 = time.monotonic()
        self.runners[idx].publish(ServiceConfigRumor(group, incarnation, CONFIG_TOML))
        return t0

    async def cmd_stats(self) -> dict[str, Any]:
        rs = list(self.runners.values())
        return {
            "members": len(rs),
            "bytes_out": sum(r.bytes_out for r in rs),
            "bytes_in": sum(r.bytes_in for r in rs),
            "packets_out": sum(r.packets_out for r in rs),
            "packets_in": sum(r.packets_in for r in rs),
            "dropped": sum(r.dropped for r in rs),
            "udp_dropped_overload": sum(r.transport.stats.udp_dropped_overload for r in rs),
            "udp_send_errors": sum(r.transport.stats.udp_send_errors for r in rs),
            "stream_errors": sum(r.transport.stats.stream_errors for r in rs),
            "local_health_max": max((r.core.local_health for r in rs), default=0),
            "t": time.monotonic(),
        }

    async def cmd_census(self) -> list[dict[str, Any]]:
        """Per member: how many members it knows by health, its incarnation, queue depth."""
        out = []
        for idx, r in self.runners.items():
            counts = {h.name.lower(): 0 for h in Health}
            for m in r.core.members():
                counts[m.health.name.lower()] += 1
            counts.update(
                idx=idx,
                incarnation=r.core.me.incarnation,
                queue=r.core.queue_depth(),
                health=r.core.local_health,
                alive_count=self.alive[idx],
            )
            out.append(counts)
        return out

    async def cmd_loss(self, p: float) -> None:
        self.loss[0] = p

    async def cmd_replace(self, idx: int) -> tuple[str, int]:
        """Crash runner idx (no leave) and start a fresh member in its place, joined."""
        old = self.runners.pop(idx)
        await old.close()
        r = await self._new_runner(idx)
        if self.seed_addr is not None:
            await self.cmd_join(self.seed_addr, [idx])
        return r.core.me.id, r.transport.port

    async def cmd_close(self) -> None:
        await asyncio.gather(*(r.close() for r in self.runners.values()))
        self.runners.clear()
        self.stop.set()

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_readable)
        retry = asyncio.ensure_future(self._join_retry_loop())
        await self.stop.wait()
        retry.cancel()
        loop.remove_reader(self.conn.fileno())


def _worker_main(conn: Connection, profile: str, seed: int, use_uvloop: bool) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    factory = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    prof_dir = os.environ.get(PROFILE_ENV)
    prof = None
    if prof_dir:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(_Worker(conn, profile, seed).main())
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.path.join(str(prof_dir), f"worker-{os.getpid()}.prof"))


# --- parent side ---------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker process died or a command failed in it."""


@dataclass
class _Proc:
    proc: Any  # multiprocessing.Process (SpawnProcess)
    conn: Connection
    indices: list[int] = field(default_factory=list)


class UdpRing:
    """The parent's view of a ring hosted by worker processes; close() always kills them."""

    def __init__(
        self,
        n: int,
        *,
        workers: int = 2,
        profile: str = "lan",
        use_uvloop: bool = False,
        seed: int | None = None,
    ) -> None:
        if n < 2:
            raise ValueError("a ring needs at least 2 members")
        self.n = n
        self.profile = profile
        self.config = PRESETS[profile]
        self.use_uvloop = use_uvloop
        self.rng = random.Random(seed)
        self.k = max(1, min(workers, n))
        self.procs: list[_Proc] = []
        self.where: dict[int, _Proc] = {}
        self.ids: dict[int, str] = {}
        self.ports: dict[int, int] = {}
        self.dead: set[int] = set()
        self._req = 0
        self._wid = 0
        self._replies: dict[int, Any] = {}
        self.hits: dict[int, list[tuple[Any, ...]]] = {}
        self._ctx = mp.get_context("spawn")
        self.victim: int | None = None
        self.last_kill: dict[str, float | None] = {}
        """`kill_victim`'s suspicion figures: first Suspect seen anywhere, p50 over survivors."""

    # plumbing ----------------------------------------------------------------------------

    def _spawn(self, indices: list[int]) -> _Proc:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.profile, self.rng.getrandbits(64), self.use_uvloop),
            daemon=True,
        )
        proc.start()
        child.close()
        p = _Proc(proc, parent, list(indices))
        self.procs.append(p)
        for i in indices:
            self.where[i] = p
        return p

    def _send(self, p: _Proc, cmd: str, *args: Any) -> int:
        self._req += 1
        p.conn.send((self._req, cmd, args))
        return self._req

    def _pump(self, timeout: float) -> None:
        """Read whatever the workers sent within `timeout` seconds."""
        for c in wait([p.conn for p in self.procs], timeout):
            try:
                while c.poll():
                    kind, key, payload = c.recv()
                    if kind == "hits":
                        self.hits.setdefault(key, []).extend(payload)
                    else:
                        self._replies[key] = payload
            except (EOFError, OSError):
                continue

    def _gather(self, reqs: dict[int, _Proc], timeout: float = 120.0) -> dict[int, Any]:
        deadline = time.monotonic() + timeout
        while not all(r in self._replies for r in reqs):
            for r, p in reqs.items():
                if r not in self._replies and not p.proc.is_alive():
                    raise WorkerError(f"worker {p.proc.pid} died (exit {p.proc.exitcode})")
            if time.monotonic() > deadline:
                raise WorkerError(f"workers did not answer within {timeout:g}s")
            self._pump(0.1)
        out = {r: self._replies.pop(r) for r in reqs}
        for v in out.values():
            if isinstance(v, dict) and "error" in v:
                raise WorkerError(v["error"])
        return out

    def _call_all(self, cmd: str, *args: Any, procs: Iterable[_Proc] | None = None) -> list[Any]:
        targets = [p for p in (self.procs if procs is None else procs) if p.proc.is_alive()]
        reqs = {self._send(p, cmd, *args): p for p in targets}
        got = self._gather(reqs)
        return [got[r] for r in reqs]

    def _call(self, p: _Proc, cmd: str, *args: Any, timeout: float = 120.0) -> Any:
        req = self._send(p, cmd, *args)
        return self._gather({req: p}, timeout)[req]

    def _start_members(self, p: _Proc, indices: list[int]) -> None:
        for idx, mid, port in self._call(p, "start", indices):
            self.ids[idx], self.ports[idx] = mid, port

    @property
    def live(self) -> list[int]:
        return [i for i in self.ids if i not in self.dead]

    @property
    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.procs if p.proc.is_alive()]

    def watch(self, kind: str, *args: Any, observers: Iterable[int] | None = None) -> int:
        self._wid += 1
        wid = self._wid
        self.hits[wid] = []
        procs = {self.where[i].proc.pid: self.where[i] for i in (observers or self.live)}
        self._call_all("watch", wid, kind, args, procs=procs.values())
        return wid

    def wait_hits(
        self, wid: int, observers: set[int], t0: float, wait_s: float
    ) -> tuple[list[float], int]:
        """Per observer, seconds from t0 until its hit; (samples, observers that never hit)."""
        deadline = time.monotonic() + wait_s
        while True:
            seen = {h[0]: h[1] for h in self.hits.get(wid, [])}
            if observers <= seen.keys() or time.monotonic() > deadline:
                break
            self._pump(0.05)
        self._call_all("unwatch", wid)
        self._pump(0.0)
        seen = {}
        for h in self.hits.pop(wid, []):
            seen.setdefault(h[0], h[1])
        samples = [max(0.0, seen[i] - t0) for i in observers if i in seen]
        return samples, len(observers) - len(samples)

    def close(self) -> None:
        for p in self.procs:
            if p.proc.is_alive():
                with contextlib.suppress(Exception):
                    self._send(p, "close")
        deadline = time.monotonic() + 10
        for p in self.procs:
            p.proc.join(max(0.1, deadline - time.monotonic()))
            if p.proc.is_alive():
                p.proc.kill()
                p.proc.join(5)
            p.conn.close()
        self.procs.clear()

    def __enter__(self) -> UdpRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # scenarios ---------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the K workers and bind all N members (not yet joined)."""
        shares = [list(range(w, self.n, self.k)) for w in range(self.k)]
        procs = [self._spawn(s) for s in shares]
        reqs = {self._send(p, "start", p.indices): p for p in procs}
        for got in self._gather(reqs, timeout=60 + self.n * 0.1).values():
            for idx, mid, port in got:
                self.ids[idx], self.ports[idx] = mid, port

    def bootstrap(self, wait_s: float | None = None) -> tuple[list[float], int]:
        """All members join member 0 at once; per member, time until it lists N alive."""
        wait_s = wait_s if wait_s is not None else 60.0 + 0.1 * self.n
        wid = self.watch("alive", self.n - 1)
        t0 = time.monotonic()
        self._call_all("join", (HOST, self.ports[0]), None)
        return self.wait_hits(wid, set(self.live), t0, wait_s)

    def join_victim(self, wait_s: float = 30.0) -> tuple[list[float], int]:
        """A new member alone in its own process joins; per member, time until it is Alive."""
        idx = max(self.ids) + 1
        p = self._spawn([idx])
        self._start_members(p, [idx])
        self.victim = idx
        observers = set(self.live) - {idx}
        wid = self.watch("member", self.ids[idx], int(Health.ALIVE), observers=observers)
        t0 = time.monotonic()
        self._call(p, "join", (HOST, self.ports[0]), None)
        return self.wait_hits(wid, observers, t0, wait_s)

    def rumor(self, incarnation: int, wait_s: float = 30.0) -> tuple[list[float], int]:
        """Publish a config rumor at a random live member; per other member, arrival time."""
        origin = self.rng.choice(self.live)
        group = "bench.default"
        observers = set(self.live) - {origin}
        wid = self.watch("rumor", (RumorKind.SERVICE_CONFIG.value, group, "config"), incarnation)
        t0 = self._call(self.where[origin], "publish", origin, group, incarnation)
        return self.wait_hits(wid, observers, t0, wait_s)

    def kill_victim(self, wait_s: float | None = None) -> tuple[list[float], int]:
        """kill -9 the victim's process; per survivor, time until it lists the victim Confirmed."""
        assert self.victim is not None
        cfg = self.config
        if wait_s is None:
            wait_s = 30.0 + 1.5 * (
                cfg.suspicion_max_s(self.n) + cfg.probe_interval_s * cfg.awareness_max_multiplier
            )
        idx, self.victim = self.victim, None
        p = self.where[idx]
        observers = set(self.live) - {idx}
        wid = self.watch("member", self.ids[idx], int(Health.CONFIRMED), observers=observers)
        suspect = self.watch("member", self.ids[idx], int(Health.SUSPECT), observers=observers)
        os.kill(p.proc.pid, signal.SIGKILL)
        t0 = time.monotonic()
        p.proc.join(5)
        self.procs.remove(p)
        p.conn.close()
        self.dead.add(idx)
        got = self.wait_hits(wid, observers, t0, wait_s)
        # When each survivor first saw it Suspect (or worse): the earliest is the first failed
        # probe's suspicion, and Confirmed minus that is how long the suspicion ran, which says
        # how many independent confirmations it got (Lifeguard shortens it with each).
        seen_suspect, _ = self.wait_hits(suspect, observers, t0, 0.0)
        self.last_kill = {
            "first_suspect_s": min(seen_suspect) if seen_suspect else None,
            "suspect_seen_p50_s": percentile(seen_suspect, 50.0) if seen_suspect else None,
        }
        return got

    def census(self) -> list[dict[str, Any]]:
        return [c for got in self._call_all("census") for c in got]

    def snapshot(self) -> tuple[float, dict[int, float], dict[str, float]]:
        cpu = cpu_seconds(self.pids)
        stats = self._call_all("stats")
        total: dict[str, float] = {}
        for s in stats:
            for k, v in s.items():
                total[k] = (
                    max(total.get(k, 0), v)
                    if k in ("t", "local_health_max")
                    else (total.get(k, 0) + v)
                )
        return time.monotonic(), cpu, total

    def usage(self, window: float) -> dict[str, Any]:
        """CPU s/s and bytes/s per member over `window` seconds of whatever runs meanwhile."""
        t_a, cpu_a, st_a = self.snapshot()
        time.sleep(window)  # no pumping needed: no watches are active, workers stay quiet
        t_b, cpu_b, st_b = self.snapshot()
        wall = t_b - t_a
        members = st_b["members"]
        cpu = sum(cpu_b[p] - cpu_a[p] for p in cpu_a if p in cpu_b)
        rss = rss_mib(self.pids)
        return {
            "cpu_per_member": cpu / wall / members,
            "bytes_per_member": (st_b["bytes_out"] - st_a["bytes_out"]) / wall / members,
            "packets_per_member": (st_b["packets_out"] - st_a["packets_out"]) / wall / members,
            "rss_per_member": sum(rss.values()) / members,
            "rss_per_process": list(rss.values()),
            "members": members,
            "wall": wall,
            "local_health_max": st_b["local_health_max"],
            "udp_dropped_overload": st_b["udp_dropped_overload"],
        }

    def churn(self, window: float, rate: float = 1.0) -> dict[str, Any]:
        """Usage while `rate` members a second crash and are replaced by fresh joiners."""
        candidates = [i for i in self.live if i != 0 and i != self.victim]
        t_a, cpu_a, _ = self.snapshot()
        end = t_a + window
        nxt = t_a
        replaced = 0
        while time.monotonic() < end:
            if time.monotonic() >= nxt:
                idx = self.rng.choice(candidates)
                mid, port = self._call(self.where[idx], "replace", idx)
                self.ids[idx], self.ports[idx] = mid, port
                replaced += 1
                nxt += 1.0 / rate
            self._pump(max(0.0, min(nxt, end) - time.monotonic()))
        t_b, cpu_b, st = self.snapshot()
        cpu = sum(cpu_b[p] - cpu_a[p] for p in cpu_a if p in cpu_b)
        return {"cpu_per_member": cpu / (t_b - t_a) / st["members"], "replaced": replaced}

    def false_positives(self, loss: float, window: float) -> dict[str, Any]:
        """Members wrongly Confirmed during `window` seconds of `loss` datagram loss."""
        live_ids = {self.ids[i] for i in self.live}
        wid = self.watch("confirm_any")
        self._call_all("loss", loss)
        end = time.monotonic() + window
        while time.monotonic() < end:
            self._pump(min(1.0, max(0.0, end - time.monotonic())))
        self._call_all("loss", 0.0)
        self._call_all("unwatch", wid)
        self._pump(0.0)
        wrong = {h[2] for h in self.hits.pop(wid, []) if h[2] in live_ids}
        return {"false_positives": len(wrong), "loss": loss, "window_s": window}


# --- the benchmark -------------------------------------------------------------------------


def run_udp_bench(
    n: int,
    repeat: int = 2,
    *,
    profile: str = "lan",
    workers: int = 2,
    use_uvloop: bool = False,
    events: int = 3,
    idle_window: float = 10.0,
    churn_window: float = 10.0,
    loss: float = 0.1,
    loss_window: float = 30.0,
    settle: float = 8.0,
    seed: int | None = None,
    system: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Every metric at ring size n on real sockets; one fresh ring per repeat. Churn and loss
    windows run in the last repeat only (set their window to 0 to skip them)."""
    rng = random.Random(seed)
    say = progress or (lambda _msg: None)
    system = system or SYSTEM
    acc = {m: SampleAccumulator() for m in ("bootstrap", "join", "event", "failure_detection")}
    idle: list[dict[str, Any]] = []
    churn: list[dict[str, Any]] = []
    fps: list[dict[str, Any]] = []
    cfg = PRESETS[profile]
    for r in range(repeat):
        tag = f"{system} n={n} {r + 1}/{repeat}"
        with UdpRing(
            n, workers=workers, profile=profile, use_uvloop=use_uvloop, seed=rng.getrandbits(64)
        ) as ring:
            say(f"{tag}: start")
            ring.start()
            say(f"{tag}: bootstrap")
            acc["bootstrap"].add(ring.bootstrap())
            time.sleep(settle)
            if idle_window > 0:
                say(f"{tag}: idle {idle_window:g}s")
                idle.append(ring.usage(idle_window))
            say(f"{tag}: join")
            acc["join"].add(ring.join_victim())
            for k in range(events):
                say(f"{tag}: rumor {k + 1}/{events}")
                time.sleep(0.5)
                acc["event"].add(ring.rumor(incarnation=k + 1))
            say(f"{tag}: failure detection")
            acc["failure_detection"].add(ring.kill_victim())
            if r == repeat - 1 and loss_window > 0:
                say(f"{tag}: {loss:.0%} loss {loss_window:g}s")
                fps.append(ring.false_positives(loss, loss_window))
            if r == repeat - 1 and churn_window > 0:
                say(f"{tag}: churn {churn_window:g}s")
                churn.append(ring.churn(churn_window))
    meta: dict[str, Any] = {
        "profile": profile,
        "workers": workers,
        "uvloop": use_uvloop,
        "repeats": repeat,
        "host_mode": "real UDP+TCP on 127.0.0.1, many members per process",
        "floor": {"fanout": cfg.gossip_nodes, "gossip_interval": cfg.gossip_interval_s},
    }
    extra = {
        "join": {"t0": "join() on a started member in its own process (no interpreter start)"},
        "event": {"rumor": "ServiceConfigRumor", "bytes": len(CONFIG_TOML)},
        "failure_detection": {
            "suspicion_timeout_bounds_s": [cfg.suspicion_min_s(n), cfg.suspicion_max_s(n)]
        },
    }
    out = [
        Result.from_samples(
            system, m, n, a.samples, all_s=a.all_s, timeouts=a.timeouts, **meta, **extra.get(m, {})
        )
        for m, a in acc.items()
    ]
    if idle:
        w = {"window_s": idle_window}
        out += [
            Result.from_samples(system, "cpu", n, [u["cpu_per_member"] for u in idle], **meta, **w),
            Result.from_samples(
                system,
                "bytes",
                n,
                [u["bytes_per_member"] for u in idle],
                "B/s",
                **meta,
                packets_per_member_s=[u["packets_per_member"] for u in idle],
                **w,
            ),
            Result.from_samples(system, "rss", n, [u["rss_per_member"] for u in idle], **meta),
            Result.from_samples(
                system,
                "rss_process",
                n,
                [x for u in idle for x in u["rss_per_process"]],
                "MiB",
                **meta,
            ),
        ]
    if churn:
        out.append(
            Result.from_samples(
                system,
                "cpu_churn",
                n,
                [c["cpu_per_member"] for c in churn],
                "cpu_s/s",
                **meta,
                window_s=churn_window,
                replaced=[c["replaced"] for c in churn],
            )
        )
    if fps:
        out.append(
            Result.from_samples(
                system,
                "false_positives",
                n,
                [f["false_positives"] for f in fps],
                "members",
                **meta,
                loss=loss,
                window_s=loss_window,
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.udp", description=__doc__.splitlines()[0])
    ap.add_argument("--members", "-n", type=int, required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", choices=sorted(PRESETS), default="lan")
    ap.add_argument("--uvloop", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--events", type=int, default=3)
    ap.add_argument("--idle-window", type=float, default=10.0)
    ap.add_argument("--churn-window", type=float, default=0.0)
    ap.add_argument("--loss-window", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    results = run_udp_bench(
        args.members,
        args.repeat,
        profile=args.profile,
        workers=args.workers,
        use_uvloop=args.uvloop,
        events=args.events,
        idle_window=args.idle_window,
        churn_window=args.churn_window,
        loss_window=args.loss_window,
        seed=args.seed,
        progress=lambda m: print(m, file=sys.stderr),
    )
    for r in results:
        print(summary_json(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

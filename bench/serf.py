"""Run N HashiCorp Serf agents on 127.0.0.1 and measure their gossip convergence.

The reference point pysup is compared with. Serf's agent exposes no probe/gossip knobs (its config
JSON has only ``profile`` = lan | wan | local, which selects memberlist's DefaultLANConfig etc.),
so the timing profile is chosen by name; ``bench.serf_env.PROFILES`` records what each name means
(memberlist defaults) so reports can draw theoretical floors.

What is measured, per fresh cluster (one cluster per repeat):

- ``bootstrap``: the seed is started and its RPC answers; then t0, and N-1 agents are spawned,
  each with ``-join <seed>``. Sample = t(agent's RPC ``stats`` shows N members, none failed or
  left) - t0, per agent (the seed included).
- ``join``: one extra agent is started with ``-join <seed>``; sample = time until each existing
  agent lists it alive (``members-filtered`` by name).
- ``event``: a user event (``Coalesce: false``: the agent's 3 s/1 s user-event coalescer would
  otherwise delay delivery) is fired from a random agent; every agent has an RPC ``stream`` open
  for it, sample = arrival time on each other agent - send time.
- ``failure_detection``: ``kill -9`` of a random non-seed agent; sample = time until each
  surviving agent lists it ``failed``.
- ``cpu`` / ``rss``: per agent, over an idle window after bootstrap (``/proc``).

Membership is polled over RPC rather than streamed because the agent coalesces member events
(CoalescePeriod 3 s, QuiescentPeriod 1 s), which would add up to 3 s to every observation. Poll
resolution is ``poll_interval`` (recorded in each Result's meta); an observation is timestamped
when the answer arrives, so membership samples are upper bounds by at most one poll interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import (
    Result,
    SampleAccumulator,
    cpu_rates,
    cpu_seconds,
    memory_mib,
    rss_mib,
    spawn_logged,
)
from bench.serf_env import (
    HOST,
    PROFILES,
    ClusterError,
    free_ports,
    raise_nofile_limit,
    serf_binary,
    serf_version,
    suspicion_timeout_bounds,
)
from bench.serf_rpc import SerfRPC, SerfRPCError

SYSTEM = "serf"
EVENT_NAME = "pysupbench"


@dataclass
class Agent:
    name: str
    bind_port: int
    rpc_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    rpc: SerfRPC | None = None
    arrivals: dict[bytes, float] = field(default_factory=dict)

    @property
    def bind_addr(self) -> str:
        return f"{HOST}:{self.bind_port}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def default_poll_interval(n: int) -> float:
    """50 ms up to 100 agents, growing linearly beyond to bound the RPC load we add."""
    return 0.05 * max(1.0, n / 100)


class SerfCluster:
    """N serf agents in one process group; always killed on exit (``async with``)."""

    def __init__(
        self,
        n: int,
        *,
        profile: str = "lan",
        poll_interval: float | None = None,
        max_inflight: int = 64,
        rng: random.Random | None = None,
        workdir: Path | None = None,
        log_level: str = "warn",
    ) -> None:
        if n < 2:
            raise ValueError("a cluster needs at least 2 agents")
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; one of {sorted(PROFILES)}")
        self.n = n
        self.profile = profile
        self.poll_interval = poll_interval or default_poll_interval(n)
        self.rng = rng or random.Random()
        self.log_level = log_level
        self._binary = serf_binary()
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pysup-bench-serf-"))
        self._ports = free_ports(2 * (n + 1))
        self._sem = asyncio.Semaphore(max_inflight)
        self._pgid: int | None = None
        self.agents: list[Agent] = []
        self.spawn_seconds = 0.0
        self.pss: list[float] = []
        self.startup: dict[str, Any] = {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> SerfCluster:
        raise_nofile_limit()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for agent in self.agents:
            if agent.rpc is not None:
                with contextlib.suppress(Exception):
                    await agent.rpc.close()
                agent.rpc = None
        self.kill_all()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill_all(self) -> None:
        """SIGKILL the whole process group and every agent by pid, then reap them."""
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
        for agent in self.agents:
            if agent.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    agent.proc.kill()
        for agent in self.agents:
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.proc.wait(timeout=5)

    def _spawn(self, index: int, join: str | None) -> Agent:
        name = f"node{index}"
        bind_port, rpc_port = self._ports[2 * index], self._ports[2 * index + 1]
        cmd = [
            self._binary,
            "agent",
            f"-node={name}",
            f"-bind={HOST}:{bind_port}",
            f"-rpc-addr={HOST}:{rpc_port}",
            f"-profile={self.profile}",
            f"-log-level={self.log_level}",
        ]
        if join is not None:
            cmd.append(f"-join={join}")
        log_path = self.workdir / f"{name}.log"
        proc = spawn_logged(cmd, log_path, self._pgid)
        if self._pgid is None:
            self._pgid = proc.pid
        agent = Agent(name, bind_port, rpc_port, proc, log_path)
        self.agents.append(agent)
        return agent

    @property
    def alive_agents(self) -> list[Agent]:
        return [a for a in self.agents if a.proc.poll() is None]

    @property
    def pids(self) -> list[int]:
        return [a.proc.pid for a in self.alive_agents]

    async def _connect(self, agent: Agent, deadline: float) -> SerfRPC:
        if agent.rpc is None:
            while True:
                self._check_running(agent)
                try:
                    agent.rpc = await SerfRPC.open(HOST, agent.rpc_port, wait_s=2.0)
                    break
                except (OSError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        return agent.rpc

    @staticmethod
    def _check_running(agent: Agent) -> None:
        if agent.proc.poll() is not None:
            raise ClusterError(
                f"{agent.name} exited with {agent.proc.returncode}:\n{agent.log_tail()}"
            )

    # -- polling ------------------------------------------------------------------------------

    async def _observe(
        self,
        observers: list[Agent],
        check: Callable[[SerfRPC], Awaitable[bool]],
        t0: float,
        wait_s: float,
    ) -> tuple[list[float], int]:
        """Poll ``check`` on each observer until true; (seconds since t0 per observer, misses)."""
        deadline = t0 + wait_s

        async def one(agent: Agent) -> float | None:
            rpc = await self._connect(agent, deadline)
            while True:
                self._check_running(agent)
                async with self._sem:
                    ok = await check(rpc)
                    seen = time.monotonic()
                if ok:
                    return seen - t0
                if seen > deadline:
                    return None
                await asyncio.sleep(self.poll_interval)

        times = await asyncio.gather(*(one(a) for a in observers))
        got = [t for t in times if t is not None]
        return got, len(times) - len(got)

    # -- scenarios ----------------------------------------------------------------------------

    async def bootstrap(self, wait_s: float | None = None) -> tuple[list[float], int]:
        """Start all agents (seed first) and time until each lists n alive members."""
        if self.agents:
            raise ClusterError("bootstrap() must be the first scenario")
        wait_s = wait_s if wait_s is not None else 30.0 + 0.1 * self.n
        seed = self._spawn(0, None)
        await self._connect(seed, time.monotonic() + 10.0)
        t0 = time.monotonic()
        for i in range(1, self.n):
            self._spawn(i, seed.bind_addr)
        self.spawn_seconds = time.monotonic() - t0
        n = self.n

        async def converged(rpc: SerfRPC) -> bool:
            s = (await rpc.stats())["serf"]
            return int(s["members"]) - int(s["failed"]) - int(s["left"]) >= n

        result = await self._observe(list(self.agents), converged, t0, wait_s)
        if result[1] == 0:
            await self._verify_alive_count(n)
        return result

    async def _verify_alive_count(self, n: int) -> None:
        """Cross-check the stats-based condition with the full alive member list."""
        for agent in self.rng.sample(self.agents, min(3, len(self.agents))):
            assert agent.rpc is not None
            alive = await agent.rpc.members_filtered(status="alive")
            if len(alive) != n:
                raise ClusterError(f"{agent.name} stats said converged but lists {len(alive)}")

    async def idle_usage(self, window: float = 10.0) -> tuple[list[float], list[float]]:
        """(CPU s per s, RSS MiB) per agent over ``window`` seconds with no polling; PSS per
        agent is left in ``self.pss``."""
        pids = self.pids
        before = cpu_seconds(pids)
        t_before = time.monotonic()
        await asyncio.sleep(window)
        after = cpu_seconds(pids)
        wall = time.monotonic() - t_before
        self.pss = [m["Pss"] for m in memory_mib(pids).values() if "Pss" in m]
        return cpu_rates(before, after, wall), list(rss_mib(pids).values())

    async def join_one(self, wait_s: float = 30.0) -> tuple[list[float], int]:
        """Start one extra agent; time until each existing agent lists it alive."""
        observers = self.alive_agents
        seed = self.agents[0]
        t0 = time.monotonic()
        extra = self._spawn(len(self.agents), seed.bind_addr)
        name = extra.name

        async def sees_it(rpc: SerfRPC) -> bool:
            return bool(await rpc.members_filtered(name=name, status="alive"))

        probe = asyncio.ensure_future(self._startup_probe(extra, t0, t0 + wait_s))
        result = await self._observe(observers, sees_it, t0, wait_s)
        self.startup = await probe
        return result

    async def _startup_probe(self, agent: Agent, t0: float, deadline: float) -> dict[str, Any]:
        """Start-up of a new agent, from just before its spawn: its RPC answers (`healthz`,
        the counterpart of pysup's /healthz 200) and it lists another member (`joined`)."""
        out: dict[str, Any] = {"healthz": None, "joined": None}
        while agent.rpc is None and time.monotonic() < deadline:
            self._check_running(agent)
            try:
                agent.rpc = await SerfRPC.open(HOST, agent.rpc_port, wait_s=1.0)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.01)
        if agent.rpc is None:
            return out
        out["healthz"] = time.monotonic() - t0
        while time.monotonic() < deadline:
            with contextlib.suppress(SerfRPCError):
                s = (await agent.rpc.stats())["serf"]
                if int(s["members"]) - int(s["failed"]) - int(s["left"]) >= 2:
                    out["joined"] = time.monotonic() - t0
                    break
            await asyncio.sleep(0.02)
        return out

    async def open_streams(self) -> None:
        """Subscribe every live agent to the benchmark's user event."""
        deadline = time.monotonic() + 10.0

        async def sub(agent: Agent) -> None:
            rpc = await self._connect(agent, deadline)

            def on_event(received: float, record: dict[str, Any], a: Agent = agent) -> None:
                payload = record.get("Payload")
                if isinstance(payload, str):
                    payload = payload.encode("utf-8", "surrogateescape")
                if isinstance(payload, bytes):
                    a.arrivals.setdefault(payload, received)

            await rpc.stream(f"user:{EVENT_NAME}", on_event)

        await asyncio.gather(*(sub(a) for a in self.alive_agents))

    async def user_event(self, tag: str, wait_s: float = 30.0) -> tuple[list[float], int]:
        """Fire one user event from a random agent; arrival latency at every other agent."""
        live = self.alive_agents
        origin = self.rng.choice(live)
        observers = [a for a in live if a is not origin]
        payload = tag.encode()
        assert origin.rpc is not None
        t0 = time.monotonic()
        await origin.rpc.event(EVENT_NAME, payload, coalesce=False)
        deadline = t0 + wait_s
        while time.monotonic() < deadline:
            if all(payload in a.arrivals for a in observers):
                break
            await asyncio.sleep(0.02)
        got = [a.arrivals[payload] - t0 for a in observers if payload in a.arrivals]
        return got, len(observers) - len(got)

    async def kill_and_detect(self, wait_s: float | None = None) -> tuple[list[float], int]:
        """SIGKILL a random non-seed agent; time until each survivor lists it failed."""
        if wait_s is None:
            wait_s = 20.0 + 1.5 * suspicion_timeout_bounds(self.profile, self.n)[1]
        candidates = [a for a in self.alive_agents[1:]]
        victim = self.rng.choice(candidates)
        if victim.rpc is not None:
            await victim.rpc.close()
            victim.rpc = None
        victim.proc.kill()
        t0 = time.monotonic()
        victim.proc.wait()
        name = victim.name

        async def sees_failed(rpc: SerfRPC) -> bool:
            members = await rpc.members_filtered(name=name)
            return bool(members) and members[0].get("Status") == "failed"

        return await self._observe(self.alive_agents, sees_failed, t0, wait_s)

    async def health_scores(self) -> list[int]:
        """memberlist awareness (Lifeguard local health; 0 is healthy) of each live agent."""
        scores = []
        for agent in self.alive_agents:
            if agent.rpc is not None:
                with contextlib.suppress(SerfRPCError):
                    scores.append(int((await agent.rpc.stats())["serf"]["health_score"]))
        return scores


async def run_serf_bench(
    n: int,
    repeat: int = 3,
    *,
    profile: str = "lan",
    events: int = 3,
    idle_window: float = 10.0,
    settle: float = 2.0,
    poll_interval: float | None = None,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """All Serf metrics at cluster size n, one fresh cluster per repeat."""
    rng = random.Random(seed)
    say = progress or (lambda _msg: None)
    acc = {m: SampleAccumulator() for m in ("bootstrap", "join", "event", "failure_detection")}
    cpu: list[float] = []
    rss: list[float] = []
    pss: list[float] = []
    startup: dict[str, list[float]] = {"healthz": [], "joined": []}
    spawn: list[float] = []
    health: list[int] = []
    used_poll = poll_interval or default_poll_interval(n)
    for r in range(repeat):
        async with SerfCluster(n, profile=profile, poll_interval=poll_interval, rng=rng) as c:
            say(f"serf n={n} repeat {r + 1}/{repeat}: bootstrap")
            acc["bootstrap"].add(await c.bootstrap())
            spawn.append(c.spawn_seconds)
            await asyncio.sleep(settle)
            say(f"serf n={n} repeat {r + 1}/{repeat}: idle window {idle_window:g}s")
            c_cpu, c_rss = await c.idle_usage(idle_window)
            cpu.extend(c_cpu)
            rss.extend(c_rss)
            pss.extend(c.pss)
            say(f"serf n={n} repeat {r + 1}/{repeat}: join")
            acc["join"].add(await c.join_one())
            for k in ("healthz", "joined"):
                if c.startup.get(k) is not None:
                    startup[k].append(c.startup[k])
            await c.open_streams()
            for k in range(events):
                say(f"serf n={n} repeat {r + 1}/{repeat}: event {k + 1}/{events}")
                await asyncio.sleep(0.5)
                acc["event"].add(await c.user_event(f"r{r}e{k}"))
            say(f"serf n={n} repeat {r + 1}/{repeat}: failure detection")
            acc["failure_detection"].add(await c.kill_and_detect())
            health.extend(await c.health_scores())
    p = PROFILES[profile]
    meta: dict[str, Any] = {
        "profile": profile,
        "timing": p,
        "serf_version": serf_version(),
        "repeats": repeat,
        "poll_interval_s": used_poll,
        "floor": {"fanout": p["gossip_nodes"], "gossip_interval": p["gossip_interval"]},
    }
    lo, hi = suspicion_timeout_bounds(profile, n)
    extra: dict[str, dict[str, Any]] = {
        "bootstrap": {"spawn_s": spawn},
        "failure_detection": {
            "suspicion_timeout_bounds_s": [lo, hi],
            "health_score_max": max(health, default=0),
        },
    }
    results = [
        Result.from_samples(
            SYSTEM, m, n, a.samples, all_s=a.all_s, timeouts=a.timeouts, **meta, **extra.get(m, {})
        )
        for m, a in acc.items()
    ]
    results.append(Result.from_samples(SYSTEM, "cpu", n, cpu, window_s=idle_window, **meta))
    results.append(Result.from_samples(SYSTEM, "rss", n, rss, **meta))
    results.append(Result.from_samples(SYSTEM, "pss", n, pss, "MiB", **meta))
    healthz = "an RPC handshake answers (the counterpart of /healthz 200)"
    for k, what in (("healthz", healthz), ("joined", "it lists another member")):
        results.append(
            Result.from_samples(
                SYSTEM, f"startup_{k}", n, startup[k], "s", t0="just before spawning", until=what
            )
        )
    return results


if __name__ == "__main__":
    from bench.serf_cli import main

    raise SystemExit(main())

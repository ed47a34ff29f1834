"""pysup as it is deployed: one `pysup run` process per member, N processes on 127.0.0.1.

    python -m bench.procs --members 50 [--repeat 1] [--profile lan]

Each member is a real supervisor (`python -m pysup run -D --json-logging`, its own state dir and
ports). Observation needs nothing from the members beyond what they do anyway: every member logs
`member.alive` / `member.suspect` / `member.confirmed` lines with a microsecond UTC timestamp, and
the parent tails their log files (files, not pipes, so a slow reader never blocks a member).
Samples are log timestamps minus the wall-clock time of the stimulus, like the Serf harness.

- ``bootstrap``: the seed is started and has logged `supervisor.started`; t0; the other N-1 are
  spawned with ``--peer <seed>``. Sample per member: when its log shows N-1 others Alive. This
  includes starting a Python interpreter per member (recorded as ``spawn_s``), as Serf's includes
  starting a Go binary.
- ``join``: one extra member is spawned; sample per member: when it logs the newcomer Alive.
- ``failure_detection``: ``kill -9`` of that newcomer; sample: when each survivor logs it Confirmed.
- ``cpu`` / ``rss``: per process over an idle window (``/proc``).

Capacity: one member's RSS is measured first, and ``bench.measure.capacity_problem`` says whether
the machine can host N of them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import (
    Result,
    capacity_problem,
    cpu_rates,
    cpu_seconds,
    rss_mib,
    spawn_logged,
)
from bench.serf_env import free_ports, raise_nofile_limit
from pysup.butterfly.config import PRESETS

HOST = "127.0.0.1"
SYSTEM = "pysup-procs"
POLL_S = 0.1
GONE = {"suspect", "confirmed", "departed"}


def _ts(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Member:
    index: int
    gossip: int
    http: int
    ctl: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    member_id: str | None = None
    offset: int = 0
    partial: bytes = b""
    alive: set[str] = field(default_factory=set)
    alive_at: dict[str, float] = field(default_factory=dict)
    confirmed_at: dict[str, float] = field(default_factory=dict)
    full_at: float | None = None

    def read(self, expect: int) -> None:
        """Consume new log lines: track who this member lists Alive, and when."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if b'"member.' not in line and b"supervisor.started" not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            event = str(rec.get("event", ""))
            if event == "supervisor.started":
                self.member_id = rec.get("member_id")
                continue
            mid = rec.get("member_id")
            if not isinstance(mid, str) or not event.startswith("member."):
                continue
            kind = event.split(".", 1)[1]
            t = _ts(rec["timestamp"])
            if kind == "alive":
                self.alive.add(mid)
                self.alive_at.setdefault(mid, t)
                if self.full_at is None and len(self.alive) >= expect:
                    self.full_at = t
            elif kind in GONE:
                self.alive.discard(mid)
                if kind in ("confirmed", "departed"):
                    self.confirmed_at.setdefault(mid, t)


class ProcRing:
    """N `pysup run` processes in one process group; always killed on exit."""

    def __init__(self, n: int, *, profile: str = "lan", workdir: Path | None = None) -> None:
        self.n = n
        self.profile = profile
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pysup-bench-procs-"))
        self._own = workdir is None
        self._ports = free_ports(3 * (n + 4))
        self.members: list[Member] = []
        self._pgid: int | None = None
        self.spawn_s = 0.0

    def __enter__(self) -> ProcRing:
        raise_nofile_limit()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
        for m in self.members:
            if m.proc.poll() is None:
                m.proc.kill()
        for m in self.members:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(5)
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def spawn(self, seed: Member | None) -> Member:
        i = len(self.members)
        gossip, http, ctl = self._ports[3 * i : 3 * i + 3]
        state = self.workdir / f"m{i}"
        state.mkdir(mode=0o711, parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pysup",
            "run",
            f"--listen-gossip={HOST}:{gossip}",
            f"--listen-http={HOST}:{http}",
            f"--listen-ctl={HOST}:{ctl}",
            f"--state-dir={state}",
            f"--gossip-profile={self.profile}",
            "-D",
            "--json-logging",
        ]
        if seed is not None:
            cmd.append(f"--peer={HOST}:{seed.gossip}")
        log_path = self.workdir / f"m{i}.log"
        proc = spawn_logged(cmd, log_path, self._pgid)
        if self._pgid is None:
            self._pgid = proc.pid
        m = Member(i, gossip, http, ctl, proc, log_path)
        self.members.append(m)
        return m

    @property
    def live(self) -> list[Member]:
        return [m for m in self.members if m.proc.poll() is None]

    def _wait_started(self, members: list[Member], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while any(m.member_id is None for m in members):
            for m in members:
                if m.proc.poll() is not None:
                    tail = m.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"member {m.index} exited {m.proc.returncode}:\n{tail}")
                m.read(self.n - 1)
            if time.monotonic() > deadline:
                raise RuntimeError("members did not start in time")
            time.sleep(POLL_S)

    def _poll(
        self,
        observers: list[Member],
        seen: Callable[[Member], float | None],
        t0: float,
        wait_s: float,
        expect: int,
    ) -> tuple[list[float], int]:
        deadline = time.monotonic() + wait_s
        while True:
            for m in observers:
                m.read(expect)
            got = [seen(m) for m in observers]
            if all(t is not None for t in got) or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        samples = [max(0.0, t - t0) for t in got if t is not None]
        return samples, len(observers) - len(samples)

    def bootstrap(self, wait_s: float | None = None) -> tuple[list[float], int]:
        wait_s = wait_s if wait_s is not None else 60.0 + 0.3 * self.n
        seed = self.spawn(None)
        self._wait_started([seed], 30.0)
        t0 = time.time()
        for _ in range(self.n - 1):
            self.spawn(seed)
        self.spawn_s = time.time() - t0
        return self._poll(list(self.members), lambda m: m.full_at, t0, wait_s, self.n - 1)

    def join_one(self, wait_s: float = 60.0) -> tuple[list[float], Member, int]:
        observers = self.live
        t0 = time.time()
        extra = self.spawn(self.members[0])
        self._wait_started([extra], 30.0)
        mid = extra.member_id
        assert mid is not None
        samples, misses = self._poll(
            observers, lambda m: m.alive_at.get(mid), t0, wait_s, self.n - 1
        )
        return samples, extra, misses

    def kill(self, victim: Member, wait_s: float) -> tuple[list[float], int]:
        mid = victim.member_id
        assert mid is not None
        observers = [m for m in self.live if m is not victim]
        victim.proc.send_signal(signal.SIGKILL)
        t0 = time.time()
        victim.proc.wait()
        return self._poll(observers, lambda m: m.confirmed_at.get(mid), t0, wait_s, self.n - 1)

    def usage(self, window: float) -> tuple[list[float], list[float]]:
        pids = [m.proc.pid for m in self.live]
        before = cpu_seconds(pids)
        t = time.monotonic()
        time.sleep(window)
        after = cpu_seconds(pids)
        return cpu_rates(before, after, time.monotonic() - t), list(rss_mib(pids).values())


def measure_one_member(profile: str = "lan", wait_s: float = 4.0) -> tuple[float, float]:
    """(RSS MiB, idle CPU s/s) of one lone `pysup run`, for the capacity estimate."""
    with ProcRing(1, profile=profile) as ring:
        seed = ring.spawn(None)
        ring._wait_started([seed], 30.0)
        cpu, rss = ring.usage(wait_s)
    return (rss[0] if rss else 60.0), (cpu[0] if cpu else 0.002)


def procs_capacity(n: int, profile: str = "lan") -> str | None:
    rss, cpu = measure_one_member(profile)
    # A ringed member does more than a lone one: pad both, and keep a GiB for the rest.
    return capacity_problem(n + 1, rss * 1.3 + 1024 / max(1, n), max(cpu, 0.001) * 1.5, 4)


def run_procs_bench(
    n: int,
    repeat: int = 1,
    *,
    profile: str = "lan",
    idle_window: float = 10.0,
    settle: float = 8.0,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    say = progress or (lambda _m: None)
    rng = random.Random(seed)
    cfg = PRESETS[profile]
    acc: dict[str, tuple[list[float], list[float], list[int]]] = {
        m: ([], [], []) for m in ("bootstrap", "join", "failure_detection")
    }

    def add(metric: str, samples: list[float], misses: int) -> None:
        s, all_s, t = acc[metric]
        s.extend(samples)
        all_s.append(max(samples) if samples and not misses else math.nan)
        t.append(misses)

    cpu: list[float] = []
    rss: list[float] = []
    spawn: list[float] = []
    for r in range(repeat):
        tag = f"{SYSTEM} n={n} {r + 1}/{repeat}"
        with ProcRing(n, profile=profile) as ring:
            say(f"{tag}: bootstrap (spawning {n} processes)")
            add("bootstrap", *ring.bootstrap())
            spawn.append(ring.spawn_s)
            time.sleep(settle)
            say(f"{tag}: idle {idle_window:g}s")
            c, m = ring.usage(idle_window)
            cpu += c
            rss += m
            say(f"{tag}: join")
            samples, extra, misses = ring.join_one()
            add("join", samples, misses)
            time.sleep(2.0 + rng.random())
            say(f"{tag}: failure detection")
            wait = 30.0 + 1.5 * (
                cfg.suspicion_max_s(n) + cfg.probe_interval_s * cfg.awareness_max_multiplier
            )
            add("failure_detection", *ring.kill(extra, wait))
    meta: dict[str, Any] = {
        "profile": profile,
        "repeats": repeat,
        "host_mode": "one `pysup run` process per member",
        "floor": {"fanout": cfg.gossip_nodes, "gossip_interval": cfg.gossip_interval_s},
    }
    extra_meta: dict[str, dict[str, Any]] = {
        "bootstrap": {"spawn_s": spawn, "t0": "before spawning N-1 interpreters"},
        "join": {"t0": "before spawning the joiner's interpreter (~0.5-1 s of Python start)"},
    }
    out = [
        Result.from_samples(
            SYSTEM, k, n, s, all_s=a, timeouts=sum(t), **meta, **extra_meta.get(k, {})
        )
        for k, (s, a, t) in acc.items()
    ]
    out.append(Result.from_samples(SYSTEM, "cpu", n, cpu, window_s=idle_window, **meta))
    out.append(Result.from_samples(SYSTEM, "rss", n, rss, **meta))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.procs", description=__doc__.splitlines()[0])
    ap.add_argument("--members", "-n", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", choices=sorted(PRESETS), default="lan")
    ap.add_argument("--idle-window", type=float, default=10.0)
    args = ap.parse_args(argv)
    problem = procs_capacity(args.members, args.profile)
    if problem:
        print(f"cannot host {args.members} processes: {problem}", file=sys.stderr)
        return 1
    for r in run_procs_bench(
        args.members,
        args.repeat,
        profile=args.profile,
        idle_window=args.idle_window,
        progress=lambda m: print(m, file=sys.stderr),
    ):
        print(
            json.dumps(
                {
                    "metric": r.metric,
                    "n": r.n,
                    "p50": r.p50,
                    "p99": r.p99,
                    "timeouts": r.meta.get("timeouts", 0),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

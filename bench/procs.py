"""pysup as it is deployed: one `pysup run` process per member, N processes on 127.0.0.1.

    python -m bench.procs --members 50 [--quick]      (the part driver is bench.per_process)

`ProcRing` starts real supervisors (`python -m pysup run --json-logging`, each with its own state
dir, gossip/HTTP/ctl ports) in one process group and observes them through what they do anyway:

- their log files (`bench.memberlog`): membership events with microsecond UTC timestamps, so
  samples are log timestamps minus the wall-clock time of the stimulus, like the Serf harness;
- `/proc`: CPU (with reaped children: hooks), RSS and PSS per process;
- their HTTP gateways (`/healthz`, `/metrics`, `/census`, `/butterfly`) and control gateways
  (`svc load`, `config apply`) where a phase needs them.

`close()` always kills the group and anything a killed supervisor left running under the work
directory (`pysup.testing.procs.kill_processes_under`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import capacity_problem, cpu_seconds, memory_mib, spawn_logged
from bench.memberlog import LogTail, Observer, parse_pysup_line
from bench.serf_env import free_ports, raise_nofile_limit
from pysup.testing.procs import kill_processes_under

HOST = "127.0.0.1"
SYSTEM = "pysup-procs"
POLL_S = 0.1
"""Seconds between reads of the members' logs while waiting for a condition."""
KEEP_EVENTS = ("config.gossip_applied", "health.changed", "service.state", "service.reconfigure")
"""Log events kept besides membership (the service phases read them)."""


@dataclass
class Member:
    index: int
    gossip: int
    http: int
    ctl: int
    state: Path
    proc: subprocess.Popen[bytes]
    tail: LogTail
    view: Observer
    spawned_at: float = 0.0
    """Wall-clock time just before the process was started."""

    @property
    def member_id(self) -> str | None:
        return self.view.me

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def read(self) -> None:
        for line in self.tail.lines():
            ev = parse_pysup_line(line, KEEP_EVENTS)
            if ev is not None:
                self.view.feed(ev)

    def secret(self) -> str:
        return (self.state / "CTL_SECRET").read_text().strip()


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET on 127.0.0.1:port; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), b""
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


async def http_get_many(
    ports: Sequence[int], path: str, concurrency: int = 16, timeout: float = 10.0
) -> list[tuple[int, bytes, float]]:
    """GET `path` from every port (bounded concurrency): (status, body, wall time answered)."""
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    tmo = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=tmo) as session:

        async def one(port: int) -> tuple[int, bytes, float]:
            async with sem:
                try:
                    async with session.get(f"http://{HOST}:{port}{path}") as r:
                        body = await r.read()
                        return r.status, body, time.time()
                except (aiohttp.ClientError, OSError, TimeoutError):
                    return 0, b"", time.time()

        return await asyncio.gather(*(one(p) for p in ports))


class ProcRing:
    """N `pysup run` processes in one process group; always killed on exit."""

    def __init__(
        self,
        n: int,
        *,
        profile: str = "lan",
        http: bool = True,
        workdir: Path | None = None,
        extra_args: Sequence[str] = (),
        cprofile_index: int | None = None,
    ) -> None:
        self.n = n
        self.cprofile_index = cprofile_index
        """This member runs under `bench.cprof_member` (SIGUSR1/SIGUSR2 start/stop cProfile)."""
        self.profile = profile
        self.http = http
        self.extra_args = list(extra_args)
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="pysup-bench-procs-"))
        self._own = workdir is None
        self.members: list[Member] = []
        self._pgid: int | None = None
        self.spawn_s = 0.0
        self.boot_started: list[float] = []
        self.boot_after_last: list[float] = []
        self._ports: set[int] = set()
        (self.workdir / "gossip.toml").write_text(f'gossip_profile = "{profile}"\n')

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
            if m.alive:
                m.proc.kill()
        for m in self.members:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(5)
        kill_processes_under(self.workdir)  # services of supervisors killed with -9
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- members ------------------------------------------------------------------------

    def spawn(self, seed: Member | None, expect: int | None = None) -> Member:
        """Start one member (joining `seed`); its log is read as it grows."""
        i = len(self.members)
        # Members spawned at once bind their ports only after their imports: without the
        # exclusion two of 100 members drew the same port (one exited: "Address already in use").
        gossip, http, ctl = free_ports(3, exclude=self._ports)
        self._ports.update((gossip, http, ctl))
        state = self.workdir / f"m{i}"
        state.mkdir(mode=0o711, parents=True, exist_ok=True)
        runner = ["-m", "pysup"]
        if i == self.cprofile_index:
            runner = ["-m", "bench.cprof_member", str(self.cprofile_path(i))]
        cmd = [
            sys.executable,
            *runner,
            "run",
            f"--listen-gossip={HOST}:{gossip}",
            f"--listen-http={HOST}:{http}",
            f"--listen-ctl={HOST}:{ctl}",
            f"--state-dir={state}",
            # A config file, not --gossip-profile: any preset in PRESETS works by name.
            f"--config={self.workdir / 'gossip.toml'}",
            "--json-logging",
            *self.extra_args,
        ]
        if not self.http:
            cmd.append("-D")
        if seed is not None:
            cmd.append(f"--peer={HOST}:{seed.gossip}")
        log_path = self.workdir / f"m{i}.log"
        # PYTHONDONTWRITEBYTECODE (set in some dev shells) made every member compile pysup from
        # source: ~0.07 s more CPU per start than an installed package, which has its bytecode.
        # The seed, started alone, writes it; the members spawned at once then read it.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HAB_", "PYSUP_")) and k != "PYTHONDONTWRITEBYTECODE"
        }
        if i == self.cprofile_index:
            env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        t = time.time()
        proc = spawn_logged(cmd, log_path, self._pgid, env)
        if self._pgid is None:
            self._pgid = proc.pid
        view = Observer(expect if expect is not None else self.n - 1)
        m = Member(i, gossip, http, ctl, state, proc, LogTail(log_path), view, t)
        self.members.append(m)
        return m

    def cprofile_path(self, i: int) -> Path:
        return self.workdir / f"m{i}.prof"

    @property
    def live(self) -> list[Member]:
        return [m for m in self.members if m.alive]

    def read_all(self, members: Iterable[Member] | None = None) -> None:
        for m in self.members if members is None else members:
            m.read()

    def check_running(self, members: Iterable[Member]) -> None:
        for m in members:
            if not m.alive and m.proc.returncode not in (-signal.SIGKILL, -signal.SIGTERM, 0):
                tail = m.tail.path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"member {m.index} exited {m.proc.returncode}:\n{tail}")

    def wait_started(self, members: list[Member], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while any(m.member_id is None for m in members):
            self.check_running(members)
            self.read_all(members)
            if time.monotonic() > deadline:
                raise RuntimeError("members did not start in time")
            time.sleep(POLL_S)

    def poll(
        self,
        observers: list[Member],
        seen: Callable[[Member], float | None],
        t0: float,
        wait_s: float,
    ) -> tuple[list[float], int]:
        """Per observer, seconds from wall time t0 until `seen` gives a time; (samples, misses)."""
        deadline = time.monotonic() + wait_s
        while True:
            self.read_all(observers)
            got = [seen(m) for m in observers]
            if all(t is not None for t in got) or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        samples = [max(0.0, t - t0) for t in got if t is not None]
        return samples, len(observers) - len(samples)

    # --- scenarios ----------------------------------------------------------------------

    def bootstrap(self, wait_s: float | None = None) -> tuple[list[float], int]:
        """The seed, then N-1 members spawned at once; per member, until it lists N-1 Alive."""
        wait_s = wait_s if wait_s is not None else 60.0 + 0.3 * self.n
        seed = self.spawn(None)
        self.wait_started([seed], 30.0)
        t0 = time.time()
        for _ in range(self.n - 1):
            self.spawn(seed)
        self.spawn_s = time.time() - t0
        got = self.poll(list(self.members), lambda m: m.view.full_at, t0, wait_s)
        self._split_bootstrap(t0)
        return got

    def _split_bootstrap(self, t0: float) -> None:
        """Where a bootstrap's seconds went: `boot_started`, per spawned member, seconds from t0
        to its `supervisor.started` (the interpreter's start and imports, N at once on the
        machine's cores); `boot_after_last`, per member that got the full view, seconds from the
        last member's start to that view (the join and gossip themselves)."""
        spawned = self.members[1:]
        started = [m.view.started_at for m in spawned if m.view.started_at is not None]
        self.boot_started = [t - t0 for t in started]
        last = max(started, default=t0)
        self.boot_after_last = [
            max(0.0, m.view.full_at - last) for m in self.members if m.view.full_at is not None
        ]

    def start_one(self, wait_s: float = 60.0) -> dict[str, Any]:
        """Start one more member joining the seed. Returns its start-up figures (seconds from
        just before spawning): `healthz` (first /healthz 200), `joined` (its first member
        Alive), and `join` samples: when each existing member lists it Alive."""
        observers = self.live
        extra = self.spawn(self.members[0], expect=len(observers))
        t0 = extra.spawned_at
        healthz = None
        deadline = time.monotonic() + wait_s
        while self.http and time.monotonic() < deadline and extra.alive:
            status, _ = http_get(extra.http, "/healthz", timeout=1.0)
            if status == 200:
                healthz = time.time() - t0
                break
            time.sleep(0.01)
        self.wait_started([extra], wait_s)
        mid = extra.member_id
        assert mid is not None
        samples, misses = self.poll(observers, lambda m: m.view.first("alive", mid, t0), t0, wait_s)
        self.read_all([extra])
        joined = extra.view.joined_at - t0 if extra.view.joined_at is not None else None
        return {"member": extra, "healthz": healthz, "joined": joined, "join": (samples, misses)}

    def leave(self, m: Member, timeout: float = 15.0) -> None:
        """SIGTERM: the member leaves the ring (Departed at once) and exits."""
        m.proc.send_signal(signal.SIGTERM)
        try:
            m.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait(5)

    def kill(self, victim: Member, wait_s: float) -> tuple[list[float], int]:
        """kill -9; per survivor, until it lists the victim Confirmed (or Departed)."""
        mid = victim.member_id
        assert mid is not None
        observers = [m for m in self.live if m is not victim]
        victim.proc.send_signal(signal.SIGKILL)
        t0 = time.time()
        victim.proc.wait()
        return self.poll(
            observers, lambda m: m.view.first(("confirmed", "departed"), mid, t0), t0, wait_s
        )

    def usage(self, window: float) -> dict[str, Any]:
        """Per live process over `window` seconds: CPU s/s (with reaped children), RSS, PSS."""
        pids = [m.proc.pid for m in self.live]
        before = cpu_seconds(pids, children=True)
        t = time.monotonic()
        time.sleep(window)
        after = cpu_seconds(pids, children=True)
        wall = time.monotonic() - t
        mem = memory_mib(pids)
        return {
            "cpu": [(after[p] - before[p]) / wall for p in before if p in after],
            "rss": [v["Rss"] for v in mem.values()],
            "pss": [v["Pss"] for v in mem.values() if "Pss" in v],
            "pss_anon": [v["Pss_Anon"] for v in mem.values() if "Pss_Anon" in v],
            "wall": wall,
        }

    async def ctl(self, m: Member, req: Any) -> dict[str, Any]:
        from pysup.ctl_client import send

        return await send(HOST, m.ctl, m.secret(), req)


def measure_one_member(profile: str = "lan", wait_s: float = 4.0) -> tuple[float, float]:
    """(RSS MiB, idle CPU s/s) of one lone `pysup run`, for the capacity estimate."""
    with ProcRing(1, profile=profile) as ring:
        seed = ring.spawn(None)
        ring.wait_started([seed], 30.0)
        u = ring.usage(wait_s)
    return (u["rss"][0] if u["rss"] else 60.0), (u["cpu"][0] if u["cpu"] else 0.002)


def procs_capacity(n: int, profile: str = "lan") -> str | None:
    rss, cpu = measure_one_member(profile)
    # A ringed member does more than a lone one: pad both, and keep a GiB for the rest.
    return capacity_problem(n + 1, rss * 1.3 + 1024 / max(1, n), max(cpu, 0.001) * 1.5, 4)


if __name__ == "__main__":
    from bench.per_process import main

    raise SystemExit(main())

"""Slowloris and descriptor exhaustion against a real member (issue 13, item 7).

Two `pysup run` processes on 127.0.0.1 form a ring; the *victim* runs under an open-files limit
(1024 by default, soft and hard, as many containers do). An attacker in this process keeps
`--connections` slow HTTP connections open to the victim's gateway, each sending a request head a
byte at a time and opening again when the victim closes it. Measured on the victim, before, during
and after the attack:

- RSS (MiB) and CPU (cores) while under attack, against its idle baseline;
- `/healthz` latency p50/p99/max and failures, probed every `--probe-interval` from a thread;
- false suspicions: polls in which the observer saw the victim, or the victim saw the observer,
  other than Alive (goal: 0);
- its open descriptors (peak) and log bytes written during the attack;
- time to recover: from the attack's end until its descriptors are back within 8 of the baseline.

    python -m bench.faults [--connections 1100] [--fd-limit 1024] [--duration 20] [--save]

The attack, the prober and the launcher are reused by tests/integration/test_fd_exhaustion.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import (
    Result,
    cpu_seconds,
    describe_machine,
    percentile,
    rss_mib,
    write_results,
)
from bench.serf_env import raise_nofile_limit
from pysup.testing.ports import free_port

HOST = "127.0.0.1"
PROBE_TIMEOUT_S = 2.0
"""A /healthz probe that takes longer than this counts as failed."""
HEAD = b"GET /healthz HTTP/1.1\r\nHost: victim\r\nX-Slow: "


# --- members --------------------------------------------------------------------------------


@dataclass
class Member:
    """One `pysup run` process."""

    name: str
    proc: subprocess.Popen[bytes]
    gossip: int
    http: int
    log_path: Path

    def get(self, path: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(HOST, self.http, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            conn.close()

    def health_of_others(self) -> dict[str, str]:
        """member id -> health, as this member sees the others ({} when it does not answer)."""
        status, body = self.get("/butterfly")
        if status != 200:
            return {}
        data = json.loads(body)
        me = data["member"]["local_member_id"]
        return {k: v for k, v in data["member"]["health"].items() if k != me}

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return 0

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def launch(
    name: str,
    root: Path,
    *,
    profile: str = "lan",
    peers: tuple[str, ...] = (),
    fd_limit: tuple[int, int] | None = None,
    extra: tuple[str, ...] = (),
) -> Member:
    """Start `pysup run` on 127.0.0.1 (ports from pysup.testing.ports), under `fd_limit`
    (soft, hard) when given; its output goes to `root/name.log`."""
    gossip, http_port, ctl = free_port(), free_port(), free_port()
    args = [
        sys.executable, "-m", "pysup", "run",
        "--listen-gossip", f"{HOST}:{gossip}",
        "--listen-http", f"{HOST}:{http_port}",
        "--listen-ctl", f"{HOST}:{ctl}",
        "--state-dir", str(root / name),
        "--gossip-profile", profile,
        *extra,
    ]  # fmt: skip
    for p in peers:
        args += ["--peer", p]

    def limit() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, fd_limit)

    log_path = root / f"{name}.log"
    root.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=limit,  # only setrlimit: safe even with threads running
            start_new_session=True,
        )
    return Member(name, proc, gossip, http_port, log_path)


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


# --- the attack -----------------------------------------------------------------------------


@dataclass
class AttackStats:
    opened: int = 0
    closed_by_server: int = 0
    connect_errors: int = 0


class SlowLoris:
    """`slots` connections kept open to `port`, each trickling a request head a byte every
    `trickle_s` and opened again `reopen_s` after the server closed it. Runs its own event loop
    in a thread (raise this process's open-files limit first: `raise_nofile_limit`)."""

    def __init__(self, port: int, slots: int, trickle_s: float = 1.0, reopen_s: float = 0.2):
        self.port, self.slots, self.trickle_s, self.reopen_s = port, slots, trickle_s, reopen_s
        self.stats = AttackStats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(5)

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._started.set()
        tasks = [asyncio.create_task(self._slot(i)) for i in range(self.slots)]
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _slot(self, i: int) -> None:
        await asyncio.sleep(i * 0.002)  # ramp up over a couple of seconds, not one burst
        while True:
            try:
                async with asyncio.timeout(5):
                    reader, writer = await asyncio.open_connection(HOST, self.port)
            except (OSError, TimeoutError):
                self.stats.connect_errors += 1
                await asyncio.sleep(self.reopen_s)
                continue
            self.stats.opened += 1
            try:
                writer.write(HEAD)
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.trickle_s):
                            if not await reader.read(1024):
                                break  # closed by the server
                    writer.write(b"a")
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()
            self.stats.closed_by_server += 1
            await asyncio.sleep(self.reopen_s)


# --- watching the victim --------------------------------------------------------------------


@dataclass
class Observations:
    healthz_s: list[float] = field(default_factory=list)
    healthz_failures: int = 0
    false_suspicions: int = 0
    """Polls in which either member saw the other other than Alive."""
    polls: int = 0
    rss_mib: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)


class Watcher(threading.Thread):
    """Probes the victim's /healthz every `interval` s; every `poll_every`th probe also reads
    both members' views of each other and the victim's RSS and descriptors."""

    def __init__(
        self, victim: Member, observer: Member, interval: float = 0.1, poll_every: int = 5
    ):
        super().__init__(daemon=True)
        self.victim, self.observer = victim, observer
        self.interval, self.poll_every = interval, poll_every
        self.seen = Observations()
        self._halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self._halt.is_set():
            t0 = time.monotonic()
            status, _ = self.victim.get("/healthz")
            took = time.monotonic() - t0
            if status == 200:
                self.seen.healthz_s.append(took)
            else:
                self.seen.healthz_failures += 1
            n += 1
            if n % self.poll_every == 0:
                self._poll()
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def _poll(self) -> None:
        self.seen.polls += 1
        views = [self.observer.health_of_others(), self.victim.health_of_others()]
        if any(h != "Alive" for view in views for h in view.values()) or not all(views):
            self.seen.false_suspicions += 1
        rss = rss_mib([self.victim.proc.pid]).get(self.victim.proc.pid)
        if rss is not None:
            self.seen.rss_mib.append(rss)
        self.seen.fds.append(self.victim.fds())

    def halt(self) -> Observations:
        self._halt.set()
        self.join(10)
        return self.seen


# --- one run --------------------------------------------------------------------------------


@dataclass
class Report:
    connections: int
    fd_limit: int
    duration_s: float
    baseline_rss_mib: float
    baseline_cpu: float
    baseline_fds: int
    attack_rss_mib_max: float
    attack_cpu: float
    attack_fds_max: int
    healthz_p50_ms: float
    healthz_p99_ms: float
    healthz_max_ms: float
    healthz_failures: int
    healthz_probes: int
    false_suspicions: int
    polls: int
    log_bytes: int
    recover_s: float
    attack: AttackStats


def cpu_rate(pid: int, seconds: float) -> float:
    before = cpu_seconds([pid]).get(pid, 0.0)
    time.sleep(seconds)
    return (cpu_seconds([pid]).get(pid, 0.0) - before) / seconds


def attack(
    victim: Member, observer: Member, *, connections: int, duration_s: float, fd_limit: int
) -> Report:
    """Baseline (3 s), `duration_s` of slowloris, then recovery; both members already joined."""
    pid = victim.proc.pid
    baseline_cpu = cpu_rate(pid, 3.0)
    baseline_rss = rss_mib([pid]).get(pid, float("nan"))
    baseline_fds = victim.fds()
    raise_nofile_limit()
    log_before = victim.log_size()
    cpu_before = cpu_seconds([pid]).get(pid, 0.0)
    watcher = Watcher(victim, observer)
    loris = SlowLoris(victim.http, connections)
    t0 = time.monotonic()
    watcher.start()
    loris.start()
    time.sleep(duration_s)
    loris.stop()
    attack_wall = time.monotonic() - t0
    attack_cpu = (cpu_seconds([pid]).get(pid, 0.0) - cpu_before) / attack_wall
    seen = watcher.halt()
    ended = time.monotonic()
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: victim.fds() <= baseline_fds + 8, 30.0, "descriptors back")
    recover_s = time.monotonic() - ended
    lat = seen.healthz_s or [float("nan")]
    return Report(
        connections=connections,
        fd_limit=fd_limit,
        duration_s=duration_s,
        baseline_rss_mib=baseline_rss,
        baseline_cpu=baseline_cpu,
        baseline_fds=baseline_fds,
        attack_rss_mib_max=max(seen.rss_mib, default=float("nan")),
        attack_cpu=attack_cpu,
        attack_fds_max=max(seen.fds, default=0),
        healthz_p50_ms=percentile(lat, 50) * 1000,
        healthz_p99_ms=percentile(lat, 99) * 1000,
        healthz_max_ms=max(lat) * 1000,
        healthz_failures=seen.healthz_failures,
        healthz_probes=len(seen.healthz_s) + seen.healthz_failures,
        false_suspicions=seen.false_suspicions,
        polls=seen.polls,
        log_bytes=victim.log_size() - log_before,
        recover_s=recover_s,
        attack=loris.stats,
    )


def ring_of_two(root: Path, profile: str, fd_limit: int) -> tuple[Member, Member]:
    victim = launch("victim", root, profile=profile, fd_limit=(fd_limit, fd_limit))
    observer = launch("observer", root, profile=profile, peers=(f"{HOST}:{victim.gossip}",))
    try:
        wait_until(lambda: victim.get("/healthz")[0] == 200, 20, "the victim's gateway")
        wait_until(
            lambda: (
                list(observer.health_of_others().values()) == ["Alive"]
                and list(victim.health_of_others().values()) == ["Alive"]
            ),
            30,
            "a ring of two",
        )
    except BaseException:
        victim.stop()
        observer.stop()
        raise
    return victim, observer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    p.add_argument("--connections", type=int, default=1100)
    p.add_argument("--fd-limit", type=int, default=1024)
    p.add_argument("--duration", type=float, default=20.0, help="seconds of attack [20]")
    p.add_argument("--profile", default="lan", help="gossip profile of both members [lan]")
    p.add_argument("--root", default="/tmp/pysup-bench-faults", help="state dirs and logs")
    p.add_argument("--save", action="store_true", help="write bench/results/faults-<date>.json")
    args = p.parse_args(argv)
    root = Path(args.root)
    victim, observer = ring_of_two(root, args.profile, args.fd_limit)
    try:
        report = attack(
            victim,
            observer,
            connections=args.connections,
            duration_s=args.duration,
            fd_limit=args.fd_limit,
        )
    finally:
        victim.stop()
        observer.stop()
    doc = asdict(report)
    print(json.dumps(doc, indent=2))
    if args.save:
        result = Result.from_samples("pysup", "slowloris", 2, [report.healthz_p99_ms], "ms", **doc)
        print(f"saved {write_results([result], 'faults', machine=describe_machine())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak: a ring of real `pysup run` processes under churn, watched for leaks.

    python -m bench.soak --members 50 --minutes 30 [--churn-every 10] [--departure-timeout 60]

Every member is a real supervisor process (its own interpreter, ports and state dir) running one
small service (`soak.default`, a `tail -f` of a file), so every member publishes a service rumor.
Members 0..S-1 (`--stable`, default 10) are never churned: their RSS, open file descriptors
(`/proc/PID/fd`) and asyncio tasks (`pysup_asyncio_tasks` from `/metrics`) are the measured series,
sampled every `--sample-every` seconds; member 0's `/butterfly` gives members and rumors by kind.

Churn, one action every `--churn-every` seconds, cycling through:

    join      a new member (fresh state dir and ports) joins through the seeds
    leave     SIGTERM a churnable member: it leaves (Departed at once) and stays gone
    restart   kill -9 a churnable member (and its service) and start it again on its state dir
    config    `config apply soak.default <version>` through a random member's control gateway
    join      another new member
    die       kill -9 a churnable member (and its service) for good: Confirmed, then Departed

so the population stays at `--members`. Members are started with `--departure-timeout`, so the
service rumors of members that left are garbage-collected `departure-timeout` after they left, and
those of members that died `departure-timeout` after Confirmed became Departed. After each such
deadline (plus `--gc-slack`) member 0's `/butterfly` must no longer list the member's service rumor.

Pass criteria (after `--warmup` minutes): mean RSS of the stable members over the last 2 minutes
within 10% of the mean over the minute after warm-up; open fds and tasks of the stable members
not growing (end <= warm-up + a small slack); every departed member's service rumor collected.
Results: `bench/results/soak-<N>-<date>.json` and a Markdown summary on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Result, describe_machine, rss_mib, write_results
from bench.serf_env import free_ports, raise_nofile_limit
from pysup.testing.procs import kill_processes_under

HOST = "127.0.0.1"
SYSTEM = "pysup-procs"
GROUP = "soak.default"
ACTIONS = ("join", "leave", "restart", "config", "join", "die")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_plan(root: Path) -> Path:
    d = root / "plan"
    (d / "hooks").mkdir(parents=True)
    (d / "config").mkdir()
    (d / "plan.toml").write_text('name = "soak"\norigin = "bench"\nversion = "1.0.0"\n')
    (d / "default.toml").write_text('value = "initial"\n')
    (d / "config" / "app.conf").write_text("value={{cfg.value}}\n")
    # The state dir is in tail's command line, so a killed supervisor's service can be found.
    run = "#!/bin/sh\ntouch {{pkg.svc_var_path}}/keep\nexec tail -f {{pkg.svc_var_path}}/keep\n"
    (d / "hooks" / "run").write_text(run)
    (d / "hooks" / "run").chmod(0o755)
    return d


def http_json(port: int, path: str, timeout: float = 5.0) -> Any:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
            body = r.read()
    except (OSError, urllib.error.URLError, TimeoutError):
        return None
    if path == "/metrics":
        return body.decode()
    try:
        return json.loads(body)
    except ValueError:
        return None


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            return float(line.rsplit(" ", 1)[1])
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


@dataclass
class Member:
    index: int
    root: Path
    gossip: int
    http: int
    ctl: int
    seeds: list[int]
    plan: Path
    departure_timeout: float
    profile: str
    proc: subprocess.Popen[bytes] | None = None
    member_id: str | None = None
    restarts: int = 0

    @property
    def state(self) -> Path:
        return self.root / f"m{self.index}"

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "pysup",
            "run",
            str(self.plan),
            "--listen-gossip",
            f"{HOST}:{self.gossip}",
            "--listen-http",
            f"{HOST}:{self.http}",
            "--listen-ctl",
            f"{HOST}:{self.ctl}",
            "--state-dir",
            str(self.state),
            "--gossip-profile",
            self.profile,
            "--departure-timeout",
            str(self.departure_timeout),
            "--json-logging",
        ]
        for s in self.seeds:
            if s != self.gossip:
                cmd += ["--peer", f"{HOST}:{s}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
        with open(self.root / f"m{self.index}.log", "ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_id(self) -> str | None:
        with contextlib.suppress(OSError):
            self.member_id = (self.state / "MEMBER_ID").read_text().strip() or None
        return self.member_id

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        kill_processes_under(self.state)

    def term(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()


@dataclass
class Gone:
    member_id: str
    how: str
    at: float
    due: float
    collected_at: float | None = None


@dataclass
class Soak:
    args: argparse.Namespace
    root: Path
    plan: Path
    rng: random.Random
    members: list[Member] = field(default_factory=list)
    gone: list[Gone] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    config_version: int = 1
    t0: float = 0.0

    def new_member(self, seeds: list[int]) -> Member:
        gossip, http, ctl = free_ports(3)
        m = Member(
            len(self.members),
            self.root,
            gossip,
            http,
            ctl,
            seeds,
            self.plan,
            self.args.departure_timeout,
            self.args.profile,
        )
        self.members.append(m)
        return m

    def stable(self) -> list[Member]:
        return self.members[: self.args.stable]

    def churnable(self) -> list[Member]:
        return [m for m in self.members[self.args.stable :] if m.alive()]

    def seeds(self) -> list[int]:
        return [m.gossip for m in self.members[:2]]

    def wait_up(self, m: Member, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not m.alive():
                return False
            if http_json(m.http, "/healthz") is not None:
                m.read_id()
                return True
            time.sleep(0.5)
        return False

    # --- churn ------------------------------------------------------------------------------

    def act(self, action: str) -> None:
        self.actions[action] = self.actions.get(action, 0) + 1
        now = time.monotonic()
        dt = self.args.departure_timeout
        if action == "join":
            m = self.new_member(self.seeds())
            m.start()
            ok = self.wait_up(m)
            log(f"join m{m.index} ({m.member_id}) up={ok}")
            return
        pool = self.churnable()
        if action == "config":
            target = self.rng.choice([m for m in self.members if m.alive()])
            self.config_version += 1
            ok = asyncio.run(self.config_apply(target))
            log(f"config apply v{self.config_version} via m{target.index}: {ok}")
            return
        if not pool:
            return
        victim = self.rng.choice(pool)
        victim.read_id()
        if action == "leave":
            victim.term()
            kill_processes_under(victim.state)
            if victim.member_id:
                self.gone.append(Gone(victim.member_id, "leave", now, now + dt))
            rc = victim.proc.poll() if victim.proc is not None else None
            log(f"leave m{victim.index} ({victim.member_id}) exit {rc}")
        elif action == "die":
            victim.kill9()
            if victim.member_id:
                # suspicion (<= suspicion_max), Confirmed -> Departed (dt), then GC (dt)
                self.gone.append(Gone(victim.member_id, "die", now, now + 60.0 + 2 * dt))
            log(f"die m{victim.index} ({victim.member_id})")
        elif action == "restart":
            victim.kill9()
            time.sleep(self.rng.uniform(0.5, 3.0))
            victim.restarts += 1
            victim.start()
            ok = self.wait_up(victim)
            log(f"restart m{victim.index} ({victim.member_id}) up={ok}")

    async def config_apply(self, target: Member) -> str:
        from pysup.ctl_client import CtlClientError, send
        from pysup.gateway.ctl_proto import ConfigApply

        try:
            secret = (target.state / "CTL_SECRET").read_text().strip()
            body = f'value = "v{self.config_version}"\n'.encode()
            req = ConfigApply(GROUP, self.config_version, body)
            r = await send(HOST, target.ctl, secret, req)
            return f"ok {r.get('version')}"
        except (OSError, CtlClientError) as e:
            return f"failed: {e}"

    # --- sampling ---------------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        t = time.monotonic() - self.t0
        stable = [m for m in self.stable() if m.alive() and m.proc is not None]
        pids = [m.proc.pid for m in stable if m.proc is not None]
        rss = rss_mib(pids)
        fds = {p: open_fds(p) for p in pids}
        tasks: dict[int, float | None] = {}
        for m in stable:
            text = http_json(m.http, "/metrics")
            assert m.proc is not None
            tasks[m.proc.pid] = metric(text, "pysup_asyncio_tasks") if text else None
        bf = http_json(self.members[0].http, "/butterfly")
        health: dict[str, int] = {}
        service_ids: set[str] = set()
        rumors: dict[str, int] = {}
        if isinstance(bf, dict):
            for h in bf["member"]["health"].values():
                health[h] = health.get(h, 0) + 1
            for group in bf["service"]["list"].values():
                service_ids.update(group)
            for kind in ("service", "service_config", "service_file", "election", "departure"):
                rumors[kind] = sum(
                    len(v) if isinstance(v, dict) and kind == "service" else 1
                    for v in bf[kind]["list"].values()
                )
        for g in self.gone:
            if g.collected_at is None and bf is not None and g.member_id not in service_ids:
                g.collected_at = time.monotonic()
        all_live = [m.proc.pid for m in self.members if m.alive() and m.proc is not None]
        all_rss = rss_mib(all_live)
        s = {
            "t": round(t, 1),
            "rss": {str(p): round(v, 2) for p, v in rss.items()},
            "fds": {str(p): v for p, v in fds.items()},
            "tasks": {str(p): v for p, v in tasks.items()},
            "health": health,
            "rumors": rumors,
            "service_members": len(service_ids),
            "live_procs": len(all_live),
            "all_rss_mean": round(sum(all_rss.values()) / max(1, len(all_rss)), 2),
        }
        self.samples.append(s)
        return s

    # --- run ----------------------------------------------------------------------------

    def run(self) -> int:
        a = self.args
        self.t0 = time.monotonic()
        log(f"starting {a.members} members under {self.root}")
        seed = self.new_member([])
        seed.start()
        if not self.wait_up(seed):
            log("the seed did not start")
            return 1
        second = self.new_member([seed.gossip])
        second.start()
        for _ in range(a.members - 2):
            self.new_member(self.seeds()).start()
            time.sleep(a.spawn_gap)
        for m in self.members:
            if not self.wait_up(m, 120.0):
                log(f"m{m.index} did not start")
        log(f"all spawned in {time.monotonic() - self.t0:.1f}s; warm-up {a.warmup} min")
        end = self.t0 + a.minutes * 60
        next_sample = time.monotonic()
        next_churn = self.t0 + 60.0  # let the ring form first
        i = 0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                s = self.sample()
                rss = list(s["rss"].values())
                log(
                    f"t={s['t']:.0f}s rss(stable) mean {sum(rss) / max(1, len(rss)):.1f} MiB "
                    f"fds {sorted(set(s['fds'].values()))} tasks {sorted(set(s['tasks'].values()))}"
                    f" health {s['health']} rumors {s['rumors']} procs {s['live_procs']}"
                )
                next_sample = now + a.sample_every
            if now >= next_churn:
                try:
                    self.act(ACTIONS[i % len(ACTIONS)])
                except Exception as e:  # a failed action is recorded, the soak goes on
                    log(f"action {ACTIONS[i % len(ACTIONS)]} failed: {e!r}")
                i += 1
                next_churn = now + a.churn_every
            time.sleep(0.5)
        self.sample()
        return self.report()

    def report(self) -> int:
        a = self.args
        warm = a.warmup * 60
        after = [s for s in self.samples if s["t"] >= warm]
        if len(after) < 4:
            log("not enough samples after warm-up")
            return 1
        first_min = [s for s in after if s["t"] < warm + 60] or after[:1]
        last_2 = [s for s in after if s["t"] >= self.samples[-1]["t"] - 120] or after[-1:]

        def mean_of(series: list[dict[str, Any]], key: str) -> float:
            xs = [float(v) for s in series for v in s[key].values() if v is not None]
            return sum(xs) / len(xs) if xs else math.nan

        def max_of(series: list[dict[str, Any]], key: str) -> float:
            xs = [float(v) for s in series for v in s[key].values() if v is not None]
            return max(xs) if xs else math.nan

        rss0, rss1 = mean_of(first_min, "rss"), mean_of(last_2, "rss")
        growth = (rss1 - rss0) / rss0 * 100.0
        fds0, fds1 = max_of(first_min, "fds"), max_of(last_2, "fds")
        tasks0, tasks1 = max_of(first_min, "tasks"), max_of(last_2, "tasks")
        overdue = [
            g
            for g in self.gone
            if g.due + a.gc_slack <= time.monotonic()
            and (g.collected_at is None or g.collected_at > g.due + a.gc_slack)
        ]
        checked = [g for g in self.gone if g.due + a.gc_slack <= time.monotonic()]
        gc_delays = [g.collected_at - g.at for g in checked if g.collected_at is not None]
        ok_rss = growth < 10.0
        ok_fds = fds1 <= fds0 + 2
        ok_tasks = tasks1 <= tasks0 + 2
        ok_gc = not overdue
        passed = ok_rss and ok_fds and ok_tasks and ok_gc
        meta = {
            "minutes": a.minutes,
            "warmup_min": a.warmup,
            "churn_every_s": a.churn_every,
            "departure_timeout_s": a.departure_timeout,
            "profile": a.profile,
            "stable_members": a.stable,
            "actions": self.actions,
            "rss_warm_mib": rss0,
            "rss_end_mib": rss1,
            "rss_growth_pct": growth,
            "fds_warm_max": fds0,
            "fds_end_max": fds1,
            "tasks_warm_max": tasks0,
            "tasks_end_max": tasks1,
            "gone": [g.__dict__ for g in self.gone],
            "gc_checked": len(checked),
            "gc_overdue": [g.member_id for g in overdue],
            "passed": passed,
            "timeline": self.samples,
        }
        rss_series = [mean_of([s], "rss") for s in self.samples]
        res = Result.from_samples(SYSTEM, "soak_rss", a.members, rss_series, "MiB", **meta)
        path = write_results([res], f"soak-{a.members}", machine=describe_machine())
        gc_text = f"{len(checked) - len(overdue)}/{len(checked)} collected in time" + (
            f" (left/died to gone from /butterfly: {min(gc_delays):.0f}-{max(gc_delays):.0f} s)"
            if gc_delays
            else ""
        )
        print(
            "\n".join(
                [
                    "",
                    "| members | minutes | churn actions | RSS warm MiB | RSS end MiB | growth |"
                    " fds warm/end | tasks warm/end | departed rumors GC | pass |",
                    "|---|---|---|---|---|---|---|---|---|---|",
                    f"| {a.members} | {a.minutes} | {sum(self.actions.values())} {self.actions} "
                    f"| {rss0:.1f} | {rss1:.1f} | {growth:+.1f}% | {fds0:.0f}/{fds1:.0f} "
                    f"| {tasks0:.0f}/{tasks1:.0f} | {gc_text} | {'yes' if passed else 'NO'} |",
                    "",
                    f"results: {path}",
                ]
            ),
            flush=True,
        )
        return 0 if passed else 1

    def close(self) -> None:
        for m in self.members:
            if m.alive() and m.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    m.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for m in self.members:
            if m.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    m.proc.wait(max(0.1, deadline - time.monotonic()))
                if m.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(m.proc.pid, signal.SIGKILL)
        kill_processes_under(self.root)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0, help="minutes before measuring [5]")
    p.add_argument("--churn-every", type=float, default=10.0, help="seconds between actions")
    p.add_argument("--departure-timeout", type=float, default=60.0, help="seconds [60]")
    p.add_argument("--gc-slack", type=float, default=45.0, help="seconds allowed past the GC due")
    p.add_argument("--sample-every", type=float, default=15.0)
    p.add_argument("--stable", type=int, default=10, help="members never churned (measured)")
    p.add_argument("--profile", default="lan")
    p.add_argument("--spawn-gap", type=float, default=0.4, help="seconds between spawns")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the state/log directory")
    a = p.parse_args(argv)
    raise_nofile_limit()
    root = Path(tempfile.mkdtemp(prefix="pysup-soak-"))
    soak = Soak(a, root, make_plan(root), random.Random(a.seed))
    try:
        return soak.run()
    finally:
        soak.close()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            log(f"kept {root}")


if __name__ == "__main__":
    sys.exit(main())

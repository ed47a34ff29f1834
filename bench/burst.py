"""Goal 6 of issue 18: a supervisor's own load must not make its ring flap.

`svc load` of one trivial plan on every member of a `ProcRing` at the same instant (one control
request per member, all sent concurrently), then:

- **false suspicions**: `member.suspect` lines the members logged during the burst (every member
  is alive, so each is false), the distinct members suspected, false `member.confirmed` lines,
  and the members that had to refute (`member.refuted`); then the same counts over
  `AFTERMATH_S` more (flapping the burst set off);
- **CPU per plan load**: CPU seconds of all supervisors (with their reaped hooks) over the burst,
  minus what the same processes burn idle over the same wall time, divided by N;
- **time to up**: per member, from the request until it logged `service.state ... new=up`;
- optionally a **py-spy profile** of one member during the burst (``--format raw``, summarised
  by `bench.breakdown.summarize_collapsed`): where the burst's CPU goes.

The plan (`benchsvc`) is what `bench.e2e` then uses: a run hook that idles, a reconfigure hook
that stamps the time and the rendered config into `var/reconfigured`, and a health check that
exits with the code written in `var/health_rc` (0 when absent).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.breakdown import summarize_collapsed
from bench.cprof_table import format_summary, load_overhead, load_stats, summarize, unprofiled
from bench.measure import cpu_seconds, parse_proc_stat_children_cpu, parse_proc_stat_cpu
from bench.procs import Member, ProcRing

PLAN = "benchsvc"
GROUP = f"{PLAN}.default"
SUSPICION_GRACE_S = 10.0
"""Seconds after the last member came up during which suspicions still count: a probe missed
during the burst shows up as a suspicion up to a probe period plus the timeouts later."""
AFTERMATH_S = 30.0
"""Seconds the ring is watched after the burst's window (CPU is not counted there): the first
N=100 measurement showed the burst setting off flapping that outlived the window (suspicions
feeding census re-renders feeding missed probes) and turned into false Confirmed 12 s on, past
the earliest suspicion timeout at N=100 (8 s)."""


def make_plan(root: Path) -> Path:
    """Write the trivial plan under `root` and return its directory."""
    d = root / PLAN
    (d / "hooks").mkdir(parents=True, exist_ok=True)
    (d / "config").mkdir(exist_ok=True)
    (d / "plan.toml").write_text(f'name = "{PLAN}"\norigin = "bench"\nversion = "1.0.0"\n')
    (d / "default.toml").write_text('value = "v0"\n')
    (d / "config" / "app.conf").write_text("value={{cfg.value}}\n")
    hooks = {
        # The var path is on tail's command line, so the service of a supervisor killed with -9
        # is found and killed by kill_processes_under.
        "run": (
            "#!/bin/sh\ntouch {{pkg.svc_var_path}}/keep\nexec tail -f {{pkg.svc_var_path}}/keep\n"
        ),
        "reconfigure": (
            "#!/bin/sh\n"
            'echo "$(date +%s.%N) $(cat {{pkg.svc_config_path}}/app.conf)" '
            ">> {{pkg.svc_var_path}}/reconfigured\n"
        ),
        "health-check": (
            "#!/bin/sh\nrc=$(cat {{pkg.svc_var_path}}/health_rc 2>/dev/null || echo 0)\nexit $rc\n"
        ),
    }
    for name, text in hooks.items():
        (d / "hooks" / name).write_text(text)
        (d / "hooks" / name).chmod(0o755)
    return d


def svc_var(m: Member) -> Path:
    return m.state / "svc" / PLAN / "var"


def py_spy_binary() -> str | None:
    """py-spy from this interpreter's environment (scripts/setup-bench installs it there)."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = py_spy_binary()
    if exe is None:
        return None
    cmd = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds)))]
    cmd += ["-r", "100", "--nonblocking", "--format", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def load_burst(
    ring: ProcRing,
    plan: Path,
    *,
    idle_cpu_per_process: float,
    health_interval_s: float = 5.0,
    wait_s: float = 120.0,
    profile_s: float = 0.0,
    cprofile_out: Path | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Load `plan` on every live member at once; see the module docstring for what is counted.

    `idle_cpu_per_process` (CPU s/s of one idle member) is subtracted from the burst's CPU.
    `profile_s` > 0 records member 1 (not the seed) with py-spy for that long. `cprofile_out`:
    member 1 runs under `bench.cprof_member` (the ring was made with ``cprofile_index=1``); its
    cProfile covers the burst's window (requests to the end of the grace period) and its stats
    are copied there, summarised by `bench.cprof_table` under ``cprofile`` in the result."""
    from pysup.gateway.ctl_proto import SvcLoad

    members = ring.live
    pids = [m.proc.pid for m in members]
    ring.read_all(members)
    spy = None
    spy_out = ring.workdir / "burst-profile.txt"
    if profile_s > 0 and len(members) > 1:
        spy = _py_spy(members[1].proc.pid, profile_s, spy_out)
    prof_pid = members[1].proc.pid if cprofile_out is not None and len(members) > 1 else None
    if prof_pid is not None:
        os.kill(prof_pid, signal.SIGUSR1)
        prof_cpu0 = _own_and_children(prof_pid)
    cpu0 = cpu_seconds(pids, children=True)
    t0 = time.time()
    mono0 = time.monotonic()
    req = SvcLoad(plan_dir=str(plan), health_check_interval_s=health_interval_s)

    async def send_all() -> list[tuple[float, str | None]]:
        async def one(m: Member) -> tuple[float, str | None]:
            try:
                await ring.ctl(m, req)
                return time.time() - t0, None
            except Exception as e:  # counted, the burst goes on
                return time.time() - t0, f"{type(e).__name__}: {e}"

        return await asyncio.gather(*(one(m) for m in members))

    say(f"burst: svc load on {len(members)} members at once")
    replies = asyncio.run(send_all())
    up, misses = ring.poll(
        members,
        lambda m: m.view.first_other("service.state", t0, service_group=GROUP, new="up"),
        t0,
        wait_s,
    )
    end = time.time() + SUSPICION_GRACE_S
    say(f"burst: all up after {max(up, default=0):.1f}s; {SUSPICION_GRACE_S:g}s grace")
    while time.time() < end:
        ring.read_all(members)
        time.sleep(0.5)
    ring.read_all(members)
    cpu1 = cpu_seconds(pids, children=True)
    wall = time.monotonic() - mono0
    if prof_pid is not None:
        os.kill(prof_pid, signal.SIGUSR2)
        prof_cpu1 = _own_and_children(prof_pid)
    t1 = time.time()
    used = sum(cpu1[p] - cpu0[p] for p in cpu0 if p in cpu1)
    idle = idle_cpu_per_process * wall * len(members)
    suspects = [e for m in members for e in m.view.events("suspect", t0, t1)]
    confirms = [e for m in members for e in m.view.events("confirmed", t0, t1)]
    refuted = [e for m in members for e in m.view.other if e.kind == "refuted" and e.t >= t0]
    out: dict[str, Any] = {
        "members": len(members),
        "up_s": up,
        "not_up": misses,
        "request_s": [r[0] for r in replies],
        "request_errors": [r[1] for r in replies if r[1]],
        "window_s": wall,
        "cpu_s_total": used,
        "cpu_s_idle_part": idle,
        "cpu_s_per_load": (used - idle) / len(members),
        "false_suspicions": len(suspects),
        "suspected_members": len({e.target for e in suspects}),
        "suspecting_members": sum(1 for m in members if m.view.events("suspect", t0, t1)),
        "false_confirmed": len(confirms),
        "refutations": len(refuted),
        "health_interval_s": health_interval_s,
    }
    say(f"burst: aftermath {AFTERMATH_S:g}s")
    time.sleep(AFTERMATH_S)
    ring.read_all(members)
    t2 = time.time()
    out["aftermath_s"] = AFTERMATH_S
    out["aftermath_suspicions"] = sum(len(m.view.events("suspect", t1, t2)) for m in members)
    out["aftermath_confirmed"] = sum(len(m.view.events("confirmed", t1, t2)) for m in members)
    if spy is not None:
        try:
            spy.wait(profile_s + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
        if spy_out.exists():
            out["py_spy"] = summarize_collapsed(spy_out.read_text())
            out["py_spy"]["member_index"] = 1
    if prof_pid is not None and cprofile_out is not None:
        out["cprofile"] = _cprofile_result(ring, cprofile_out, prof_cpu0, prof_cpu1, say)
    return out


def _own_and_children(pid: int) -> tuple[float, float]:
    """(own CPU s, reaped children's CPU s) of one process."""
    with open(f"/proc/{pid}/stat") as f:
        line = f.read()
    return parse_proc_stat_cpu(line), parse_proc_stat_children_cpu(line)


def _cprofile_result(
    ring: ProcRing,
    keep: Path,
    cpu0: tuple[float, float],
    cpu1: tuple[float, float],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Member 1's cProfile of the window (waited for: SIGUSR2 makes it write the file), kept at
    `keep`, with the member's own and its hooks' CPU over the same window from /proc."""
    src = ring.cprofile_path(1)
    done = src.with_name(src.name + ".overhead")  # written after the stats
    deadline = time.monotonic() + 30.0
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    if not done.exists():
        return {"error": "no stats written"}
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, keep)
    shutil.copyfile(done, keep.with_name(keep.name + ".overhead"))
    s = summarize(load_stats(keep), overhead_s=load_overhead(keep))
    own, kids = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    say(f"burst: member 1 CPU {own:.3f} s own, {kids:.3f} s hooks (/proc)")
    say("burst: cProfile of member 1\n" + format_summary(s))
    return {
        "stats_file": str(keep),
        "member_index": 1,
        "proc_cpu_own_s": own,
        "proc_cpu_children_s": kids,
        "profiled_s": s.total_s,
        "families_s": s.families,
        "families_unprofiled_s": unprofiled(s),
        "overhead_per_call_s": s.overhead_s,
        "counts": s.counts,
    }

"""SupervisedProcess and ProcessSupervisor with real run hooks and pkg_svc_run commands."""

from __future__ import annotations

import itertools
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.service.backoff import RestartBackoff
from pysup.service.process import (
    ProcessError,
    ProcessState,
    ProcessSupervisor,
    SupervisedProcess,
)
from tests.util import async_wait_for, process_alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SG = "api.default"
ENV = {"PATH": "/usr/bin:/bin", "GREETING": "hi"}


def make_proc(tmp_path: Path, body: str | None = None, cmd: str | None = None) -> SupervisedProcess:
    svc = tmp_path / "svc"
    (svc / "hooks").mkdir(parents=True, exist_ok=True)
    hook = None
    if body is not None:
        hook = svc / "hooks" / "run"
        hook.write_text(body)
    return SupervisedProcess(service_group=SG, svc_dir=svc, env=ENV, run_hook=hook, run_cmd=cmd)


async def until(cond: Callable[[], object], within: float = 5.0, what: str = "") -> None:
    """Poll a plain predicate (bounded)."""

    async def check() -> bool:
        return bool(cond())

    await async_wait_for(check, timeout=within, what=what)


async def test_run_hook_up_pid_file_logs_then_term_stops_and_cleans_up(tmp_path: Path) -> None:
    p = make_proc(tmp_path, '#!/bin/sh\necho "$GREETING from run"\necho warn >&2\nexec sleep 60\n')
    assert p.state is ProcessState.DOWN and p.pid is None
    before = time.time()
    with capture_logs() as logs:
        pid = await p.start()
        assert p.state is ProcessState.UP and p.pid == pid
        assert before <= p.state_entered <= time.time()
        assert (p.svc_dir / "PID").read_text() == f"{pid}\n"
        out_log = p.svc_dir / "logs" / "run.stdout.log"
        await until(lambda: out_log.exists() and out_log.read_text() == "hi from run\n")
        await until(lambda: (p.svc_dir / "logs" / "run.stderr.log").read_text() == "warn\n")
        t0 = time.monotonic()
        await p.stop("TERM", timeout_s=5.0)
        assert time.monotonic() - t0 < 2.0  # sleep dies on TERM: no KILL escalation
    assert p.state is ProcessState.DOWN and p.pid is None
    assert not (p.svc_dir / "PID").exists()
    assert await p.wait() == -signal.SIGTERM
    assert not process_alive(pid)
    texts = {e["text"] for e in logs if e["event"] == "hook.output"}
    assert texts == {"api.default(run): hi from run", "api.default(run): warn"}
    assert not any(e["event"] == "service.kill" for e in logs)


async def test_pkg_svc_run_command_is_execed_by_sh(tmp_path: Path) -> None:
    p = make_proc(tmp_path, cmd="sleep 60")
    pid = await p.start()
    try:
        # `exec`: the service itself is the group leader, not a wrapping shell
        await until(lambda: Path(f"/proc/{pid}/comm").read_text().strip() == "sleep")
        assert os.getpgid(pid) == pid and os.getsid(pid) == pid
    finally:
        await p.stop()


async def test_stop_escalates_to_kill_when_term_is_trapped(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    p = make_proc(
        tmp_path, f"#!/bin/sh\ntrap '' TERM\ntouch {ready}\nwhile :; do sleep 0.1; done\n"
    )
    await p.start()
    await until(ready.exists, what="TERM trap installed")
    with capture_logs() as logs:
        t0 = time.monotonic()
        await p.stop("TERM", timeout_s=0.5)
        elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 2.5
    assert await p.wait() == -signal.SIGKILL
    assert any(e["event"] == "service.kill" for e in logs)
    assert p.state is ProcessState.DOWN and not (p.svc_dir / "PID").exists()


async def test_other_shutdown_signal_is_sent(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    body = (
        f"#!/bin/sh\ntrap 'echo got-hup; exit 0' HUP\ntouch {ready}\nwhile :; do sleep 0.05; done\n"
    )
    p = make_proc(tmp_path, body)
    await p.start()
    await until(ready.exists)
    await p.stop("HUP", timeout_s=5.0)
    assert p.last_exit_code is not None
    await until(lambda: "got-hup" in (p.svc_dir / "logs" / "run.stdout.log").read_text())


async def test_children_left_behind_by_a_dying_run_process_are_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    p = make_proc(tmp_path, f"#!/bin/sh\nsleep 60 &\necho $! > {pidfile}\nexit 3\n")
    await p.start()
    assert await p.wait() == 3
    child = int(pidfile.read_text())
    await until(lambda: not process_alive(child), what="straggler killed")


async def test_start_twice_and_bad_run_hook_raise(tmp_path: Path) -> None:
    p = make_proc(tmp_path, cmd="sleep 60")
    await p.start()
    try:
        with pytest.raises(ProcessError):
            await p.start()
    finally:
        await p.stop()
    missing = SupervisedProcess(
        service_group=SG, svc_dir=tmp_path, env=ENV, run_hook=tmp_path / "nope"
    )
    with pytest.raises(ProcessError):
        await missing.start()
    with pytest.raises(ValueError):
        SupervisedProcess(service_group=SG, svc_dir=tmp_path, env=ENV)


class MaxRandom(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


async def test_crash_loop_backs_off_with_growing_delays(tmp_path: Path) -> None:
    starts: list[float] = []
    p = make_proc(tmp_path, "#!/bin/sh\necho crashing\nexit 1\n")
    p.on_state_change = lambda s: starts.append(time.monotonic()) if s is ProcessState.UP else None
    backoff = RestartBackoff(base_s=0.1, max_s=1.0, cooldown_s=300.0)
    exits: list[tuple[int | None, float | None]] = []
    sup = ProcessSupervisor(
        p, backoff=backoff, rng=MaxRandom(), on_exit=lambda c, d: exits.append((c, d))
    )
    with capture_logs() as logs:
        await sup.start()
        await until(lambda: len(starts) >= 5, within=10, what="5 starts")
        await sup.stop()
    expected = [0.1, 0.3, 0.9, 1.0]
    assert [d for _, d in exits[:4]] == pytest.approx(expected)
    assert all(c == 1 for c, _ in exits)
    gaps = [b - a for a, b in itertools.pairwise(starts)][:4]
    for gap, delay in zip(gaps, expected, strict=True):
        # never earlier than the backoff says, and not much later (the delays really grow)
        assert delay <= gap < delay + 0.5, (gaps, expected)
    assert sup.restart_count >= 4
    assert sum(e["event"] == "service.restart" for e in logs) >= 4
    assert sum(e["event"] == "service.exited" for e in logs) >= 4
    assert not sup.desired_up and sup.state is ProcessState.DOWN


async def test_stop_during_backoff_cancels_the_pending_restart(tmp_path: Path) -> None:
    starts: list[float] = []
    p = make_proc(tmp_path, "#!/bin/sh\nexit 1\n")
    p.on_state_change = lambda s: starts.append(time.monotonic()) if s is ProcessState.UP else None
    sup = ProcessSupervisor(p, backoff=RestartBackoff(base_s=30.0, max_s=30.0))
    await sup.start()
    await until(lambda: sup.next_restart_at is not None, what="backoff pending")
    t0 = time.monotonic()
    await sup.stop()
    assert time.monotonic() - t0 < 1.0
    assert sup.next_restart_at is None and len(starts) == 1


async def test_unexpected_kill_is_restarted_and_start_during_backoff_starts_now(
    tmp_path: Path,
) -> None:
    p = make_proc(tmp_path, cmd="sleep 60")
    sup = ProcessSupervisor(p, backoff=RestartBackoff(base_s=0.05, max_s=0.05))
    await sup.start()
    first = sup.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await until(lambda: sup.pid not in (None, first), what="restarted")
    assert sup.restart_count == 1 and sup.state is ProcessState.UP
    assert (p.svc_dir / "PID").read_text() == f"{sup.pid}\n"
    # a long backoff is cut short by an explicit start()
    sup.backoff = RestartBackoff(base_s=30.0, max_s=30.0)
    second = sup.pid
    assert second is not None
    os.kill(second, signal.SIGKILL)
    await until(lambda: sup.next_restart_at is not None, what="backoff pending")
    assert await sup.start()
    assert sup.pid not in (None, second)
    # an immediate restart resets the counters (Habitat: config change)
    assert await sup.restart()
    assert sup.restart_count == 0 and sup.backoff.attempts == 0
    await sup.close()
    assert sup.state is ProcessState.DOWN and not (p.svc_dir / "PID").exists()


async def test_run_hook_that_cannot_start_is_retried_with_backoff(tmp_path: Path) -> None:
    hook = tmp_path / "svc" / "hooks" / "run"
    p = make_proc(tmp_path, "#!/no/such/interpreter\n")
    exits: list[int | None] = []
    sup = ProcessSupervisor(
        p, backoff=RestartBackoff(base_s=0.05, max_s=0.05), on_exit=lambda c, d: exits.append(c)
    )
    with capture_logs() as logs:
        assert not await sup.start()
        await until(lambda: len(exits) >= 2, what="retries")
        hook.write_text("#!/bin/sh\nexec sleep 60\n")  # the operator fixes the hook
        await until(lambda: sup.state is ProcessState.UP, what="up after fix")
        await sup.stop()
    assert exits[0] is None
    assert any(e["event"] == "service.start_failed" for e in logs)

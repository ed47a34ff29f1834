"""Adopting a run process whose supervisor was killed, at the process layer, with real processes.

The orphan is made the way it happens: a separate Python process starts the run hook with
`SupervisedProcess` and SIGKILLs itself. What is proven: the adopted process is UP with its pid and
its original start time; what it wrote while no supervisor read its pipes arrives, and so does what
it writes later; it stops on request; its exit (pidfd, or /proc polling without pidfds) is noticed
and, under a `ProcessSupervisor`, followed by a restart; the stop policy stops it without
announcing it as up; and no record, a corrupt one, a stale one, or one whose process is gone
never gets a live process signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.service.backoff import RestartBackoff
from pysup.service.pidfile import Verdict, load_record
from pysup.service.process import ProcessState, ProcessSupervisor, SupervisedProcess
from pysup.testing.procs import kill_processes_under
from tests.integration.test_process import ENV, SG, until
from tests.util import process_alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]

MAKER = """
import asyncio, os, signal, sys
from pathlib import Path
from pysup.service.process import SupervisedProcess

async def main():
    p = SupervisedProcess(
        service_group=sys.argv[1], svc_dir=Path(sys.argv[2]), env=dict(os.environ),
        run_hook=Path(sys.argv[2]) / "hooks" / "run",
    )
    pid = await p.start()
    print("PID", pid, flush=True)
    log = Path(sys.argv[2]) / "logs" / "run.stdout.log"
    for _ in range(200):  # its first line was read and logged: the pump works before the kill
        if log.exists() and log.read_text():
            break
        await asyncio.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)  # the supervisor dies; its run process stays

asyncio.run(main())
"""

COUNTER = (
    "#!/bin/sh\n"
    "n=0\n"
    "trap 'n=$((n+1)); echo usr1-$n; : > usr1-$n.done' USR1\n"
    "echo started\n"
    "while :; do sleep 0.05; done\n"
)
"""Prints a numbered line per SIGUSR1 (and then marks it done in its cwd, the svc dir): output on
demand, before and after adoption."""


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[list[int]]:
    """Process groups to SIGKILL at the end (orphans are nobody's children), and any process
    still running from this test's directory (an orphan whose pid a failed test never learnt)."""
    found: list[int] = []
    yield found
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    kill_processes_under(tmp_path)


def svc_dir(tmp_path: Path, body: str = COUNTER) -> Path:
    svc = tmp_path / "svc"
    (svc / "hooks").mkdir(parents=True, exist_ok=True)
    (svc / "hooks" / "run").write_text(body)
    return svc


async def orphan(svc: Path, pids: list[int]) -> int:
    """Start the run hook from a supervisor process that is then SIGKILLed; the run pid."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", MAKER, SG, str(svc)],
        capture_output=True,
        timeout=30,
        env={**os.environ, **ENV, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    pid = int(done.stdout.split(b"PID ")[-1].split()[0])
    pids.append(pid)
    return pid


def fresh(svc: Path) -> SupervisedProcess:
    """What the next supervisor builds for the same service."""
    return SupervisedProcess(service_group=SG, svc_dir=svc, env=ENV, run_hook=svc / "hooks" / "run")


async def test_adopted_process_is_up_its_output_arrives_and_it_stops_on_request(
    tmp_path: Path, pids: list[int]
) -> None:
    svc = svc_dir(tmp_path)
    t0 = time.time()
    pid = await orphan(svc, pids)
    record = load_record(svc)
    assert record is not None and record.pid == pid and t0 <= record.started_at <= time.time()
    out_log = svc / "logs" / "run.stdout.log"
    assert out_log.read_text() == "started\n"  # read by the supervisor before it was killed
    os.kill(pid, signal.SIGUSR1)  # written while no one reads the pipe: it must not kill it
    await until((svc / "usr1-1.done").exists, what="the trap wrote its line")
    assert process_alive(pid)

    p = fresh(svc)
    with capture_logs() as logs:
        checked = p.adopt()
        assert checked is not None and checked.verdict is Verdict.OURS
        assert p.state is ProcessState.UP and p.pid == pid and p.adopted and p.running
        assert p.state_entered == record.started_at  # up since it started, not since adoption
        await until(lambda: "usr1-1\n" in out_log.read_text(), what="buffered line drained")
        os.kill(pid, signal.SIGUSR1)
        await until(lambda: "usr1-2\n" in out_log.read_text(), what="new line after adoption")
        await p.stop("TERM", timeout_s=5.0)
    assert p.state is ProcessState.DOWN and p.pid is None and not process_alive(pid)
    assert p.last_exit_code is None  # not our child: its status went to its parent
    assert not (svc / "PID").exists() and not (svc / "PID.json").exists()
    lines = [e["line"] for e in logs if e["event"] == "hook.output"]
    assert lines == ["usr1-1", "usr1-2"]
    assert [e["pid"] for e in logs if e["event"] == "service.adopted"] == [pid]


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "proc-polling"])
async def test_adopted_process_that_exits_is_restarted_by_the_supervisor(
    tmp_path: Path, pids: list[int], pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pidfd:
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    svc = svc_dir(tmp_path)
    pid = await orphan(svc, pids)
    exits: list[int | None] = []
    sup = ProcessSupervisor(
        fresh(svc),
        backoff=RestartBackoff(base_s=0.05, max_s=0.05),
        on_exit=lambda code, _delay: exits.append(code),
    )
    checked = await sup.adopt()
    assert checked is not None and checked.ours and sup.desired_up and sup.pid == pid
    os.kill(pid, signal.SIGKILL)
    await until(lambda: sup.pid not in (None, pid), what="restarted after the adopted one died")
    assert exits == [None] and sup.restart_count == 1
    assert not sup.process.adopted  # the new one is our child
    new = sup.pid
    assert new is not None
    pids.append(new)
    await sup.close()
    assert not process_alive(new)


async def test_stop_policy_stops_the_orphan_without_announcing_it(
    tmp_path: Path, pids: list[int]
) -> None:
    svc = svc_dir(tmp_path)
    pid = await orphan(svc, pids)
    p = fresh(svc)
    states: list[ProcessState] = []
    p.on_state_change = states.append
    sup = ProcessSupervisor(p, shutdown_timeout_s=5.0)
    checked = await sup.adopt(stop=True)
    assert checked is not None and checked.ours
    assert not process_alive(pid) and p.state is ProcessState.DOWN and not sup.desired_up
    assert states == []  # it was never ours to serve: no UP/DOWN for the service to act on
    await sup.start()  # the caller's fresh start
    assert sup.pid not in (None, pid) and states == [ProcessState.UP]
    pids.append(sup.pid or 0)
    await sup.close()


@pytest.fixture
def decoy() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process in a session of its own (as a run process would be)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait(5)


async def test_records_that_do_not_verify_never_touch_a_process(
    tmp_path: Path, pids: list[int], decoy: subprocess.Popen[bytes]
) -> None:
    svc = svc_dir(tmp_path)
    pid = await orphan(svc, pids)
    good = json.loads((svc / "PID.json").read_text())
    os.killpg(pid, signal.SIGKILL)
    await until(lambda: not process_alive(pid), what="the recorded process is gone")

    cases: list[tuple[str, str | None, Verdict | None]] = [
        ("gone", json.dumps(good), Verdict.GONE),
        ("reused", json.dumps({**good, "pid": decoy.pid}), Verdict.REUSED),
        ("other boot", json.dumps({**good, "pid": decoy.pid, "boot_id": "x"}), Verdict.OTHER_BOOT),
        ("corrupt", '{"version": 1, "pid": ', None),
        ("pid file only", None, None),
    ]
    for name, record, verdict in cases:
        (svc / "PID").write_text(f"{decoy.pid}\n")
        if record is not None:
            (svc / "PID.json").write_text(record)
        p = fresh(svc)
        checked = p.adopt()
        assert (checked.verdict if checked is not None else None) is verdict, name
        assert p.state is ProcessState.DOWN and not p.running, name
        assert decoy.poll() is None, f"{name}: the decoy was signalled"
        assert not (svc / "PID").exists() and not (svc / "PID.json").exists(), name

"""A supervisor killed with SIGKILL, restarted on the same state dir, adopts its service's process.

Real `pysup run` processes and a real service that binds a TCP port and answers each connection with
its pid (printing one line per connection, so its output pipes are exercised while no supervisor
reads them). What is proven:

- after the restart exactly one copy of the service runs (counted by command line in /proc), it is
  the process started before the kill (no downtime: it answered while no supervisor ran), and
  /services reports it up with that pid and health Ok; what it printed while no supervisor ran
  reaches its log file and the supervisor log; a later stop of the supervisor stops it (post-stop
  included);
- a PID file that names an unrelated live process (a reused pid), with or without the identity
  record, never gets that process signalled or adopted: a new copy of the service is started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemons import Fleet, Sup, fleet
from tests.util import free_port, process_alive, wait_for

__all__ = ["fleet"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NAME = "adoptee"
UP_TIMEOUT_S = 20.0
"""From spawning `pysup run` to the service up and healthy (2 shared cores, 1 s check interval)."""
STABLE_S = 3.0
"""How long the single copy is watched after adoption: three health-check intervals, long enough
for a second copy started by mistake to show up (it would start within one reconcile)."""

SERVER = r"""
import os, socket, sys
port, marker = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
# SO_REUSEADDR: a restart binds despite TIME_WAIT connections; a second listener still fails
# with EADDRINUSE (that takes SO_REUSEPORT, which we do not set)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
print("listening", marker, flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        c.sendall(str(os.getpid()).encode())
        tag = c.recv(64).decode() or "-"  # the client's tag; the health check sends none
    except OSError:
        tag = "?"
    c.close()
    print("served", tag, flush=True)  # output while no supervisor runs must not kill us
"""

DECOY = r"""
import os, signal, sys, time
out = sys.argv[1]
def note(sig, frame):
    with open(out, "a") as f:
        f.write(f"{sig}\n")
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
          signal.SIGUSR2, signal.SIGCONT):
    signal.signal(s, note)
open(out + ".ready", "w").close()
while True:
    time.sleep(1)
"""


def write_plan(root: Path, port: int) -> Path:
    plan = root / "plans" / NAME
    (plan / "hooks").mkdir(parents=True)
    (plan / "plan.toml").write_text(f'origin = "test"\nname = "{NAME}"\nshutdown_timeout = 5\n')
    (plan / "default.toml").write_text(f"port = {port}\n")
    (plan / "server.py").write_text(SERVER)
    (plan / "hooks" / "run").write_text(
        f'#!/bin/sh\nexec {sys.executable} -u "{{{{pkg.path}}}}/server.py" {{{{cfg.port}}}} '
        f'"{{{{pkg.path}}}}"\n'
    )
    (plan / "hooks" / "health-check").write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import socket; "
        f'socket.create_connection(("127.0.0.1", {{{{cfg.port}}}}), 2).recv(16)\'\n'
    )
    for hook in ("init", "post-run", "post-stop"):  # each notes that it ran
        (plan / "hooks" / hook).write_text(
            f'#!/bin/sh\necho ran >> "{{{{pkg.svc_data_path}}}}/{hook}.log"\n'
        )
    return plan


def copies(plan: Path) -> list[int]:
    """Pids of live processes running this plan's server.py (zombies excluded)."""
    needle = str(plan / "server.py").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        if needle in cmdline.split(b"\0") and stat[stat.rfind(b")") + 2 :][:1] != b"Z":
            found.append(int(entry.name))
    return sorted(found)


def ask(port: int, tag: str = "test") -> int | None:
    """The pid the service answers with, or None when nothing answers. It prints `served <tag>`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            data = c.recv(32)
            c.sendall(tag.encode())
    except OSError:
        return None
    return int(data) if data else None


def service(sup: Sup) -> dict[str, Any] | None:
    status, data = sup.get_json("/services")
    if status != 200 or not isinstance(data, list):
        return None
    return next((s for s in data if s["pkg"]["name"] == NAME), None)


def healthy_pid(sup: Sup) -> int | None:
    """The pid /services reports when the service is up with health Ok."""
    svc = service(sup)
    if svc is None or svc["process"]["state"] != "up" or svc["health_check"] != "Ok":
        return None
    pid = svc["process"]["pid"]
    return int(pid) if pid else None


def wait(sup: Sup, cond: Any, timeout: float, what: str) -> Any:
    try:
        return wait_for(cond, timeout, interval=0.1, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{sup.log_tail(60)}") from None


def start(fleet: Fleet, sup: Sup, plan: Path) -> int:
    fleet.launch(sup).wait_http()
    return int(wait(sup, lambda: healthy_pid(sup), UP_TIMEOUT_S, "service up and Ok"))


def test_sigkilled_supervisor_adopts_its_service_one_copy_same_pid_health_ok(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Fails before adoption: the restarted supervisor started a second copy (EADDRINUSE, crash
    loop) and reported its pid, not the one that serves."""
    port = free_port()
    plan = write_plan(tmp_path, port)
    sup = fleet.new("a", extra=[str(plan), "--health-check-interval", "1"])
    first = start(fleet, sup, plan)
    assert copies(plan) == [first]
    assert ask(port) == first
    data = sup.state_dir / "svc" / NAME / "data"
    wait(sup, (data / "post-run.log").exists, 10.0, "post-run ran")

    sup.signal(signal.SIGKILL)
    sup.wait_exit(5)
    # No supervisor: the service keeps serving, and printing a line per connection.
    for i in range(3):
        assert ask(port, f"down{i}") == first
    assert copies(plan) == [first]

    fleet.launch(sup).wait_http()
    assert ask(port) == first  # served across the restart
    wait(sup, lambda: healthy_pid(sup) == first, UP_TIMEOUT_S, f"/services: pid {first}, Ok")
    deadline = time.monotonic() + STABLE_S
    while time.monotonic() < deadline:  # an invariant over a window, polled
        assert copies(plan) == [first], sup.log_tail(60)
        assert healthy_pid(sup) == first, service(sup)
        time.sleep(0.2)
    assert ask(port) == first
    svc = service(sup)
    assert svc is not None and svc["pysup"]["state"] == "up", svc

    # What it printed while no supervisor read its pipes was kept, and reaches log and file.
    out_log = sup.state_dir / "svc" / NAME / "logs" / "run.stdout.log"
    for i in range(3):
        line = f"served down{i}"
        wait(sup, lambda line=line: f"{line}\n" in out_log.read_text(), 5.0, f"{line} in file")
        wait(sup, lambda line=line: f"{NAME}.default(run): {line}" in sup.log_text(), 5.0, line)
    assert "service.adopted" in sup.log_text()

    # Adopting is not starting: init and post-run ran once, for the start before the kill.
    assert (data / "init.log").read_text() == "ran\n"
    assert (data / "post-run.log").read_text() == "ran\n"
    # The adopted process is ours to stop: TERM, and post-stop runs.
    sup.signal(signal.SIGTERM)
    assert sup.wait_exit(20) == 0
    assert copies(plan) == []
    assert (data / "post-stop.log").read_text() == "ran\n"


def test_orphans_stop_restarts_the_service_fresh(fleet: Fleet, tmp_path: Path) -> None:
    """`pysup run --orphans stop`: the restarted supervisor stops what its killed predecessor left
    running and starts one fresh copy (without the flag it would adopt the old pid)."""
    port = free_port()
    plan = write_plan(tmp_path, port)
    sup = fleet.new("a", extra=[str(plan), "--health-check-interval", "1"])
    first = start(fleet, sup, plan)
    sup.signal(signal.SIGKILL)
    sup.wait_exit(5)
    assert copies(plan) == [first]

    sup.args += ["--orphans", "stop"]
    fleet.launch(sup).wait_http()
    fresh = wait(
        sup,
        lambda: (healthy_pid(sup) or first) != first and healthy_pid(sup),
        UP_TIMEOUT_S,
        "a fresh copy up and Ok",
    )
    wait(sup, lambda: not process_alive(first), 10.0, "the orphan stopped")
    assert copies(plan) == [fresh]
    assert ask(port) == fresh
    assert "service.orphan_stopping" in sup.log_text()


@pytest.mark.parametrize("record", ["stale-record", "pid-file-only"])
def test_pid_file_naming_an_unrelated_process_is_never_signalled(
    fleet: Fleet, tmp_path: Path, record: str
) -> None:
    """The service and its supervisor die (kill -9 of both: the machine lost them); their pid is
    then "reused" by a decoy in a session of its own that notes every catchable signal. The
    restart must leave the decoy alone and start a fresh copy. With the identity record kept
    (only the pid rewritten, as a reuse would look) the start time refuses it; with only a PID
    file (Habitat's, or an older pysup's) there is nothing to verify, so it is not touched."""
    port = free_port()
    plan = write_plan(tmp_path, port)
    sup = fleet.new("b", extra=[str(plan), "--health-check-interval", "1"])
    first = start(fleet, sup, plan)
    sup.signal(signal.SIGKILL)
    sup.wait_exit(5)
    os.killpg(first, signal.SIGKILL)
    wait_for(lambda: not process_alive(first), 5.0, what="service gone")

    noted = tmp_path / "decoy.signals"
    decoy = subprocess.Popen(
        [sys.executable, "-c", DECOY, str(noted)], start_new_session=True, cwd=tmp_path
    )
    try:
        wait_for(lambda: Path(f"{noted}.ready").exists(), 10.0, what="decoy ready")
        svc_dir = sup.state_dir / "svc" / NAME
        (svc_dir / "PID").write_text(f"{decoy.pid}\n")
        identity = svc_dir / "PID.json"
        if record == "stale-record":
            data = json.loads(identity.read_text())
            data["pid"] = decoy.pid
            identity.write_text(json.dumps(data))
        else:
            identity.unlink(missing_ok=True)

        second = start(fleet, sup, plan)
        assert second != decoy.pid
        assert copies(plan) == [second]
        assert ask(port) == second
        assert decoy.poll() is None, "the decoy was killed"
        assert not noted.exists(), f"the decoy got signals {noted.read_text()}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(decoy.pid, signal.SIGKILL)
        decoy.wait(5)


def test_config_changed_while_no_supervisor_ran_is_applied_after_adoption(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The operator moved the service to another port while the supervisor was down: the restarted
    supervisor adopts the process, renders, sees the run hook changed and restarts it (as for any
    running service), leaving exactly one copy, on the new port."""
    port, new_port = free_port(), free_port()
    plan = write_plan(tmp_path, port)
    sup = fleet.new("c", extra=[str(plan), "--health-check-interval", "1"])
    first = start(fleet, sup, plan)
    sup.signal(signal.SIGKILL)
    sup.wait_exit(5)
    user_toml = sup.state_dir / "user" / NAME / "config" / "user.toml"
    user_toml.parent.mkdir(parents=True, exist_ok=True)
    user_toml.write_text(f"port = {new_port}\n")

    fleet.launch(sup).wait_http()

    def moved() -> int | None:
        pid = healthy_pid(sup)
        return pid if pid not in (None, first) else None

    second = wait(sup, moved, UP_TIMEOUT_S, "restarted on the new port, Ok")
    assert copies(plan) == [second]
    assert ask(new_port) == second and ask(port) is None
    assert not process_alive(first)
    log = sup.log_text()
    assert "service.adopted" in log and "hooks changed: run" in log

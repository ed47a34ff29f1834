"""The compose demo for real: three `pysup run` containers, and pysup as PID 1 of a container.

Proves, with the image built from this checkout and the compose file's own commands:
- the three supervisors (super, client-1, client-2) form one ring: every /census lists three Alive
  members, and the image's HEALTHCHECK passes in each container;
- habsup is up with health Ok on every supervisor (see `test_habsup_...` for the leader-topology
  caveat while elections are not implemented);
- the Kubernetes preStop path (hooks/pre-stop) makes a member Departed on the others within 5 s and
  stops its services while its gateway still answers; the container then exits 0 on `podman stop`;
- the same container started again rejoins with its member id (the state volume persists);
- `podman kill -s KILL` makes a member Confirmed on the others within the Lifeguard bound of the
  gossip profile the image runs (computed from pysup/butterfly/config.py);
- plain `podman stop` (SIGTERM, what `docker compose stop` sends) makes a member Departed on the
  others within 5 s and exits 0 well inside stop_grace_period;
- pysup as PID 1 (`podman run --rm IMAGE`, no arguments) serves /readyz, runs habsup up and Ok,
  reaps orphans reparented to it, and on `podman stop` exits 0 at once (not after the 10 s grace).

Timings (`TIMING ...` lines, visible with `pytest -s`) and the image size are printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pysup.butterfly.config import PRESETS
from pysup.settings import Settings
from tests.container.podman import (
    REPO,
    ComposeRun,
    grace_seconds,
    http_get,
    http_json,
    podman,
    podman_rc,
    read_compose,
)
from tests.util import free_port, wait_for

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

GOSSIP = PRESETS[Settings().gossip_profile]
"""Timings of the profile the image runs: the default (no PYSUP_GOSSIP_PROFILE in the image)."""
DEPART_BOUND_S = 5.0
"""The issue's bound for a gracefully stopped member to be Departed on the others."""
FORM_BOUND_S = 60.0
"""Containers started -> every /census lists every member Alive (measured: a few seconds)."""
SERVICE_BOUND_S = 60.0
"""Ring formed -> habsup up with health Ok everywhere (first health check runs at start)."""
REJOIN_BOUND_S = 30.0
HABSUP = "habsup.default"


def report(what: str, seconds: float) -> None:
    print(f"\nTIMING {what}: {seconds:.2f}s", flush=True)


def suspicion_bound_s(n: int, slack_s: float = 4.0) -> float:
    """Worst case from kill -9 to Confirmed at an observer in a ring of `n`: its probe of the
    victim comes within a round-robin pass over the other n-1 members, then the probe timeout,
    then the longest Lifeguard suspicion (no confirmations), plus slack for a loaded machine."""
    g = GOSSIP
    return (n - 1) * g.probe_interval_s + g.probe_timeout_s + g.suspicion_max_s(n) + slack_s


def census(run: ComposeRun, service: str) -> dict[str, Any] | None:
    body = http_json(run.url(service, "/census"))
    return body if isinstance(body, dict) else None


def member_health(run: ComposeRun, service: str) -> dict[str, str]:
    """member id -> health as `service`'s /census lists them ({} when it does not answer)."""
    body = census(run, service)
    return {m["member_id"]: m["health"] for m in body["members"]} if body else {}


def member_id(run: ComposeRun, service: str) -> str:
    body = census(run, service)
    assert body, f"{service}: /census does not answer"
    return str(body["local_member_id"])


def habsup_row(run: ComposeRun, service: str) -> dict[str, Any] | None:
    """habsup's entry in `service`'s /services, or None."""
    body = http_json(run.url(service, "/services"))
    for row in body or []:
        if row.get("service_group") == HABSUP:
            return dict(row)
    return None


def up_and_ok(row: dict[str, Any] | None) -> bool:
    return row is not None and row["process"]["state"] == "up" and row["health_check"] == "Ok"


def seen_as(run: ComposeRun, observers: list[str], victim_id: str, health: str) -> bool:
    return all(member_health(run, o).get(victim_id) == health for o in observers)


def image_size(image: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).strip())


@contextmanager
def logs_on_failure(run: ComposeRun) -> Iterator[None]:
    """Append the containers' last log lines to a failing assertion."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{run.logs()}") from None


@pytest.fixture(scope="module")
def ring(image: str) -> Iterator[ComposeRun]:
    """docker-compose.yml's three services started with its commands (every gateway published
    on a free host port so the test can read each one), once every /census shows 3 Alive."""
    print(f"\nIMAGE {image}: {image_size(image) / 1e6:.0f} MB ({image_size(image)} bytes)")
    run = ComposeRun(read_compose(REPO / "docker-compose.yml"), image)
    try:
        run.start(publish_all=(9631,))
        t0 = min(run.started.values())
        services = list(run.containers)

        def formed() -> bool:
            assert not run.exited(), f"containers exited: {run.exited()}"
            return all(
                len(h := member_health(run, s)) == len(services) and set(h.values()) == {"Alive"}
                for s in services
            )

        wait_for(formed, FORM_BOUND_S, interval=0.25, what="every /census: all members Alive")
        report(f"{len(services)} containers started -> ring formed", time.monotonic() - t0)
        yield run
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{run.logs()}") from None
    finally:
        run.close()


def test_census_shows_three_alive_members_and_healthcheck_passes(ring: ComposeRun) -> None:
    ids = {service: member_id(ring, service) for service in ring.containers}
    assert len(set(ids.values())) == 3
    for service in ring.containers:
        assert member_health(ring, service) == dict.fromkeys(ids.values(), "Alive"), service
        rc, out = podman_rc("healthcheck", "run", ring.containers[service])
        assert rc == 0, f"{service}: HEALTHCHECK failed: {out}"
    status, body = http_get(ring.url("super", "/readyz"))
    assert status == 200, body


def test_habsup_is_up_with_health_ok_on_every_supervisor(ring: ComposeRun) -> None:
    """Under `--topology leader` hooks wait for the group's election: it must finish (three
    members are there) and habsup must be up and Ok on every supervisor within the bound."""
    with logs_on_failure(ring):
        t0 = time.monotonic()
        while True:
            rows = {service: habsup_row(ring, service) for service in ring.containers}
            if all(up_and_ok(row) for row in rows.values()):
                break
            waited = time.monotonic() - t0
            summary = {
                s: r and (r["process"]["state"], r["health_check"], r["last_election_status"])
                for s, r in rows.items()
            }
            assert waited < SERVICE_BOUND_S, f"habsup not up and Ok everywhere: {summary}"
            time.sleep(0.5)
        report("ring formed -> habsup up and Ok everywhere", time.monotonic() - t0)


def test_leave_rejoin_kill_and_stop(ring: ComposeRun) -> None:
    """pre-stop -> Departed; restart -> rejoined; kill -9 -> Confirmed; podman stop -> Departed."""
    with logs_on_failure(ring):
        leave_rejoin_kill_and_stop(ring)


def leave_rejoin_kill_and_stop(ring: ComposeRun) -> None:
    spec = ring.compose["client-1"]
    ids = {service: member_id(ring, service) for service in ring.containers}

    # 1. The preStop hook: client-1 departs while its gateway keeps answering.
    t0 = time.monotonic()
    hook = subprocess.Popen(
        ["podman", "exec", ring.containers["client-1"], "/hab/hooks/pre-stop"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(
        lambda: seen_as(ring, ["super", "client-2"], ids["client-1"], "Departed"),
        DEPART_BOUND_S,
        interval=0.05,
        what="client-1 Departed on super and client-2 after pre-stop",
    )
    report("pre-stop -> Departed on super and client-2", time.monotonic() - t0)
    out, _ = hook.communicate(timeout=30)
    assert hook.returncode == 0, out
    report("pre-stop hook ran", time.monotonic() - t0)
    rows = http_json(ring.url("client-1", "/services"))
    assert rows is not None, "client-1's gateway stopped answering after pre-stop"
    assert not [r for r in rows if r["process"]["state"] == "up"], rows
    status, body = http_get(ring.url("client-1", "/readyz"))
    assert status == 503 and "departing" in body, (status, body)
    t1 = time.monotonic()
    podman("stop", ring.containers["client-1"])
    report("podman stop after pre-stop", time.monotonic() - t1)
    assert ring.exit_code("client-1") == 0

    # 2. Started again (compose `start`/`restart`): same member id from the state volume.
    t2 = time.monotonic()
    podman("start", ring.containers["client-1"])
    wait_for(
        lambda: seen_as(ring, ["super", "client-2"], ids["client-1"], "Alive"),
        REJOIN_BOUND_S,
        interval=0.1,
        what="client-1 Alive again on super and client-2",
    )
    assert member_id(ring, "client-1") == ids["client-1"]
    report("podman start -> Alive again on super and client-2", time.monotonic() - t2)

    # 3. kill -9: Confirmed on the others within the Lifeguard bound.
    bound = suspicion_bound_s(3)
    podman("kill", "--signal", "KILL", ring.containers["client-2"])
    t3 = time.monotonic()
    wait_for(
        lambda: seen_as(ring, ["super", "client-1"], ids["client-2"], "Confirmed"),
        bound,
        interval=0.1,
        what="client-2 Confirmed on super and client-1",
    )
    report(
        f"kill -9 -> Confirmed on super and client-1 (bound {bound:.1f}s)", time.monotonic() - t3
    )

    # 4. Plain `podman stop` (SIGTERM, as `docker compose stop`): Departed within 5 s, exit 0.
    t4 = time.monotonic()
    stop = subprocess.Popen(
        ["podman", "stop", ring.containers["client-1"]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: seen_as(ring, ["super"], ids["client-1"], "Departed"),
        DEPART_BOUND_S,
        interval=0.05,
        what="client-1 Departed on super after podman stop",
    )
    report("podman stop (SIGTERM) -> Departed on super", time.monotonic() - t4)
    _, err = stop.communicate(timeout=grace_seconds(spec) + 30)
    stopped_s = time.monotonic() - t4
    report("podman stop returned", stopped_s)
    assert stop.returncode == 0, err
    assert ring.exit_code("client-1") == 0
    assert stopped_s < grace_seconds(spec) / 2, "the supervisor did not exit on SIGTERM"
    assert member_health(ring, "super")[ids["super"]] == "Alive"


# Runs in the container: orphans three `sleep`s (their parent shell exits), checks they were
# reparented to PID 1, then waits for them to exit and be reaped. Prints one JSON line.
ORPHANS = r"""
import json, os, subprocess, time
def sleeps():
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        state, ppid = stat[stat.rfind(")") + 2 :].split()[:2]
        if comm == "sleep" and ppid == "1":
            found[pid] = state
    return found
subprocess.run(["sh", "-c", "for i in 1 2 3; do (sleep 3 &); done"], check=True)
deadline = time.monotonic() + 2  # until each forked child has exec'd `sleep`
while len(adopted := sleeps()) < 3 and time.monotonic() < deadline:
    time.sleep(0.02)
deadline = time.monotonic() + 10
while sleeps() and time.monotonic() < deadline:
    time.sleep(0.1)
pid1 = open("/proc/1/cmdline").read().replace("\0", " ").strip()
print(json.dumps({"pid1": pid1, "adopted": adopted, "left": sleeps()}))
"""


def test_pid1_reaps_orphans_and_exits_0_at_once_on_podman_stop(image: str, tmp_path: Path) -> None:
    """`podman run --rm IMAGE`: the image's defaults alone (standalone habsup)."""
    name = f"pysuptest{os.getpid()}-pid1"
    port = free_port()
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            ["podman", "run", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:9631", image],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200,
            60,
            interval=0.05,
            what="/readyz 200",
        )
        report("podman run -> /readyz 200", time.monotonic() - t0)

        def habsup_up_ok() -> bool:
            rows = http_json(f"http://127.0.0.1:{port}/services") or []
            return any(r.get("service_group") == HABSUP and up_and_ok(r) for r in rows)

        wait_for(habsup_up_ok, SERVICE_BOUND_S, interval=0.2, what="habsup up with health Ok")
        report("podman run -> habsup up and Ok (standalone)", time.monotonic() - t0)

        rc, out = podman_rc("exec", name, "python3", "-c", ORPHANS)
        assert rc == 0, out
        result = json.loads(out.strip().splitlines()[-1])
        assert "pysup run" in result["pid1"], result
        assert len(result["adopted"]) == 3, f"orphans not reparented to PID 1: {result}"
        assert result["left"] == {}, f"orphans left as zombies of PID 1: {result}"

        t1 = time.monotonic()
        podman("stop", name)  # SIGTERM; the container's default grace is 10 s
        rc = proc.wait(timeout=30)
        stop_s = time.monotonic() - t1
        report("podman stop -> container exited", stop_s)
        assert rc == 0, log_path.read_text()[-3000:]
        assert stop_s < 5.0, "pysup did not exit on SIGTERM (podman waited for its grace period)"
        assert "supervisor.stopped" in log_path.read_text()
    finally:
        podman("rm", "-f", "-v", "-t", "0", name, check=False)
        if proc.poll() is None:
            proc.kill()
            proc.wait()

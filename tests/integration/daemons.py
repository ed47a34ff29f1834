"""Real `pysup run` processes for the daemon integration tests, and ways to look at them.

Every process is started in its own session (so a test's SIGINT/SIGTERM reaches only the process
it means) and tracked by a `Fleet`; the fixture kills whatever is left, by pid, in `finally`.
Output goes to a log file per process, quoted in failure messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pysup.butterfly.config import PRESETS
from pysup.settings import Settings
from pysup.testing.procs import kill_processes_under
from tests.util import free_port, wait_for

PROFILE = "local"
GOSSIP = PRESETS[PROFILE]
START_TIMEOUT_S = 15.0
"""A supervisor's HTTP gateway answers within this long of spawning (generous: 2 shared cores)."""
HTTP_TIMEOUT_S = 2.0


def in_process_settings(tmp_path: Path) -> Settings:
    """Settings for a `pysup.daemon.Supervisor` run inside the test's own loop: free ports on
    127.0.0.1, a state dir under `tmp_path`, the local gossip profile."""
    g, h, c = free_port(), free_port(), free_port()
    return Settings(
        listen_gossip=f"127.0.0.1:{g}",
        listen_http=f"127.0.0.1:{h}",
        listen_ctl=f"127.0.0.1:{c}",
        state_dir=str(tmp_path / "state"),
        gossip_profile=PROFILE,
    )


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = HTTP_TIMEOUT_S
) -> tuple[int, bytes]:
    """(status, body); (0, b"") when nothing answers."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (OSError, TimeoutError):
        return 0, b""


@dataclass
class Sup:
    """One `pysup run` process."""

    name: str
    host: str
    gossip_port: int
    http_port: int
    ctl_port: int
    state_dir: Path
    log_path: Path
    args: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    token: str | None = None

    @property
    def gossip_addr(self) -> str:
        return f"{self.host}:{self.gossip_port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.http_port}{path}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if headers is None and self.token:
            headers = {"Authorization": f"Bearer {self.token}"}
        return http_get(self.url(path), headers)

    def get_json(self, path: str) -> tuple[int, Any]:
        status, body = self.get(path)
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, None

    def members(self) -> dict[str, dict[str, Any]]:
        """`/butterfly` member.members (ourselves included), or {} when it does not answer."""
        status, data = self.get_json("/butterfly")
        if status != 200 or not isinstance(data, dict):
            return {}
        members: dict[str, dict[str, Any]] = data["member"]["members"]
        return members

    def member_id(self) -> str:
        status, data = self.get_json("/butterfly")
        assert status == 200, f"{self.name}: /butterfly {status}\n{self.log_tail()}"
        return str(data["member"]["local_member_id"])

    def health_of(self, member_id: str) -> str | None:
        m = self.members().get(member_id)
        return None if m is None else str(m["health"])

    def metric(self, name: str, **labels: str) -> float:
        """The value of `/metrics` sample `name` whose labels include `labels` (0 if absent)."""
        status, body = self.get("/metrics")
        if status != 200:
            return 0.0
        want = {f'{k}="{v}"' for k, v in labels.items()}
        for line in body.decode().splitlines():
            head, _, value = line.rpartition(" ")
            sample, _, label_text = head.partition("{")
            if sample == name and want <= set(label_text.rstrip("}").split(",")):
                return float(value)
        return 0.0

    def rejected(self, reason: str) -> float:
        """`pysup_rejected_inputs_total{source="gossip",reason=...}`."""
        return self.metric("pysup_rejected_inputs_total", source="gossip", reason=reason)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- {self.name} log ({self.log_path}) ---\n" + "\n".join(tail)

    def wait_http(self, timeout: float = START_TIMEOUT_S) -> None:
        def up() -> bool:
            assert self.alive(), f"{self.name} exited early\n{self.log_tail()}"
            return self.get("/healthz")[0] == 200

        wait_for(up, timeout, what=f"{self.name} /healthz")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout}s\n{self.log_tail()}"
            ) from None


@dataclass
class Fleet:
    """Starts supervisors and remembers every process, so none outlives the test."""

    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sups: list[Sup] = field(default_factory=list)

    def new(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        peers: Sequence[str] = (),
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
        state_dir: Path | None = None,
        profile: str = PROFILE,
        gossip_port: int | None = None,
    ) -> Sup:
        """Describe a supervisor (free ports picked now, unless given) without starting it."""
        gossip = gossip_port or free_port(host)
        http, ctl = free_port(host), free_port(host)
        args = [
            "--listen-gossip",
            f"{host}:{gossip}",
            "--listen-http",
            f"{host}:{http}",
            "--listen-ctl",
            f"{host}:{ctl}",
            "--state-dir",
            str(state_dir or self.root / name / "state"),
            "--gossip-profile",
            profile,
        ]
        for p in peers:
            args += ["--peer", p]
        args += list(extra)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
        full_env.update(env or {})
        sup = Sup(
            name,
            host,
            gossip,
            http,
            ctl,
            state_dir or self.root / name / "state",
            self.root / name / "pysup.log",
            args,
            full_env,
            token=(env or {}).get("HAB_SUP_GATEWAY_AUTH_TOKEN"),
        )
        self.sups.append(sup)
        return sup

    def launch(self, sup: Sup) -> Sup:
        """(Re)start `sup`'s process with its arguments and state dir; its log is appended to."""
        sup.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(sup.log_path, "ab") as log:
            sup.proc = subprocess.Popen(
                [sys.executable, "-m", "pysup", "run", *sup.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=sup.env,
                start_new_session=True,
            )
        sup.started_at = time.monotonic()
        self.procs.append(sup.proc)
        return sup

    def start(self, name: str, **kw: Any) -> Sup:
        """Start a supervisor and wait until its gateway answers."""
        sup = self.launch(self.new(name, **kw))
        sup.wait_http()
        return sup

    def popen(self, cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> Any:
        """Any other pysup command, tracked like the supervisors (its own process group)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(s.log_tail() for s in self.sups)

    def close(self) -> None:
        # SIGTERM first so supervisors stop their services (which run in sessions of their
        # own); then KILL what is left, and finally any process still running from this
        # fleet's directory (services of supervisors a test killed with -9).
        live = [p for p in self.procs if p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.poll() is None:
                # Its own session: the group holds it and any children it started.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        kill_processes_under(self.root)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    try:
        yield f
    finally:
        f.close()


def all_alive(sups: Sequence[Sup], n: int) -> bool:
    """Every supervisor lists exactly `n` members, all Alive."""
    for s in sups:
        members = s.members()
        if len(members) != n or any(m["health"] != "Alive" for m in members.values()):
            return False
    return True


def health_everywhere(observers: Sequence[Sup], member_id: str, health: str) -> bool:
    return all(o.health_of(member_id) == health for o in observers)


def lifeguard_bound_s(n: int, slack_s: float = 4.0) -> float:
    """Worst case from kill to Confirmed at every member, for the gossip profile in use: the
    next probe (one interval) and its timeout, the longest suspicion (no confirmations), and
    `slack_s` for dissemination and a loaded machine."""
    g = GOSSIP
    return g.probe_interval_s + g.probe_timeout_s + g.suspicion_max_s(n) + slack_s


def report(what: str, seconds: float) -> None:
    """Measured timings go to stdout (visible with `pytest -s`)."""
    print(f"\nTIMING {what}: {seconds:.2f}s", flush=True)

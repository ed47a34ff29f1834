"""The control gateway end to end: three real `pysup run` processes on 127.0.0.1, driven by the
real `pysup` CLI. The tests share one ring and run in file order (the last one departs a member).

Proves the issue's scenarios: config apply on member 0 renders everywhere and runs reconfigure;
stale versions, 65 KiB and a wrong secret are refused with one clear line; file upload lands in
files/ everywhere and runs file-updated; a member down during config apply gets the config (and
its `svc load`ed service) back after a restart; depart marks the member Departed everywhere and
its process exits non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.util import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EXIT_DEPARTED = 3
CONVERGE_S = 30.0


class Sup:
    """One `pysup run` process with its own ports and state dir."""

    def __init__(self, i: int, root: Path) -> None:
        self.i = i
        self.state = root / f"member-{i}"
        self.http, self.ctl_port, self.gossip = free_port(), free_port(), free_port()
        self.log = root / f"member-{i}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, seed: Sup | None) -> None:
        cmd = [
            sys.executable,
            "-m",
            "pysup",
            "run",
            "--listen-http",
            f"127.0.0.1:{self.http}",
            "--listen-ctl",
            f"127.0.0.1:{self.ctl_port}",
            "--listen-gossip",
            f"127.0.0.1:{self.gossip}",
            "--state-dir",
            str(self.state),
            "--gossip-profile",
            "local",
        ]
        if seed is not None:
            cmd += ["--peer", f"127.0.0.1:{seed.gossip}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_for(self.ready, 20, 0.1, f"member {self.i} to serve HTTP and create CTL_SECRET")

    def ready(self) -> bool:
        self.check_alive()
        return (self.state / "CTL_SECRET").exists() and self.get("/healthz") is not None

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"member {self.i} exited with {self.proc.returncode}:\n{self.tail()}"
            )

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])

    def stop(self, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=3) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return None

    def member_id(self) -> str:
        return (self.state / "MEMBER_ID").read_text().strip()

    def health_of(self, member_id: str) -> str | None:
        b = self.get("/butterfly")
        return None if b is None else b["member"]["health"].get(member_id)

    def cli(self, *args: str, secret: str | None = None, stdin: bytes | None = None) -> Any:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HAB_", "PYSUP_"))}
        if secret is not None:
            env["HAB_CTL_SECRET"] = secret
        return subprocess.run(
            [sys.executable, "-m", "pysup", *args],
            input=stdin,
            capture_output=True,
            timeout=60,
            env=env,
        )

    def ctl(self, *args: str, secret: str | None = None, stdin: bytes | None = None) -> Any:
        return self.cli(
            *args,
            "--remote-sup",
            f"127.0.0.1:{self.ctl_port}",
            "--state-dir",
            str(self.state),
            secret=secret,
            stdin=stdin,
        )

    # the service's files
    def svc(self, *parts: str) -> Path:
        return self.state.joinpath("svc", "demo", *parts)

    def read(self, *parts: str) -> str:
        try:
            return self.svc(*parts).read_text()
        except OSError:
            return ""


def ok(r: Any) -> str:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.decode()}"
    out: str = r.stdout.decode()
    return out


def refused(r: Any, needle: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 1, f"exit {r.returncode}: {err}"
    assert needle in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def make_plan(root: Path) -> Path:
    d = root / "plans" / "demo"
    for sub in ("config", "hooks"):
        (d / sub).mkdir(parents=True)
    (d / "plan.toml").write_text('name = "demo"\norigin = "test"\nversion = "1.0.0"\n')
    (d / "default.toml").write_text('value = "initial"\n')
    (d / "config" / "app.conf").write_text("value={{cfg.value}}\n")
    hooks = {
        "run": "#!/bin/sh\nexec sleep 600\n",
        "reconfigure": (
            "#!/bin/sh\n"
            "cat {{pkg.svc_config_path}}/app.conf >> {{pkg.svc_var_path}}/reconfigure.log\n"
        ),
        "file-updated": (
            "#!/bin/sh\nls {{pkg.svc_files_path}} >> {{pkg.svc_var_path}}/file-updated.log\n"
        ),
    }
    for name, text in hooks.items():
        (d / "hooks" / name).write_text(text)
        (d / "hooks" / name).chmod(0o755)
    return d


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sup]]:
    root = tmp_path_factory.mktemp("ctl-ring")
    plan = make_plan(root)
    sups = [Sup(i, root) for i in range(3)]
    try:
        for s in sups:
            s.start(sups[0] if s.i else None)
        ids = [s.member_id() for s in sups]
        for s in sups:
            wait_for(
                lambda s=s: all(s.health_of(m) == "Alive" for m in ids if m != s.member_id()),
                CONVERGE_S,
                0.2,
                f"member {s.i} to see the others alive",
            )
        for s in sups:
            out = ok(s.ctl("svc", "load", str(plan)))
            assert "Loaded demo into demo.default" in out
        for s in sups:
            wait_for(
                lambda s=s: s.read("config", "app.conf") == "value=initial\n",
                CONVERGE_S,
                0.2,
                f"member {s.i} to render its config",
            )
        yield sups
    finally:
        for s in sups:
            s.kill()


def test_svc_status_shows_the_loaded_service(ring: list[Sup]) -> None:
    s = ring[0]
    out = ok(s.ctl("svc", "status"))
    header, row = out.splitlines()
    columns = ["package", "type", "desired", "state", "elapsed", "(s)", "pid", "group"]
    assert header.split() == columns
    assert row.split()[0].startswith("test/demo/1.0.0/")
    assert row.split()[1:4] == ["standalone", "up", "up"] and row.split()[-1] == "demo.default"
    [js] = json.loads(ok(s.ctl("svc", "status", "demo", "--json")))
    assert js["pid"] > 0 and js["group"] == "demo.default"


def test_config_apply_reaches_every_member_and_runs_reconfigure(ring: list[Sup]) -> None:
    ok(ring[0].ctl("config", "apply", "demo.default", "2", "-", stdin=b'value = "two"\n'))
    for s in ring:
        wait_for(
            lambda s=s: (
                s.read("config", "app.conf") == "value=two\n"
                and "value=two" in s.read("var", "reconfigure.log")
            ),
            CONVERGE_S,
            0.2,
            f"member {s.i} to render version 2 and run reconfigure",
        )


def test_stale_versions_oversize_and_wrong_secret_are_refused(
    ring: list[Sup], tmp_path: Path
) -> None:
    s = ring[0]
    cfg = tmp_path / "c.toml"
    cfg.write_text('value = "stale"\n')
    refused(s.ctl("config", "apply", "demo.default", "2", str(cfg)), "greater than the current")
    refused(s.ctl("config", "apply", "demo.default", "1", str(cfg)), "greater than the current")
    big = tmp_path / "big.toml"
    big.write_bytes(b'value = "' + b"x" * (65 * 1024) + b'"\n')
    refused(s.ctl("config", "apply", "demo.default", "9", str(big)), "64 KiB")
    refused(
        s.ctl("config", "apply", "demo.default", "9", str(cfg), secret="wrong"),
        "wrong control gateway secret",
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("value = = 1\n")
    refused(s.ctl("config", "apply", "demo.default", "9", str(bad)), "not valid TOML")
    for m in ring:  # nothing changed anywhere
        assert m.read("config", "app.conf") == "value=two\n"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{s.http}/metrics", timeout=3).read()
    assert b'source="ctl"' in metrics and b'reason="bad_secret"' in metrics


def test_file_upload_reaches_every_member_and_runs_file_updated(
    ring: list[Sup], tmp_path: Path
) -> None:
    f = tmp_path / "motd.txt"
    f.write_bytes(b"hello ring\n")
    ok(ring[0].ctl("file", "upload", "demo.default", "1", str(f)))
    for s in ring:
        wait_for(
            lambda s=s: (
                s.read("files", "motd.txt") == "hello ring\n"
                and "motd.txt" in s.read("var", "file-updated.log")
            ),
            CONVERGE_S,
            0.2,
            f"member {s.i} to receive motd.txt and run file-updated",
        )
    refused(ring[0].ctl("file", "upload", "demo.default", "1", str(f)), "greater than")
    refused(ring[0].ctl("file", "upload", "demo.default", "2", str(f), "--name", "../x"), "may not")


def test_a_member_down_during_apply_catches_up_after_restart(ring: list[Sup]) -> None:
    down = ring[2]
    assert down.stop() == 0
    ok(ring[0].ctl("config", "apply", "demo.default", "3", "-", stdin=b'value = "three"\n'))
    for s in ring[:2]:
        wait_for(lambda s=s: s.read("config", "app.conf") == "value=three\n", CONVERGE_S, 0.2, "v3")
    assert down.read("config", "app.conf") == "value=two\n"
    down.start(ring[0])
    # the service comes back from the saved spec (svc load survives a restart) and renders v3
    wait_for(
        lambda: down.read("config", "app.conf") == "value=three\n",
        CONVERGE_S,
        0.2,
        "the restarted member to render version 3",
    )
    [row] = json.loads(ok(down.ctl("svc", "status", "--json")))
    assert row["group"] == "demo.default" and row["desired"] == "up"


def test_census_lists_members_and_groups(ring: list[Sup]) -> None:
    s = ring[0]
    census = json.loads(ok(s.cli("census", "--http", f"127.0.0.1:{s.http}", "--json")))
    assert census["census_groups"]["demo.default"]["service_config"]["incarnation"] == 3
    table = ok(s.cli("census", "--http", f"127.0.0.1:{s.http}"))
    assert "demo.default" in table and s.member_id() in table


def test_depart_marks_the_member_departed_everywhere_and_it_exits(ring: list[Sup]) -> None:
    gone = ring[2]
    gone_id = gone.member_id()
    refused(ring[0].ctl("sup", "depart", "f" * 32), "no member")
    ok(ring[0].ctl("sup", "depart", gone_id))
    assert gone.proc is not None
    code = gone.proc.wait(30)
    assert code == EXIT_DEPARTED
    assert "departed" in gone.tail()
    for s in ring[:2]:
        wait_for(
            lambda s=s: s.health_of(gone_id) == "Departed",
            CONVERGE_S,
            0.2,
            f"member {s.i} to mark {gone_id} Departed",
        )


def test_sup_term_stops_the_supervisor_gracefully(ring: list[Sup]) -> None:
    s = ring[1]
    ok(s.ctl("sup", "term"))
    assert s.proc is not None
    assert s.proc.wait(30) == 0

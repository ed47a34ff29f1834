"""run_hook with real /bin/sh hooks: exit codes, output routing, timeouts, process groups, users."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from pysup.service.hooks import (
    HookError,
    HookResult,
    SuitabilityError,
    parse_suitability,
    run_hook,
)
from tests.util import async_wait_for, process_alive, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
SG = "web.default"


def write_hook(tmp_path: Path, name: str, body: str, mode: int = 0o755) -> Path:
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    path = hooks / name
    path.write_text(body)
    path.chmod(mode)
    return path


async def run(tmp_path: Path, name: str, body: str, **kw: object) -> HookResult:
    path = kw.pop("path", None) or write_hook(tmp_path, name, body)
    assert isinstance(path, Path)
    args: dict[str, object] = {
        "service_group": SG,
        "cwd": tmp_path,
        "env": {"PATH": "/usr/bin:/bin", "FOO": "bar"},
        "timeout_s": 10.0,
        "log_dir": tmp_path / "logs",
    }
    args.update(kw)
    return await run_hook(name, path, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", [0, 1, 2, 3, 42])
async def test_exit_code_is_reported(tmp_path: Path, code: int) -> None:
    r = await run(tmp_path, "health-check", f"#!/bin/sh\nexit {code}\n")
    assert r.exit_code == code and not r.timed_out and r.name == "health-check"
    assert r.ok is (code == 0)


async def test_output_goes_to_both_log_files_and_the_prefixed_supervisor_log(
    tmp_path: Path,
) -> None:
    body = '#!/bin/sh\necho "hello $FOO"\necho "in $(pwd)"\necho oops >&2\nprintf "no-newline"\n'
    with capture_logs() as logs:
        r = await run(tmp_path, "init", body)
    assert r.exit_code == 0
    out = (tmp_path / "logs" / "init.stdout.log").read_text()
    err = (tmp_path / "logs" / "init.stderr.log").read_text()
    assert out == f"hello bar\nin {tmp_path}\nno-newline\n"
    assert err == "oops\n"
    assert r.stdout_tail == out and r.stderr_tail == err
    lines = [e for e in logs if e["event"] == "hook.output"]
    assert {(e["stream"], e["text"]) for e in lines} == {
        ("stdout", "web.default(init): hello bar"),
        ("stdout", f"web.default(init): in {tmp_path}"),
        ("stdout", "web.default(init): no-newline"),
        ("stderr", "web.default(init): oops"),
    }
    assert all(e["service_group"] == SG and e["hook"] == "init" for e in lines)
    # a second run appends
    await run(tmp_path, "init", body)
    assert (tmp_path / "logs" / "init.stderr.log").read_text() == "oops\noops\n"


async def test_hung_hook_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    body = f"#!/bin/sh\nsleep 60 &\necho $! > {tmp_path}/child.pid\nsleep 60\n"
    with capture_logs() as logs:
        t0 = time.monotonic()
        r = await run(tmp_path, "post-run", body, timeout_s=0.5, kill_grace_s=1.0)
        elapsed = time.monotonic() - t0
    assert r.timed_out and r.exit_code is None
    assert 0.5 <= elapsed < 0.5 + 1.0 + 1.0  # TERM works on sh and sleep: well within the grace
    child = int((tmp_path / "child.pid").read_text())
    wait_for(lambda: not process_alive(child), timeout=5, what="hook's child gone")
    assert any(e["event"] == "hook.timeout" and e["hook"] == "post-run" for e in logs)


async def test_hook_ignoring_term_gets_kill_after_the_grace(tmp_path: Path) -> None:
    body = f"#!/bin/sh\ntrap '' TERM\necho $$ > {tmp_path}/hook.pid\nsleep 60\n"
    t0 = time.monotonic()
    r = await run(tmp_path, "post-run", body, timeout_s=0.3, kill_grace_s=0.5)
    elapsed = time.monotonic() - t0
    assert r.timed_out and r.exit_code is None
    assert 0.8 <= elapsed < 0.3 + 0.5 + 1.5
    assert not process_alive(int((tmp_path / "hook.pid").read_text()))


async def test_hook_without_exec_bit_or_shebang_still_runs(tmp_path: Path) -> None:
    path = write_hook(tmp_path, "reconfigure", "echo plain sh\nexit 5\n", mode=0o644)
    r = await run(tmp_path, "reconfigure", "", path=path)
    assert r.exit_code == 5 and r.stdout_tail == "plain sh\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


async def test_shebang_is_honoured_after_fixing_the_mode(tmp_path: Path) -> None:
    py = f"#!{sys.executable}\nimport sys\nprint('py', sys.version_info[0])\n"
    path = write_hook(tmp_path, "file-updated", py, mode=0o600)
    r = await run(tmp_path, "file-updated", "", path=path)
    assert r.exit_code == 0 and r.stdout_tail == "py 3\n"


async def test_suitability_reads_the_last_stdout_line(tmp_path: Path) -> None:
    r = await run(
        tmp_path, "suitability", "#!/bin/sh\necho computing...\necho 18446744073709551615\n"
    )
    assert parse_suitability(r.stdout_tail) == 2**64 - 1


@pytest.mark.parametrize(("text", "value"), [("42\n", 42), ("a\nb\n 7 \n\n", 7), ("0", 0)])
def test_parse_suitability_accepts(text: str, value: int) -> None:
    assert parse_suitability(text) == value


@pytest.mark.parametrize("text", ["", "\n\n", "-1\n", "12abc\n", "1.5\n", str(2**64) + "\n", "٣\n"])
def test_parse_suitability_rejects(text: str) -> None:
    with pytest.raises(SuitabilityError):
        parse_suitability(text)


async def test_result_keeps_only_a_bounded_tail_while_the_log_file_gets_everything(
    tmp_path: Path,
) -> None:
    body = "#!/bin/sh\ni=0\nwhile [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done\n"
    with capture_logs():
        r = await run(tmp_path, "install", body, tail_bytes=1024)
    assert len(r.stdout_tail) <= 1024 and r.stdout_tail.endswith("line-2999\n")
    assert (tmp_path / "logs" / "install.stdout.log").read_text().count("\n") == 3000


async def test_long_line_without_newline_is_logged_in_bounded_pieces(tmp_path: Path) -> None:
    body = f"#!{sys.executable}\nimport sys\nsys.stdout.write('x' * 200000)\n"
    with capture_logs() as logs:
        r = await run(tmp_path, "install", body)
    assert r.exit_code == 0
    pieces = [e["line"] for e in logs if e["event"] == "hook.output"]
    assert "".join(pieces) == "x" * 200000 and max(map(len, pieces)) <= 64 * 1024


async def test_background_child_holding_stdout_does_not_hang_the_hook(tmp_path: Path) -> None:
    body = f"#!/bin/sh\nsetsid sleep 30 &\necho $! > {tmp_path}/bg.pid\necho done\nexit 0\n"
    t0 = time.monotonic()
    r = await run(tmp_path, "init", body)
    elapsed = time.monotonic() - t0
    bg = int((tmp_path / "bg.pid").read_text())
    try:
        assert r.exit_code == 0 and "done" in r.stdout_tail
        assert elapsed < 3.0
    finally:
        os.kill(bg, 9)


async def test_cancelling_the_caller_kills_the_hook_group(tmp_path: Path) -> None:
    body = f"#!/bin/sh\necho $$ > {tmp_path}/hook.pid\nsleep 60\n"
    task = asyncio.create_task(run(tmp_path, "init", body, timeout_s=30.0))
    pidfile = tmp_path / "hook.pid"

    async def started() -> bool:
        return pidfile.exists() and pidfile.read_text().strip() != ""

    await async_wait_for(started, timeout=5, what="hook started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pidfile.read_text())

    async def gone() -> bool:
        return not process_alive(pid)

    await async_wait_for(gone, timeout=5, what="cancelled hook gone")


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory another user can enter (pytest's tmp_path parents are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="pysup-hooks-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch users")
async def test_runs_as_the_service_user_when_root(world_readable_dir: Path) -> None:
    r = await run(world_readable_dir, "init", "#!/bin/sh\nid -u\nid -g\nid -G\n", user="nobody")
    assert r.exit_code == 0, r.stderr_tail
    assert r.stdout_tail.split() == ["65534", "65534", "65534"]


async def test_errors_at_the_boundary(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        await run(tmp_path, "health_check", "#!/bin/sh\n")  # Habitat file names use dashes
    with pytest.raises(HookError):
        await run(tmp_path, "init", "", path=tmp_path / "missing")
    with pytest.raises(HookError):
        await run(tmp_path, "init", "#!/bin/sh\n", user="no-such-user-pysup")
    bad = write_hook(tmp_path, "run", "#!/no/such/interpreter\n")
    with pytest.raises(HookError):
        await run(tmp_path, "run", "", path=bad)


REAPER_SCRIPT = r"""
import asyncio, json, os, sys, time
from pathlib import Path
from pysup.service.hooks import run_hook
from pysup.service.reaper import Reaper, set_child_subreaper, zombie_children

async def main(use_reaper: bool, tmp: Path) -> None:
    reaper = Reaper(sweep_interval_s=0.2)
    if use_reaper:
        assert reaper.install(), "reaper did not activate"
    else:
        assert set_child_subreaper()  # orphans come to us, but nobody reaps them
    hook = tmp / "init"
    hook.write_text("#!/bin/sh\n(sleep 0.2 >/dev/null 2>&1 &)\nexit 7\n")
    results = await asyncio.gather(*(
        run_hook("init", hook, service_group="x.default", cwd=tmp, env={"PATH": "/usr/bin:/bin"},
                 timeout_s=10, log_dir=tmp / "logs")
        for _ in range(8)))
    me = os.getpid()
    deadline = time.monotonic() + 10
    want_zombies = 0 if use_reaper else 8
    while time.monotonic() < deadline:
        zombies = zombie_children(me)
        if len(zombies) == want_zombies and (not use_reaper or reaper.reaped_count == 8):
            break
        await asyncio.sleep(0.05)
    print(json.dumps({"codes": [r.exit_code for r in results], "zombies": len(zombie_children(me)),
                      "reaped": reaper.reaped_count}))

asyncio.run(main(sys.argv[1] == "reaper", Path(sys.argv[2])))
"""


@pytest.mark.parametrize("mode", ["reaper", "no-reaper"])
def test_reaper_reaps_double_forked_orphans_without_stealing_hook_exit_codes(
    tmp_path: Path, mode: str
) -> None:
    # PR_SET_CHILD_SUBREAPER is process-wide: run it in a child interpreter, not in pytest.
    proc = subprocess.run(
        [sys.executable, "-c", REAPER_SCRIPT, mode, str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=40,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["codes"] == [7] * 8  # no exit status stolen from asyncio
    if mode == "reaper":
        assert out == {"codes": [7] * 8, "zombies": 0, "reaped": 8}
    else:  # the control: without the reaper the orphans stay zombies (the test can fail)
        assert out["zombies"] == 8 and out["reaped"] == 0

"""`pysup ring --members N`: a local multi-process ring for trying pysup out and for testing.

Member i listens on 127.0.0.1 with HTTP 9631+10i, control 9632+10i and gossip 9638+10i, keeps its
state in `<state-root>/member-i`, and joins member 0. Every `port` key in a plan's default.toml is
offset by i through Habitat's own `HAB_<PKG>` environment layer, so the demo services of several
members on one machine do not collide.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from pysup.service.cfg import env_var_name

PORT_STRIDE = 10


def ports(i: int, base_http: int = 9631) -> tuple[int, int, int]:
    """(http, ctl, gossip) for member i."""
    off = PORT_STRIDE * i
    return base_http + off, base_http + 1 + off, base_http + 7 + off


def _offset_ports(cfg: Any, i: int) -> Any:
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if k == "port" and isinstance(v, int) and not isinstance(v, bool):
                out[k] = v + i
            else:
                sub = _offset_ports(v, i)
                if sub is not None:
                    out[k] = sub
        return out or None
    return None


def plan_env(plan_dirs: list[str], i: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for d in plan_dirs:
        default = Path(d) / "default.toml"
        name = _plan_name(Path(d))
        if not default.is_file() or not name:
            continue
        try:
            overlay = _offset_ports(tomllib.loads(default.read_text()), i)
        except (OSError, tomllib.TOMLDecodeError):
            continue
        if overlay:
            env[env_var_name(name)] = json.dumps(overlay)
    return env


def _plan_name(d: Path) -> str | None:
    toml_plan = d / "plan.toml"
    if toml_plan.is_file():
        try:
            name = tomllib.loads(toml_plan.read_text()).get("name")
            return name if isinstance(name, str) else None
        except (OSError, tomllib.TOMLDecodeError):
            return None
    for sh in (d / "plan.sh", d / "habitat" / "plan.sh"):
        if sh.is_file():
            for line in sh.read_text().splitlines():
                if line.strip().startswith("pkg_name="):
                    return line.split("=", 1)[1].strip().strip("'\"")
    return None


def member_command(
    i: int, plan_dirs: list[str], state_root: Path, extra: list[str], base_http: int = 9631
) -> list[str]:
    http, ctl, gossip = ports(i, base_http)
    cmd = [
        sys.executable,
        "-m",
        "pysup",
        "run",
        *plan_dirs,
        "--listen-http",
        f"127.0.0.1:{http}",
        "--listen-ctl",
        f"127.0.0.1:{ctl}",
        "--listen-gossip",
        f"127.0.0.1:{gossip}",
        "--state-dir",
        str(state_root / f"member-{i}"),
        "--gossip-profile",
        "local",
        *extra,
    ]
    if i > 0:
        cmd += ["--peer", f"127.0.0.1:{ports(0, base_http)[2]}"]
    return cmd


def run_local_ring(
    members: int,
    plan_dirs: list[str],
    state_root: Path,
    extra: list[str],
    base_http: int = 9631,
) -> int:
    procs: list[subprocess.Popen[bytes]] = []
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    state_root.mkdir(parents=True, exist_ok=True)
    for i in range(members):
        env = {**os.environ, **plan_env(plan_dirs, i)}
        env.pop("PYSUP_DEFAULT_PLANS", None)
        cmd = member_command(i, plan_dirs, state_root, extra, base_http)
        procs.append(subprocess.Popen(cmd, env=env))
    print(f"pysup: {members} supervisors on 127.0.0.1 (state in {state_root}). Try:", flush=True)
    for i in range(members):
        http = ports(i, base_http)[0]
        print(f"  curl -s localhost:{http}/services    # member {i}", flush=True)
    print(f"  curl -s localhost:{ports(0, base_http)[0]}/census", flush=True)
    print("Ctrl-C stops them all.", flush=True)
    rc = 0
    try:
        while not stop:
            for i, p in enumerate(procs):
                code = p.poll()
                if code is not None:
                    print(f"pysup: member {i} exited with status {code}", file=sys.stderr)
                    stop = True
                    rc = code or 1
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return rc

"""`pysup ring --members N`: a local multi-process ring for trying pysup out and for testing.

Member i listens on 127.0.0.1 with HTTP base+10i, control base+1+10i and gossip base+7+10i
(base 9631 by default), keeps its state in `<state-root>/member-i`, and joins member 0. Every
`port` key in a plan's default.toml is moved by i (and by base-9631), through Habitat's own
`HAB_<PKG>` environment layer, so the demo services of several members do not collide.

Before starting anything the ring checks every one of those ports and refuses to start, naming
each taken port and the process holding it, with a `--base-port` under which all are free. It
does not silently pick other ports: the ports are how a user finds the members (the README's
curl lines, `--remote-sup`, bookmarks), and a ring that moves on its own is hard to find. Then it
writes `<state-root>/ring.json` (how to reach each member; `pysup svc status --member N` reads it),
prints the same as a table, and labels every line a member writes with that member.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from pysup.portcheck import PortUse, all_free, check_ports
from pysup.ringinfo import (
    DEFAULT_BASE_PORT,
    DEFAULT_RING_ROOT,
    MemberAddrs,
    ring_file,
    write_ring_file,
)
from pysup.ringlog import LineWriter, pump, use_colour
from pysup.service.cfg import env_var_name

PORT_STRIDE: Final = 10
"""Member i's ports are member 0's plus PORT_STRIDE * i (room for HTTP, control and gossip)."""
DEFAULT_BASE: Final = DEFAULT_BASE_PORT
HOST: Final = "127.0.0.1"
SERVICE_HOST: Final = "0.0.0.0"
"""Where a plan's service port is checked: the demo service listens on every address, and a
port free there is free everywhere."""
SUGGEST_STEP: Final = 10000
"""`--base-port` suggestions try base + 10000, + 20000, ...: round numbers that keep the usual
last digits (19631, 29631), so the ports stay recognisable."""
STOP_TIMEOUT_S: Final = 20.0
"""How long members get to leave the ring and stop their services before they are killed."""
DRAIN_S: Final = 2.0
"""How long to wait for a member's last lines after it exited (they say why)."""


@dataclass(frozen=True)
class PlanPort:
    plan: str
    key: str
    """Dotted path of the `port` key in default.toml, e.g. `http.port`."""
    port: int


def ports(i: int, base_http: int = DEFAULT_BASE) -> tuple[int, int, int]:
    """(http, ctl, gossip) for member i."""
    off = PORT_STRIDE * i
    return base_http + off, base_http + 1 + off, base_http + 7 + off


def _port_keys(cfg: Any, path: str = "") -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            key = f"{path}.{k}" if path else str(k)
            if k == "port" and isinstance(v, int) and not isinstance(v, bool):
                out.append((key, v))
            else:
                out += _port_keys(v, key)
    return out


def _offset_ports(cfg: Any, offset: int) -> Any:
    """The `port` keys of `cfg` moved by `offset`, as a nested dict; None if there are none."""
    if isinstance(cfg, dict):
        out = {}
        for k, v in cfg.items():
            if k == "port" and isinstance(v, int) and not isinstance(v, bool):
                out[k] = v + offset
            else:
                sub = _offset_ports(v, offset)
                if sub is not None:
                    out[k] = sub
        return out or None
    return None


def _plan_defaults(d: Path) -> tuple[str, dict[str, Any]] | None:
    name = _plan_name(d)
    default = d / "default.toml"
    if not name or not default.is_file():
        return None
    try:
        return name, tomllib.loads(default.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None


def plan_ports(plan_dirs: list[str]) -> list[PlanPort]:
    """The `port` keys of each plan's default.toml (member 0's, at the default base)."""
    out: list[PlanPort] = []
    for d in plan_dirs:
        found = _plan_defaults(Path(d))
        if found:
            name, cfg = found
            out += [PlanPort(name, key, port) for key, port in _port_keys(cfg)]
    return out


def plan_env(plan_dirs: list[str], i: int, base_http: int = DEFAULT_BASE) -> dict[str, str]:
    """`HAB_<PKG>` for member i: the plans' ports moved by i and by the base's shift."""
    env: dict[str, str] = {}
    for d in plan_dirs:
        found = _plan_defaults(Path(d))
        if not found:
            continue
        name, cfg = found
        overlay = _offset_ports(cfg, i + base_http - DEFAULT_BASE)
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


def ring_ports(members: int, base_http: int, plan_dirs: list[str]) -> list[PortUse]:
    """Every port the ring will bind, with who binds it. ValueError if one is out of range."""
    uses: list[PortUse] = []
    shift = base_http - DEFAULT_BASE
    pports = plan_ports(plan_dirs)
    for i in range(members):
        http, ctl, gossip = ports(i, base_http)
        uses += [
            PortUse(HOST, http, "tcp", f"member {i} HTTP gateway"),
            PortUse(HOST, ctl, "tcp", f"member {i} control gateway"),
            PortUse(HOST, gossip, "tcp", f"member {i} gossip"),
            PortUse(HOST, gossip, "udp", f"member {i} gossip"),
        ]
        uses += [
            PortUse(SERVICE_HOST, p.port + i + shift, "tcp", f"member {i} {p.plan} {p.key}")
            for p in pports
        ]
    for u in uses:
        if not 0 < u.port <= 65535:
            raise ValueError(f"{u.what} would be port {u.port}, outside 1-65535")
    return uses


def suggest_base(members: int, base_http: int, plan_dirs: list[str]) -> int | None:
    """A `--base-port` under which every port of the ring is free now, or None."""
    for k in range(1, 6):
        for base in (base_http + k * SUGGEST_STEP, base_http - k * SUGGEST_STEP):
            try:
                uses = ring_ports(members, base, plan_dirs)
            except ValueError:
                continue
            if min(u.port for u in uses) >= 1024 and all_free(uses):
                return base
    return None


def preflight(
    members: int, base_http: int, plan_dirs: list[str], state_root: Path | None = None
) -> str | None:
    """None when the ring can start; else the message for the user (which ports, what holds
    them, and the command that would start the ring on free ports)."""
    try:
        uses = ring_ports(members, base_http, plan_dirs)
    except ValueError as e:
        return f"pysup ring: --base-port {base_http}: {e}"
    taken = check_ports(uses)
    if not taken:
        return None
    one = len(taken) == 1
    lines = [
        f"pysup ring: cannot start: {len(taken)} of the ring's ports "
        f"{'is' if one else 'are'} taken",
        *(f"  {t.describe()}" for t in taken),
    ]
    stop = f"Stop what holds {'it' if one else 'them'}"
    alt = suggest_base(members, base_http, plan_dirs)
    if alt is None:
        lines.append(f"{stop}, or choose another --base-port.")
        return "\n".join(lines)
    http, ctl, gossip = ports(0, alt)
    moved = "".join(
        f", {p.plan} {p.key} {p.port + alt - DEFAULT_BASE}" for p in plan_ports(plan_dirs)
    )
    root = (
        ""
        if state_root is None or str(state_root) == DEFAULT_RING_ROOT
        else f" --state-root {state_root}"
    )
    lines += [
        f"{stop}, or move every port of the ring with --base-port {alt} (all free now):",
        f"  {_cli_name()} ring --members {members} {' '.join(plan_dirs)}{root} --base-port {alt}",
        f"  (member 0 then has HTTP {http}, control {ctl}, gossip {gossip}{moved})",
    ]
    return "\n".join(lines)


def member_addrs(i: int, state_root: Path, base_http: int = DEFAULT_BASE) -> MemberAddrs:
    http, ctl, gossip = ports(i, base_http)
    return MemberAddrs(
        index=i,
        http=f"{HOST}:{http}",
        ctl=f"{HOST}:{ctl}",
        gossip=f"{HOST}:{gossip}",
        state_dir=str((state_root / f"member-{i}").absolute()),
    )


def member_command(
    i: int, plan_dirs: list[str], state_root: Path, extra: list[str], base_http: int = DEFAULT_BASE
) -> list[str]:
    m = member_addrs(i, state_root, base_http)
    cmd = [
        sys.executable,
        "-m",
        "pysup",
        "run",
        *plan_dirs,
        "--listen-http",
        m.http,
        "--listen-ctl",
        m.ctl,
        "--listen-gossip",
        m.gossip,
        "--state-dir",
        str(state_root / f"member-{i}"),
        "--gossip-profile",
        "local",
        *extra,
    ]
    if i > 0:
        cmd += ["--peer", member_addrs(0, state_root, base_http).gossip]
    return cmd


def _cli_name() -> str:
    """How the user can run pysup again: the script they ran, else `python -m pysup`."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "pysup" else f"{sys.executable} -m pysup"


def banner(
    members: int, plan_dirs: list[str], state_root: Path, base_http: int = DEFAULT_BASE
) -> str:
    """What `pysup ring` prints at start: how to reach each member, and what to try."""
    shift = base_http - DEFAULT_BASE
    pports = plan_ports(plan_dirs)
    rows = [["member", "HTTP API", "control (--remote-sup)", "gossip", "state dir", "services"]]
    for i in range(members):
        m = member_addrs(i, state_root, base_http)
        services = ", ".join(f"{p.plan} {p.key} {p.port + i + shift}" for p in pports)
        rows.append(
            [str(i), f"http://{m.http}", m.ctl, m.gossip, str(state_root / f"member-{i}"), services]
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    table = [
        "  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    member = min(1, members - 1)
    http0, http1 = ports(0, base_http)[0], ports(member, base_http)[0]
    root_flag = "" if str(state_root) == DEFAULT_RING_ROOT else f" --ring-root {state_root}"
    tries = [
        (f"curl -s localhost:{http0}/services", "member 0's services (Habitat's JSON)"),
        (f"curl -s localhost:{http1}/census", f"the ring, seen from member {member}"),
    ]
    tries += [
        (f"curl -s localhost:{p.port + shift}/", f"{p.plan} on member 0")
        for p in pports
        if "http" in p.key
    ][:1]
    tries.append(
        (f"{_cli_name()} svc status --member {member}{root_flag}", "control commands: by number")
    )
    width = max(len(cmd) for cmd, _ in tries)
    lines = [
        f"pysup ring: {members} supervisors on {HOST}; state in {state_root}, "
        f"addresses in {ring_file(state_root)}",
        *table,
        f"Dashboard: http://{HOST}:{http0}/ui/  (member 0's view of the ring, live)",
        "Try, from another terminal in this directory:",
        *(f"  {cmd:<{width}}  # {why}" for cmd, why in tries),
        "Ctrl-C stops them all.",
    ]
    return "\n".join(lines)


def run_local_ring(
    members: int,
    plan_dirs: list[str],
    state_root: Path,
    extra: list[str],
    base_http: int = DEFAULT_BASE,
    out: IO[bytes] | None = None,
) -> int:
    """Start the members, copy their output labelled to `out` (stdout), stop them on Ctrl-C
    or when one exits. Returns the exit status for the CLI."""
    problem = preflight(members, base_http, plan_dirs, state_root)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    write_ring_file(state_root, [member_addrs(i, state_root, base_http) for i in range(members)])
    stream = out if out is not None else sys.stdout.buffer
    labels = [f"member-{i}" for i in range(members)]
    writer = LineWriter(stream, labels, use_colour(stream))
    writer.plain(banner(members, plan_dirs, state_root, base_http))
    procs: list[subprocess.Popen[bytes]] = []
    pumps: list[threading.Thread] = []
    for i in range(members):
        env = {**os.environ, **plan_env(plan_dirs, i, base_http)}
        env.pop("PYSUP_DEFAULT_PLANS", None)
        proc = subprocess.Popen(
            member_command(i, plan_dirs, state_root, extra, base_http),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        procs.append(proc)
        pumps.append(pump(proc.stdout, labels[i], writer))
    rc = 0
    try:
        while not stop.is_set():
            for i, p in enumerate(procs):
                code = p.poll()
                if code is not None:
                    pumps[i].join(DRAIN_S)  # its last lines say why
                    writer.plain(
                        f"pysup ring: member {i} exited with status {code}; stopping the others"
                    )
                    stop.set()
                    rc = code or 1
                    break
            stop.wait(0.2)
    finally:
        _stop_all(procs)
        for t in pumps:
            t.join(DRAIN_S)
    return rc


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

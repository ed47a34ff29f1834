"""Issue 18, goal 2: where every MB and ms of an idle `pysup run` goes.

    python -m bench.startup [--repeat 5] [--idle 8]

Four measurements, each on fresh `python -m pysup run` processes alone on 127.0.0.1 (no ring):

- ``startup``: spawn to the first `/healthz` 200, `repeat` times one after another (the goal:
  <= 250 ms), and RSS / PSS of the idle process `idle` seconds later (goal: within 2 MB of the
  libraries' floor below).
- ``floor``: RSS, PSS and wall time of a bare interpreter importing cumulative layers of our
  dependencies (bare; + asyncio; + msgpack, structlog, PyNaCl; + prometheus-client; + aiohttp;
  + pysup.daemon), one fresh process per layer: what the libraries cost before pysup's own code.
- ``importtime``: one `pysup run` under `-X importtime` until /healthz answers; self time by
  package (pysup split by sub-package) and, per pysup module, the packages it pulls in.
- ``tracemalloc``: one `pysup run` with tracemalloc on from the first import; after `idle` seconds
  the live allocations by package (an allocation is charged to the innermost frame that is not
  importlib's: code objects made by an import are charged to the module that imported them).
  RSS minus the traced total is what tracemalloc cannot see: the interpreter itself, shared
  libraries, and allocator overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import breakdown
from bench.measure import Result, memory_mib, percentile
from bench.procs import HOST, http_get
from bench.serf_env import free_ports

SYSTEM = "pysup"
LAYERS: tuple[tuple[str, str], ...] = (
    ("bare CPython", ""),
    ("+ asyncio", "import asyncio"),
    ("+ msgpack, structlog, PyNaCl", "import msgpack, structlog, nacl.secret"),
    ("+ prometheus-client", "import prometheus_client"),
    ("+ aiohttp", "import aiohttp.web"),
    ("+ pysup.daemon", "import pysup.daemon"),
)
"""Cumulative import layers for the libraries' floor (each line adds to the ones above)."""
_MEASURE = (
    "import json\n"
    "m = {}\n"
    "for line in open('/proc/self/smaps_rollup'):\n"
    "    k, _, v = line.partition(':')\n"
    "    p = v.split()\n"
    "    if len(p) == 2 and p[1] == 'kB':\n"
    "        m[k.strip()] = int(p[0]) / 1024\n"
    "print(json.dumps(m))\n"
)
_TRACEMALLOC = r"""
import json, sys, threading, time, tracemalloc
tracemalloc.start(12)
out, delay, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]

def snap():
    time.sleep(delay)
    snapshot = tracemalloc.take_snapshot()
    sizes = {}
    for tr in snapshot.traces:
        name = "<frozen>"
        for fr in reversed(tr.traceback):  # most recent frame last
            if not fr.filename.startswith("<frozen"):
                name = fr.filename
                break
        sizes[name] = sizes.get(name, 0) + tr.size
    traced, peak = tracemalloc.get_traced_memory()
    with open(out, "w") as f:
        json.dump({"sizes": sizes, "traced": traced, "peak": peak}, f)

threading.Thread(target=snap, daemon=True).start()
from pysup.cli import main
sys.exit(main(argv))
"""


def _run_args(root: Path) -> list[str]:
    gossip, http, ctl = free_ports(3)
    state = root / f"s{gossip}"
    state.mkdir(mode=0o711)
    return [
        "run",
        f"--listen-gossip={HOST}:{gossip}",
        f"--listen-http={HOST}:{http}",
        f"--listen-ctl={HOST}:{ctl}",
        f"--state-dir={state}",
        "--json-logging",
    ]


def _http_port(args: list[str]) -> int:
    return int(next(a for a in args if a.startswith("--listen-http=")).rsplit(":", 1)[1])


def _child_env() -> dict[str, str]:
    """The environment of every measured interpreter: no pysup or Habitat settings, and bytecode
    allowed (an installed package has its .pyc files; PYTHONDONTWRITEBYTECODE, set in some dev
    shells, made each start compile pysup from source: +57 ms and more RSS in the suite run of
    2026-12-05 08:58, whose startup part came before anything had written pysup's bytecode)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HAB_", "PYSUP_")) and k != "PYTHONDONTWRITEBYTECODE"
    }


def _start(
    pre: list[str], args: list[str], stderr: Path | None = None
) -> tuple[subprocess.Popen[bytes], float]:
    """Start `python PRE... ARGS` and wait for /healthz 200: (process, seconds to it)."""
    env = _child_env()
    err = open(stderr, "wb") if stderr else subprocess.DEVNULL  # noqa: SIM115 - closed below
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *pre, *args], stdout=subprocess.DEVNULL, stderr=err, env=env
    )
    if stderr:
        err.close()  # type: ignore[union-attr]
    port = _http_port(args)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if http_get(port, "/healthz", timeout=1.0)[0] == 200:
            return proc, time.perf_counter() - t0
        time.sleep(0.005)
    _stop(proc)
    raise RuntimeError(f"pysup run did not answer /healthz (exit {proc.returncode})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def measure_startup(root: Path, repeat: int, idle_s: float) -> dict[str, Any]:
    times: list[float] = []
    mem: dict[str, float] = {}
    _stop(_start(["-m", "pysup"], _run_args(root))[0])  # not counted: writes the bytecode
    for i in range(repeat):
        proc, t = _start(["-m", "pysup"], _run_args(root))
        times.append(t)
        if i == repeat - 1:
            time.sleep(idle_s)
            mem = memory_mib([proc.pid]).get(proc.pid, {})
        _stop(proc)
    return {"healthz_s": times, "memory_mib": mem}


def measure_floor(repeat: int = 3) -> list[dict[str, Any]]:
    out = []
    code = ""
    for name, stmt in LAYERS:
        code = f"{code}{stmt}\n" if stmt else code
        walls, mems = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", code + _MEASURE],
                capture_output=True,
                text=True,
                check=True,
                env=_child_env(),
            )
            walls.append(time.perf_counter() - t0)
            mems.append(json.loads(done.stdout))
        out.append(
            {
                "layer": name,
                "wall_s": percentile(walls, 50),
                "rss_mib": percentile([m["Rss"] for m in mems], 50),
                "pss_mib": percentile([m["Pss"] for m in mems], 50),
            }
        )
    return out


def measure_importtime(root: Path) -> dict[str, Any]:
    err = root / "importtime.txt"
    proc, t = _start(["-X", "importtime", "-m", "pysup"], _run_args(root), stderr=err)
    _stop(proc)
    roots = breakdown.parse_importtime(err.read_text(errors="replace"))
    by_pkg = breakdown.importtime_by_package(roots)
    return {
        "healthz_s": t,
        "total_ms": breakdown.total_import_ms(roots),
        "by_package_ms": by_pkg,
        "pulled_in_by": breakdown.pulled_in_by(roots),
        "modules": sum(1 for _ in breakdown.walk(roots)),
    }


def measure_tracemalloc(root: Path, idle_s: float, plain_rss: float | None) -> dict[str, Any]:
    """`plain_rss`: RSS of the same idle process without tracemalloc (whose bookkeeping inflates
    the traced process's own RSS), for what tracemalloc cannot see."""
    out = root / "tracemalloc.json"
    pre = ["-c", _TRACEMALLOC, str(out), str(idle_s)]
    proc, _ = _start(pre, _run_args(root))
    deadline = time.monotonic() + idle_s + 60
    while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)  # the file is written in one go; let it finish
    mem = memory_mib([proc.pid]).get(proc.pid, {})
    _stop(proc)
    doc = json.loads(out.read_text())
    by_pkg = breakdown.group_sizes_by_package(doc["sizes"].items())
    traced = doc["traced"] / 2**20
    return {
        "traced_mib": traced,
        "by_package_mib": by_pkg,
        "rss_traced_process_mib": mem.get("Rss"),
        "rss_plain_mib": plain_rss,
        "untraced_mib": (plain_rss - traced) if plain_rss is not None else None,
    }


def run_startup(
    repeat: int = 5, idle_s: float = 8.0, say: Callable[[str], None] = lambda _m: None
) -> list[Result]:
    root = Path(tempfile.mkdtemp(prefix="pysup-bench-startup-"))
    try:
        say(f"startup: {repeat} lone starts to /healthz 200")
        st = measure_startup(root, repeat, idle_s)
        say("startup: the libraries' floor (import layers)")
        floor = measure_floor()
        say("startup: -X importtime")
        imp = measure_importtime(root)
        say(f"startup: tracemalloc after {idle_s:g}s idle")
        tm = measure_tracemalloc(root, idle_s, st["memory_mib"].get("Rss"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mem = st["memory_mib"]
    lib_floor = next((f for f in floor if f["layer"] == "+ aiohttp"), None)
    return [
        Result.from_samples(SYSTEM, "lone_startup_healthz", 1, st["healthz_s"], "s"),
        Result.from_samples(
            SYSTEM,
            "lone_idle_rss",
            1,
            [mem.get("Rss", float("nan"))],
            "MiB",
            pss_mib=mem.get("Pss"),
            floor_rss_mib=lib_floor["rss_mib"] if lib_floor else None,
            idle_s=idle_s,
        ),
        Result.from_samples(
            SYSTEM, "import_floor", 1, [f["rss_mib"] for f in floor], "MiB", layers=floor
        ),
        Result.from_samples(SYSTEM, "importtime", 1, [imp["total_ms"]], "ms", **imp),
        Result.from_samples(SYSTEM, "tracemalloc", 1, [tm["traced_mib"]], "MiB", **tm),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--idle", type=float, default=8.0)
    args = ap.parse_args(argv)
    for r in run_startup(args.repeat, args.idle, lambda m: print(m, file=sys.stderr)):
        print(json.dumps(r.to_json(), default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

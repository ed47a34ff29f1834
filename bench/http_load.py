"""The HTTP gateway under load: wrk against /services and /census of one supervisor with 10
services loaded.

    python -m bench.http_load [--duration 10] [--connections 32] [--services 10]

The services are 10 copies of the `greeter` demo plan (a file-writing service: no ports to
collide), renamed svc0..svc9, all given to one `pysup run`. Once `GET /services` lists all ten,
wrk runs against each route (2 threads, `--latency`); requests/s and the p50/p99 latency are read
from its report. Routes that are not there (404) are reported as such, not measured; if
`/services` never lists the services, /butterfly is measured instead and the result says so.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.measure import Result, cpu_seconds, rss_mib
from bench.serf_env import free_ports

SYSTEM = "pysup-http"
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
PLAN = REPO / "plans" / "greeter"

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/s and latency percentiles (seconds) from `wrk --latency` output."""
    out: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        out[f"p{pct}"] = float(value) * _UNITS[unit]
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = float(m.group(1))
    return out


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), b""
    except (urllib.error.URLError, OSError):
        return 0, b""


def _make_plans(root: Path, count: int) -> list[Path]:
    dirs = []
    for i in range(count):
        d = root / "plans" / f"svc{i}"
        shutil.copytree(PLAN, d)
        toml = (d / "plan.toml").read_text()
        (d / "plan.toml").write_text(re.sub(r'^name = ".*"$', f'name = "svc{i}"', toml, flags=re.M))
        dirs.append(d)
    return dirs


def _count_services(body: bytes) -> int:
    try:
        doc = json.loads(body)
    except ValueError:
        return 0
    return len(doc) if isinstance(doc, list) else 0


def run_http_bench(
    services: int = 10,
    duration: float = 10.0,
    connections: int = 32,
    threads: int = 2,
    wait_s: float = 60.0,
    progress: Any = None,
) -> tuple[list[Result], dict[str, Any]]:
    """Results (metrics http_rps and http_latency per route) and a summary dict."""
    say = progress or (lambda _m: None)
    wrk = wrk_binary()
    if wrk is None:
        return [], {"skipped": "wrk not installed (scripts/setup-bench: apt-get install wrk)"}
    root = Path(tempfile.mkdtemp(prefix="pysup-bench-http-"))
    gossip, http, ctl = free_ports(3)
    state = root / "state"
    state.mkdir(mode=0o711)
    plans = _make_plans(root, services)
    log = open(root / "sup.log", "wb")  # noqa: SIM115 - closed in finally
    cmd = [
        sys.executable,
        "-m",
        "pysup",
        "run",
        *map(str, plans),
        f"--listen-gossip={HOST}:{gossip}",
        f"--listen-http={HOST}:{http}",
        f"--listen-ctl={HOST}:{ctl}",
        f"--state-dir={state}",
        "--json-logging",
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://{HOST}:{http}"
    summary: dict[str, Any] = {
        "services": services,
        "duration_s": duration,
        "connections": connections,
        "threads": threads,
    }
    results: list[Result] = []
    try:
        say(f"http: waiting for {services} services on /services")
        deadline = time.monotonic() + wait_s
        loaded = 0
        while time.monotonic() < deadline and proc.poll() is None:
            status, body = _get(base + "/services")
            loaded = _count_services(body) if status == 200 else 0
            if loaded >= services:
                break
            time.sleep(0.5)
        if proc.poll() is not None:
            tail = (root / "sup.log").read_text(errors="replace")[-1500:]
            return [], {"skipped": f"pysup run exited {proc.returncode}: {tail}"}
        summary["services_listed"] = loaded
        routes = ["/services", "/census"]
        if loaded < services:
            summary["note"] = (
                f"/services listed {loaded} of {services} services after {wait_s:g}s: "
                "the service manager is not wired into `pysup run`; /butterfly measured instead"
            )
            routes = ["/butterfly", "/census"]
        for route in routes:
            status, _ = _get(base + route)
            if status != 200:
                summary[route] = {"status": status, "measured": False}
                continue
            say(f"http: wrk {route} {duration:g}s")
            pid = [proc.pid]
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            out = subprocess.run(
                [
                    wrk,
                    f"-t{threads}",
                    f"-c{connections}",
                    f"-d{duration:g}s",
                    "--latency",
                    base + route,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            parsed = parse_wrk(out.stdout)
            parsed["sup_cpu"] = (cpu1.get(proc.pid, 0) - cpu0.get(proc.pid, 0)) / (t1 - t0)
            parsed["sup_rss_mib"] = rss_mib(pid).get(proc.pid, float("nan"))
            summary[route] = parsed
            meta = {
                "route": route,
                "services": loaded,
                "connections": connections,
                "threads": threads,
                "duration_s": duration,
                **parsed,
            }
            if "rps" in parsed:
                results.append(
                    Result.from_samples(
                        f"{SYSTEM} {route}", "http_rps", services, [parsed["rps"]], "req/s", **meta
                    )
                )
            if "p99" in parsed:
                results.append(
                    Result.from_samples(
                        f"{SYSTEM} {route}", "http_p99", services, [parsed["p99"]], "s", **meta
                    )
                )
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
    return results, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.http_load", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args(argv)
    _, summary = run_http_bench(
        args.services,
        args.duration,
        args.connections,
        progress=lambda m: print(m, file=sys.stderr),
    )
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

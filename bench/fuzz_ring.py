"""The stateful hostile run: each attack of issue 13 (items 1-5) against a fresh live ring of real
`pysup run` processes on 127.0.0.1, measured (`python -m bench.fuzz --live-ring`).

Per attack: a ring of `--members` starts and forms; a baseline window measures each member's
`/healthz` latency; then the attack runs for `--attack-s` seconds while every member is watched:

- `cpu_pct`, `rss_peak_mib`: the most any member used (CPU over the window; peak resident size
  from VmHWM, reset at the window's start);
- `healthz_p99_ms`, `healthz_max_ms`: `/healthz` latency, polled every 0.1 s on every member
  (a blocked event loop shows here), and `healthz_failed` (no answer within 5 s);
- `false_suspicions`: `member.suspect`/`member.confirmed` log events about live real members;
- `http_5xx`: `/butterfly` and `/census` answers >= 500 during the window;
- `refused`: what the members counted in `pysup_rejected_inputs_total{source="gossip"}`;
- `recover_s`: from the end of the attack until every live member lists every other one Alive
  and answers `/healthz` within max(50 ms, 3 x its baseline p99) (None: not within 60 s);
- for the member flood, `detect_s`: a real member is killed as the flood starts; seconds until
  every other member lists it Confirmed (the Lifeguard bound for the real ring is printed).

`--pysup-path DIR` runs the members from another source tree (the tree before a change), so the
same attacks give the before and after figures of bench/README.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import hostile
from bench.measure import cpu_seconds, percentile
from bench.serf_env import free_ports, raise_nofile_limit
from pysup.butterfly.config import PRESETS

HOST = "127.0.0.1"
POLL_S = 0.1
RECOVER_WAIT_S = 60.0
FORM_WAIT_S = 60.0
GONE_EVENTS = (b'"member.suspect"', b'"member.confirmed"')


def http(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes, float]:
    """(status, body, seconds); status 0 when nothing answered in time."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
            return int(r.status), r.read(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return int(e.code), b"", time.monotonic() - t0
    except (OSError, TimeoutError):
        return 0, b"", time.monotonic() - t0


@dataclass
class Node:
    index: int
    gossip: int
    http: int
    ctl: int
    state: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    member_id: str = ""
    latencies: list[tuple[float, float | None]] = field(default_factory=list)

    def members(self) -> dict[str, str]:
        status, body, _ = http(self.http, "/butterfly")
        if status != 200:
            return {}
        data = json.loads(body)
        return {k: v["health"] for k, v in data["member"]["members"].items()}

    def rejects(self) -> dict[str, float]:
        status, body, _ = http(self.http, "/metrics")
        out: dict[str, float] = {}
        for line in body.decode(errors="replace").splitlines() if status == 200 else []:
            if line.startswith("pysup_rejected_inputs_total{") and 'source="gossip"' in line:
                out[line.split('reason="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
        return out


class LiveRing:
    """`n` supervisors in one process group (killed as a whole on close)."""

    def __init__(self, n: int, profile: str, pysup_path: str | None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="pysup-fuzz-ring-"))
        ports = free_ports(3 * n)
        self.nodes = [
            Node(i, g, h, c, self.workdir / f"m{i}", self.workdir / f"m{i}.log")
            for i, (g, h, c) in enumerate(zip(ports[::3], ports[1::3], ports[2::3], strict=True))
        ]
        self.profile = profile
        self.pysup_path = pysup_path
        self._pgid: int | None = None
        self._stop = threading.Event()
        self._probes: list[threading.Thread] = []

    def launch(self, node: Node) -> None:
        cmd = [
            *(sys.executable, "-m", "pysup", "run", "--json-logging"),
            *(f"--listen-gossip={HOST}:{node.gossip}", f"--listen-http={HOST}:{node.http}"),
            *(f"--listen-ctl={HOST}:{node.ctl}", f"--state-dir={node.state}"),
            f"--gossip-profile={self.profile}",
        ]
        if node.index:
            cmd.append(f"--peer={HOST}:{self.nodes[0].gossip}")
        node.state.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.pysup_path:
            env["PYTHONPATH"] = self.pysup_path
        with open(node.log, "ab") as log:
            node.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.pysup_path or None, process_group=self._pgid or 0,
            )  # fmt: skip
        self._pgid = self._pgid or node.proc.pid

    def start(self) -> None:
        for node in self.nodes:
            self.launch(node)
        self.wait(lambda: all(http(n.http, "/healthz")[0] == 200 for n in self.nodes), "gateways")
        for node in self.nodes:
            _, body, _ = http(node.http, "/butterfly")
            node.member_id = json.loads(body)["member"]["local_member_id"]
        self.wait(self.whole, "the ring to form")
        for node in self.nodes:
            t = threading.Thread(target=self._probe, args=(node,), daemon=True)
            t.start()
            self._probes.append(t)

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = FORM_WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def lifeguard_bound_s(self) -> float:
        g = PRESETS[self.profile]
        return g.probe_interval_s + g.probe_timeout_s + g.suspicion_max_s(len(self.nodes))

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def whole(self) -> bool:
        """Every live member lists every other live one, Alive."""
        live = self.live()
        for node in live:
            seen = node.members()
            if any(seen.get(o.member_id) != "Alive" for o in live):
                return False
        return True

    def _probe(self, node: Node) -> None:
        while not self._stop.is_set():
            status, _, seconds = http(node.http, "/healthz")
            node.latencies.append((time.monotonic(), seconds if status == 200 else None))
            time.sleep(POLL_S)

    def close(self) -> None:
        self._stop.set()
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
        for node in self.nodes:
            if node.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- attacks: each sends for about `seconds` and returns extra figures ------------------------


def send_udp(port: int, datagrams: list[bytes], per_s: float = 0.0, seconds: float = 0.0) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        end = time.monotonic() + seconds
        i = 0
        while True:
            with contextlib.suppress(OSError):
                s.sendto(datagrams[i % len(datagrams)], (HOST, port))
            i += 1
            if per_s:
                if time.monotonic() >= end:
                    return
                time.sleep(max(0.0, i / per_s - (time.monotonic() - end + seconds)))
            elif i >= len(datagrams):
                return


def send_tcp(port: int, data: bytes, hold_s: float = 0.0) -> None:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=10) as c:
        c.sendall(data)
        time.sleep(hold_s)


def attack_suspect(ring: LiveRing, seconds: float) -> dict[str, Any]:
    """Member 1 said Suspect at 2^64-1 to everyone; watched for the Lifeguard bound at least
    (had the rumor been taken, member 1 would be Confirmed by then)."""
    x = ring.nodes[1]
    for node in ring.nodes:
        send_udp(node.gossip, [hostile.suspect(x.member_id, HOST, x.gossip)])
    time.sleep(max(seconds, ring.lifeguard_bound_s() + 2.0))
    return {}


def attack_poison(ring: LiveRing, seconds: float) -> dict[str, Any]:
    attacks = [hostile.poison_service(), hostile.deep_cfg(), hostile.bad_file(),
               hostile.name_address()]  # fmt: skip
    for node in ring.nodes:
        send_udp(node.gossip, attacks)
    bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for node in ring.live():
            bad += sum(http(node.http, p)[0] >= 500 for p in ("/butterfly", "/census"))
        time.sleep(0.5)
    return {"http_5xx": bad}


def attack_datagrams(ring: LiveRing, seconds: float) -> dict[str, Any]:
    send_udp(ring.nodes[0].gossip, [hostile.empty_maps_datagram(65_000)], 200.0, seconds)
    return {}


def attack_frame(ring: LiveRing, seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    send_tcp(ring.nodes[0].gossip, hostile.empty_maps_frame(nested=False), hold_s=0.5)
    send_tcp(ring.nodes[0].gossip, hostile.empty_maps_frame(nested=True), hold_s=0.5)
    time.sleep(max(0.0, seconds - (time.monotonic() - start)))
    return {}


def attack_stalled_streams(ring: LiveRing, seconds: float) -> dict[str, Any]:
    """20 streams announcing 32 MiB that send 31 MiB and stall."""
    data = hostile.frame_header_only() + b"\x80" * (31 * 1024 * 1024)
    threads = [
        threading.Thread(target=send_tcp, args=(ring.nodes[0].gossip, data, seconds), daemon=True)
        for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 15)
    return {}


def attack_flood(ring: LiveRing, seconds: float) -> dict[str, Any]:
    """2,000 invented members in 80 datagrams to every member, and a real member killed."""
    victim = ring.nodes[-1]
    assert victim.proc is not None
    victim.proc.kill()
    t0 = time.monotonic()
    for node in ring.nodes[:-1]:
        send_udp(node.gossip, hostile.member_flood(2000))
    others = ring.nodes[:-1]
    detect = None
    while time.monotonic() - t0 < max(seconds, 120.0):
        if all(n.members().get(victim.member_id) == "Confirmed" for n in others):
            detect = round(time.monotonic() - t0, 1)
            break
        time.sleep(0.2)
    seen = max(len(n.members()) for n in others)
    ring.launch(victim)  # back, so recovery means the ring is whole again
    return {"detect_s": detect, "members_seen": seen}


ATTACKS: dict[str, Callable[[LiveRing, float], dict[str, Any]]] = {
    "suspect_2_64": attack_suspect,
    "poison_values_and_names": attack_poison,
    "datagrams_65k_200_per_s": attack_datagrams,
    "frame_32mib_empty_maps": attack_frame,
    "stalled_streams_20x32mib": attack_stalled_streams,
    "member_flood_2000": attack_flood,
}


# --- measuring ---------------------------------------------------------------------------------


def reset_peak_rss(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def false_suspicions(ring: LiveRing, offsets: dict[int, int], exclude: set[str]) -> list[str]:
    """`observer: event subject` for every suspicion of a live real member since `offsets`."""
    real = {n.member_id for n in ring.nodes} - exclude
    out = []
    for node in ring.nodes:
        with open(node.log, "rb") as f:
            f.seek(offsets[node.index])
            for line in f:
                if any(e in line for e in GONE_EVENTS):
                    with contextlib.suppress(ValueError):
                        rec = json.loads(line)
                        if rec.get("member_id") in real:
                            out.append(f"m{node.index}: {rec['event']} {rec['member_id'][:8]}")
    return out


def latencies(node: Node, start: float, end: float) -> list[float | None]:
    return [v for t, v in list(node.latencies) if start <= t <= end]


@dataclass
class Window:
    """What is sampled as an attack starts, to measure the attack against when it ends."""

    t0: float
    pids: dict[int, int]
    cpu: dict[int, float]
    rejects: dict[int, dict[str, float]]
    offsets: dict[int, int]
    base: dict[int, list[float]]

    @classmethod
    def open(cls, ring: LiveRing, baseline_s: float) -> Window:
        time.sleep(baseline_s)
        now = time.monotonic()
        base = {}
        for n in ring.nodes:
            base[n.index] = [v for v in latencies(n, now - baseline_s, now) if v is not None]
        pids = {n.index: n.proc.pid for n in ring.nodes if n.proc is not None}
        for pid in pids.values():
            reset_peak_rss(pid)
        rejects = {n.index: n.rejects() for n in ring.nodes}
        offsets = {n.index: n.log.stat().st_size for n in ring.nodes}
        return cls(time.monotonic(), pids, cpu_seconds(pids.values()), rejects, offsets, base)

    def close(self, ring: LiveRing, exclude: set[str]) -> dict[str, Any]:
        t1 = time.monotonic()
        cpu1 = cpu_seconds(self.pids.values())
        cpu = max((cpu1[p] - self.cpu[p]) / (t1 - self.t0) for p in cpu1 if p in self.cpu)
        watched = [n for n in ring.nodes if n.member_id not in exclude]  # not the killed one
        window = [v for n in watched for v in latencies(n, self.t0, t1)]
        ok = [v for v in window if v is not None]
        return {
            "cpu_pct": round(100 * cpu, 1),
            "rss_peak_mib": round(max(peak_rss_mib(p) for p in self.pids.values()), 1),
            "healthz_p99_ms": round(1000 * percentile(ok, 99), 1) if ok else None,
            "healthz_max_ms": round(1000 * max(ok), 1) if ok else None,
            "healthz_failed": len(window) - len(ok),
            "recover_s": recovery(ring, self.base, t1),
            # Counted after the recovery: a suspicion the attack caused may come late.
            "false_suspicions": len(wrong := false_suspicions(ring, self.offsets, exclude)),
            "false_suspicion_events": wrong,
            "refused": self.refused(ring),
        }

    def refused(self, ring: LiveRing) -> dict[str, int]:
        out: dict[str, float] = {}
        for node in ring.nodes:
            for reason, v in node.rejects().items():
                out[reason] = out.get(reason, 0) + v - self.rejects[node.index].get(reason, 0)
        return {k: int(v) for k, v in sorted(out.items()) if v > 0}


def run_attack(
    name: str, members: int, profile: str, seconds: float, path: str | None
) -> dict[str, Any]:
    ring = LiveRing(members, profile, path)
    try:
        ring.start()
        window = Window.open(ring, baseline_s=3.0)
        extra = ATTACKS[name](ring, seconds)
        exclude = {ring.nodes[-1].member_id} if name == "member_flood_2000" else set()
        out = {"attack": name, **window.close(ring, exclude), **extra}
        out["lifeguard_bound_s"] = round(ring.lifeguard_bound_s(), 1)
        return out
    finally:
        ring.close()


def recovery(ring: LiveRing, base: dict[int, list[float]], since: float) -> float | None:
    """Seconds from `since` until the ring is whole and every member answers as fast as it did."""
    deadline = since + RECOVER_WAIT_S
    while time.monotonic() < deadline:
        now = time.monotonic()
        fast = True
        for n in ring.live():
            limit = max(0.05, 3 * percentile(base[n.index], 99))
            recent = latencies(n, now - 1.0, now)
            fast = fast and bool(recent) and all(v is not None and v <= limit for v in recent)
        if fast and len(ring.live()) == len(ring.nodes) and ring.whole():
            return round(max(0.0, time.monotonic() - since), 1)
        time.sleep(0.25)
    return None


def run(
    members: int, profile: str, seconds: float, path: str | None, only: list[str]
) -> list[dict[str, Any]]:
    raise_nofile_limit()
    results = []
    for name in only or list(ATTACKS):
        print(f"attack {name} ...", flush=True)
        results.append(run_attack(name, members, profile, seconds, path))
        print("  " + json.dumps(results[-1]), flush=True)
    return results


def markdown(results: list[dict[str, Any]]) -> str:
    cols = ["attack", "cpu_pct", "rss_peak_mib", "healthz_p99_ms", "healthz_max_ms"]
    cols += ["false_suspicions", "recover_s", "refused"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        cells = [str(r.get(c)) for c in cols]
        if "detect_s" in r:
            cells[0] += f" (killed member Confirmed in {r['detect_s']} s"
            cells[0] += f", {r['members_seen']} members seen)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""A small multi-host lab on one machine: one network namespace per host, one bridge between them.

Layout (``P`` is the prefix, ``pysup<pid>`` by default, so concurrent runs never collide)::

    namespace Psw   bridge br0, ports p0..p(n-1)   (the "switch"; the root namespace is untouched)
    namespace Ph0   lo, eth0 = 10.213.X.1/24       (veth peer of p0)
    namespace Ph1   lo, eth0 = 10.213.X.2/24
    ...

Each host namespace gets its own iptables chains, hooked first in INPUT after an ACCEPT for ``lo``
(so a process talking to itself, such as :meth:`NetnsLab.http_json`, is never affected):

- ``PYSUP_PART``: one ``-s <peer> -j DROP`` per peer on the other side of a partition;
- ``PYSUP_LOSS``: ``-m statistic --mode random --probability p -j DROP`` for random loss.

Processes run inside a namespace through ``ip netns exec`` (which execs, so the ``Popen`` pid is the
process itself). HTTP from the test reaches a namespace through one small, long-lived helper
process per namespace that fetches URLs for us (the root namespace has no route into the lab).

:meth:`NetnsLab.close` kills every process the lab started (and anything else still inside its
namespaces, all of which the lab created), then deletes the namespaces. It is idempotent and also
registered with ``atexit``. Traffic stays inside the lab: nothing here routes to the outside.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

LOSS_CHAIN = "PYSUP_LOSS"
PART_CHAIN = "PYSUP_PART"
HELPER_SLACK_S = 5.0
"""Extra seconds the test waits for a fetch helper beyond the fetch's own timeout."""

_FETCH_HELPER = r"""
import json, sys, urllib.error, urllib.request
for line in sys.stdin:
    req = json.loads(line)
    out = {}
    try:
        r = urllib.request.Request(req["url"], data=req.get("body"), method=req.get("method"))
        with urllib.request.urlopen(r, timeout=req["timeout"]) as resp:
            out = {"status": resp.status, "body": resp.read().decode("utf-8", "replace")}
    except urllib.error.HTTPError as e:
        out = {"status": e.code, "body": e.read().decode("utf-8", "replace")}
    except Exception as e:
        out = {"status": 0, "error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
"""


class LabError(Exception):
    """A lab command failed (the message quotes the command and its stderr)."""


class HttpError(LabError):
    """An HTTP request made inside a namespace got no answer, or a non-2xx status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespace tests need root (ip netns add, iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (run scripts/setup-test-deps as root)"
    probe = f"pysupprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` is not supported here: {made.stderr.strip()}"
    try:
        ipt = subprocess.run(
            ["ip", "netns", "exec", probe, "iptables", "-w", "-S", "INPUT"],
            capture_output=True,
            text=True,
        )
        if ipt.returncode != 0:
            return f"iptables does not work inside a namespace: {ipt.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _default_subnet() -> str:
    return f"10.213.{os.getpid() % 250}.0/24"


class NetnsLab:
    """`n` hosts, each a namespace with one address, on one bridge in a namespace of its own."""

    def __init__(
        self,
        n: int,
        subnet: str | None = None,
        prefix: str | None = None,
        python: str | None = None,
    ) -> None:
        net = ipaddress.ip_network(subnet or _default_subnet())
        if not 1 <= n < net.num_addresses - 2:
            raise ValueError(f"{n} hosts do not fit in {net}")
        self.n = n
        self.prefix = prefix or f"pysup{os.getpid()}"
        self.switch = f"{self.prefix}sw"
        self.hosts = [f"{self.prefix}h{i}" for i in range(n)]
        self.addrs = [str(net.network_address + i + 1) for i in range(n)]
        self.prefixlen = net.prefixlen
        self.python = python or sys.executable
        self.procs: list[subprocess.Popen[bytes]] = []
        self._helpers: dict[int, subprocess.Popen[str]] = {}
        self._helper_locks = [threading.Lock() for _ in range(n)]
        self._created: list[str] = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # --- construction -------------------------------------------------------------------

    def _build(self) -> None:
        self._netns_add(self.switch)
        self._ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        self._ip("-n", self.switch, "link", "set", "br0", "up")
        for i, host in enumerate(self.hosts):
            self._netns_add(host)
            self._ip("-n", host, "link", "set", "lo", "up")
            port = f"p{i}"
            self._ip(
                "-n", self.switch, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", host,
            )  # fmt: skip
            self._ip("-n", self.switch, "link", "set", port, "master", "br0")
            self._ip("-n", self.switch, "link", "set", port, "up")
            self._ip("-n", host, "addr", "add", f"{self.addrs[i]}/{self.prefixlen}", "dev", "eth0")
            self._ip("-n", host, "link", "set", "eth0", "up")
            for chain in (PART_CHAIN, LOSS_CHAIN):
                self.iptables(i, "-N", chain)
            self.iptables(i, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
            self.iptables(i, "-A", "INPUT", "-j", PART_CHAIN)
            self.iptables(i, "-A", "INPUT", "-j", LOSS_CHAIN)

    def _netns_add(self, name: str) -> None:
        self._ip("netns", "add", name)
        self._created.append(name)

    @staticmethod
    def _run(argv: Sequence[str], timeout: float = 30.0) -> str:
        try:
            done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"`{' '.join(argv)}` timed out after {timeout}s") from None
        if done.returncode != 0:
            raise LabError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def _ip(self, *args: str) -> str:
        return self._run(["ip", *args])

    def iptables(self, i: int, *args: str) -> str:
        """Run `iptables -w ARGS` inside host `i`'s namespace."""
        return self._run(["ip", "netns", "exec", self.hosts[i], "iptables", "-w", *args])

    # --- faults -------------------------------------------------------------------------

    def loss(self, i: int, p: float) -> None:
        """Drop a random fraction `p` of host `i`'s incoming packets (0 removes the loss)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"loss probability {p} is not in [0, 1]")
        self.iptables(i, "-F", LOSS_CHAIN)
        if p > 0:
            self.iptables(
                i, "-A", LOSS_CHAIN, "-m", "statistic", "--mode", "random",
                "--probability", f"{p:.6f}", "-j", "DROP",
            )  # fmt: skip

    def partition(self, group_a: Iterable[int], group_b: Iterable[int]) -> None:
        """Cut every path between the two groups, both ways (each side drops the other's
        source addresses). Adds to any partition already in place; `heal` removes them all."""
        a, b = list(group_a), list(group_b)
        if set(a) & set(b):
            raise ValueError(f"groups overlap: {a} and {b}")
        for mine, theirs in ((a, b), (b, a)):
            for i in mine:
                for j in theirs:
                    self.iptables(i, "-A", PART_CHAIN, "-s", self.addrs[j], "-j", "DROP")

    def heal(self) -> None:
        """Remove every partition (random loss stays as set)."""
        for i in range(self.n):
            self.iptables(i, "-F", PART_CHAIN)

    def counters(self, i: int) -> dict[str, int]:
        """Packet counters of host `i`: `input` (every packet that reached the fault chains,
        loopback excluded), `partition_dropped` and `loss_dropped`. Flushing a chain (`heal`,
        `loss`) resets its drop counter."""

        def pkts(chain: str, target: str | None) -> int:
            total = 0
            for line in self.iptables(i, "-L", chain, "-n", "-v", "-x").splitlines()[2:]:
                cols = line.split()
                if len(cols) > 2 and cols[0].isdigit() and target in (None, cols[2]):
                    total += int(cols[0])
            return total

        return {
            "input": pkts("INPUT", PART_CHAIN),
            "partition_dropped": pkts(PART_CHAIN, None),
            "loss_dropped": pkts(LOSS_CHAIN, None),
        }

    # --- processes ----------------------------------------------------------------------

    def run(
        self,
        i: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        log: Path | None = None,
        cwd: str | Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` inside host `i` (in a session of its own, so a signal reaches only it).
        Output goes to `log` (appended) or is discarded."""
        out: IO[bytes] | int = subprocess.DEVNULL
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = log.open("ab")
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.hosts[i], *argv],
                env=dict(os.environ if env is None else env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        self.procs.append(proc)
        return proc

    def exec(
        self,
        i: int,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside host `i` to completion and return what it printed."""
        return subprocess.run(
            ["ip", "netns", "exec", self.hosts[i], *argv],
            env=dict(os.environ if env is None else env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    # --- HTTP into a namespace ----------------------------------------------------------

    def _helper(self, i: int) -> subprocess.Popen[str]:
        h = self._helpers.get(i)
        if h is not None and h.poll() is None:
            return h
        h = subprocess.Popen(
            ["ip", "netns", "exec", self.hosts[i], self.python, "-u", "-c", _FETCH_HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self._helpers[i] = h
        return h

    def _drop_helper(self, i: int) -> None:
        h = self._helpers.pop(i, None)
        if h is not None:
            _kill(h)

    def http(
        self,
        i: int,
        path: str,
        *,
        port: int = 9631,
        target: int | None = None,
        method: str = "GET",
        timeout: float = 2.0,
    ) -> tuple[int, str]:
        """(status, body) of an HTTP request made from inside host `i` to host `target`'s
        address (default: `i` itself) on `port`; status 0 when nothing answered."""
        addr = self.addrs[i if target is None else target]
        url = f"http://{addr}:{port}{path}"
        with self._helper_locks[i]:  # one request at a time per helper (threads may share it)
            return self._fetch(i, url, method, timeout)

    def _fetch(self, i: int, url: str, method: str, timeout: float) -> tuple[int, str]:
        h = self._helper(i)
        assert h.stdin is not None and h.stdout is not None
        req = {"url": url, "timeout": timeout, "method": method}
        try:
            h.stdin.write(json.dumps(req) + "\n")
            h.stdin.flush()
            ready, _, _ = select.select([h.stdout], [], [], timeout + HELPER_SLACK_S)
            line = h.stdout.readline() if ready else ""
        except (OSError, ValueError):
            line = ""
        if not line:
            self._drop_helper(i)
            return 0, ""
        answer = json.loads(line)
        return int(answer["status"]), str(answer.get("body") or answer.get("error", ""))

    def http_json(self, i: int, path: str, **kwargs: Any) -> Any:
        """The decoded JSON of a 2xx answer (see `http`); HttpError otherwise."""
        status, body = self.http(i, path, **kwargs)
        if not 200 <= status < 300:
            where = f"{self.hosts[i]} {path}"
            raise HttpError(f"{where}: status {status}: {body[:200]}", status)
        try:
            return json.loads(body)
        except ValueError:
            raise HttpError(f"{self.hosts[i]} {path}: not JSON: {body[:200]}", status) from None

    # --- teardown -----------------------------------------------------------------------

    def pids_in(self, i: int) -> list[int]:
        """Every process inside host `i`'s namespace."""
        return _netns_pids(self.hosts[i])

    def close(self) -> None:
        """Kill every process in the lab and delete its namespaces (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for i in list(self._helpers):
            self._drop_helper(i)
        for proc in self.procs:
            _kill(proc)
        for name in self._created:
            # Stragglers a process of ours left behind inside our namespaces.
            for pid in _netns_pids(name):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        for name in reversed(self._created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self._created.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> NetnsLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _netns_pids(name: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def _kill(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a process we started (and its session, which it leads) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
    deadline = time.monotonic() + 5.0
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()

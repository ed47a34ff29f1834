"""File descriptors (issue 13, item 7): slow and malformed HTTP clients against real `pysup run`
processes on 127.0.0.1.

What it proves (each test failed on the code before this change, as noted):

- 1,100 slowloris connections (reconnecting when closed) against a member under a 1024
  open-files limit: every `/healthz` probe is answered within `PROBE_TIMEOUT_S` (p99 under
  `HEALTHZ_P99_BOUND_S`), neither member ever sees the other other than Alive, the member never
  runs out of descriptors, and its log grows by less than `LOG_BOUND_BYTES`. Before: /healthz
  failed for the whole attack and the log grew by ~10 MB a second of accept() tracebacks.
- a connection that sends a request head a byte at a time is closed after the idle/header timeout
  and counted (`reason="header_timeout"`). Before: still open after 130 s.
- malformed requests are counted (`reason="bad_request"`) and logged through structlog: under
  --json-logging every line of the log is JSON. Before: a plain-text traceback, uncounted.
- the soft open-files limit is raised to the hard one at start, and both are logged. Before: the
  soft limit stayed.
- a member really out of descriptors (`RLIMIT_NOFILE` of `EMFILE_FD_LIMIT`, more idle gossip
  streams than that held open) fails its accepts with EMFILE, counts them, backs off and logs a
  few lines; it keeps gossiping (its peer never sees it other than Alive) and `/healthz` answers
  again once the streams are gone. Before: an accept() traceback per attempt, and the UDP
  receive task died (issue 13, item 6).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults import (
    Member,
    SlowLoris,
    Watcher,
    launch,
    ring_of_two,
    wait_until,
)
from bench.measure import percentile
from bench.serf_env import raise_nofile_limit
from pysup.butterfly.transport import STREAM_TIMEOUT_S
from pysup.gateway.http_server import HTTP_IDLE_TIMEOUT_S
from pysup.listener import ACCEPT_BACKOFF_MAX_S
from pysup.testing.procs import kill_processes_under

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CONNECTIONS = 1100
FD_LIMIT = 1024
ATTACK_S = 15.0
"""Longer than the idle timeout, so slow connections are both evicted and timed out."""
HEALTHZ_P99_BOUND_S = 0.5
"""Measured p99 under this attack: 51 ms (bench/README.md); 0.5 s leaves room for a loaded
machine, far below the probe timeout of a kubelet (1 s)."""
LOG_BOUND_BYTES = 64 * 1024
"""Rate-limited lines: a few per reason per 10 s. Before: 220 MB in 20 s."""
EMFILE_FD_LIMIT = 96
"""Below what the listeners' caps add up to (HTTP 128 + ctl 64 + streams 256), so idle streams
alone exhaust the table: a real EMFILE, not a simulated one. A member starts with ~30 open."""
EMFILE_STREAMS = 150
"""Idle gossip streams the attacker holds open: more than the limit leaves room for."""
RECOVER_BOUND_S = STREAM_TIMEOUT_S + ACCEPT_BACKOFF_MAX_S + 4.0
"""After the attacker leaves: the streams the member accepted end at their deadline, the next
accept attempt comes within the longest backoff, and 4 s more for a loaded machine."""
CLOSE_BOUND_S = HTTP_IDLE_TIMEOUT_S + 3.0
"""The sweep runs every second; 2 s more for a loaded machine."""


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    try:
        yield tmp_path
    finally:
        kill_processes_under(tmp_path)


def stop_all(*members: Member) -> None:
    for m in members:
        m.stop()


def metric(member: Member, name: str, **labels: str) -> float:
    status, body = member.get("/metrics")
    assert status == 200
    want = {f'{k}="{v}"' for k, v in labels.items()}
    total = 0.0
    for line in body.decode().splitlines():
        head, _, value = line.rpartition(" ")
        sample, _, label_text = head.partition("{")
        if sample == name and want <= set(label_text.rstrip("}").split(",")):
            total += float(value)
    return total


def test_slowloris_against_a_1024_fd_member_keeps_healthz_and_gossip(root: Path) -> None:
    victim, observer = ring_of_two(root, "local", FD_LIMIT)
    try:
        raise_nofile_limit()
        log_before = victim.log_size()
        watcher = Watcher(victim, observer, interval=0.1, poll_every=2)
        loris = SlowLoris(victim.http, CONNECTIONS)
        watcher.start()
        loris.start()
        time.sleep(ATTACK_S)
        loris.stop()
        seen = watcher.halt()
        log_growth = victim.log_size() - log_before
        refused = metric(victim, "pysup_rejected_inputs_total", source="http")
        accept_faults = metric(victim, "pysup_task_faults_total", task="http.accept")
        assert victim.proc.poll() is None, "the victim died"
    finally:
        stop_all(victim, observer)
    tail = victim.log_path.read_text(errors="replace")[-3000:]
    assert seen.healthz_failures == 0, (seen.healthz_failures, len(seen.healthz_s), tail)
    p99 = percentile(seen.healthz_s, 99)
    assert p99 < HEALTHZ_P99_BOUND_S, p99
    assert seen.polls >= 20 and seen.false_suspicions == 0, (seen.false_suspicions, tail)
    assert max(seen.fds) < FD_LIMIT - 100, max(seen.fds)
    assert accept_faults == 0, "it ran out of descriptors"
    assert refused > 0, "the refused connections are counted"
    assert loris.stats.opened > CONNECTIONS, loris.stats  # it evicted and the attacker came back
    assert log_growth < LOG_BOUND_BYTES, (log_growth, tail)


def test_a_header_trickled_a_byte_at_a_time_is_cut_off_and_counted(root: Path) -> None:
    member = launch("m", root, profile="local")
    try:
        wait_until(lambda: member.get("/healthz")[0] == 200, 20, "the gateway")
        socks = [socket.create_connection(("127.0.0.1", member.http), timeout=5) for _ in range(20)]
        start = time.monotonic()
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        open_ = list(socks)
        while open_ and time.monotonic() - start < CLOSE_BOUND_S:
            for s in list(open_):
                try:
                    s.sendall(b"X")  # one more header byte: still sending, never finishing
                    s.settimeout(0.05)
                    if s.recv(1) == b"":
                        open_.remove(s)
                except TimeoutError:
                    pass
                except OSError:
                    open_.remove(s)
            time.sleep(0.5)
        closed_after = time.monotonic() - start
        for s in socks:
            s.close()
        assert not open_, f"{len(open_)} slow connections still open after {closed_after:.1f}s"
        assert closed_after >= HTTP_IDLE_TIMEOUT_S - 1.0, "closed for being slow, not at once"
        assert metric(member, "pysup_rejected_inputs_total", reason="header_timeout") >= 20
        assert member.get("/healthz")[0] == 200
    finally:
        stop_all(member)


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nno colon in this header\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\n\r\n",
]


def test_malformed_requests_are_counted_and_logged_as_json(root: Path) -> None:
    member = launch("m", root, profile="local", extra=("--json-logging",))
    try:
        wait_until(lambda: member.get("/healthz")[0] == 200, 20, "the gateway")
        for raw in MALFORMED:
            with socket.create_connection(("127.0.0.1", member.http), timeout=5) as s:
                s.sendall(raw)
                s.settimeout(5)
                assert b" 400 " in s.recv(100), raw
        bad = metric(member, "pysup_rejected_inputs_total", source="http", reason="bad_request")
    finally:
        stop_all(member)
    assert bad == len(MALFORMED)
    lines = [line for line in member.log_path.read_text().splitlines() if line.strip()]
    not_json = [line for line in lines if not _is_json(line)]
    assert not not_json, not_json[:10]
    events = [json.loads(line)["event"] for line in lines]
    assert "http.bad_request" in events, events


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_the_soft_fd_limit_is_raised_to_the_hard_one(root: Path) -> None:
    member = launch("m", root, profile="local", fd_limit=(256, 4096))
    try:
        wait_until(lambda: member.get("/healthz")[0] == 200, 20, "the gateway")
        max_fds = metric(member, "process_max_fds")
    finally:
        stop_all(member)
    assert max_fds == 4096
    log = member.log_path.read_text()
    assert "process.fd_limit" in log and "soft=4096" in log and "soft_before=256" in log, log


def test_a_member_out_of_descriptors_keeps_gossiping_and_recovers(root: Path) -> None:
    victim, observer = ring_of_two(root, "local", EMFILE_FD_LIMIT)
    held: list[socket.socket] = []
    views: list[dict[str, str]] = []
    healthz: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # the observer's view of the victim, and the victim's /healthz
        while not stop.wait(0.3):
            views.append(observer.health_of_others())
            healthz.append(victim.get("/healthz", timeout=1.0)[0])

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        log_before = victim.log_size()
        watcher.start()
        for _ in range(EMFILE_STREAMS):
            # The kernel completes the handshake (backlog 1024) whether or not pysup accepts.
            held.append(socket.create_connection(("127.0.0.1", victim.gossip), timeout=5))
        wait_until(lambda: 0 in healthz, 20, "the descriptor table full (/healthz unanswered)")
        time.sleep(STREAM_TIMEOUT_S)  # held streams are accepted as others end: still full
        for s in held:
            s.close()
        held.clear()
        left_at = time.monotonic()
        wait_until(lambda: victim.get("/healthz")[0] == 200, RECOVER_BOUND_S, "/healthz again")
        recovered_s = time.monotonic() - left_at
        time.sleep(1.0)  # a few more views after recovery
        stop.set()
        watcher.join(10)
        emfile = metric(victim, "pysup_task_faults_total", task="gossip.stream.accept")
        assert victim.proc.poll() is None, "the victim died"
        log_growth = victim.log_size() - log_before
    finally:
        stop.set()
        for s in held:
            s.close()
        stop_all(victim, observer)
    log = victim.log_path.read_text(errors="replace")
    assert emfile > 0, "no accept failed: the descriptor table was never full"
    assert "Too many open files" in log or "EMFILE" in log, log[-3000:]
    suspected = [v for v in views if list(v.values()) != ["Alive"]]
    assert len(views) >= 5 and not suspected, (len(views), suspected[:3], log[-3000:])
    assert "Traceback" not in log, log[-3000:]
    assert log_growth < LOG_BOUND_BYTES, log_growth
    assert recovered_s < RECOVER_BOUND_S

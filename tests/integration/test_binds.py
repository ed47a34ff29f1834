"""Binds with real `pysup run` processes: a frontend bound to a group of 3 HTTP backends
(`--bind backend:backend.default`, strict) waits and says for what until the group exports what
its plan needs, then renders an upstream list of the alive members (`eachAlive
bind.backend.members as |member|`); it re-renders and reconfigures (no restart) when a backend
dies and when it comes back."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.integration.daemons import Fleet, Sup, lifeguard_bound_s, report
from tests.integration.test_leader import (
    REPO,
    backend_env,
    fleet,
    kill_node,
    service,
    wait,
)
from tests.util import free_port

__all__ = ["fleet"]

FRONTEND = REPO / "plans" / "frontend"
BACKEND = REPO / "plans" / "backend"
SERVER_RE = re.compile(r"^\s*server (\S+):(\d+);\s*# ([0-9a-f]{32})$", re.M)


def upstreams(sup: Sup) -> set[str]:
    """The member ids in the frontend's rendered upstream.conf."""
    path = sup.state_dir / "svc" / "frontend" / "config" / "upstream.conf"
    try:
        return {m.group(3) for m in SERVER_RE.finditer(path.read_text())}
    except OSError:
        return set()


def reconfigures(sup: Sup) -> int:
    path: Path = sup.state_dir / "svc" / "frontend" / "data" / "reconfigures.log"
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def test_frontend_waits_for_its_bind_then_follows_the_alive_backends(fleet: Fleet) -> None:
    front = fleet.start(
        "front",
        host="127.0.0.30",
        extra=[str(FRONTEND), "--bind", "backend:backend.default"],
    )

    def waiting() -> bool:
        svc = service(front, "frontend")
        return svc is not None and svc["pysup"]["state"] == "waiting"

    wait(waiting, 10.0, "the frontend waits for its bind", fleet)
    svc = service(front, "frontend")
    assert svc is not None and svc["process"]["state"] == "down"
    reason = svc["pysup"]["reason"]
    assert "bind 'backend'" in reason and "backend.default" in reason, reason

    backends: list[Sup] = []
    for i in range(3):
        host = f"127.0.0.{31 + i}"
        backends.append(
            fleet.new(
                f"b{i}",
                host=host,
                peers=[front.gossip_addr],
                extra=[str(BACKEND)],
                env=backend_env(host, free_port(host)),
            )
        )
    for b in backends:
        fleet.launch(b)
    for b in backends:
        b.wait_http()
    ids = [b.member_id() for b in backends]
    t0 = time.monotonic()
    wait(lambda: upstreams(front) == set(ids), 30.0, "3 backends in upstream.conf", fleet)
    report("3 backends: launch -> all in the frontend's upstream.conf", time.monotonic() - t0)
    svc = service(front, "frontend")
    assert svc is not None and svc["process"]["state"] == "up"
    pid = svc["process"]["pid"]
    # Each server line is the member's own exported host:port.
    text = (front.state_dir / "svc" / "frontend" / "config" / "upstream.conf").read_text()
    for b, mid in zip(backends, ids, strict=True):
        port = b.env["HAB_BACKEND"].split('"port": ')[1].split(",")[0]
        assert f"server {b.host}:{port};  # {mid}" in text, text

    before = reconfigures(front)
    victim = backends[1]
    kill_node(victim)
    t1 = time.monotonic()
    bound = lifeguard_bound_s(4) + 3.0
    wait(lambda: upstreams(front) == {ids[0], ids[2]}, bound, "the dead backend dropped", fleet)
    report(
        f"kill -9 backend -> dropped from upstream.conf (bound {bound:.1f}s)", time.monotonic() - t1
    )
    wait(lambda: reconfigures(front) > before, 10.0, "reconfigure hook ran", fleet)

    after_drop = reconfigures(front)
    fleet.launch(victim)  # same state dir: same member id
    victim.wait_http()
    t2 = time.monotonic()
    wait(lambda: upstreams(front) == set(ids), 30.0, "the backend back in upstream.conf", fleet)
    report("restarted backend -> back in upstream.conf", time.monotonic() - t2)
    wait(lambda: reconfigures(front) > after_drop, 10.0, "reconfigure hook ran again", fleet)
    svc = service(front, "frontend")
    assert svc is not None and svc["process"]["pid"] == pid  # reconfigured, never restarted

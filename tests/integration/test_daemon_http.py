"""The HTTP gateway of a real `pysup run`: probes that work before the ring forms, and the token."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from tests.integration.daemons import Fleet, fleet, http_get, report
from tests.util import free_port, wait_for

__all__ = ["fleet"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

HEALTHZ_BOUND_S = 2.0
"""`/healthz` answers within this long of the first join attempt: the gateway starts before any
join, and never waits for one (a join to a silent peer takes the 5 s stream timeout)."""


class SilentPeer:
    """A "peer" that accepts TCP connections and never answers: a join to it hangs until the
    stream timeout. Nothing listens for UDP on its port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.conns: list[socket.socket] = []

    def accepted(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            conn, _ = self.sock.accept()
            self.conns.append(conn)
        return bool(self.conns)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.sock.close()


def test_healthz_at_once_and_readyz_ring_waits_for_a_seed(fleet: Fleet) -> None:
    silent = SilentPeer()
    try:
        sup = fleet.launch(
            fleet.new("lonely", peers=[f"127.0.0.1:{silent.port}"], extra=["--readiness", "ring"])
        )
        seen: dict[str, float] = {}

        def both() -> bool:
            if "join" not in seen and silent.accepted():
                seen["join"] = time.monotonic()
            if "healthz" not in seen and sup.get("/healthz")[0] == 200:
                seen["healthz"] = time.monotonic()
            return len(seen) == 2

        wait_for(both, 15.0, interval=0.02, what="a join attempt and /healthz 200")
        report("spawn -> /healthz 200 (silent peer)", seen["healthz"] - sup.started_at)
        report("spawn -> first join attempt", seen["join"] - sup.started_at)
        assert seen["healthz"] - seen["join"] < HEALTHZ_BOUND_S
        status, body = sup.get("/readyz")
        assert status == 503, body
        doc = json.loads(body)
        assert doc["ready"] is False and "not joined" in doc["reason"]
        # A second attempt (the first hangs; retries start at 1 s): still not ready, still alive.
        wait_for(lambda: silent.accepted() and len(silent.conns) >= 2, 5.0, what="a retry")
        assert sup.get("/readyz")[0] == 503 and sup.get("/healthz")[0] == 200
    finally:
        silent.close()

    # A real seed comes up at that address: the retrying member joins and becomes ready.
    fleet.launch(fleet.new("seed", gossip_port=silent.port)).wait_http()
    t0 = time.monotonic()
    # Retries back off 1, 2, 4 s (x0.5-1.5 jitter) while alone; the seed is up ~2-4 s after the
    # first attempt, so the next attempt is at most ~7 s away (more on a loaded machine).
    try:
        wait_for(lambda: sup.get("/readyz")[0] == 200, 12.0, interval=0.1, what="/readyz 200")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{fleet.logs()}") from None
    report("seed up -> /readyz 200 (--readiness ring)", time.monotonic() - t0)
    assert json.loads(sup.get("/readyz")[1]) == {"ready": True, "reason": "joined"}
    assert len(sup.members()) == 2


def test_default_readiness_is_the_api_even_when_alone(fleet: Fleet) -> None:
    sup = fleet.start("api", peers=[f"127.0.0.1:{free_port()}"])
    status, body = sup.get("/readyz")
    assert status == 200, body
    assert json.loads(body)["ready"] is True
    assert len(sup.members()) == 1  # alone: readiness did not wait for the ring


def test_gateway_auth_token_guards_everything_but_the_probes(fleet: Fleet) -> None:
    token = "s3cret-token"
    sup = fleet.start("guarded", env={"HAB_SUP_GATEWAY_AUTH_TOKEN": token})
    url = sup.url
    assert http_get(url("/butterfly"))[0] == 401
    status, body = http_get(url("/butterfly"), {"Authorization": "Bearer wrong"})
    assert status == 401 and json.loads(body) == {"error": "unauthorized"}
    assert http_get(url("/butterfly"), {"Authorization": token})[0] == 401  # no scheme
    assert http_get(url("/metrics"))[0] == 401
    assert http_get(url("/"))[0] == 401
    status, body = http_get(url("/butterfly"), {"Authorization": f"Bearer {token}"})
    assert status == 200 and sup.member_id() in json.loads(body)["member"]["members"]
    # Probes stay open: the kubelet has no token.
    assert http_get(url("/healthz"))[0] == 200
    assert http_get(url("/readyz"))[0] == 200
    assert sup.metric("pysup_rejected_inputs_total", source="http", reason="unauthorized") == 5
    assert token not in sup.log_text()

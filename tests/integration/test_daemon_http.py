"""The HTTP gateway of a real `pysup run`: probes that work before the ring forms, and the token."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.daemons import Fleet, fleet, http_get, report
from tests.util import free_port, wait_for

__all__ = ["fleet"]  # the fixture, imported for pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

HEALTHZ_BOUND_S = 2.0
"""From spawn to `/healthz` 200: the gateway starts before any join attempt."""


def test_healthz_at_once_and_readyz_ring_waits_for_a_seed(fleet: Fleet) -> None:
    seed_port = free_port()  # nothing listens here yet: the only peer is unreachable
    sup = fleet.launch(
        fleet.new("lonely", peers=[f"127.0.0.1:{seed_port}"], extra=["--readiness", "ring"])
    )
    wait_for(
        lambda: sup.get("/healthz")[0] == 200,
        HEALTHZ_BOUND_S,
        interval=0.02,
        what="/healthz 200 with an unreachable peer",
    )
    report("spawn -> /healthz 200 (unreachable peer)", time.monotonic() - sup.started_at)
    status, body = sup.get("/readyz")
    assert status == 503, body
    doc = json.loads(body)
    assert doc["ready"] is False and "not joined" in doc["reason"]
    # Still not ready after a few join attempts, and still alive.
    time.sleep(1.5)
    assert sup.get("/readyz")[0] == 503 and sup.get("/healthz")[0] == 200

    # The seed comes up at that address: the retrying member joins and becomes ready.
    fleet.launch(fleet.new("seed", gossip_port=seed_port)).wait_http()
    t0 = time.monotonic()
    # Join retries back off 1, 2, 4 s (x0.5-1.5 jitter) while alone: at most ~6 s to the next.
    try:
        wait_for(lambda: sup.get("/readyz")[0] == 200, 10.0, interval=0.1, what="/readyz 200")
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

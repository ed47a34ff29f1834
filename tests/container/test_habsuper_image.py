"""plans/habsuper (the blog's plan shape) in the container image, unmodified (issue 14): three
containers on one network, started like the compose file's (`--topology leader`, clients with
`--peer super`) but given the plan directory /hab/plans/habsuper. Its underscore health_check
calls {{pkgPathFor "core/curl"}}/bin/curl, which resolves to the image's /usr/bin/curl (the
Dockerfile installs curl): health Ok in every container, and one leader all three agree on.
`pysup plan check` finds no error in the image either. The election's timing is not asserted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.container.podman import ComposeRun, http_json, podman, podman_rc
from tests.util import wait_for

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

PLAN = "/hab/plans/habsuper"
SG = "habsuper.default"
BOUND_S = 120.0
"""Containers started -> ring of three, one leader, habsuper Ok everywhere (generous: a shared
machine; only the outcome is asserted)."""

CLIENT = [PLAN, "--topology", "leader", "--peer", "super"]
SERVICES: dict[str, dict[str, Any]] = {
    "super": {"command": [PLAN, "--topology", "leader"], "networks": ["ring"]},
    "client-1": {"command": CLIENT, "networks": ["ring"]},
    "client-2": {"command": CLIENT, "networks": ["ring"]},
}


@pytest.fixture
def ring(image: str) -> Iterator[ComposeRun]:
    run = ComposeRun(SERVICES, image)
    try:
        run.start(publish_all=(9631,))
        yield run
    finally:
        run.close()


def habsuper(run: ComposeRun, service: str) -> dict[str, Any] | None:
    try:
        services = http_json(run.url(service, "/services"))
    except (OSError, ValueError):
        return None
    return next((s for s in services or [] if s.get("service_group") == SG), None)


def leader_everywhere(run: ComposeRun) -> str | None:
    leaders = set()
    for service in SERVICES:
        try:
            group = http_json(run.url(service, "/census"))["census_groups"].get(SG)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if group is None or group["election_status"] != "ElectionFinished":
            return None
        population = group["population"]
        flagged = [m for m, v in population.items() if v["leader"]]
        if len(population) != len(SERVICES) or flagged != [group["leader_id"]]:
            return None
        leaders.add(group["leader_id"])
    return leaders.pop() if len(leaders) == 1 else None


def healthy_everywhere(run: ComposeRun) -> bool:
    for service in SERVICES:
        svc = habsuper(run, service)
        if svc is None or svc["process"]["state"] != "up" or svc["health_check"] != "Ok":
            return False
    return True


def test_habsuper_runs_healthy_with_one_leader_in_three_containers(ring: ComposeRun) -> None:
    try:
        leader = wait_for(lambda: leader_everywhere(ring), BOUND_S, what="one agreed leader")
        wait_for(lambda: healthy_everywhere(ring), BOUND_S, what="habsuper Ok everywhere")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{ring.logs()}") from None
    assert leader
    name = ring.containers["client-1"]
    hook = podman("exec", name, "cat", "/hab/sup/svc/habsuper/hooks/health-check")
    assert "/usr/bin/curl -sS --head --fail --max-time 1" in hook
    assert "Deprecated hook file detected: health_check" in podman_rc("logs", name)[1]
    rc, out = podman_rc("exec", name, "pysup", "plan", "check", PLAN)
    assert rc == 0, out
    assert "0 errors, 1 warning" in out

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
from tests.integration.test_habsuper import healthy, one_leader
from tests.util import wait_for

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

PLAN = "/hab/plans/habsuper"
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


def documents(run: ComposeRun, path: str) -> list[Any]:
    """`path` from every container's gateway (None where it does not answer)."""
    out: list[Any] = []
    for service in SERVICES:
        try:
            out.append(http_json(run.url(service, path)))
        except (OSError, ValueError):
            out.append(None)
    return out


def test_habsuper_runs_healthy_with_one_leader_in_three_containers(ring: ComposeRun) -> None:
    try:
        leader = wait_for(
            lambda: one_leader(documents(ring, "/census"), len(SERVICES)),
            BOUND_S,
            what="one agreed leader",
        )
        wait_for(
            lambda: all(healthy(d) for d in documents(ring, "/services")),
            BOUND_S,
            what="habsuper Ok everywhere",
        )
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

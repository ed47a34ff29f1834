"""The `--readiness` policy (pysup/readiness.py), apart from the daemon: each mode's answer for a
lone or joined member, with or without seeds and discovery's founder rule. Proves the policy the
HTTP gateway's /readyz reports, with a fake ring that is only alone or not."""

from __future__ import annotations

from typing import Any, cast

import pytest

from pysup.readiness import readiness
from pysup.ring import RingView


class Ring:
    def __init__(self, alone: bool) -> None:
        self.alone = alone

    def is_alone(self) -> bool:
        return self.alone


class Discovery:
    def __init__(self, founder: bool) -> None:
        self.founder = founder

    def may_stand_alone(self) -> bool:
        return self.founder

    def founder_rule(self) -> str:
        return "the lowest address founds"


def ready(mode: str, ring: Ring | None, **kw: Any) -> tuple[bool, str]:
    args: dict[str, Any] = {"departing": False, "has_seeds": False, "discovery": None}
    args.update(kw)
    return readiness(mode, ring=cast(RingView | None, ring), services=None, **args)


@pytest.mark.parametrize("mode", ["api", "ring", "services"])
def test_a_departing_member_is_never_ready(mode: str) -> None:
    assert ready(mode, Ring(False), departing=True) == (False, "departing")


def test_api_mode_is_ready_before_the_ring_starts() -> None:
    assert ready("api", None) == (True, "the API is serving")
    assert ready("ring", None) == (False, "the gossip ring is not started yet")


def test_a_lone_member_with_seeds_waits_for_one_to_answer() -> None:
    assert ready("ring", Ring(True), has_seeds=True) == (
        False,
        "not joined: no seed has answered yet",
    )
    assert ready("ring", Ring(True)) == (True, "standalone ring")
    assert ready("ring", Ring(False), has_seeds=True) == (True, "joined")


def test_with_discovery_only_the_founder_stands_alone() -> None:
    waiting = ready("services", Ring(True), discovery=Discovery(founder=False))
    assert waiting == (False, "not joined: waiting for peers (the lowest address founds)")
    assert ready("services", Ring(True), discovery=Discovery(founder=True)) == (
        True,
        "standalone ring",
    )

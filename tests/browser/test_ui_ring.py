"""The dashboard on a real ring: `pysup run` processes running the backend plan in leader
topology, /ui opened from one of them in headless chromium. The page shows every member Alive and
the leader the ring elected; a member killed with -9 turns Confirmed on the page within the
ring's own detection bound (plus the page's); a full-page screenshot of the ring during the kill
goes to build/screenshots/ (the README's docs/ui-ring.png is the 5-member one, copied from there).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import save_full_page
from tests.browser.test_ui_page import (
    PAGE_BOUND_S,
    css,
    member_health,
    short,
    text,
    wait,
)
from tests.integration.daemons import Fleet, all_alive
from tests.integration.test_events_ring import FORM_BOUND_S, confirm_bound_s
from tests.integration.test_leader import SG, agreed_leader, fleet, kill_node, start_group
from tests.util import wait_for

__all__ = ["fleet"]

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(240)]

ELECTION_BOUND_S = 30.0
"""A new group of supervisors agrees on a leader within this long of forming (its first election:
the suitability hook, votes gossiped, a finish; on a loaded 2-core machine)."""


@pytest.mark.parametrize("n", [3, 5])
def test_a_real_ring_its_leader_and_a_kill(browser: Any, fleet: Fleet, n: int) -> None:
    sups = start_group(fleet, n, ["--topology", "leader"])
    wait_for(lambda: all_alive(sups, n), FORM_BOUND_S, interval=0.2, what=f"{n} Alive")
    leader = wait_for(lambda: agreed_leader(sups, n), ELECTION_BOUND_S, 0.2, "an agreed leader")
    ids = [s.member_id() for s in sups]
    watcher = sups[0]
    metrics = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        browser.get(watcher.url("/ui/"))
        wait(browser, "a live stream", lambda: text(browser, "#conn") == "live")
        wait(browser, f"{n} members", lambda: len(css(browser, "#members-body tr")) == n)
        wait(browser, "all Alive", lambda: {member_health(browser, m) for m in ids} == {"Alive"})
        assert text(browser, "#member-count") == f"{n} of {n} alive"
        assert text(browser, "#me") == f"member {short(ids[0])}"
        group = f'[data-group="{SG}"]'
        wait(browser, "the leader", lambda: text(browser, f"{group} .leader") == short(leader))

        # kill -9 a follower that is not the page's member: Confirmed on the page.
        i = next(i for i, m in enumerate(ids) if m not in (leader, ids[0]))
        victim_id = ids[i]
        kill_node(sups[i])
        bound = confirm_bound_s(n) + PAGE_BOUND_S
        wait(browser, "Confirmed", lambda: member_health(browser, victim_id) == "Confirmed", bound)
        assert text(browser, "#member-count") == f"{n - 1} of {n} alive"
        assert text(browser, f"{group} .leader") == short(leader)  # a follower left: same leader
        log = [li.text for li in css(browser, "#log li")]
        assert any(f"{short(victim_id)} Confirmed" in line for line in log), log
        path = save_full_page(browser, f"ui-ring-{n}", 1280)
        assert path.stat().st_size > 10_000
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

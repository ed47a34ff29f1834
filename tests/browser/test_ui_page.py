"""The dashboard (``/ui``) in headless chromium, against a scripted ring (no daemon): it shows the
members and the leader, follows a member through Suspect and Confirmed as events arrive, resyncs
from /census when the stream drops or resets, asks for the gateway token, and reads well on a
laptop and on a phone (screenshots in build/screenshots/)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pysup.butterfly.member import Health
from pysup.butterfly.messages import ElectionRumor, ElectionStatus
from pysup.events.model import BY_NAME, Payload, ServiceHealth
from pysup.testing.uiring import ScriptedRing
from tests.browser.conftest import Served, save_full_page

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

PAGE_BOUND_S = 10.0
"""The page shows a change within this long: events are applied as they arrive and a resync
takes two requests; the bound absorbs a loaded machine and the reconnect backoff (0.5-1 s)."""

Serve = Callable[..., Served]


def short(member_id: str) -> str:
    return member_id[:8]


def wait(browser: Any, what: str, cond: Callable[[], Any], bound_s: float = PAGE_BOUND_S) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def check(_: Any) -> Any:
        try:
            return cond()
        except StaleElementReferenceException:  # the page re-rendered meanwhile
            return False

    try:
        return WebDriverWait(browser, bound_s, poll_frequency=0.1).until(check)
    except Exception as e:
        raise AssertionError(f"the page did not show {what} within {bound_s}s") from e


def css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def text(browser: Any, selector: str) -> str:
    found = css(browser, selector)
    return str(found[0].text) if found else ""


def open_page(browser: Any, served: Served) -> None:
    browser.get("about:blank")
    browser.delete_all_cookies()
    browser.get(served.url)
    browser.execute_script("sessionStorage.clear(); localStorage.clear();")
    wait(browser, "a live stream", lambda: text(browser, "#conn") == "live")


def member_health(browser: Any, member_id: str) -> str:
    rows = css(browser, f'#members-body tr[data-member-id="{member_id}"]')
    return str(rows[0].get_attribute("data-health")) if rows else ""


def group_member_health(browser: Any, group: str, member_id: str) -> str:
    items = css(browser, f'[data-group="{group}"] li[data-member-id="{member_id}"]')
    return str(items[0].get_attribute("data-health")) if items else ""


def test_shows_members_and_leader(browser: Any, serve: Serve) -> None:
    ring = ScriptedRing(3)
    served = serve(ring)
    open_page(browser, served)
    wait(browser, "three members", lambda: len(css(browser, "#members-body tr")) == 3)
    assert {member_health(browser, m) for m in ring.ids} == {"Alive"}
    group = '[data-group="habsup.default"]'
    assert text(browser, f"{group} .leader") == short(ring.ids[-1])
    assert text(browser, f"{group} .election").startswith(f"leader {short(ring.ids[-1])}")
    assert text(browser, f"{group} .config") == "1"
    assert text(browser, "#member-count") == "3 of 3 alive"
    assert text(browser, "#me") == f"member {short(ring.local_id)}"


def test_follows_a_member_through_suspect_and_confirmed(browser: Any, serve: Serve) -> None:
    ring = ScriptedRing(3)
    served = serve(ring)
    open_page(browser, served)
    victim, reporter = ring.ids[1], ring.ids[0]
    wait(browser, "the members", lambda: member_health(browser, victim) == "Alive")
    served.call(ring.set_health, victim, Health.SUSPECT, suspected_by=reporter)
    wait(browser, "Suspect", lambda: member_health(browser, victim) == "Suspect")
    served.call(ring.set_health, victim, Health.CONFIRMED)
    wait(browser, "Confirmed", lambda: member_health(browser, victim) == "Confirmed")
    group = "habsup.default"
    wait(browser, "Confirmed in the group", lambda: group_member_health(browser, group, victim))
    assert group_member_health(browser, group, victim) == "Confirmed"
    log = [li.text for li in css(browser, "#log li")]
    assert any(f"{short(victim)} Suspect (was Alive)" in line for line in log), log
    assert any(f"suspected by {short(reporter)}" in line for line in log), log
    assert any(f"{short(victim)} Confirmed (was Suspect)" in line for line in log), log
    # Time in state comes from the event: exact, not "≥".
    cell = css(browser, f'#members-body tr[data-member-id="{victim}"] td.for')[0]
    assert not cell.text.startswith("≥")


def test_a_dropped_stream_reconnects_and_resyncs_from_census(browser: Any, serve: Serve) -> None:
    """A change made while the page is cut off, with no event for it, still shows: the page
    reconnects and re-reads /census and /butterfly."""
    ring = ScriptedRing(3)
    served = serve(ring)
    open_page(browser, served)
    victim = ring.ids[1]
    wait(browser, "the members", lambda: member_health(browser, victim) == "Alive")
    before = served.call(lambda: dict(ring.requests))
    served.call(ring.set_health, victim, Health.CONFIRMED, publish=False)
    served.call(ring.drop_streams)
    wait(browser, "the resynced state", lambda: member_health(browser, victim) == "Confirmed")
    after = served.call(lambda: dict(ring.requests))
    assert after["events"] > before["events"]
    assert after["census"] > before["census"]
    wait(browser, "a live stream again", lambda: text(browser, "#conn") == "live")


def test_a_reset_resyncs(browser: Any, serve: Serve) -> None:
    """After a supervisor restart the page's Last-Event-ID is unknown: the stream says reset and
    the page resyncs (the change below is in no event the page receives)."""
    ring = ScriptedRing(3)
    served = serve(ring)
    open_page(browser, served)
    victim = ring.ids[2]
    served.call(ring.set_health, ring.ids[1], Health.SUSPECT)  # the page now has an event id
    wait(browser, "Suspect", lambda: member_health(browser, ring.ids[1]) == "Suspect")
    served.call(ring.set_health, victim, Health.CONFIRMED, publish=False)
    served.call(ring.restart_stream)
    wait(browser, "the resynced state", lambda: member_health(browser, victim) == "Confirmed")
    wait(browser, "the reset in the log", lambda: css(browser, '#log li[data-category="stream"]'))
    assert "resyncing" in text(browser, '#log li[data-category="stream"] .summary')


def test_a_group_below_three_members_waits_for_more(browser: Any, serve: Serve) -> None:
    ring = ScriptedRing(2, leader=False)
    sg = ring.service_group
    ring.store.merge(ElectionRumor(sg, ring.ids[1], 0, 0, ElectionStatus.NO_QUORUM, (ring.ids[1],)))
    served = serve(ring)
    open_page(browser, served)
    election = f'[data-group="{sg}"] .election'
    wait(browser, "the election", lambda: text(browser, election))
    assert text(browser, election).startswith("no quorum: waiting for 1 more member")
    assert text(browser, f'[data-group="{sg}"] .leader') == "none"


def test_asks_for_the_token_and_uses_it(browser: Any, serve: Serve) -> None:
    from selenium.webdriver.common.by import By

    ring = ScriptedRing(3)
    served = serve(ring, token="s3cret")
    browser.get("about:blank")
    browser.get(served.url)
    browser.execute_script("sessionStorage.clear(); localStorage.clear();")
    browser.refresh()
    dialog = wait(browser, "the token prompt", lambda: css(browser, "#token-dialog[open]"))
    assert "needs its token" in dialog[0].text
    for attempt, expected in (("wrong", "refused"), ("s3cret", None)):
        field = browser.find_element(By.ID, "token-input")
        field.clear()
        field.send_keys(attempt)
        browser.find_element(By.ID, "token-ok").click()
        if expected:
            wait(browser, "the refusal", lambda e=expected: e in text(browser, "#token-why"))
    wait(browser, "a live stream", lambda: text(browser, "#conn") == "live")
    wait(browser, "three members", lambda: len(css(browser, "#members-body tr")) == 3)
    stored = browser.execute_script("return sessionStorage.getItem('pysup.gateway.token')")
    assert stored == "s3cret"
    assert "s3cret" not in browser.current_url


def doc_examples() -> list[Payload]:
    """One payload of every ring and service event: the examples of docs/events.md."""
    doc = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    doc = doc[doc.index("### `") :]  # the event sections (the frame's sketch comes before)
    out = []
    for line in re.findall(r"^data: (.*)$", doc, re.M):
        example = json.loads(line)
        if example["event"].startswith("stream."):
            continue  # the stream's own events are not published
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in example["data"].items()}
        out.append(BY_NAME[example["event"]](**data))
    return out


def test_every_event_kind_is_logged_and_filtered(browser: Any, serve: Serve) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ring = ScriptedRing(3)
    served = serve(ring)
    open_page(browser, served)
    examples = doc_examples()
    for payload in examples:
        served.call(ring.publish, payload)
    wait(browser, "every event", lambda: len(css(browser, "#log li")) == len(examples))
    logged = {li.find_element(By.CSS_SELECTOR, "code").text: li for li in css(browser, "#log li")}
    assert set(logged) == {p.NAME for p in examples}
    for name, li in logged.items():  # a sentence, not the raw JSON fallback
        summary = li.find_element(By.CSS_SELECTOR, ".summary").text
        assert summary and not summary.startswith("{"), (name, summary)

    def shown() -> set[str]:
        return {name for name, li in logged.items() if li.is_displayed()}

    browser.find_element(By.ID, "cat-member").click()  # hide the member events
    assert shown() == set(logged) - {"member.health", "member.refuted"}
    browser.find_element(By.ID, "cat-member").click()
    Select(browser.find_element(By.ID, "filter-group")).select_by_value("redis.default")
    assert shown() == {
        n for n in logged if n.split(".")[0] in ("rumor", "election", "config", "file", "service")
    } - {"rumor.departure"}


def test_an_unchanged_health_check_is_not_logged(browser: Any, serve: Serve) -> None:
    """A check every interval on every service would bury what changed: only changes are logged
    (events arrive in order, so once the change shows, the unchanged one before it was seen)."""
    ring = ScriptedRing(3)
    served = serve(ring)
    open_page(browser, served)
    served.call(ring.publish, ServiceHealth("redis.default", "Ok", "Ok", 0, "", ""))
    served.call(ring.publish, ServiceHealth("redis.default", "Critical", "Ok", 2, "", ""))
    wait(browser, "the changed check", lambda: "health Critical" in text(browser, "#log"))
    summaries = [li.text for li in css(browser, "#log li .summary")]
    assert not any("health Ok" in s for s in summaries), summaries


@pytest.mark.parametrize(
    ("name", "width", "height", "mobile"),
    [("laptop", 1280, 800, False), ("phone", 390, 844, True)],
)
def test_screenshot_during_a_member_kill(
    browser: Any, serve: Serve, name: str, width: int, height: int, mobile: bool
) -> None:
    """A 5-member ring while one member is Confirmed and another Suspect, as a laptop and a
    phone (emulated: width, and the mobile viewport) show it; a full-page PNG of each goes to
    build/screenshots/ (for the README, and to check by eye that both read well)."""
    ring = ScriptedRing(5)
    served = serve(ring)
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        open_page(browser, served)
        wait(browser, "five members", lambda: len(css(browser, "#members-body tr")) == 5)
        served.call(ring.set_health, ring.ids[3], Health.SUSPECT, suspected_by=ring.ids[0])
        served.call(ring.set_health, ring.ids[3], Health.CONFIRMED)
        served.call(ring.set_health, ring.ids[2], Health.SUSPECT, suspected_by=ring.ids[1])
        wait(browser, "Confirmed", lambda: member_health(browser, ring.ids[3]) == "Confirmed")
        wait(browser, "Suspect", lambda: member_health(browser, ring.ids[2]) == "Suspect")
        # Nothing is wider than the screen (a phone must not scroll sideways).
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a {width}px screen"
        path = save_full_page(browser, f"ui-{name}", width)
        assert path.stat().st_size > 10_000
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

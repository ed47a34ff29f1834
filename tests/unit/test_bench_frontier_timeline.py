"""Per-kill timelines from members' logs (`bench.frontier_timeline`): the same quantities come
out of pysup's JSON lines and memberlist's text lines, so the two systems compare like with like."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest

from bench import frontier_timeline as ftl
from bench.memberlog import Observer, parse_pysup_line, parse_serf_line


def _pysup(obs: Observer, event: str, t: float, **fields: object) -> None:
    stamp = dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")
    line = json.dumps({"event": event, "timestamp": stamp, **fields}).encode()
    ev = parse_pysup_line(line, (ftl.PROBE_FAILED,))
    assert ev is not None
    obs.feed(ev)


def _serf(obs: Observer, text: str, t: float) -> None:
    ev = parse_serf_line(f"    2026/12/05 01:22:51 [INFO] {text}", t)
    assert ev is not None
    obs.feed(ev)


def test_pysup_timeline_counts_failed_probes_confirmations_and_confirmed() -> None:
    a, b, c = (Observer(2, me=x) for x in "abc")
    _pysup(a, "gossip.probe_failed", 101.0, member_id="v")
    _pysup(b, "member.suspect", 101.1, member_id="v", suspected_by="a")
    _pysup(b, "gossip.probe_failed", 102.0, member_id="v")
    _pysup(c, "gossip.probe_failed", 99.0, member_id="v")  # before the kill: not this one
    _pysup(a, "member.confirmed", 105.0, member_id="v", confirmations=1)
    _pysup(b, "member.confirmed", 105.2, member_id="v")  # by gossip: no timer count
    _pysup(c, "member.confirmed", 105.5, member_id="v")
    _pysup(c, "gossip.probe_failed", 106.0, member_id="v")  # after the first Confirmed
    line = ftl.kill_timeline("pysup-lan", [a, b, c], "v", 100.0, 110.0)
    assert line.first_probe_failed_s == pytest.approx(1.0)
    assert line.probers_before_confirm == 2
    assert line.probe_failures == 3
    assert line.timer_confirmations == (1,)
    assert (line.first_confirmed_s, line.last_confirmed_s) == pytest.approx((5.0, 5.5))
    assert line.suspicion_s == pytest.approx(4.0)


def test_serf_timeline_reads_memberlist_lines_the_same_way() -> None:
    a, b = Observer(1, me="h1"), Observer(1, me="h2")
    _serf(a, "memberlist: Suspect h3 has failed, no acks received", 101.5)
    _serf(b, "memberlist: Suspect h3 has failed, no acks received", 102.5)
    marked = "memberlist: Marking h3 as failed, suspect timeout reached (2 peer confirmations)"
    _serf(a, marked, 106.0)
    _serf(a, "serf: EventMemberFailed: h3 10.0.0.4", 106.0)
    _serf(b, "serf: EventMemberFailed: h3 10.0.0.4", 106.3)
    line = ftl.kill_timeline("serf", [a, b], "h3", 100.0, 110.0)
    assert line.first_probe_failed_s == pytest.approx(1.5)
    assert line.probers_before_confirm == 2
    assert line.timer_confirmations == (2,)
    assert line.suspicion_s == pytest.approx(4.5)
    s = ftl.summary([line])
    assert s["spread_s"] == pytest.approx(0.3)
    assert "| serf | 10% | 1.5 | 4.5 | 2 | 2 | 0.3 | 7 |" in ftl.markdown({("serf", 0.1): (s, 7)})


def test_false_probe_failures_count_only_live_targets_in_the_window() -> None:
    a = Observer(1, me="a")
    _pysup(a, "gossip.probe_failed", 10.0, member_id="b")
    _pysup(a, "gossip.probe_failed", 11.0, member_id="killed")
    _pysup(a, "gossip.probe_failed", 50.0, member_id="b")  # outside the window
    assert ftl.false_probe_failures("pysup", [a], {"a", "b"}, 0.0, 20.0) == 1


def test_a_kill_nobody_confirmed_has_nan_times() -> None:
    line = ftl.kill_timeline("serf", [Observer(1, me="h1")], "h3", 0.0, 1.0)
    assert math.isnan(line.first_confirmed_s) and math.isnan(line.first_probe_failed_s)
    assert line.probers_before_confirm == 0

"""The real-UDP benchmark's plumbing: a 5-member ring over 2 worker processes (plus the victim's
own process) produces every metric, with one sample per observing member and sane values."""

from __future__ import annotations

import math

import pytest

from bench.udp import run_udp_bench

pytestmark = pytest.mark.timeout(60)


def test_tiny_real_udp_run_returns_every_metric() -> None:
    results = run_udp_bench(
        5,
        repeat=1,
        profile="local",
        workers=2,
        events=1,
        idle_window=1.0,
        churn_window=1.0,
        loss=0.5,
        loss_window=1.0,
        settle=0.5,
        seed=7,
    )
    by_metric = {r.metric: r for r in results}
    assert set(by_metric) == {
        "bootstrap",
        "join",
        "event",
        "failure_detection",
        "cpu",
        "bytes",
        "rss",
        "rss_process",
        "cpu_churn",
        "false_positives",
    }
    # One sample per observer: 5 members bootstrap; the joiner is seen by the 5 others; the
    # rumor reaches the 5 members other than its origin (the joiner included); the crash of the
    # joiner is seen by the 5 survivors.
    for metric in ("bootstrap", "join", "event", "failure_detection"):
        r = by_metric[metric]
        assert len(r.samples) == 5, (metric, r.samples)
        assert r.meta["timeouts"] == 0
        assert all(0.0 <= x < 30.0 for x in r.samples), (metric, r.samples)
    # Failure detection cannot beat the minimum suspicion timeout (local profile: 3 s at N<10).
    assert by_metric["failure_detection"].p50 >= 3.0
    assert 0.0 < by_metric["bytes"].p50 < 100_000  # an idle ring talks, but not much
    assert 0.0 <= by_metric["cpu"].p50 < 0.5
    assert 5.0 < by_metric["rss_process"].p50 < 500.0
    assert not math.isnan(by_metric["false_positives"].p50)

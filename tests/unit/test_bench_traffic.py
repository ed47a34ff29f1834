"""Idle traffic by kind from the members' /metrics: the Prometheus text parser, per-member rates
between two scrapes and the mean member (kinds a member never sent count as zero)."""

from __future__ import annotations

import pytest

from bench import traffic

SCRAPE_A = """\
# HELP pysup_gossip_bytes_sent_total Gossip bytes sent, by message kind
# TYPE pysup_gossip_bytes_sent_total counter
pysup_gossip_bytes_sent_total{kind="ping"} 1000.0
pysup_gossip_bytes_sent_created{kind="ping"} 1.7e+09
pysup_gossip_packets_sent_total{kind="ping"} 10.0
pysup_gossip_bytes_received_total{kind="ack"} 400.0
process_resident_memory_bytes 4.6e+07
"""
SCRAPE_B = """\
pysup_gossip_bytes_sent_total{kind="ping"} 3000.0
pysup_gossip_packets_sent_total{kind="ping"} 30.0
pysup_gossip_bytes_sent_total{kind="pushpull"} 5000.0
pysup_gossip_bytes_received_total{kind="ack"} 1400.0
"""


def test_prometheus_text_parses_names_labels_and_values() -> None:
    got = traffic.parse_prometheus(SCRAPE_A)
    assert got[("pysup_gossip_bytes_sent_total", (("kind", "ping"),))] == 1000.0
    assert got[("process_resident_memory_bytes", ())] == 4.6e7
    assert not any(name.startswith("#") for name, _ in got)


def test_gossip_counters_keep_only_gossip_series_by_kind() -> None:
    assert traffic.gossip_counters(SCRAPE_A) == {
        "ping": {"bytes_sent": 1000.0, "packets_sent": 10.0},
        "ack": {"bytes_received": 400.0},
    }


def test_rates_between_scrapes_and_a_kind_first_seen_in_the_second() -> None:
    r = traffic.rates(traffic.gossip_counters(SCRAPE_A), traffic.gossip_counters(SCRAPE_B), 10.0)
    assert r["ping"] == {"bytes_sent": 200.0, "packets_sent": 2.0}
    assert r["pushpull"] == {"bytes_sent": 500.0}
    assert r["ack"] == {"bytes_received": 100.0}
    with pytest.raises(ValueError):
        traffic.rates({}, {}, 0.0)


def test_mean_member_counts_missing_kinds_as_zero() -> None:
    a = {"ping": {"bytes_sent": 100.0}, "pushpull": {"bytes_sent": 600.0}}
    b = {"ping": {"bytes_sent": 300.0}}
    mean = traffic.mean_by_kind([a, b])
    assert mean == {"ping": {"bytes_sent": 200.0}, "pushpull": {"bytes_sent": 300.0}}
    assert traffic.totals([a, b]) == [700.0, 300.0]
    assert traffic.mean_by_kind([]) == {}
    table = traffic.markdown(mean, traffic.totals([a, b]))
    assert "| **all** | 500.0 |" in table
    assert "p50 500.0" in table

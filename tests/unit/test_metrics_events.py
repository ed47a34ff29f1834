"""The /events hub's counters on /metrics: what the hub counts (a refused, a dropped, a stalled
client, an oversize event, a reset) is what a scrape reads, under the documented names, at the
moment of the scrape. Deterministic: the hub runs on plain-number clocks."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pysup.events.hub import EventHub, EventLimits, TooManyClients
from pysup.events.model import MemberRefuted
from pysup.events.sse import ResumePoint
from pysup.metrics import Metrics
from tests.unit.test_events_hub import Huge  # a payload whose list is never clipped

NAMES = (
    "pysup_event_clients",
    "pysup_events_published_total",
    "pysup_events_oversize_total",
    "pysup_event_clients_dropped_total",
    "pysup_event_clients_stalled_total",
    "pysup_event_clients_refused_total",
    "pysup_event_clients_reset_total",
)


def scrape(metrics: Metrics) -> dict[str, float]:
    text = metrics.render().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in NAMES
    }


def test_a_scrape_reads_the_hubs_counters_as_they_are_now() -> None:
    limits = EventLimits(history_events=2, history_bytes=1 << 20, max_clients=2)
    hub = EventHub(limits, first_id=1)
    metrics = Metrics()
    metrics.watch_events(hub.stats)
    assert scrape(metrics) == dict.fromkeys(NAMES, 0.0)  # every name present from the start

    slow = hub.open(ResumePoint(), wall=1.0, mono=0.0)
    hub.open(ResumePoint(unknown_id=True), wall=1.0, mono=0.0)  # not an id of ours: told to resync
    try:
        hub.open(ResumePoint(), wall=1.0, mono=0.0)
        raise AssertionError("a third client must be refused at max_clients=2")
    except TooManyClients:
        pass
    for n in range(4):  # the history keeps 2: `slow` read nothing and falls out of it
        hub.publish(MemberRefuted(member_id="a" * 32, incarnation=n), wall=2.0)
    while slow.next_chunk(0.0, 2.0) is not None:
        pass  # its last frame is stream.dropped
    hub.stalled(wall=3.0)  # the loop's write timeout fired for a client
    hub.publish(Huge(("x" * 1000,) * (limits.max_event_bytes // 1000 + 1)), wall=4.0)

    assert scrape(metrics) == {
        "pysup_event_clients": 2.0,  # the dropped one still holds its slot until it closes
        "pysup_events_published_total": 5.0,
        "pysup_events_oversize_total": 1.0,
        "pysup_event_clients_dropped_total": 1.0,
        "pysup_event_clients_stalled_total": 1.0,
        "pysup_event_clients_refused_total": 1.0,
        "pysup_event_clients_reset_total": 1.0,
    }
    slow.close()
    assert scrape(metrics)["pysup_event_clients"] == 1.0

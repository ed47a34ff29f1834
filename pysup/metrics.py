"""Prometheus metrics for one supervisor, in its own registry (many members may share a process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pysup.events.hub import HubStats


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.packets_sent = Counter(
            "pysup_gossip_packets_sent",
            "Gossip packets sent, by message kind",
            ["kind"],
            registry=r,
        )
        self.packets_received = Counter(
            "pysup_gossip_packets_received",
            "Gossip packets received, by kind",
            ["kind"],
            registry=r,
        )
        self.bytes_sent = Counter(
            "pysup_gossip_bytes_sent", "Gossip bytes sent, by message kind", ["kind"], registry=r
        )
        self.bytes_received = Counter(
            "pysup_gossip_bytes_received", "Gossip bytes received, by kind", ["kind"], registry=r
        )
        self.rejected = Counter(
            "pysup_rejected_inputs",
            "Inputs refused: undecodable or unauthenticated packets, bad frames, bad requests",
            ["source", "reason"],
            registry=r,
        )
        self.members = Gauge(
            "pysup_members", "Known members by health (excluding ourselves)", ["health"], registry=r
        )
        self.rumors = Gauge("pysup_rumors", "Rumors in the store by kind", ["kind"], registry=r)
        self.probe_rtt = Histogram(
            "pysup_probe_rtt_seconds",
            "Round-trip time of acknowledged direct probes",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.local_health = Gauge(
            "pysup_local_health_score", "Lifeguard local health score (0 is healthy)", registry=r
        )
        self.incarnation = Gauge("pysup_incarnation", "Our own incarnation", registry=r)
        self.http_requests = Counter(
            "pysup_http_requests",
            "HTTP gateway requests by route and status",
            ["route", "status"],
            registry=r,
        )

        self.asyncio_tasks = Gauge(
            "pysup_asyncio_tasks",
            "asyncio tasks alive in this process (set when /metrics is scraped)",
            registry=r,
        )
        self.task_faults = Counter(
            "pysup_task_faults",
            "Exceptions a long-lived task survived (one message or tick lost), by task and error",
            ["task", "error"],
            registry=r,
        )
        self.task_deaths = Counter(
            "pysup_task_deaths",
            "Long-lived tasks that ended with an exception (a critical one stops the supervisor)",
            ["task"],
            registry=r,
        )
        # process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total ...
        # (read from /proc at scrape time; absent on systems without /proc).
        ProcessCollector(registry=r)

    def watch_events(self, stats: HubStats) -> None:
        """Export the event stream's counters (``/events``, docs/events.md), read at scrape time:
        the hub stays free of metrics code and its counters are never copied twice."""
        self.registry.register(EventStreamCollector(stats))

    def reject(self, source: str, reason: str) -> None:
        self.rejected.labels(source=source, reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class EventStreamCollector(Collector):
    """``pysup_event_*``: the ``/events`` hub's :class:`HubStats` as Prometheus metrics."""

    def __init__(self, stats: HubStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield GaugeMetricFamily("pysup_event_clients", "/events clients connected now", s.clients)
        counters = (
            ("pysup_events_published", "Events published to /events", s.published),
            ("pysup_events_oversize", "Events over the size bound, sent as a stub", s.oversize),
            (
                "pysup_event_clients_dropped",
                "/events clients dropped: too slow for the history (sent stream.dropped)",
                s.dropped,
            ),
            (
                "pysup_event_clients_stalled",
                "/events clients disconnected after accepting no bytes for the write timeout",
                s.stalled,
            ),
            (
                "pysup_event_clients_refused",
                "/events connections refused (503) at the client limit",
                s.refused,
            ),
            (
                "pysup_event_clients_reset",
                "/events clients told to resync: their resume point had left the history",
                s.resets,
            ),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value)

"""Gossip traffic by message kind, from the members' own `/metrics` (Prometheus text).

Every member counts what it sends and receives per message kind (`pysup_gossip_bytes_sent_total
{kind="ping"}`...; `pushpull` is the TCP anti-entropy exchange, counted in both directions like
the datagrams). Scraping every member at the start and the end of an idle window gives, per
member, bytes and packets per second by kind; the report shows the mean member.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

from bench.measure import percentile

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
SERIES = {
    "pysup_gossip_bytes_sent_total": "bytes_sent",
    "pysup_gossip_packets_sent_total": "packets_sent",
    "pysup_gossip_bytes_received_total": "bytes_received",
    "pysup_gossip_packets_received_total": "packets_received",
}
"""Prometheus series -> short name used in the results."""

Counters = dict[str, dict[str, float]]
"""kind -> short series name -> counter value."""


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            continue
    return out


def gossip_counters(text: str) -> Counters:
    """The gossip counters of one scrape, by kind."""
    out: Counters = {}
    for (name, labels), value in parse_prometheus(text).items():
        short = SERIES.get(name)
        if short is None:
            continue
        kind = dict(labels).get("kind", "?")
        out.setdefault(kind, {})[short] = value
    return out


def rates(before: Counters, after: Counters, seconds: float) -> Counters:
    """Per-second increase of every counter between two scrapes of one member (a kind absent
    from the first scrape started at 0)."""
    if seconds <= 0:
        raise ValueError("the window must be positive")
    out: Counters = {}
    for kind, series in after.items():
        prev = before.get(kind, {})
        out[kind] = {k: max(0.0, v - prev.get(k, 0.0)) / seconds for k, v in series.items()}
    return out


def mean_by_kind(per_member: Iterable[Counters]) -> Counters:
    """The mean member: each kind's rates averaged over all members (a member that sent none
    of a kind counts as 0)."""
    members = list(per_member)
    if not members:
        return {}
    kinds = sorted({k for m in members for k in m})
    out: Counters = {}
    for kind in kinds:
        names = sorted({s for m in members for s in m.get(kind, {})})
        out[kind] = {
            s: math.fsum(m.get(kind, {}).get(s, 0.0) for m in members) / len(members) for s in names
        }
    return out


def totals(per_member: Iterable[Counters], series: str = "bytes_sent") -> list[float]:
    """One series summed over kinds, per member."""
    return [math.fsum(v.get(series, 0.0) for v in m.values()) for m in per_member]


def markdown(mean: Mapping[str, Mapping[str, float]], per_member_total: list[float]) -> str:
    """Table: kind, bytes/s and packets/s sent and received by the mean member."""
    lines = [
        "| kind | sent B/s | sent pkt/s | received B/s | received pkt/s |",
        "|---|---|---|---|---|",
    ]
    tot = {"bytes_sent": 0.0, "packets_sent": 0.0, "bytes_received": 0.0, "packets_received": 0.0}
    for kind, s in sorted(mean.items(), key=lambda kv: -kv[1].get("bytes_sent", 0.0)):
        for k in tot:
            tot[k] += s.get(k, 0.0)
        lines.append(
            f"| {kind} | {s.get('bytes_sent', 0):.1f} | {s.get('packets_sent', 0):.2f} "
            f"| {s.get('bytes_received', 0):.1f} | {s.get('packets_received', 0):.2f} |"
        )
    lines.append(
        f"| **all** | {tot['bytes_sent']:.1f} | {tot['packets_sent']:.2f} "
        f"| {tot['bytes_received']:.1f} | {tot['packets_received']:.2f} |"
    )
    if per_member_total:
        lines.append(
            f"\nBytes sent per member per second: p50 {percentile(per_member_total, 50):.1f}, "
            f"min {min(per_member_total):.1f}, max {max(per_member_total):.1f}."
        )
    return "\n".join(lines) + "\n"

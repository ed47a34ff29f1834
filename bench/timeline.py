"""The failure-detection timeline of one kill, from the survivors' own log lines.

`python -m bench.per_process` records it with its ``failure_detection`` result: when the victim
was first suspected, by whom (a survivor's own failed probe logs ``suspected_by`` = itself), and
when each survivor marked it Confirmed, all in seconds after the kill. With Lifeguard's formula
(`pysup.butterfly.suspicion`) it says where detection time goes: a late first probe shows as a late
first suspicion, slow confirmations as few independent suspecters before the minimum timeout, slow
dissemination as a wide spread of Confirmed after the first one.
"""

from __future__ import annotations

from typing import Any

from bench.measure import percentile
from bench.memberlog import Observer


def detection_timeline(
    observers: list[tuple[str, Observer]], victim: str, t0: float
) -> dict[str, Any]:
    """`observers`: (member id, its view) of each survivor; `t0`: the kill's wall-clock time."""
    suspected: list[float] = []  # per survivor, its first Suspect line about the victim
    own: dict[str, float] = {}  # survivors whose own probe failed: when
    named: dict[str, float] = {}  # every suspecter named in any Suspect line: first seen
    confirmed: list[float] = []
    for me, view in observers:
        first = None
        for ev in view.history:
            if ev.target != victim or ev.t < t0:
                continue
            if ev.kind == "suspect":
                first = ev.t if first is None else first
                by = ev.fields.get("suspected_by")
                if isinstance(by, str):
                    named[by] = min(named.get(by, ev.t), ev.t)
                    if by == me:
                        own.setdefault(me, ev.t)
        if first is not None:
            suspected.append(first - t0)
        done = view.first(("confirmed", "departed"), victim, t0)
        if done is not None:
            confirmed.append(done - t0)
    first_suspect = min(suspected, default=None)
    out: dict[str, Any] = {
        "first_suspect_s": first_suspect,
        "own_suspicions_s": sorted(round(t - t0, 3) for t in own.values()),
        "suspecters_named_s": sorted(round(t - t0, 3) for t in named.values()),
        "suspect_seen_p50_s": percentile(suspected, 50) if suspected else None,
        "confirmed_first_s": min(confirmed, default=None),
        "confirmed_p50_s": percentile(confirmed, 50) if confirmed else None,
        "confirmed_last_s": max(confirmed, default=None),
    }
    if first_suspect is not None and confirmed:
        out["confirmed_after_first_suspect_p50_s"] = percentile(confirmed, 50) - first_suspect
    return out

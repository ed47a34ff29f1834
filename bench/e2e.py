"""Goal 7 of issue 18: a supervisor's own work, end to end, on a `ProcRing` running `benchsvc`
(`bench.burst.make_plan`) on every member.

- ``config_apply``: `config apply benchsvc.default V` through one member's control gateway at t0;
  per other member, when it logged `config.gossip_applied incarnation=V` (the rumor arrived: the
  ``event`` row of the per-process table, against Serf's user event), and per member (the origin
  too) when its reconfigure hook ran with the new config (the hook itself appends
  `<epoch seconds> value=vV` to `var/reconfigured`: `reconfigure` samples).
- ``health_change``: one member's health check starts failing (the harness writes 2 to its
  `var/health_rc`); t_src = when that member logged `health.changed`. Per other member, when its
  view shows the change: in `/census` when the population entries carry `health_check`, otherwise
  the victim's service rumor in `/butterfly` at the incarnation the victim published with the new
  health (the census is built from that rumor). Each member is polled every `poll_s` until it
  shows it, so samples are upper bounds by up to `poll_s` (recorded).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

from bench.burst import GROUP, svc_var
from bench.procs import Member, ProcRing, http_get, http_get_many


def parse_reconfigured(text: str, expect: str) -> float | None:
    """The first time stamped by the reconfigure hook with the rendered config `expect`."""
    for line in text.splitlines():
        stamp, _, rest = line.partition(" ")
        if rest.strip() == expect:
            try:
                return float(stamp)
            except ValueError:
                continue
    return None


def _reconfigured_at(m: Member, version: int) -> float | None:
    try:
        text = (svc_var(m) / "reconfigured").read_text()
    except OSError:
        return None
    return parse_reconfigured(text, f"value=v{version}")


def config_apply(
    ring: ProcRing, version: int, rng: random.Random, wait_s: float = 60.0
) -> dict[str, Any]:
    from pysup.gateway.ctl_proto import ConfigApply

    members = ring.live
    origin = rng.choice(members)
    others = [m for m in members if m is not origin]
    body = f'value = "v{version}"\n'.encode()
    t0 = time.time()
    asyncio.run(ring.ctl(origin, ConfigApply(GROUP, version, body)))
    event = ring.poll(
        others,
        lambda m: m.view.first_other(
            "config.gossip_applied", t0, service_group=GROUP, incarnation=version
        ),
        t0,
        wait_s,
    )
    hook = ring.poll(members, lambda m: _reconfigured_at(m, version), t0, wait_s)
    return {"event": event, "reconfigure": hook, "origin": origin.index}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def census_health(doc: Any, member_id: str) -> str | None:
    """The victim's health_check in a `/census` document, None when absent (older census)."""
    try:
        entry = doc["census_groups"][GROUP]["population"][member_id]
    except (KeyError, TypeError):
        return None
    value = entry.get("health_check") if isinstance(entry, dict) else None
    return str(value) if value is not None else None


def butterfly_incarnation(doc: Any, member_id: str) -> int | None:
    """The incarnation of the victim's service rumor in a `/butterfly` document."""
    try:
        return int(doc["service"]["list"][GROUP][member_id]["incarnation"])
    except (KeyError, TypeError, ValueError):
        return None


def health_change(
    ring: ProcRing, rng: random.Random, poll_s: float, wait_s: float = 90.0
) -> dict[str, Any]:
    members = ring.live
    victim = rng.choice(members[1:] or members)
    vid = victim.member_id
    assert vid is not None
    others = [m for m in members if m is not victim]
    _, body = http_get(victim.http, "/butterfly")
    old_inc = butterfly_incarnation(_json(body), vid) or 0
    _, body = http_get(others[0].http, "/census")
    via = "census" if census_health(_json(body), vid) is not None else "butterfly"
    rc = svc_var(victim) / "health_rc"
    t_flip = time.time()
    rc.write_text("2\n")
    detect, miss = ring.poll(
        [victim],
        lambda m: m.view.first_other("health.changed", t_flip, service_group=GROUP),
        t_flip,
        wait_s,
    )
    if miss:
        rc.unlink(missing_ok=True)
        return {"error": "the victim never logged health.changed", "via": via}
    t_src = t_flip + detect[0]
    new_inc = old_inc + 1
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:  # the incarnation the victim gossips the change with
        got = butterfly_incarnation(_json(http_get(victim.http, "/butterfly")[1]), vid)
        if got is not None and got > old_inc:
            new_inc = got
            break
        time.sleep(0.05)

    def shows(body: bytes) -> bool:
        doc = _json(body)
        if via == "census":
            return census_health(doc, vid) == "Critical"
        inc = butterfly_incarnation(doc, vid)
        return inc is not None and inc >= new_inc

    seen: dict[int, float] = {}

    async def watch() -> None:
        end = time.monotonic() + wait_s
        while len(seen) < len(others) and time.monotonic() < end:
            pending = [m for m in others if m.index not in seen]
            answers = await http_get_many([m.http for m in pending], f"/{via}")
            for m, (status, body, at) in zip(pending, answers, strict=True):
                if status == 200 and shows(body):
                    seen[m.index] = at
            await asyncio.sleep(poll_s)

    asyncio.run(watch())
    rc.unlink(missing_ok=True)
    samples = [max(0.0, seen[m.index] - t_src) for m in others if m.index in seen]
    return {
        "samples": samples,
        "misses": len(others) - len(samples),
        "detect_s": t_src - t_flip,
        "via": via,
        "poll_s": poll_s,
        "victim": victim.index,
    }

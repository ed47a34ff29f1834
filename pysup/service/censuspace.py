"""When services re-render after the census changed: batched, and spaced by the ring's size.

Every census change (a member's health, a service rumor, an election) makes every loaded service
rebuild its view of the census and re-render its templates. That pass costs time proportional to
the ring, and during a ring-wide event (every member loading a plan at once, a wave of
suspicions) a member sees a change every few ms. Re-rendering at a fixed 0.1 s debounce then
kept 97 co-located members of a 100-member ring busier than two cores: probes went unanswered,
members were suspected, each suspicion was one more census change, and the ring flapped for as
long as it was watched (1,205 false suspicions in the 12 s after `svc load` on all members, then
up to 200 false Confirmed lines a second; bench/README.md, "Goal 6").

So a census-driven pass waits `debounce_s` for the rest of a burst, and starts no sooner than
`spacing_s(n)` after the previous one: the spacing grows with N as the pass's cost does, so the
share of a core spent re-rendering stays bounded whatever the ring's size. Config and files
gossiped for the service's own group do not wait for this (they wake the service at once), and
neither does `/census`, which reads the census when asked. Elections wait at most their own tick
(`ElectionTuning.tick_s`, 1 s: a group's coordination also steps on it): in rings above 10
members an election step may follow a vote up to a second later (0.1 s before).
"""

from __future__ import annotations

CENSUS_DEBOUNCE_S = 0.1
"""Seconds a burst of census changes is collected before services re-render once: a rumor wave
at gossip speed (a few rounds of 0.2 s) is then one or two passes, and a single change (a member
joining a bound group) reaches the templates a tenth of a second later."""

CENSUS_S_PER_MEMBER = 0.01
"""Seconds between two census-driven passes, per member in the ring (`spacing_s`). Measured here,
the census build and template context cost 14-19 µs of CPU per member (N=10-1000), the render and
file writes about as much again, so this keeps census re-rendering near 0.3% of a core per
supervisor whatever N: N=10 re-renders at the debounce, N=100 at most once a second, N=500 once
every 5 s. Shorter spacing shows a membership change in templates sooner, at a CPU share that
grows with N (co-located members multiply it)."""

CENSUS_MAX_SPACING_S = 5.0
"""Cap on the spacing: a membership change reaches every template within this (plus the
debounce) even in the largest ring, where the pass then costs up to ~1% of a core."""


def spacing_s(members: int) -> float:
    """Least seconds between two census-driven passes in a ring of `members` (ourselves
    included)."""
    return min(CENSUS_MAX_SPACING_S, max(0, members) * CENSUS_S_PER_MEMBER)


def next_pass_at(now: float, last_pass: float, members: int, debounce_s: float) -> float:
    """When the pass for a census change at `now` runs, the previous one having run at
    `last_pass` (-inf: none yet): after the debounce, and no sooner than the spacing allows."""
    return max(now + debounce_s, last_pass + spacing_s(members))

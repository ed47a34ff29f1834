"""Who may form a new ring when no seed answers (the split-brain rule of peer discovery), pure.

`should_bootstrap`: ordinal 0 of a StatefulSet, or (no ordinals) the lowest address once the
candidate set has been stable for a while; everyone else keeps trying to join. Apart from the
Kubernetes client (``pysup.discovery.kubernetes``) so a daemon without discovery does not import
that client to ask these questions (issue 18: start-up).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable

Peer = tuple[str, int]
OnPeers = Callable[[frozenset[Peer]], None]

DEFAULT_GOSSIP_PORT = 9638

_ORDINAL_RE = re.compile(r"^(?P<set>.+)-(?P<ord>0|[1-9][0-9]*)$")


def ordinal_of(pod_name: str | None, statefulset: str | None = None) -> int | None:
    """StatefulSet ordinal of `pod_name` (`web-2` -> 2), else None. Give `statefulset` when known:
    a Deployment pod's random suffix can be all digits."""
    if not pod_name:
        return None
    m = _ORDINAL_RE.match(pod_name)
    if m is None or (statefulset is not None and m["set"] != statefulset):
        return None
    return int(m["ord"])


def _ip_key(addr: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(addr)
        return (ip.version, int(ip), addr)
    except ValueError:
        return (99, 0, addr)


def should_bootstrap(
    pod_name: str | None,
    my_ip: str,
    candidates: Collection[str],
    stable_for_s: float,
    now: float,
    changed_at: float,
    *,
    statefulset: str | None = None,
) -> bool:
    """May this node form a new ring now that no seed answers?

    - StatefulSet pod: only ordinal 0, at once (the others keep trying to join it).
    - No ordinal: only the numerically lowest address of `candidates` + `my_ip`, and only once the
      candidate set has not changed for `stable_for_s` seconds (`changed_at` is when it last
      changed, see `StableSet`), so every node has seen the same set.
    """
    ordinal = ordinal_of(pod_name, statefulset)
    if ordinal is not None:
        return ordinal == 0
    if now - changed_at < stable_for_s:
        return False
    lowest = min({my_ip, *candidates}, key=_ip_key)
    return lowest == my_ip


class StableSet:
    """Remembers when a candidate set last changed (pure: time is passed in)."""

    def __init__(self) -> None:
        self.current: frozenset[str] | None = None
        self.changed_at = 0.0

    def observe(self, candidates: Iterable[str], now: float) -> float:
        new = frozenset(candidates)
        if new != self.current:
            self.current = new
            self.changed_at = now
        return self.changed_at

"""Version numbers for the ring's state (pure): one shared counter.

The member table and the rumor store each hold a `version` that takes a new value whenever their
content changes; `SwimCore.version` is the largest of theirs and the local member's. The values
come from one process-wide counter, so a version names one state even across stores (the
Kubernetes-native mode replaces its store wholesale) and the maximum of several versions changes
whenever any of them does. Readers cache what they derive from the ring by it (the census).
"""

from __future__ import annotations

import itertools

_counter = itertools.count(1)


def next_version() -> int:
    """A number larger than every version handed out before."""
    return next(_counter)

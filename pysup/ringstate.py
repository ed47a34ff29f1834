"""What the gossip ring keeps across restarts, in the state dir: member id, incarnation, rumors.

Loading raises OSError for what the operator must fix (the daemon turns it into one line and exit
status 1); a rumors file that cannot be decoded is quarantined and the member starts without it.
"""

from __future__ import annotations

import random

from pysup.butterfly import codec
from pysup.butterfly.member import next_incarnation
from pysup.butterfly.messages import Rumor
from pysup.statedir import StateDir


def load_rumors(state: StateDir) -> list[Rumor]:
    data = state.load_rumors()
    if data is None:
        return []
    try:
        return codec.decode_rumors(data)
    except codec.CodecError as e:
        state.quarantine("rumors.dat", f"undecodable: {e}")
        return []


def load_ring_state(state: StateDir, rng: random.Random) -> tuple[str, int, list[Rumor]]:
    """Member id (made on the first start), the incarnation to run with (one above the stored
    one) and the saved rumors."""
    state.remove_stale_tmp()
    member_id = state.load_or_create_member_id(rng)
    incarnation = next_incarnation(state.load_incarnation())
    return member_id, incarnation, load_rumors(state)

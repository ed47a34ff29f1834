"""The rumor store: key -> id -> rumor, with Habitat's per-kind merge rules (pure).

Merges form a join semilattice, so the store's content does not depend on the order or number of
times rumors arrive (commutative, idempotent, associative): anti-entropy and gossip may deliver
anything in any order. Habitat's rules say "higher incarnation wins"; where Habitat keeps whichever
it saw first on a tie, we break ties on the encoded bytes so every member ends with the same rumor.
Membership itself lives in the member table (`core.py`), not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from pysup.butterfly.codec import encode_rumors
from pysup.butterfly.messages import (
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    MemberRumor,
    Rumor,
    RumorKind,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
    by_kind,
)
from pysup.butterfly.version import next_version

StoredRumor = ServiceRumor | ServiceConfigRumor | ServiceFileRumor | DepartureRumor | ElectionRumor


def _tiebreak(a: Rumor, b: Rumor) -> bool:
    """Deterministic choice between two different rumors of equal rank: True if b wins."""
    return encode_rumors([b]) > encode_rumors([a])


def _versioned_wins(
    stored: ServiceRumor | ServiceConfigRumor | ServiceFileRumor, new: Rumor
) -> bool:
    assert isinstance(new, type(stored))
    if new.incarnation != stored.incarnation:
        return new.incarnation > stored.incarnation
    return new != stored and _tiebreak(stored, new)


def merge_election(stored: ElectionRumor, new: ElectionRumor) -> ElectionRumor:
    """Habitat's election merge, made order-independent.

    Higher term wins outright; a Finished election beats a running one of the same term; between
    running candidates of one term the more suitable (then the larger member id) wins and takes
    the loser's votes; the same candidate's rumors union their votes.
    """
    if new == stored:
        return stored
    if new.term != stored.term:
        return new if new.term > stored.term else stored
    s_fin = stored.status == ElectionStatus.FINISHED
    n_fin = new.status == ElectionStatus.FINISHED
    if s_fin != n_fin:
        return new if n_fin else stored
    if s_fin and n_fin:
        if (new.suitability, new.member_id) == (stored.suitability, stored.member_id):
            votes = tuple(sorted(set(stored.votes) | set(new.votes)))
            return ElectionRumor(
                stored.service_group,
                stored.member_id,
                stored.term,
                stored.suitability,
                stored.status,
                votes,
                stored.update,
            )
        return (
            new
            if (new.suitability, new.member_id) > (stored.suitability, stored.member_id)
            else stored
        )
    winner = (
        new if (new.suitability, new.member_id) > (stored.suitability, stored.member_id) else stored
    )
    votes = tuple(sorted(set(stored.votes) | set(new.votes)))
    status = winner.status
    same_candidate = (new.suitability, new.member_id) == (stored.suitability, stored.member_id)
    if same_candidate and stored.status != new.status:
        # Running vs NoQuorum for the same candidate and term: NoQuorum is the later news. The
        # candidate is its id *and* suitability, as in the winner rule above; by id alone the
        # merge is not associative (a re-ranked candidate would pick up a stale NoQuorum).
        status = ElectionStatus.NO_QUORUM
    return ElectionRumor(
        winner.service_group,
        winner.member_id,
        winner.term,
        winner.suitability,
        status,
        votes,
        winner.update,
    )


def _merge_versioned(stored: StoredRumor, new: StoredRumor) -> StoredRumor | None:
    assert not isinstance(stored, DepartureRumor | ElectionRumor)
    return new if _versioned_wins(stored, new) else None


def _merge_departure(stored: StoredRumor, new: StoredRumor) -> StoredRumor | None:
    return None  # inserted once, never changes


def _merge_elections(stored: StoredRumor, new: StoredRumor) -> StoredRumor | None:
    assert isinstance(stored, ElectionRumor) and isinstance(new, ElectionRumor)
    result = merge_election(stored, new)
    return None if result == stored else result


def _not_stored(stored: StoredRumor, new: StoredRumor) -> StoredRumor | None:
    raise TypeError("member rumors belong in the member table")


Merge = Callable[[StoredRumor, StoredRumor], StoredRumor | None]
"""A kind's merge rule: (stored, arriving) -> what to store instead, or None to keep `stored`."""

_MERGE: Mapping[RumorKind, Merge] = by_kind(
    "rumor store merge rule",
    {
        RumorKind.MEMBER: _not_stored,
        RumorKind.SERVICE: _merge_versioned,
        RumorKind.SERVICE_CONFIG: _merge_versioned,
        RumorKind.SERVICE_FILE: _merge_versioned,
        RumorKind.DEPARTURE: _merge_departure,
        RumorKind.ELECTION: _merge_elections,
        RumorKind.ELECTION_UPDATE: _merge_elections,
    },
)


class RumorStore:
    def __init__(self) -> None:
        self._data: dict[tuple[RumorKind, str], dict[str, StoredRumor]] = {}
        self.version = next_version()
        """Changes (to a value never used before) whenever the store's content does."""

    def merge(self, rumor: Rumor) -> StoredRumor | None:
        """Merge one rumor; return what is now stored if that changed, else None."""
        if isinstance(rumor, MemberRumor):
            raise TypeError("member rumors belong in the member table")
        kind, key, rid = rumor.identity
        slot = self._data.setdefault((kind, key), {})
        stored = slot.get(rid)
        result = rumor if stored is None else _MERGE[kind](stored, rumor)
        if result is None:
            return None
        slot[rid] = result
        self.version = next_version()
        return result

    def get(self, kind: RumorKind, key: str, rid: str) -> StoredRumor | None:
        return self._data.get((kind, key), {}).get(rid)

    def by_key(self, kind: RumorKind, key: str) -> dict[str, StoredRumor]:
        return dict(self._data.get((kind, key), {}))

    def of_kind(self, kind: RumorKind) -> Iterator[StoredRumor]:
        for (k, _key), slot in self._data.items():
            if k == kind:
                yield from slot.values()

    def is_departed(self, member_id: str) -> bool:
        return member_id in self._data.get((RumorKind.DEPARTURE, "departure"), {})

    def remove_member_services(self, member_id: str) -> int:
        """Garbage-collect a departed member's service rumors; returns how many went."""
        removed = 0
        for (kind, _key), slot in self._data.items():
            if kind == RumorKind.SERVICE and member_id in slot:
                del slot[member_id]
                removed += 1
        if removed:
            self.version = next_version()
        return removed

    def __iter__(self) -> Iterator[StoredRumor]:
        for slot in self._data.values():
            yield from slot.values()

    def __len__(self) -> int:
        return sum(len(slot) for slot in self._data.values())

    def counts(self) -> dict[RumorKind, int]:
        out: dict[RumorKind, int] = {}
        for (kind, _key), slot in self._data.items():
            out[kind] = out.get(kind, 0) + len(slot)
        return out

"""A member record that is not news is skipped before any merge work (issue 18, goal 4): the codec
hands out one object per record it has seen, and a core that holds that very object (Alive) skips
it with one dict lookup. News (a higher incarnation) and repeated suspicions (Lifeguard's
independent confirmations) still take the full merge."""

from __future__ import annotations

import random

import pytest

from pysup.butterfly import codec
from pysup.butterfly.config import LAN
from pysup.butterfly.core import SwimCore
from pysup.butterfly.member import Health, Member, new_member_id
from pysup.butterfly.membership import Membership
from pysup.butterfly.messages import Gossip, MemberRumor, PushPull


def mk(i: int, inc: int = 1, health: Health = Health.ALIVE) -> Member:
    return Member(new_member_id(random.Random(i)), inc, f"10.0.2.{i}", 9638, health)


SENDER, X = mk(1), mk(2)


def wire(*rumors: MemberRumor) -> Gossip:
    """Through the codec, as from the network."""
    msg = codec.decode(codec.encode(Gossip(SENDER, rumors)))
    assert isinstance(msg, Gossip)
    return msg


@pytest.fixture
def merges(monkeypatch: pytest.MonkeyPatch) -> list[Member]:
    seen: list[Member] = []
    real = Membership.merge_member

    def counting(self: Membership, m: Member, *args: object, **kw: object) -> None:
        seen.append(m)
        real(self, m, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Membership, "merge_member", counting)
    return seen


def test_the_same_record_decodes_to_the_same_object() -> None:
    a, b = wire(MemberRumor(X)), wire(MemberRumor(X))
    assert a.rumors[0].member is b.rumors[0].member  # type: ignore[union-attr]


def test_a_record_we_hold_is_skipped_news_is_merged(merges: list[Member]) -> None:
    core = SwimCore(LAN, mk(9), random.Random(1), 0.0)
    core.receive(SENDER.addr, wire(MemberRumor(X)), 0.0)
    assert merges == [X] and core.member(X.id) == X
    core.receive(SENDER.addr, wire(MemberRumor(X)), 0.0)
    held = core.member(X.id)
    assert held is not None
    core.receive(SENDER.addr, PushPull(SENDER, (held,), ()), 0.0)
    assert merges == [X]  # twice more, not merged again
    core.receive(SENDER.addr, PushPull(SENDER, (X._replace(),), ()), 0.0)
    assert merges == [X, X]  # an equal record in another object takes the full (no-op) merge
    newer = X._replace(incarnation=2)
    core.receive(SENDER.addr, wire(MemberRumor(newer)), 0.0)
    assert merges == [X, X, newer] and core.member(X.id) == newer


def test_a_repeated_suspicion_still_counts_as_a_confirmation(merges: list[Member]) -> None:
    core = SwimCore(LAN, mk(9), random.Random(1), 0.0)
    suspect = X._replace(health=Health.SUSPECT)
    core.receive(SENDER.addr, wire(MemberRumor(suspect, SENDER.id)), 0.0)
    deadline = core.next_deadline()
    other = mk(3)
    msg = codec.decode(codec.encode(Gossip(other, (MemberRumor(suspect, other.id),))))
    core.receive(other.addr, msg, 0.0)
    assert merges.count(suspect) == 2
    assert core.member(X.id) == suspect and core.next_deadline() <= deadline

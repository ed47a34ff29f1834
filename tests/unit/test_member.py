"""Habitat's member precedence rules and member ids (pysup.butterfly.member)."""

from __future__ import annotations

import itertools
import random

import pytest

from pysup.butterfly.member import Health, Member, is_member_id, new_member_id, supersedes

MID = "0" * 31 + "1"


def rec(inc: int, health: Health) -> Member:
    return Member(MID, inc, "10.0.0.1", 9638, health)


def expected(stored_inc: int, stored_h: Health, inc: int, h: Health) -> bool:
    """The rule in words: higher incarnation wins; same incarnation, strictly worse health wins."""
    if inc > stored_inc:
        return True
    if inc < stored_inc:
        return False
    return h > stored_h


# Every (stored health, stored incarnation) x (incoming health, incoming incarnation) with the
# incoming incarnation below, equal to and above the stored one.
TABLE = [
    (sh, si, ih, ii, expected(si, sh, ii, ih))
    for sh, ih in itertools.product(Health, Health)
    for si, ii in [(5, 4), (5, 5), (5, 6)]
]


@pytest.mark.parametrize(("stored_h", "stored_inc", "in_h", "in_inc", "accept"), TABLE)
def test_accept_rule_table(
    stored_h: Health, stored_inc: int, in_h: Health, in_inc: int, accept: bool
) -> None:
    assert supersedes(rec(stored_inc, stored_h), rec(in_inc, in_h)) is accept


def test_table_spells_out_habitat_rules() -> None:
    """A few rows by hand, so the table's oracle is not the only statement of the rule."""
    assert supersedes(rec(5, Health.ALIVE), rec(5, Health.SUSPECT))
    assert not supersedes(rec(5, Health.SUSPECT), rec(5, Health.ALIVE))
    assert not supersedes(rec(5, Health.SUSPECT), rec(5, Health.SUSPECT))
    assert supersedes(rec(5, Health.DEPARTED), rec(6, Health.ALIVE))
    assert not supersedes(rec(6, Health.ALIVE), rec(5, Health.DEPARTED))
    assert supersedes(rec(5, Health.CONFIRMED), rec(5, Health.DEPARTED))


@pytest.mark.parametrize("health", list(Health))
def test_unknown_member_is_always_accepted(health: Health) -> None:
    assert supersedes(None, rec(0, health))


def test_health_order_and_labels() -> None:
    assert Health.ALIVE < Health.SUSPECT < Health.CONFIRMED < Health.DEPARTED
    assert [h.label for h in Health] == ["Alive", "Suspect", "Confirmed", "Departed"]
    assert [int(h) for h in Health] == [1, 2, 3, 4]


def test_new_member_id_is_uuid4_hex_and_seeded() -> None:
    a = [new_member_id(random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]  # same seed, same id
    ids = {new_member_id(random.Random(i)) for i in range(200)}
    assert len(ids) == 200
    for mid in ids:
        assert is_member_id(mid)
        assert mid[12] == "4"  # version nibble
        assert mid[16] in "89ab"  # RFC 4122 variant


@pytest.mark.parametrize("bad", ["", "0" * 31, "0" * 33, "G" * 32, "A" * 32, 12, None])
def test_is_member_id_rejects(bad: object) -> None:
    assert not is_member_id(bad)


def test_member_helpers() -> None:
    m = rec(3, Health.ALIVE)
    assert m.addr == ("10.0.0.1", 9638)
    s = m.with_health(Health.SUSPECT)
    assert s.health == Health.SUSPECT and s.incarnation == 3 and m.health == Health.ALIVE

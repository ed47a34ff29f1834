"""Rumor kinds: every table that dispatches by kind is complete, the wire format did not move, and
the census is rebuilt (and config TOML parsed) only when the ring changed."""

from __future__ import annotations

import importlib

import pytest

import pysup.gossipcfg
from pysup.butterfly.codec import decode_rumors, encode_rumors
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    KIND_TABLES,
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
    kind_of,
)
from pysup.butterfly.rumors import RumorStore
from pysup.census_build import CensusCache

A, B = "a" * 32, "b" * 32
SG = "redis.default"

EXAMPLES: dict[RumorKind, Rumor] = dict(
    by_kind(
        "test examples",
        {
            RumorKind.MEMBER: MemberRumor(Member(A, 7, "10.0.0.1", 9638, Health.SUSPECT, True), B),
            RumorKind.SERVICE: ServiceRumor(
                A, SG, 3, "core/redis/1/2", True, {"port": 6379}, {"ip": "10.0.0.1"}, "Ok", "fp"
            ),
            RumorKind.SERVICE_CONFIG: ServiceConfigRumor(SG, 4, b"port = 6380\n"),
            RumorKind.SERVICE_FILE: ServiceFileRumor(SG, "tls.pem", 5, b"PEM", True),
            RumorKind.DEPARTURE: DepartureRumor(B),
            RumorKind.ELECTION: ElectionRumor(SG, A, 2, 9, ElectionStatus.FINISHED, (A, B)),
            RumorKind.ELECTION_UPDATE: ElectionRumor(
                SG, B, 1, 0, ElectionStatus.RUNNING, (B,), True
            ),
        },
    )
)

GOLDEN = bytes.fromhex(
    "97930196c410aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa07a831302e302e302e31cd25a602c3c410bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb9a02c410aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaad72656469732e64656661756c7403ae636f72652f72656469732f312f32c381a4706f7274cd18eb81a26970a831302e302e302e31a24f6ba266709503ad72656469732e64656661756c7404c40c706f7274203d20363338300ac29604ad72656469732e64656661756c74a7746c732e70656d05c40350454dc39205c410bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb9806ad72656469732e64656661756c74c410aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa0209a846696e697368656492c410aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac410bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbc29806ad72656469732e64656661756c74c410bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb0100a752756e6e696e6791c410bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbc3"
)
"""encode_rumors(EXAMPLES in kind order), as the codec wrote it before the kind tables."""

TABLE_MODULES = (
    "pysup.butterfly.codec",
    "pysup.butterfly.rumors",
    "pysup.gateway.http",
    "pysup.service.manager",
    "pysup.events.translate",
    "pysup.native",
)
TABLES = {
    "codec wire format",
    "rumor store merge rule",
    "/butterfly view",
    "service manager reaction",
    "rumor event",
    "native publish",
}


def test_every_dispatch_table_is_registered_and_names_every_kind() -> None:
    """A new RumorKind member makes each module below fail to import until it has an entry."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    assert KIND_TABLES.keys() >= TABLES
    for name in TABLES:
        assert set(KIND_TABLES[name]) == set(RumorKind), name


def test_a_table_missing_a_kind_is_refused_naming_it() -> None:
    table = {k: 1 for k in RumorKind if k is not RumorKind.DEPARTURE}
    with pytest.raises(TypeError, match="departure"):
        by_kind("half a table", table)


def test_each_example_is_of_its_kind() -> None:
    assert all(kind_of(r) is k for k, r in EXAMPLES.items())


def test_wire_bytes_are_those_of_before_the_tables() -> None:
    rumors = list(EXAMPLES.values())
    assert encode_rumors(rumors) == GOLDEN
    assert decode_rumors(GOLDEN) == rumors


def test_store_version_changes_with_content_only() -> None:
    store = RumorStore()
    v0 = store.version
    store.merge(EXAMPLES[RumorKind.SERVICE])
    v1 = store.version
    assert v1 > v0
    store.merge(EXAMPLES[RumorKind.SERVICE])  # the same rumor again: nothing changed
    assert store.version == v1
    assert store.remove_member_services(A) == 1 and store.version > v1


def test_census_is_rebuilt_when_the_version_changes_and_config_parsed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parses: list[bytes] = []
    real = pysup.gossipcfg.parse_gossip_config

    def counting(data: bytes) -> dict[str, object]:
        parses.append(data)
        return real(data)

    monkeypatch.setattr(pysup.gossipcfg, "parse_gossip_config", counting)
    me = Member(A, 1, "10.0.0.1", 9638)
    other = Member(B, 1, "10.0.0.2", 9638)
    store = RumorStore()
    store.merge(EXAMPLES[RumorKind.SERVICE])
    store.merge(EXAMPLES[RumorKind.SERVICE_CONFIG])
    cache = CensusCache()
    first = cache.get(me, [other], store, 1)
    assert cache.get(me, [other], store, 1) is first
    again = cache.get(me, [other._replace(health=Health.SUSPECT)], store, 2)
    assert again is not first and again.ring[1].health is Health.SUSPECT
    assert parses == [b"port = 6380\n"]  # two builds, one parse
    assert again.service_config(SG) is not None
    store.merge(ServiceConfigRumor(SG, 5, b"port = 'x\n"))  # a newer, broken one
    broken = cache.get(me, [other], store, 3)
    assert len(parses) == 2 and broken.service_config(SG) is None
    (problem,) = broken.gossip_problems(SG)
    assert problem.incarnation == 5 and "not valid TOML" in problem.message
    assert cache.get(me._replace(incarnation=2), [other], store, 3) is not broken

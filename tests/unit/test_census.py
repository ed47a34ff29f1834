"""The census built from rumors and the member table, and its /census JSON (Habitat's shape)."""

from __future__ import annotations

import json

import pytest

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)
from pysup.butterfly.rumors import RumorStore
from pysup.census import ElectionState, PkgIdent, ServiceGroup, census_json, member_json
from pysup.census_build import build_census

A, B, C, D = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
SYS = {"ip": "10.0.0.1", "hostname": "h", "gossip_ip": "0.0.0.0", "gossip_port": 9638}


def member(mid: str, health: Health = Health.ALIVE, persistent: bool = False) -> Member:
    return Member(mid, 1, f"10.1.0.{ord(mid[0]) - 96}", 9700, health, persistent)


def service(mid: str, sg: str = "api.default", **kw: object) -> ServiceRumor:
    args: dict[str, object] = {"pkg": "core/api/1.0.0/20200101000000", "sys": SYS}
    args.update(kw)
    return ServiceRumor(mid, sg, 1, **args)  # type: ignore[arg-type]


def store_of(*rumors: object) -> RumorStore:
    store = RumorStore()
    for r in rumors:
        store.merge(r)  # type: ignore[arg-type]
    return store


def test_service_group_parse_and_validate() -> None:
    """svc.group[@org] round-trips; the group is after the last dot; bad names are refused."""
    assert ServiceGroup.parse("redis.prod@acme") == ServiceGroup("redis", "prod", "acme")
    assert str(ServiceGroup.parse("my.app.default")) == "my.app.default"
    assert ServiceGroup.parse("my.app.default").service == "my.app"
    for bad in ("redis", ".default", "redis.", "redis.pr od", "redis.default@", "a.b@x.y"):
        with pytest.raises(ValueError):
            ServiceGroup.parse(bad)


def test_groups_members_sorted_with_fields_from_rumor_and_member_table() -> None:
    """Members come from Service rumors (pkg, sys, cfg, initialized) with health and gossip address
    from the member table; sorted by member id."""
    store = store_of(
        service(B, cfg={"port": 80}, initialized=True),
        service(A, cfg={"port": 81}),
        service(C, sg="db.default"),
    )
    census = build_census(member(A), [member(A), member(B, Health.SUSPECT, persistent=True)], store)
    assert sorted(census.groups) == ["api.default", "db.default"]
    api = census.group("api.default")
    assert api is not None
    assert [m.member_id for m in api.members] == [A, B]
    b = api.members[1]
    assert (b.service, b.group, b.org) == ("api", "default", None)
    assert b.pkg == PkgIdent("core", "api", "1.0.0", "20200101000000")
    assert dict(b.cfg) == {"port": 80}
    assert b.initialized and b.persistent
    assert (b.alive, b.suspect, b.confirmed, b.departed) == (False, True, False, False)
    assert b.sys["gossip_ip"] == "10.1.0.2" and b.sys["gossip_port"] == 9700
    assert b.sys["ip"] == "10.0.0.1"
    assert api.me is not None and api.me.member_id == A


def test_unknown_member_is_alive_only_if_local() -> None:
    """A member missing from the table: alive when it is us, no health flag otherwise."""
    store = store_of(service(A), service(C))
    local = member(A)
    census = build_census(local, [], store)
    api = census.group("api.default")
    assert api is not None
    me, other = api.members
    assert me.alive
    assert not (other.alive or other.suspect or other.confirmed or other.departed)
    assert api.active_members == (me,)


def test_departure_rumor_marks_departed_whatever_the_table_says() -> None:
    store = store_of(service(A), service(B), DepartureRumor(B))
    census = build_census(member(A), [member(A), member(B)], store)
    api = census.group("api.default")
    assert api is not None
    b = api.member(B)
    assert b is not None and b.departed and not b.alive


def test_finished_election_sets_leader_and_followers() -> None:
    """A Finished election names the leader; every member gets leader/follower flags."""
    election = ElectionRumor("api.default", B, 3, 10, ElectionStatus.FINISHED, (A, B))
    store = store_of(service(A), service(B), election)
    census = build_census(member(A), [member(A), member(B)], store)
    api = census.group("api.default")
    assert api is not None
    assert api.election_status is ElectionState.FINISHED
    assert api.leader_id == B
    assert api.leader is not None and api.leader.member_id == B
    a, b = api.members
    assert (a.leader, a.follower, b.leader, b.follower) == (False, True, True, False)
    assert a.election_is_finished and not a.election_is_running
    assert api.first is not None and api.first.member_id == B


def test_running_election_has_no_leader_and_update_election_is_separate() -> None:
    running = ElectionRumor("api.default", B, 1, 10, ElectionStatus.RUNNING)
    update = ElectionRumor("api.default", A, 1, 5, ElectionStatus.FINISHED, update=True)
    store = store_of(service(A), service(B), running, update)
    api = build_census(member(A), [member(A), member(B)], store).group("api.default")
    assert api is not None
    assert api.election_status is ElectionState.IN_PROGRESS and api.leader_id is None
    assert api.update_election_status is ElectionState.FINISHED and api.update_leader_id == A
    a, b = api.members
    assert a.election_is_running and not a.leader and not a.follower
    assert a.update_leader and b.update_follower
    assert api.first is not None and api.first.member_id == A  # no leader: first active


def test_leader_not_in_group_gives_no_leader_id() -> None:
    election = ElectionRumor("api.default", D, 1, 1, ElectionStatus.FINISHED)
    api = build_census(member(A), [], store_of(service(A), election)).group("api.default")
    assert api is not None and api.leader_id is None
    assert api.election_status is ElectionState.FINISHED


def test_config_and_files_kept_for_every_group_but_groups_need_members_or_files() -> None:
    """Gossiped config is parsed and kept also for a group with no member yet; a config alone
    makes no /census group, a file does (as Habitat); bad TOML is dropped."""
    store = store_of(
        service(A),
        ServiceConfigRumor("api.default", 7, b"[http]\nport = 1\n"),
        ServiceConfigRumor("solo.default", 2, b"x = 1\n"),
        ServiceConfigRumor("bad.default", 2, b"x = \n"),
        ServiceFileRumor("files.default", "cert.pem", 3, b"PEM"),
    )
    census = build_census(member(A), [], store)
    assert sorted(census.groups) == ["api.default", "files.default"]
    api = census.group("api.default")
    assert api is not None and api.service_config is not None
    assert api.service_config.incarnation == 7
    assert dict(api.service_config.value) == {"http": {"port": 1}}
    cfg = census.service_config("solo.default")
    assert cfg is not None and dict(cfg.value) == {"x": 1}
    assert census.service_config("bad.default") is None
    assert census.service_files("files.default")["cert.pem"].body == b"PEM"


def test_census_json_has_habitats_fields() -> None:
    """Top level, group and population fields as Habitat's sample-census-output.json; JSON-safe."""
    store = store_of(
        service(A, cfg={"port": 9636}),
        ServiceConfigRumor("api.default", 5, b"log_level = 'info'\n"),
        ServiceFileRumor("api.default", "k.pub", 5, b"B="),
    )
    out = census_json(build_census(member(A), [member(A)], store))
    json.dumps(out)
    assert set(out) >= {
        "census_groups",
        "changed",
        "last_election_counter",
        "last_election_update_counter",
        "last_membership_counter",
        "last_service_config_counter",
        "last_service_counter",
        "last_service_file_counter",
        "local_member_id",
    }
    assert out["local_member_id"] == A
    assert out["members"][0]["member_id"] == A and out["members"][0]["health"] == "Alive"
    group = out["census_groups"]["api.default"]
    assert set(group) == {
        "changed_service_files",
        "election_status",
        "leader_id",
        "local_member_id",
        "population",
        "service_config",
        "service_files",
        "service_group",
        "update_election_status",
        "update_leader_id",
    }
    assert group["election_status"] == "None" and group["leader_id"] is None
    assert group["service_config"] == {"incarnation": 5, "value": {"log_level": "info"}}
    assert group["service_files"]["k.pub"] == {
        "body": [66, 61],
        "filename": "k.pub",
        "incarnation": 5,
    }
    pop = group["population"][A]
    expected = {
        "alive": True,
        "cfg": {"port": 9636},
        "confirmed": False,
        "departed": False,
        "election_is_finished": False,
        "election_is_no_quorum": False,
        "election_is_running": False,
        "follower": False,
        "group": "default",
        "leader": False,
        "member_id": A,
        "org": None,
        "persistent": False,
        "pkg": {"name": "api", "origin": "core", "release": "20200101000000", "version": "1.0.0"},
        "service": "api",
        "suspect": False,
        "update_election_is_finished": False,
        "update_election_is_no_quorum": False,
        "update_election_is_running": False,
        "update_follower": False,
        "update_leader": False,
    }
    for key, value in expected.items():
        assert pop[key] == value, key
    assert pop["sys"]["ip"] == "10.0.0.1" and pop["sys"]["gossip_ip"] == "10.1.0.1"


def test_member_json_bad_pkg_ident_is_null() -> None:
    store = store_of(service(A, pkg="not-an-ident"))
    api = build_census(member(A), [], store).group("api.default")
    assert api is not None
    out = member_json(api.members[0])
    assert out["pkg"] is None and out["package"] is None

"""Hypothesis strategies for every gossip dataclass (shared by the codec and rumor tests).

They draw the whole range the codec accepts: incarnations up to MAX_INCARNATION (a non-Alive
record strictly below it), IPv4 and IPv6 literals, cfg values TOML and JSON can both hold,
service groups and file names the write-time rules accept."""

from __future__ import annotations

from typing import Any

import tomli_w
from hypothesis import strategies as st

from pysup.butterfly.config import MAX_INCARNATION
from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import (
    Ack,
    DepartureRumor,
    ElectionRumor,
    ElectionStatus,
    Gossip,
    MemberRumor,
    Message,
    Nack,
    Ping,
    PingReq,
    PushPull,
    Rumor,
    RumorPush,
    ServiceConfigRumor,
    ServiceFileRumor,
    ServiceRumor,
)

U64 = st.integers(0, 2**64 - 1)
U32 = st.integers(0, 2**32 - 1)
INCARNATIONS = st.integers(0, MAX_INCARNATION)
member_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
texts = st.text(max_size=40)
addresses = st.ip_addresses().map(str)
name_parts = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,10}", fullmatch=True)
service_groups = st.builds(
    lambda svc, group, org: f"{svc}.{group}" + (f"@{org}" if org else ""),
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True),
    name_parts,
    st.none() | name_parts,
)
file_names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="/\\"),
    min_size=1,
    max_size=30,
).filter(lambda n: n != "." and ".." not in n and n.isprintable() and len(n.encode()) <= 255)


def _member(id: str, inc: int, address: str, port: int, health: Health, persistent: bool) -> Member:
    if inc == MAX_INCARNATION and health != Health.ALIVE:
        inc -= 1  # a claim other than Alive at the bound is refused (config.MAX_INCARNATION)
    return Member(id, inc, address, port, health, persistent)


members: st.SearchStrategy[Member] = st.builds(
    _member,
    id=member_ids,
    inc=INCARNATIONS,
    address=addresses,
    port=st.integers(0, 65535),
    health=st.sampled_from(list(Health)),
    persistent=st.booleans(),
)

# Values TOML and JSON can both hold, which survive a msgpack round trip unchanged (lists stay
# lists, finite floats, 64-bit signed integers, no null, no bytes).
plain_values: st.SearchStrategy[Any] = st.recursive(
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
plain_maps = st.dictionaries(texts, plain_values, max_size=4)

member_rumors = st.builds(MemberRumor, members, st.just("") | member_ids)
service_rumors = st.builds(
    ServiceRumor,
    member_id=member_ids,
    service_group=service_groups,
    incarnation=INCARNATIONS,
    pkg=texts,
    initialized=st.booleans(),
    cfg=plain_maps,
    sys=plain_maps,
)
toml_bodies = plain_maps.map(lambda m: tomli_w.dumps(m).encode())
config_rumors = st.builds(
    ServiceConfigRumor, service_groups, INCARNATIONS, toml_bodies, st.just(False)
) | st.builds(
    ServiceConfigRumor, service_groups, INCARNATIONS, st.binary(max_size=200), st.just(True)
)
file_rumors = st.builds(
    ServiceFileRumor,
    service_groups,
    file_names,
    INCARNATIONS,
    st.binary(max_size=200),
    st.booleans(),
)
departure_rumors = st.builds(DepartureRumor, member_ids)
election_rumors = st.builds(
    ElectionRumor,
    service_group=service_groups,
    member_id=member_ids,
    term=INCARNATIONS,
    suitability=U64,
    status=st.sampled_from(list(ElectionStatus)),
    votes=st.lists(member_ids, max_size=5).map(tuple),
    update=st.booleans(),
)
rumors: st.SearchStrategy[Rumor] = st.one_of(
    member_rumors,
    service_rumors,
    config_rumors,
    file_rumors,
    departure_rumors,
    election_rumors,
)
rumor_tuples = st.lists(rumors, max_size=4).map(tuple)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, U32, members, member_ids, rumor_tuples),
    st.builds(Ack, U32, members, rumor_tuples),
    st.builds(PingReq, U32, members, members, rumor_tuples),
    st.builds(Nack, U32, members),
    st.builds(Gossip, members, rumor_tuples),
    st.builds(
        PushPull,
        members,
        st.lists(members, max_size=4).map(tuple),
        rumor_tuples,
        st.booleans(),
        st.booleans(),
    ),
    st.builds(RumorPush, members, rumor_tuples),
)

"""Hypothesis strategies for every gossip dataclass (shared by the codec and rumor tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
member_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
texts = st.text(max_size=40)

members: st.SearchStrategy[Member] = st.builds(
    Member,
    id=member_ids,
    incarnation=U64,
    address=st.text(max_size=60),
    gossip_port=st.integers(0, 65535),
    health=st.sampled_from(list(Health)),
    persistent=st.booleans(),
)

# Values that survive a msgpack round trip unchanged (lists stay lists, no NaN, no tuples).
plain_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | texts
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
plain_maps = st.dictionaries(texts, plain_values, max_size=4)

member_rumors = st.builds(MemberRumor, members, st.just("") | member_ids)
service_rumors = st.builds(
    ServiceRumor,
    member_id=member_ids,
    service_group=texts,
    incarnation=U64,
    pkg=texts,
    initialized=st.booleans(),
    cfg=plain_maps,
    sys=plain_maps,
)
config_rumors = st.builds(ServiceConfigRumor, texts, U64, st.binary(max_size=200), st.booleans())
file_rumors = st.builds(
    ServiceFileRumor, texts, st.text(max_size=30), U64, st.binary(max_size=200), st.booleans()
)
departure_rumors = st.builds(DepartureRumor, member_ids)
election_rumors = st.builds(
    ElectionRumor,
    service_group=texts,
    member_id=member_ids,
    term=U64,
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

"""Encrypted config/file rumors: the gateway's check (pysup.crypto.sealed.check_sealed), a member
opening them with its key cache (RumorOpener), the census reading through it, and the control
protocol's ``encrypted`` flag. Key files on disk in tmp_path; no sockets, no clock."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from pysup.butterfly.member import Health, Member
from pysup.butterfly.messages import ServiceConfigRumor, ServiceFileRumor, ServiceRumor
from pysup.butterfly.rumors import RumorStore
from pysup.census_build import build_census
from pysup.crypto.box import generate_service_key, generate_user_key
from pysup.crypto.keycache import KeyCache
from pysup.crypto.message import MAX_ENCRYPTED_BYTES, encrypt_for_service_group
from pysup.crypto.sealed import METRIC_SOURCE, RumorOpener, check_sealed
from pysup.gateway.ctl_proto import ConfigApply, CtlProtocolError, FileUpload, parse_request

NOW = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)
GROUP = "demo.default"
KEY = "demo.default@acme"
Caches = tuple[KeyCache, KeyCache, KeyCache]


@pytest.fixture
def caches(tmp_path: Path) -> Caches:
    """(operator: user secret + service public; member with the service key; member without)."""
    user = generate_user_key("alice", NOW)
    service = generate_service_key(GROUP, "acme", NOW)
    operator, holder, outsider = (KeyCache(tmp_path / n) for n in ("op", "holder", "outsider"))
    operator.write_pair(user)
    holder.write_pair(service)
    outsider.path.mkdir()
    for cache in (holder, outsider):
        shutil.copy(operator.path / user.public.filename, cache.path)
    shutil.copy(holder.path / service.public.filename, operator.path)
    (holder.path / service.secret.filename).chmod(0o600)
    return operator, holder, outsider


def sealed(operator: KeyCache, data: bytes) -> bytes:
    return encrypt_for_service_group(data, "alice", KEY, operator).data


class Rejects:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, source: str, reason: str) -> None:
        self.calls.append((source, reason))


def test_the_gateway_accepts_a_payload_for_the_group_and_refuses_others(caches: Caches) -> None:
    operator, _, _ = caches
    data = sealed(operator, b'value = "x"\n')
    assert check_sealed(data, GROUP) is None
    assert check_sealed(data, KEY) is None
    assert "not to a key of service group web.default" in (check_sealed(data, "web.default") or "")
    assert "unsupported encrypted payload" in (check_sealed(b'value = "x"\n', GROUP) or "")
    big = b"BOX-1\n" + b"x" * MAX_ENCRYPTED_BYTES
    assert f"over the {MAX_ENCRYPTED_BYTES} limit" in (check_sealed(big, GROUP) or "")


def test_a_member_with_the_service_key_opens_config_and_file(caches: Caches) -> None:
    operator, holder, _ = caches
    rejects = Rejects()
    opener = RumorOpener(holder.path, rejects)
    cfg = ServiceConfigRumor(GROUP, 3, sealed(operator, b'value = "x"\n'), encrypted=True)
    f = ServiceFileRumor(GROUP, "t.txt", 1, sealed(operator, b"token"), encrypted=True)
    assert opener.plain(cfg) == b'value = "x"\n'
    assert opener.opened(f) == ServiceFileRumor(GROUP, "t.txt", 1, b"token", encrypted=False)
    assert rejects.calls == [] and opener.unreadable() == {}
    plain = ServiceConfigRumor(GROUP, 1, b"value = 1\n")
    assert opener.opened(plain) is plain


def test_a_member_without_the_key_reports_once_per_version(caches: Caches) -> None:
    operator, _, outsider = caches
    rejects = Rejects()
    opener = RumorOpener(outsider.path, rejects)
    v3 = ServiceConfigRumor(GROUP, 3, sealed(operator, b"value = 3\n"), encrypted=True)
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):  # the census is rebuilt often: one line and one count, not five
            assert opener.plain(v3) is None
            assert opener.opened(v3) is None
        v4 = ServiceConfigRumor(GROUP, 4, sealed(operator, b"value = 4\n"), encrypted=True)
        assert opener.plain(v4) is None
    assert rejects.calls == [(METRIC_SOURCE, "no_service_key")] * 2
    assert [e["event"] for e in logs] == ["sealed.unreadable"] * 2
    assert logs[0]["incarnation"] == 3 and "not changed" in logs[0]["effect"]
    assert opener.unreadable() == {f"{GROUP}/config@4": "no_service_key"}


def test_a_key_dropped_in_later_is_used_without_restart(caches: Caches) -> None:
    operator, holder, outsider = caches
    opener = RumorOpener(outsider.path, Rejects())
    cfg = ServiceConfigRumor(GROUP, 3, sealed(operator, b"value = 3\n"), encrypted=True)
    assert opener.plain(cfg) is None
    for key in holder.path.glob(f"{KEY}-*"):
        shutil.copy(key, outsider.path)
    assert opener.plain(cfg) == b"value = 3\n"
    assert opener.unreadable() == {}


def test_the_census_reads_encrypted_config_through_the_opener(caches: Caches) -> None:
    operator, holder, outsider = caches
    me = Member("m1", 1, "127.0.0.1", 9638, Health.ALIVE, False)
    store = RumorStore()
    store.merge(ServiceRumor("m1", GROUP, 1, "test/demo/1.0.0/1", True))
    store.merge(ServiceConfigRumor(GROUP, 3, sealed(operator, b'value = "x"\n'), encrypted=True))
    store.merge(ServiceFileRumor(GROUP, "t.txt", 1, sealed(operator, b"tok"), encrypted=True))
    holder_census = build_census(me, [], store, RumorOpener(holder.path, Rejects()).plain)
    cfg = holder_census.service_config(GROUP)
    assert cfg is not None and cfg.incarnation == 3 and dict(cfg.value) == {"value": "x"}
    assert holder_census.service_files(GROUP)["t.txt"].body == b"tok"
    outsider_census = build_census(me, [], store, RumorOpener(outsider.path, Rejects()).plain)
    assert outsider_census.service_config(GROUP) is None
    assert dict(outsider_census.service_files(GROUP)) == {}
    assert build_census(me, [], store).service_config(GROUP) is None  # no opener: left out


def test_the_control_protocol_carries_the_encrypted_flag() -> None:
    req = ConfigApply(GROUP, 2, b"BOX-1...", encrypted=True)
    assert parse_request(req.to_wire()) == req
    up = FileUpload(GROUP, 2, "t.txt", b"BOX-1...", encrypted=True)
    assert parse_request(up.to_wire()) == up
    old_client = {"op": "config.apply", "service_group": GROUP, "version": 2, "config": b"a=1"}
    assert parse_request(old_client) == ConfigApply(GROUP, 2, b"a=1", encrypted=False)
    with pytest.raises(CtlProtocolError, match="encrypted must be true or false"):
        parse_request({**old_client, "encrypted": "yes"})

"""Ring keys: Habitat's .sym.key file format, revision selection and secretbox encryption."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysup.butterfly.keys import (
    RingKey,
    RingKeyError,
    default_key_cache,
    generate_ring_key,
    load_latest_ring_key,
    parse_ring_key,
    resolve_ring_key,
    write_ring_key,
)

T0 = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)
FIXED_SECRET = bytes(range(32))
FIXED_KEY = RingKey("acme", "20160504220722", FIXED_SECRET)


def test_key_text_matches_habitat_layout_exactly() -> None:
    """Header, name-rev line, blank line, base64 and no trailing newline, as Habitat writes it."""
    b64 = base64.b64encode(FIXED_SECRET).decode()
    assert FIXED_KEY.to_key_text() == f"SYM-SEC-1\nacme-20160504220722\n\n{b64}"
    assert FIXED_KEY.filename == "acme-20160504220722.sym.key"
    assert FIXED_KEY.name_with_rev == "acme-20160504220722"


def test_generate_uses_utc_revision() -> None:
    key = generate_ring_key("acme", T0)
    assert key.revision == "20240301123045"
    assert len(key.secret) == 32
    east = timezone(timedelta(hours=2))
    assert generate_ring_key("acme", T0.astimezone(east)).revision == "20240301123045"


def test_secret_not_in_repr() -> None:
    assert base64.b64encode(FIXED_SECRET).decode() not in repr(FIXED_KEY)
    assert repr(FIXED_SECRET) not in repr(FIXED_KEY)


def test_generate_write_parse_round_trip(tmp_path: Path) -> None:
    key = generate_ring_key("ring-one", T0)
    path = write_ring_key(key, tmp_path)
    assert path == tmp_path / "ring-one-20240301123045.sym.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert parse_ring_key(path.read_text(), str(path)) == key
    assert load_latest_ring_key("ring-one", tmp_path) == key
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_parse_accepts_trailing_newline_and_name_with_dashes() -> None:
    """Habitat reads line by line, so an editor-added newline is fine; names may contain '-'."""
    b64 = base64.b64encode(FIXED_SECRET).decode()
    key = parse_ring_key(f"SYM-SEC-1\nmy-ring-20160504220722\n\n{b64}\n", "x")
    assert key.name == "my-ring"
    assert key.revision == "20160504220722"


def test_write_same_key_twice_is_noop_but_different_key_refused(tmp_path: Path) -> None:
    write_ring_key(FIXED_KEY, tmp_path)
    write_ring_key(FIXED_KEY, tmp_path)
    other = RingKey(FIXED_KEY.name, FIXED_KEY.revision, bytes(32))
    with pytest.raises(RingKeyError, match="different key"):
        write_ring_key(other, tmp_path)
    assert load_latest_ring_key("acme", tmp_path) == FIXED_KEY


def test_newest_revision_wins_and_other_names_ignored(tmp_path: Path) -> None:
    old = generate_ring_key("acme", T0)
    new = generate_ring_key("acme", T0 + timedelta(days=1))
    longer_name = generate_ring_key("acme-you", T0 + timedelta(days=2))
    for k in (new, old, longer_name):
        write_ring_key(k, tmp_path)
    (tmp_path / "acme-20990101000000.sym.key.tmp").write_text("junk")
    assert load_latest_ring_key("acme", tmp_path) == new
    assert load_latest_ring_key("acme-you", tmp_path) == longer_name


def test_missing_key_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(RingKeyError, match=str(tmp_path)):
        load_latest_ring_key("acme", tmp_path)
    with pytest.raises(RingKeyError, match="missing"):
        load_latest_ring_key("acme", tmp_path / "missing")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("SIG-SEC-1\nacme-20160504220722\n\n" + base64.b64encode(FIXED_SECRET).decode(), "header"),
        ("", "empty"),
        ("SYM-SEC-1\nacme-2016\n\n" + base64.b64encode(FIXED_SECRET).decode(), "revision"),
        ("SYM-SEC-1\nacme-20160504220722\n\n!!!not base64!!!", "base64"),
        ("SYM-SEC-1\nacme-20160504220722\n\n" + base64.b64encode(bytes(16)).decode(), "16 bytes"),
        ("SYM-SEC-1\nacme-20160504220722\n", "missing key material"),
    ],
)
def test_bad_key_files_name_the_file(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "acme-20160504220722.sym.key"
    path.write_text(content)
    with pytest.raises(RingKeyError) as info:
        load_latest_ring_key("acme", tmp_path)
    assert str(path) in str(info.value)
    assert why in str(info.value)


def test_file_whose_content_names_another_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "acme-20160504220722.sym.key").write_text(
        RingKey("other", "20160504220722", FIXED_SECRET).to_key_text()
    )
    with pytest.raises(RingKeyError, match="other-20160504220722"):
        load_latest_ring_key("acme", tmp_path)


def test_resolve_prefers_key_text_and_checks_ring_name(tmp_path: Path) -> None:
    write_ring_key(generate_ring_key("acme", T0), tmp_path)
    text = FIXED_KEY.to_key_text()
    assert resolve_ring_key(None, text, tmp_path) == FIXED_KEY
    assert resolve_ring_key("acme", text, tmp_path) == FIXED_KEY
    with pytest.raises(RingKeyError, match="does not match"):
        resolve_ring_key("zeta", text, tmp_path)
    assert resolve_ring_key("acme", None, tmp_path).revision == "20240301123045"  # type: ignore[union-attr]
    assert resolve_ring_key(None, None, tmp_path) is None
    with pytest.raises(RingKeyError, match="HAB_RING_KEY"):
        resolve_ring_key(None, "garbage", tmp_path)


def test_default_key_cache_env_override_and_home_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_key_cache({"HAB_CACHE_KEY_PATH": "/k"}) == Path("/k")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert default_key_cache({}) == Path.home() / ".pysup" / "keys"


def test_invalid_key_construction_rejected() -> None:
    with pytest.raises(RingKeyError):
        RingKey("acme", "20160504220722", bytes(31))
    with pytest.raises(RingKeyError):
        RingKey("a/b", "20160504220722", FIXED_SECRET)
    with pytest.raises(RingKeyError):
        RingKey("acme", "2016", FIXED_SECRET)


# -- encryption ---------------------------------------------------------------------------------


def test_encrypt_decrypt_round_trip_and_layout() -> None:
    msg = b"gossip datagram body"
    sealed = FIXED_KEY.encrypt(msg)
    assert len(sealed) == 24 + len(msg) + 16  # nonce + ciphertext + Poly1305 tag
    assert msg not in sealed
    assert FIXED_KEY.decrypt(sealed) == msg
    assert FIXED_KEY.decrypt(FIXED_KEY.encrypt(b"")) == b""


def test_fresh_nonce_per_message() -> None:
    a = FIXED_KEY.encrypt(b"same")
    b = FIXED_KEY.encrypt(b"same")
    assert a != b
    assert a[:24] != b[:24]


def test_tampered_byte_rejected() -> None:
    sealed = bytearray(FIXED_KEY.encrypt(b"hello ring"))
    for i in (0, 23, 24, len(sealed) - 1):  # nonce, tag/ciphertext boundaries
        t = bytearray(sealed)
        t[i] ^= 0x01
        with pytest.raises(RingKeyError):
            FIXED_KEY.decrypt(bytes(t))


def test_truncated_and_wrong_key_rejected() -> None:
    sealed = FIXED_KEY.encrypt(b"hello ring")
    for n in (0, 10, 24, 39, len(sealed) - 1):
        with pytest.raises(RingKeyError):
            FIXED_KEY.decrypt(sealed[:n])
    other = RingKey("acme", "20160504220722", bytes(32))
    with pytest.raises(RingKeyError, match="acme-20160504220722"):
        other.decrypt(sealed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decrypt_arbitrary_bytes_raises_only_ring_key_error(data: bytes) -> None:
    with pytest.raises(RingKeyError):
        FIXED_KEY.decrypt(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_round_trip_any_plaintext(data: bytes) -> None:
    assert FIXED_KEY.decrypt(FIXED_KEY.encrypt(data)) == data

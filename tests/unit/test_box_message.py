"""Habitat's BOX-1 encrypted payload (`config apply --user`, `file upload --user`): the exact
bytes, interop both ways with plain libsodium `crypto_box` (what `hab` uses), decryption from the
key cache with the revisions the payload names, and the typed refusals a member logs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.bindings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pysup.crypto.box import BoxPublicKey, BoxSecretKey, generate_service_key, generate_user_key
from pysup.crypto.keycache import KeyCache
from pysup.crypto.keyfiles import NamedRevision
from pysup.crypto.message import (
    BadKey,
    BoxMessageError,
    MalformedPayload,
    MissingKey,
    SignedBox,
    Tampered,
    WrongServiceGroup,
    decrypt,
    encrypt_for_service,
    encrypt_for_service_group,
)

T0 = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)
USER_SK = bytes(range(32))
SVC_SK = bytes(range(32, 64))
USER_PK = nacl.bindings.crypto_scalarmult_base(USER_SK)
SVC_PK = nacl.bindings.crypto_scalarmult_base(SVC_SK)
NONCE = bytes(range(100, 124))
BOB = NamedRevision("bob", "20240301123045")
SVC = NamedRevision("redis.default@acme", "20240301123046")
PAYLOAD = b"port = 6380\n"

# Our own vector, computed once with libsodium from the keys above and pinned: the five lines of
# Habitat's SignedBox (version, sender, receiver, base64 nonce, base64 tag+ciphertext).
VECTOR = (
    b"BOX-1\n"
    b"bob-20240301123045\n"
    b"redis.default@acme-20240301123046\n"
    b"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7\n"
    b"P0IoWpkrFGudqaSsJypBmZXsGaCUPA6exMhnDQ=="
)


def key_file(header: str, named: NamedRevision, key: bytes) -> str:
    """A key file as a person would write it by hand (with a trailing newline)."""
    return f"{header}\n{named}\n\n{base64.b64encode(key).decode()}\n"


@pytest.fixture
def member_cache(tmp_path: Path) -> KeyCache:
    """A member of redis.default@acme: the service's secret key and bob's public key only."""
    (tmp_path / f"{SVC}.box.key").write_text(key_file("BOX-SEC-1", SVC, SVC_SK))
    (tmp_path / f"{BOB}.pub").write_text(key_file("BOX-PUB-1", BOB, USER_PK))
    return KeyCache(tmp_path)


def test_encrypt_produces_the_pinned_vector_byte_for_byte() -> None:
    data = encrypt_for_service(
        PAYLOAD, BoxSecretKey(BOB, USER_SK), BoxPublicKey(SVC, SVC_PK), nonce=NONCE
    )
    assert data == VECTOR


def test_layout_is_plain_libsodium_crypto_box_in_five_lines() -> None:
    """Independent of our code: hab's seal(data, nonce, service_pk, user_sk) is crypto_box."""
    expected_ct = nacl.bindings.crypto_box(PAYLOAD, NONCE, SVC_PK, USER_SK)
    lines = VECTOR.decode().split("\n")
    assert lines[:3] == ["BOX-1", str(BOB), str(SVC)]
    assert base64.b64decode(lines[3]) == NONCE
    assert base64.b64decode(lines[4]) == expected_ct
    assert len(expected_ct) == len(PAYLOAD) + 16
    assert not VECTOR.endswith(b"\n")


def test_payload_made_like_hab_decrypts_in_pysup(member_cache: KeyCache) -> None:
    nonce = bytes(24 * [9])
    ct = nacl.bindings.crypto_box(b"[redis]\nmaxmemory = '1gb'\n", nonce, SVC_PK, USER_SK)
    hab_text = "\n".join(
        [
            "BOX-1",
            str(BOB),
            str(SVC),
            base64.b64encode(nonce).decode(),
            base64.b64encode(ct).decode(),
        ]
    ).encode()
    out = decrypt(hab_text, member_cache, service_group="redis.default@acme")
    assert out.payload == b"[redis]\nmaxmemory = '1gb'\n"
    assert (out.sender, out.receiver) == (BOB, SVC)


def test_payload_made_by_pysup_opens_with_plain_libsodium() -> None:
    data = encrypt_for_service(b"secret cfg", BoxSecretKey(BOB, USER_SK), BoxPublicKey(SVC, SVC_PK))
    lines = data.decode().split("\n")
    nonce, ct = base64.b64decode(lines[3]), base64.b64decode(lines[4])
    assert nacl.bindings.crypto_box_open(ct, nonce, USER_PK, SVC_SK) == b"secret cfg"


def test_fresh_nonce_per_encryption() -> None:
    user, svc = BoxSecretKey(BOB, USER_SK), BoxPublicKey(SVC, SVC_PK)
    a, b = encrypt_for_service(b"x", user, svc), encrypt_for_service(b"x", user, svc)
    assert a.split(b"\n")[3] != b.split(b"\n")[3]


def test_client_side_uses_newest_revisions_and_member_decrypts(tmp_path: Path) -> None:
    workstation, member = KeyCache(tmp_path / "ws"), KeyCache(tmp_path / "member")
    users = [generate_user_key("bob", T0 + timedelta(days=d)) for d in (0, 1)]
    svcs = [generate_service_key("redis.default", "acme", T0 + timedelta(days=d)) for d in (0, 1)]
    for pair in (*users, *svcs):
        workstation.write_pair(pair)
        member.write_pair(pair)
    enc = encrypt_for_service_group(b"a = 1", "bob", "redis.default@acme", workstation)
    assert (enc.user, enc.service) == (users[1].secret.named, svcs[1].public.named)
    assert decrypt(enc.data, member).payload == b"a = 1"


def test_member_without_service_key_gets_missing_key_naming_it(tmp_path: Path) -> None:
    (tmp_path / f"{BOB}.pub").write_text(key_file("BOX-PUB-1", BOB, USER_PK))
    with pytest.raises(MissingKey) as info:
        decrypt(VECTOR, KeyCache(tmp_path))
    assert info.value.reason == "no_service_key"
    assert info.value.named == SVC
    assert "redis.default@acme-20240301123046" in str(info.value)


def test_member_without_sender_public_key_gets_missing_key(tmp_path: Path) -> None:
    (tmp_path / f"{SVC}.box.key").write_text(key_file("BOX-SEC-1", SVC, SVC_SK))
    with pytest.raises(MissingKey) as info:
        decrypt(VECTOR, KeyCache(tmp_path))
    assert info.value.reason == "no_user_key"
    assert info.value.named == BOB


def test_older_revision_only_is_still_missing(tmp_path: Path) -> None:
    """The receiver needs exactly the revision the payload names, not the newest it has."""
    older = NamedRevision(SVC.name, "20200101000000")
    (tmp_path / f"{older}.box.key").write_text(key_file("BOX-SEC-1", older, SVC_SK))
    (tmp_path / f"{BOB}.pub").write_text(key_file("BOX-PUB-1", BOB, USER_PK))
    with pytest.raises(MissingKey, match=r"redis\.default@acme-20240301123046"):
        decrypt(VECTOR, KeyCache(tmp_path))


def test_corrupt_key_file_is_bad_key_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / f"{SVC}.box.key").write_text("BOX-SEC-1\nredis.default@acme-20240301123046\n\n!!")
    (tmp_path / f"{BOB}.pub").write_text(key_file("BOX-PUB-1", BOB, USER_PK))
    with pytest.raises(BadKey, match=r"redis\.default@acme-20240301123046\.box\.key.*base64"):
        decrypt(VECTOR, KeyCache(tmp_path))


@pytest.mark.parametrize("line", [3, 4])
def test_tampered_nonce_or_ciphertext_refused(member_cache: KeyCache, line: int) -> None:
    lines = VECTOR.split(b"\n")
    raw = bytearray(base64.b64decode(lines[line]))
    raw[-1] ^= 1
    lines[line] = base64.b64encode(bytes(raw))
    with pytest.raises(Tampered) as info:
        decrypt(b"\n".join(lines), member_cache)
    assert info.value.reason == "tampered"


def test_other_keys_under_the_same_names_refused(tmp_path: Path) -> None:
    other_sk = bytes(32 * [5])
    (tmp_path / f"{SVC}.box.key").write_text(key_file("BOX-SEC-1", SVC, other_sk))
    (tmp_path / f"{BOB}.pub").write_text(key_file("BOX-PUB-1", BOB, USER_PK))
    with pytest.raises(Tampered):
        decrypt(VECTOR, KeyCache(tmp_path))


def test_wrong_service_group_refused_before_reading_keys(member_cache: KeyCache) -> None:
    with pytest.raises(WrongServiceGroup, match=r"web\.default"):  # no keys needed to refuse
        decrypt(VECTOR, KeyCache(Path("/nonexistent-pysup-cache")), service_group="web.default")
    with pytest.raises(WrongServiceGroup):
        decrypt(VECTOR, member_cache, service_group="redis.default@other")
    assert decrypt(VECTOR, member_cache, service_group="redis.default").payload == PAYLOAD


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "unsupported encrypted payload version ''"),
        (b"BOX-2\nx", "unsupported encrypted payload version 'BOX-2'"),
        (b"ANONYMOUS-BOX-1\nbob-20240301123045\nAAAA", "anonymous box"),
        (b"BOX-1\nbob-20240301123045", "missing the receiver line"),
        (b"BOX-1\nbob-20240301123045\nx-20240301123045\nAAAA", "missing the ciphertext line"),
        (VECTOR.replace(b"bob-20240301123045", b"bob"), "sender key name"),
        (VECTOR.replace(b"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7", b"ZGVm"), "nonce is 3 bytes"),
        (VECTOR.replace(b"ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7", b"!!"), "nonce is not valid base64"),
        (VECTOR + b"\nextra", "text after the ciphertext"),
        (b"\xff\xfe", "not text"),
        (b"BOX-1\n" + b"x" * (200 * 1024), "over the 131072 limit"),
    ],
)
def test_malformed_payloads_refused_with_reason(data: bytes, why: str, tmp_path: Path) -> None:
    with pytest.raises(MalformedPayload) as info:
        decrypt(data, KeyCache(tmp_path))
    assert why in str(info.value)
    assert info.value.reason == "malformed"


def test_trailing_newline_after_ciphertext_accepted(member_cache: KeyCache) -> None:
    assert decrypt(VECTOR + b"\n", member_cache).payload == PAYLOAD


def test_parse_round_trips() -> None:
    box = SignedBox.parse(VECTOR)
    assert (box.encryptor, box.decryptor, box.nonce) == (BOB, SVC, NONCE)
    assert box.to_bytes() == VECTOR


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    with pytest.raises(BoxMessageError):
        decrypt(data, KeyCache(Path("/nonexistent-pysup-cache")))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=3000))
def test_round_trip_any_payload(data: bytes) -> None:
    user, svc = BoxSecretKey(BOB, USER_SK), BoxSecretKey(SVC, SVC_SK)
    box = SignedBox.parse(encrypt_for_service(data, user, svc.public_key()))
    opened = nacl.bindings.crypto_box_open(box.ciphertext, box.nonce, USER_PK, SVC_SK)
    assert opened == data

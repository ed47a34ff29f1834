"""Box keys (BOX-SEC-1 / BOX-PUB-1): Habitat's file layout and names, hand-written files, the key
cache's lookups (newest revision for the sender, exact revision for the receiver) and refusals."""

from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nacl.bindings
import pytest

from pysup.crypto.box import (
    BoxKeyPair,
    BoxPublicKey,
    BoxSecretKey,
    Half,
    generate_service_key,
    generate_user_key,
    parse_public_key,
    parse_secret_key,
)
from pysup.crypto.keycache import KeyCache, KeyNotFound, KeyPairMismatch
from pysup.crypto.keyfiles import KeyFileError, NamedRevision

T0 = datetime(2024, 3, 1, 12, 30, 45, tzinfo=UTC)
SK = bytes(range(32))
PK = nacl.bindings.crypto_scalarmult_base(SK)  # libsodium's own derivation, not ours
BOB = NamedRevision("bob", "20240301123045")
SVC = NamedRevision("redis.default@acme", "20240301123045")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hand_written(header: str, name_rev: str, key: bytes, tail: str = "") -> str:
    return f"{header}\n{name_rev}\n\n{b64(key)}{tail}"


# -- layout and names ---------------------------------------------------------------------------


def test_key_text_and_file_names_match_habitat_layout() -> None:
    """Header, name-rev, blank line, base64, no trailing newline; `.box.key` / `.pub` names."""
    secret = BoxSecretKey(SVC, SK)
    assert secret.to_key_text() == f"BOX-SEC-1\nredis.default@acme-20240301123045\n\n{b64(SK)}"
    assert secret.public_key().to_key_text() == (
        f"BOX-PUB-1\nredis.default@acme-20240301123045\n\n{b64(PK)}"
    )
    assert secret.filename == "redis.default@acme-20240301123045.box.key"
    assert secret.public_key().filename == "redis.default@acme-20240301123045.pub"


def test_public_key_is_curve25519_of_the_secret() -> None:
    assert BoxSecretKey(BOB, SK).public_key() == BoxPublicKey(BOB, PK)


def test_generated_names_follow_habitat() -> None:
    user = generate_user_key("bob", T0)
    assert str(user.secret.named) == "bob-20240301123045"
    svc = generate_service_key("redis.default", "acme", T0)
    assert str(svc.public.named) == "redis.default@acme-20240301123045"
    assert svc.secret.public_key() == svc.public
    assert generate_user_key("bob", T0).secret.key != user.secret.key  # random each time


def test_secret_material_not_in_repr() -> None:
    key = BoxSecretKey(BOB, SK)
    assert b64(SK) not in repr(key)
    assert repr(SK) not in repr(key)


@pytest.mark.parametrize(
    ("tail", "crlf"), [("", False), ("\n", False), ("\n\n", False), ("\n", True)]
)
def test_hand_written_files_accepted_with_or_without_trailing_newline(
    tail: str, crlf: bool
) -> None:
    """What an editor adds (a final newline, CRLF line ends) does not change the key."""
    secret_text = hand_written("BOX-SEC-1", "bob-20240301123045", SK, tail)
    public_text = hand_written("BOX-PUB-1", "bob-20240301123045", PK, tail)
    if crlf:
        secret_text, public_text = (t.replace("\n", "\r\n") for t in (secret_text, public_text))
    assert parse_secret_key(secret_text, "f") == BoxSecretKey(BOB, SK)
    assert parse_public_key(public_text, "f") == BoxPublicKey(BOB, PK)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty key file"),
        (hand_written("BOX-PUB-1", "bob-20240301123045", PK), "unsupported key header"),
        (hand_written("SYM-SEC-1", "bob-20240301123045", SK), "unsupported key header"),
        ("BOX-SEC-1\n", "missing <name>-<revision> line"),
        (hand_written("BOX-SEC-1", "bob-2024", SK), "cannot parse name and revision"),
        ("BOX-SEC-1\nbob-20240301123045\n", "missing key material"),
        (f"BOX-SEC-1\nbob-20240301123045\n{b64(SK)}", "is the blank line missing?"),
        (f"BOX-SEC-1\nbob-20240301123045\nx\n{b64(SK)}", "line 3 must be blank"),
        ("BOX-SEC-1\nbob-20240301123045\n\n!!!!", "not valid base64"),
        (hand_written("BOX-SEC-1", "bob-20240301123045", SK[:31]), "31 bytes, want 32"),
        (hand_written("BOX-SEC-1", "bob-20240301123045", SK) + "\n" + b64(SK), "after the key"),
    ],
)
def test_bad_secret_key_text_refused_naming_source_and_problem(text: str, why: str) -> None:
    with pytest.raises(KeyFileError) as info:
        parse_secret_key(text, "/keys/bob-20240301123045.box.key")
    assert str(info.value).startswith("/keys/bob-20240301123045.box.key: ")
    assert why in str(info.value)


# -- the key cache --------------------------------------------------------------------------------


def test_write_pair_modes_atomic_and_idempotent(tmp_path: Path) -> None:
    cache = KeyCache(tmp_path / "keys")
    pair = generate_service_key("redis.default", "acme", T0)
    written = cache.write_pair(pair)
    assert written.secret.name == "redis.default@acme-20240301123045.box.key"
    assert written.public.name == "redis.default@acme-20240301123045.pub"
    assert stat.S_IMODE(written.secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(written.public.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert written.secret.read_text() == pair.secret.to_key_text()
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == sorted(
        [written.secret.name, written.public.name]
    )  # no temp files left behind
    cache.write_pair(pair)  # same pair again: no-op
    other = generate_service_key("redis.default", "acme", T0)
    with pytest.raises(KeyFileError, match="different key"):
        cache.write_pair(other)
    assert cache.service_secret_key(pair.secret.named) == pair.secret


def test_write_pair_refuses_halves_that_do_not_belong_together(tmp_path: Path) -> None:
    a, b = generate_user_key("bob", T0), generate_user_key("bob", T0)
    with pytest.raises(KeyPairMismatch):
        KeyCache(tmp_path).write_pair(BoxKeyPair(a.public, b.secret))
    assert list(tmp_path.iterdir()) == []


def test_latest_revision_wins_for_sender_side(tmp_path: Path) -> None:
    cache = KeyCache(tmp_path)
    old = generate_user_key("bob", T0)
    new = generate_user_key("bob", T0 + timedelta(days=1))
    longer = generate_user_key("bob-smith", T0 + timedelta(days=2))
    for p in (new, old, longer):
        cache.write_pair(p)
    assert cache.latest_user_secret_key("bob") == new.secret
    assert cache.latest_user_secret_key("bob-smith") == longer.secret
    svc_old = generate_service_key("redis.default", "acme", T0)
    svc_new = generate_service_key("redis.default", "acme", T0 + timedelta(hours=1))
    cache.write_pair(svc_new)
    cache.write_pair(svc_old)
    assert cache.latest_service_public_key("redis.default@acme") == svc_new.public
    assert cache.revisions("redis.default@acme", Half.PUBLIC) == [
        svc_new.public.named.revision,
        svc_old.public.named.revision,
    ]


def test_exact_revision_for_receiver_side(tmp_path: Path) -> None:
    cache = KeyCache(tmp_path)
    old = generate_service_key("redis.default", "acme", T0)
    new = generate_service_key("redis.default", "acme", T0 + timedelta(days=1))
    cache.write_pair(old)
    cache.write_pair(new)
    assert cache.service_secret_key(old.secret.named) == old.secret
    missing = NamedRevision("redis.default@acme", "20990101000000")
    with pytest.raises(KeyNotFound) as info:
        cache.service_secret_key(missing)
    assert info.value.named == missing
    assert "redis.default@acme-20990101000000.box.key" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_public_only_and_secret_only_caches_work(tmp_path: Path) -> None:
    """A member has only the service's secret key and the users' public keys; a workstation
    only the user's secret key and the service's public key."""
    (tmp_path / "bob-20240301123045.pub").write_text(
        hand_written("BOX-PUB-1", "bob-20240301123045", PK, "\n")
    )
    assert KeyCache(tmp_path).user_public_key(BOB) == BoxPublicKey(BOB, PK)
    (tmp_path / "bob-20240301123045.pub").unlink()
    (tmp_path / "bob-20240301123045.box.key").write_text(
        hand_written("BOX-SEC-1", "bob-20240301123045", SK)
    )
    assert KeyCache(tmp_path).latest_user_secret_key("bob") == BoxSecretKey(BOB, SK)


def test_mismatched_pair_in_cache_refused_naming_both_files(tmp_path: Path) -> None:
    (tmp_path / "bob-20240301123045.box.key").write_text(
        hand_written("BOX-SEC-1", "bob-20240301123045", SK)
    )
    wrong_pk = nacl.bindings.crypto_scalarmult_base(bytes(32 * [7]))
    (tmp_path / "bob-20240301123045.pub").write_text(
        hand_written("BOX-PUB-1", "bob-20240301123045", wrong_pk)
    )
    cache = KeyCache(tmp_path)
    for lookup in (lambda: cache.latest_user_secret_key("bob"), lambda: cache.user_public_key(BOB)):
        with pytest.raises(KeyPairMismatch) as info:
            lookup()
        assert "bob-20240301123045.pub" in str(info.value)
        assert "bob-20240301123045.box.key" in str(info.value)
        assert "not a key pair" in str(info.value)


def test_file_holding_another_key_than_its_name_refused(tmp_path: Path) -> None:
    (tmp_path / "bob-20240301123045.pub").write_text(
        hand_written("BOX-PUB-1", "eve-20240301123045", PK)
    )
    with pytest.raises(KeyFileError, match="contains key eve-20240301123045"):
        KeyCache(tmp_path).user_public_key(BOB)


def test_secret_key_in_a_pub_file_refused(tmp_path: Path) -> None:
    (tmp_path / "bob-20240301123045.pub").write_text(
        hand_written("BOX-SEC-1", "bob-20240301123045", SK)
    )
    with pytest.raises(KeyFileError, match=r"bob-20240301123045\.pub: unsupported key header"):
        KeyCache(tmp_path).user_public_key(BOB)


def test_missing_cache_dir_is_key_not_found(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFound, match=r"no user secret key bob-<revision>\.box\.key"):
        KeyCache(tmp_path / "nope").latest_user_secret_key("bob")


@pytest.mark.parametrize("name", ["", "a/b", "a b", "a\nb", ".."])
def test_invalid_names_refused(name: str) -> None:
    with pytest.raises(KeyFileError):
        generate_user_key(name, T0)

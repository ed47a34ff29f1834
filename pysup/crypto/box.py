"""Habitat box keys: Curve25519 key pairs for users and service groups (NaCl ``crypto_box``).

Facts (habitat-sh/habitat ``components/core/src/crypto/keys/encryption.rs``, ``encryption/
user_key.rs``, ``encryption/service_key.rs``, the ``sup_secure`` docs):

==========================  ===========  ===================================================
key                         header       file name
==========================  ===========  ===================================================
user secret                 BOX-SEC-1    ``<user>-<rev>.box.key``
user public                 BOX-PUB-1    ``<user>-<rev>.pub``
service group secret        BOX-SEC-1    ``<service>.<group>@<org>-<rev>.box.key``
service group public        BOX-PUB-1    ``<service>.<group>@<org>-<rev>.pub``
==========================  ===========  ===================================================

Both keys are 32 raw bytes (libsodium ``crypto_box_keypair``); the public key is the secret's
Curve25519 base-point multiple, so a pair that does not belong together is detectable. Origin
encryption keys have the same layout under the origin's name (Builder uses them; we only parse).

File modes: Habitat writes 0400 (secret) and 0444 (public). We write 0600 and 0644, as the ring
keys are written: the owner can still replace a file by hand, and the public half is readable by
the service user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Final

import nacl.public
import nacl.utils

from pysup.crypto.keyfiles import (
    KeyFileError,
    NamedRevision,
    check_key_name,
    parse_key_text,
    render_key_text,
    revision_at,
)

BOX_SECRET_HEADER: Final = "BOX-SEC-1"
BOX_PUBLIC_HEADER: Final = "BOX-PUB-1"
SECRET_SUFFIX: Final = ".box.key"
PUBLIC_SUFFIX: Final = ".pub"
BOX_KEY_BYTES: Final = 32
SECRET_FILE_MODE: Final = 0o600
"""Owner only: a secret box key decrypts every payload sent to (or signs as) its owner."""
PUBLIC_FILE_MODE: Final = 0o644
"""Public keys can be shared freely (Habitat's docs: "no risk of information compromise")."""


class Half(StrEnum):
    """Which half of a box key pair a file holds."""

    SECRET = "secret"
    PUBLIC = "public"

    @property
    def suffix(self) -> str:
        return SECRET_SUFFIX if self is Half.SECRET else PUBLIC_SUFFIX


@dataclass(frozen=True)
class _BoxKey:
    """What both halves share: a named revision, 32 key bytes, a header and a file suffix."""

    HEADER: ClassVar[str]
    SUFFIX: ClassVar[str]
    named: NamedRevision
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != BOX_KEY_BYTES:
            raise KeyFileError(f"{self.named}: box key must be {BOX_KEY_BYTES} bytes")

    @property
    def filename(self) -> str:
        """``<name>-<rev>.pub`` or ``<name>-<rev>.box.key``."""
        return self.named.filename(self.SUFFIX)

    def to_key_text(self) -> str:
        """The file content, byte for byte as Habitat writes it."""
        return render_key_text(self.HEADER, self.named, self.key)


@dataclass(frozen=True)
class BoxPublicKey(_BoxKey):
    """The public half of a user or service box key."""

    HEADER: ClassVar[str] = BOX_PUBLIC_HEADER
    SUFFIX: ClassVar[str] = PUBLIC_SUFFIX

    def nacl(self) -> nacl.public.PublicKey:
        return nacl.public.PublicKey(self.key)


@dataclass(frozen=True)
class BoxSecretKey(_BoxKey):
    """The secret half of a user or service box key. The key never appears in ``repr``."""

    HEADER: ClassVar[str] = BOX_SECRET_HEADER
    SUFFIX: ClassVar[str] = SECRET_SUFFIX
    key: bytes = field(repr=False)

    def public_key(self) -> BoxPublicKey:
        """The matching public key (Curve25519 base-point multiple of the secret)."""
        return BoxPublicKey(self.named, bytes(self.nacl().public_key))

    def nacl(self) -> nacl.public.PrivateKey:
        return nacl.public.PrivateKey(self.key)


@dataclass(frozen=True)
class BoxKeyPair:
    """A freshly generated pair; both halves carry the same named revision."""

    public: BoxPublicKey
    secret: BoxSecretKey


def generate_box_pair(name: str, now: datetime) -> BoxKeyPair:
    """A new random pair named ``name`` with revision ``now`` (UTC). Writes nothing."""
    named = NamedRevision(check_key_name(name), revision_at(now))
    secret = BoxSecretKey(named, bytes(nacl.public.PrivateKey.generate()))
    return BoxKeyPair(secret.public_key(), secret)


def generate_user_key(user: str, now: datetime) -> BoxKeyPair:
    """``hab user key generate USER``: the pair is named after the user."""
    return generate_box_pair(user, now)


def service_key_name(service_group: str, org: str) -> str:
    """``SERVICE.GROUP@ORG``, the name of a service group's box key (Habitat's format)."""
    return f"{service_group}@{org}"


def generate_service_key(service_group: str, org: str, now: datetime) -> BoxKeyPair:
    """``hab svc key generate SERVICE.GROUP ORG``: the pair is named ``SERVICE.GROUP@ORG``."""
    return generate_box_pair(service_key_name(service_group, org), now)


def parse_public_key(text: str, source: str) -> BoxPublicKey:
    """Parse ``BOX-PUB-1`` key text. A secret key where a public one belongs is refused."""
    parsed = parse_key_text(text, source, (BOX_PUBLIC_HEADER,), BOX_KEY_BYTES)
    return BoxPublicKey(parsed.named, parsed.material)


def parse_secret_key(text: str, source: str) -> BoxSecretKey:
    """Parse ``BOX-SEC-1`` key text."""
    parsed = parse_key_text(text, source, (BOX_SECRET_HEADER,), BOX_KEY_BYTES)
    return BoxSecretKey(parsed.named, parsed.material)


def random_nonce() -> bytes:
    """A fresh 24-byte XSalsa20 nonce from the OS CSPRNG (libsodium's ``randombytes``)."""
    return bytes(nacl.utils.random(nacl.public.Box.NONCE_SIZE))

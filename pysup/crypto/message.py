"""Habitat's encrypted payload for ``config apply --user`` and ``file upload --user``.

``hab`` encrypts the config (or file) with the user's secret box key to the service group's public
box key (NaCl ``crypto_box``: Curve25519 + XSalsa20-Poly1305, a fresh 24-byte nonce) and sends
this text as the rumor's payload, with the rumor marked ``encrypted``. Five lines joined by
``\\n``, no trailing newline (habitat-sh/habitat ``components/core/src/crypto/keys/encryption/
message.rs``, ``SignedBox``; the same layout as the older ``BoxKeyPair::encrypt_box``)::

    BOX-1
    <user>-<rev>                       the sender ("encryptor")
    <service>.<group>@<org>-<rev>      the receiver ("decryptor")
    <standard base64 of the 24-byte nonce>
    <standard base64 of the ciphertext: 16-byte Poly1305 tag + encrypted payload>

A Supervisor decrypts with exactly the revisions named there: the receiver's secret key
(``.box.key``) and the sender's public key (``.pub``) from its key cache. A member that lacks
either cannot decrypt; :class:`MissingKey` says which key, so it can keep the rumor, pass it on
and say why once. Anything else wrong is :class:`MalformedPayload` or :class:`Tampered`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import nacl.exceptions
import nacl.public

from pysup.crypto.box import BoxPublicKey, BoxSecretKey, random_nonce
from pysup.crypto.keycache import KeyCache, KeyNotFound
from pysup.crypto.keyfiles import KeyFileError, NamedRevision

BOX_FORMAT_VERSION: Final = "BOX-1"
ANONYMOUS_BOX_FORMAT_VERSION: Final = "ANONYMOUS-BOX-1"
NONCE_BYTES: Final = 24
MAC_BYTES: Final = 16
MAX_ENCRYPTED_BYTES: Final = 128 * 1024
"""Bytes. The largest encrypted payload we parse. The largest honest one is a 64 KiB config
(Habitat's ``MAX_SVC_CFG_SIZE``) -> base64 of 64 KiB + 16 is 87,404 bytes, plus five lines of at
most ~300 bytes; 128 KiB leaves room and still bounds the work a hostile rumor can cause."""


class BoxMessageError(Exception):
    """An encrypted payload could not be made or opened. ``reason`` is a stable short code for
    logs and metrics (``malformed``, ``no_service_key``, ``no_user_key``, ``bad_key``,
    ``wrong_service_group``, ``tampered``)."""

    reason = "error"


class MalformedPayload(BoxMessageError):
    """Not Habitat's ``BOX-1`` text (wrong version, missing line, bad base64, bad nonce)."""

    reason = "malformed"


class MissingKey(BoxMessageError):
    """A key the payload needs is not in this member's cache: the normal state of a member that
    is not meant to read it. ``named`` is the wanted key, ``role`` ``service`` or ``user``."""

    def __init__(self, message: str, role: str, named: NamedRevision) -> None:
        super().__init__(message)
        self.role = role
        self.named = named
        self.reason = f"no_{role}_key"


class BadKey(BoxMessageError):
    """A key file the payload needs is in the cache but unusable (corrupt, or a mismatched
    pair); the message names the file."""

    reason = "bad_key"


class WrongServiceGroup(BoxMessageError):
    """The payload is addressed to another service group's key than the rumor's group."""

    reason = "wrong_service_group"


class Tampered(BoxMessageError):
    """The keys are right but the ciphertext does not authenticate: changed in transit, or made
    with other keys under the same names."""

    reason = "tampered"


@dataclass(frozen=True)
class SignedBox:
    """The parsed ``BOX-1`` payload."""

    encryptor: NamedRevision
    decryptor: NamedRevision
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        """Byte for byte what ``hab`` sends (ASCII, five lines, no trailing newline)."""
        lines = (
            BOX_FORMAT_VERSION,
            str(self.encryptor),
            str(self.decryptor),
            base64.b64encode(self.nonce).decode("ascii"),
            base64.b64encode(self.ciphertext).decode("ascii"),
        )
        return "\n".join(lines).encode("utf-8")

    @classmethod
    def parse(cls, data: bytes) -> SignedBox:
        """Parse a payload; anything but well-formed ``BOX-1`` is MalformedPayload."""
        if len(data) > MAX_ENCRYPTED_BYTES:
            raise MalformedPayload(
                f"encrypted payload is {len(data)} bytes, over the {MAX_ENCRYPTED_BYTES} limit"
            )
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPayload("encrypted payload is not text (want BOX-1)") from None
        lines = text.splitlines()
        version = lines[0].strip() if lines else ""
        if version == ANONYMOUS_BOX_FORMAT_VERSION:
            raise MalformedPayload(
                "anonymous box payloads have no sender; config and files need BOX-1"
            )
        if version != BOX_FORMAT_VERSION:
            raise MalformedPayload(f"unsupported encrypted payload version {version[:40]!r}")
        if len(lines) < 5:
            missing = ("sender", "receiver", "nonce", "ciphertext")[len(lines) - 1]
            raise MalformedPayload(f"corrupt BOX-1 payload: missing the {missing} line")
        if any(line.strip() for line in lines[5:]):
            raise MalformedPayload("corrupt BOX-1 payload: text after the ciphertext line")
        encryptor = _named(lines[1], "sender")
        decryptor = _named(lines[2], "receiver")
        nonce = _b64(lines[3], "nonce")
        if len(nonce) != NONCE_BYTES:
            raise MalformedPayload(f"BOX-1 nonce is {len(nonce)} bytes, want {NONCE_BYTES}")
        ciphertext = _b64(lines[4], "ciphertext")
        if len(ciphertext) < MAC_BYTES:
            raise MalformedPayload("BOX-1 ciphertext is shorter than its authentication tag")
        return cls(encryptor, decryptor, nonce, ciphertext)


def _named(line: str, what: str) -> NamedRevision:
    try:
        return NamedRevision.parse(line.strip())
    except KeyFileError as e:
        raise MalformedPayload(f"corrupt BOX-1 {what} key name: {e}") from None


def _b64(line: str, what: str) -> bytes:
    try:
        return base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedPayload(f"corrupt BOX-1 payload: {what} is not valid base64") from None


def encrypt_for_service(
    payload: bytes,
    user: BoxSecretKey,
    service: BoxPublicKey,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt ``payload`` from ``user`` to ``service``; returns the ``BOX-1`` bytes.

    ``nonce`` is for test vectors only: a nonce must never be reused with the same key pair, so
    callers leave it out and get a fresh random one.
    """
    nonce = random_nonce() if nonce is None else bytes(nonce)
    if len(nonce) != NONCE_BYTES:
        raise BoxMessageError(f"nonce must be {NONCE_BYTES} bytes")
    sealed = nacl.public.Box(user.nacl(), service.nacl()).encrypt(bytes(payload), nonce)
    return SignedBox(user.named, service.named, nonce, bytes(sealed.ciphertext)).to_bytes()


@dataclass(frozen=True)
class Encrypted:
    """What ``encrypt_for_service_group`` made, with the revisions it picked (for the
    ``Encrypting config (user rev = ..., service rev = ...)`` line)."""

    data: bytes
    user: NamedRevision
    service: NamedRevision


def encrypt_for_service_group(
    payload: bytes, user: str, service_key_name: str, cache: KeyCache
) -> Encrypted:
    """The client side of ``config apply --user USER`` / ``file upload --user USER``: the newest
    secret key of ``user`` and the newest public key ``service_key_name`` (``SVC.GROUP@ORG``)."""
    try:
        user_key = cache.latest_user_secret_key(user)
        service_key = cache.latest_service_public_key(service_key_name)
    except KeyFileError as e:
        raise BadKey(str(e)) from None
    data = encrypt_for_service(payload, user_key, service_key)
    return Encrypted(data, user_key.named, service_key.named)


@dataclass(frozen=True)
class Decrypted:
    """An opened payload and who sent it to which key."""

    payload: bytes
    sender: NamedRevision
    receiver: NamedRevision


def decrypt(data: bytes, cache: KeyCache, service_group: str | None = None) -> Decrypted:
    """Open a ``BOX-1`` payload with the keys it names, from ``cache``.

    With ``service_group`` (the rumor's ``svc.group`` or ``svc.group@org``) the payload must be
    addressed to that group's key: a payload for ``db.prod@acme`` carried in a rumor for
    ``web.prod`` is refused even by a member holding both keys (Habitat does not check this).
    """
    box = SignedBox.parse(data)
    if service_group is not None:
        check_addressed_to(box.decryptor, service_group)
    service_key = _key(lambda: cache.service_secret_key(box.decryptor), "service", box.decryptor)
    user_key = _key(lambda: cache.user_public_key(box.encryptor), "user", box.encryptor)
    try:
        plain = nacl.public.Box(service_key.nacl(), user_key.nacl()).decrypt(
            box.ciphertext, box.nonce
        )
    except nacl.exceptions.CryptoError:
        raise Tampered(
            f"payload from {box.encryptor} to {box.decryptor} does not authenticate "
            "(tampered, or made with other keys of the same names)"
        ) from None
    return Decrypted(bytes(plain), box.encryptor, box.decryptor)


def check_addressed_to(decryptor: NamedRevision, service_group: str) -> None:
    """The key name ``svc.group@org`` must be the rumor's group: equal, or, when the rumor's
    group has no ``@org``, equal up to the ``@``."""
    name = decryptor.name
    base = name.partition("@")[0]
    if name == service_group or ("@" not in service_group and base == service_group):
        return
    raise WrongServiceGroup(
        f"payload is encrypted to {decryptor}, not to a key of service group {service_group}"
    )


_K = TypeVar("_K", BoxPublicKey, BoxSecretKey)


def _key(load: Callable[[], _K], role: str, named: NamedRevision) -> _K:
    try:
        return load()
    except KeyNotFound as e:
        raise MissingKey(str(e), role, named) from None
    except KeyFileError as e:
        raise BadKey(str(e)) from None

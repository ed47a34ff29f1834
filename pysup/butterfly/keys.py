"""Habitat-compatible ring keys: the symmetric key that encrypts all gossip traffic of a ring.

File format (verified against habitat-sh/habitat ``components/core/src/crypto/keys.rs`` and
``keys/sym_key.rs`` / ``keys/ring_key.rs``), named ``<name>-<revision>.sym.key``::

    SYM-SEC-1
    <name>-<YYYYMMDDhhmmss>

    <standard base64, with padding, of the 32-byte secretbox key>

Habitat writes ``"{version}\\n{name_with_rev}\\n\\n"`` followed by the base64 with no trailing
newline, and reads it line by line (the 4th line, trimmed), so a trailing newline is accepted. The
revision is the UTC creation time. Keys are files of mode 0600. So ``hab ring key generate`` output
can be used by pysup and the other way round.

Encryption is libsodium's secretbox (XSalsa20-Poly1305) with a fresh random 24-byte nonce per
message; :meth:`RingKey.encrypt` returns ``nonce + ciphertext`` (Habitat carries the two in separate
protobuf fields; our wire format is our own).

Where keys live (:func:`default_key_cache`): ``HAB_CACHE_KEY_PATH`` if set; else ``/hab/cache/keys``
when running as root and that directory exists (a Habitat host); else ``~/.pysup/keys``.
A key can also be given as its whole file text (``--ring-key`` / ``HAB_RING_KEY``), see
:func:`resolve_ring_key`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nacl.exceptions
import nacl.secret
import nacl.utils

from pysup.crypto.keyfiles import (
    REVISION_RE,
    KeyFileError,
    NamedRevision,
    ensure_cache_dir,
    list_revisions,
    parse_key_text,
    read_key_file,
    render_key_text,
    revision_at,
    write_key_file,
)

SYM_KEY_VERSION = "SYM-SEC-1"
SYM_KEY_SUFFIX = ".sym.key"
KEY_BYTES = 32
NONCE_BYTES = 24
MAC_BYTES = 16
KEY_FILE_MODE = 0o600


class RingKeyError(Exception):
    """A ring key could not be parsed, found or written, or a message could not be decrypted."""


@dataclass(frozen=True)
class RingKey:
    """A ring's symmetric key at one revision. The secret never appears in ``repr``."""

    name: str
    revision: str
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\\n\r\x00"):
            raise RingKeyError(f"invalid ring key name {self.name!r}")
        if not REVISION_RE.fullmatch(self.revision):
            raise RingKeyError(f"invalid ring key revision {self.revision!r} (want YYYYMMDDhhmmss)")
        if len(self.secret) != KEY_BYTES:
            raise RingKeyError(f"ring key must be {KEY_BYTES} bytes, got {len(self.secret)}")

    @property
    def name_with_rev(self) -> str:
        """``<name>-<revision>``, the key's identity (and its file stem)."""
        return f"{self.name}-{self.revision}"

    @property
    def filename(self) -> str:
        """``<name>-<revision>.sym.key``."""
        return self.name_with_rev + SYM_KEY_SUFFIX

    def to_key_text(self) -> str:
        """The key file content, byte-for-byte as Habitat writes it (no trailing newline)."""
        named = NamedRevision(self.name, self.revision)
        return render_key_text(SYM_KEY_VERSION, named, self.secret)

    def encrypt(self, plaintext: bytes) -> bytes:
        """Seal ``plaintext``; returns ``nonce (24 bytes) + ciphertext (len + 16 bytes MAC)``."""
        box = nacl.secret.SecretBox(self.secret)
        nonce = nacl.utils.random(NONCE_BYTES)
        sealed = box.encrypt(bytes(plaintext), nonce)
        return bytes(sealed)

    def decrypt(self, data: bytes) -> bytes:
        """Open ``nonce + ciphertext``; any failure (short, tampered, wrong key) is RingKeyError."""
        try:
            raw = bytes(data)
        except (TypeError, ValueError) as e:
            raise RingKeyError(f"cannot decrypt a {type(data).__name__}") from e
        if len(raw) < NONCE_BYTES + MAC_BYTES:
            raise RingKeyError(
                f"encrypted message too short ({len(raw)} bytes, need >= {NONCE_BYTES + MAC_BYTES})"
            )
        try:
            box = nacl.secret.SecretBox(self.secret)
            return bytes(box.decrypt(raw[NONCE_BYTES:], raw[:NONCE_BYTES]))
        except (nacl.exceptions.CryptoError, TypeError, ValueError) as e:
            raise RingKeyError(
                f"message could not be decrypted with ring key {self.name_with_rev}"
            ) from e


def generate_ring_key(name: str, now: datetime) -> RingKey:
    """A new random key for ring ``name`` with revision ``now`` (UTC). Writes nothing."""
    return RingKey(name=name, revision=revision_at(now), secret=nacl.utils.random(KEY_BYTES))


def parse_ring_key(text: str, source: str = "<ring key>") -> RingKey:
    """Parse key file content; errors name ``source`` (a path, or e.g. ``HAB_RING_KEY``)."""
    try:
        parsed = parse_key_text(text, source, (SYM_KEY_VERSION,), KEY_BYTES)
    except KeyFileError as e:
        raise RingKeyError(str(e)) from None
    return RingKey(name=parsed.named.name, revision=parsed.named.revision, secret=parsed.material)


def read_ring_key_file(path: Path) -> RingKey:
    """Read and parse one ``.sym.key`` file."""
    try:
        text = read_key_file(Path(path))
    except KeyFileError as e:
        raise RingKeyError(str(e)) from None
    return parse_ring_key(text, source=str(path))


def write_ring_key(key: RingKey, cache_dir: Path) -> Path:
    """Write ``key`` to ``<cache_dir>/<name>-<rev>.sym.key`` (0600, atomic); returns the path.

    Like Habitat: writing the same key again is a no-op, but a different key under an existing
    name and revision is refused rather than overwritten.
    """
    path = Path(cache_dir) / key.filename
    try:
        ensure_cache_dir(Path(cache_dir))
        write_key_file(path, key.to_key_text(), KEY_FILE_MODE)
    except KeyFileError as e:
        raise RingKeyError(str(e)) from None
    return path


def list_ring_key_revisions(name: str, cache_dir: Path) -> list[str]:
    """Revisions of ring ``name`` in ``cache_dir``, newest first (``acme`` ignores ``acme-you``)."""
    try:
        return list_revisions(name, SYM_KEY_SUFFIX, cache_dir)
    except KeyFileError as e:
        raise RingKeyError(str(e)) from None


def load_latest_ring_key(name: str, cache_dir: Path) -> RingKey:
    """The newest revision of ring ``name`` among ``<cache_dir>/<name>-*.sym.key``."""
    revs = list_ring_key_revisions(name, cache_dir)
    if not revs:
        raise RingKeyError(f"no ring key {name}-<revision>{SYM_KEY_SUFFIX} found in {cache_dir}")
    path = Path(cache_dir) / f"{name}-{revs[0]}{SYM_KEY_SUFFIX}"
    key = read_ring_key_file(path)
    if key.name_with_rev != f"{name}-{revs[0]}":
        raise RingKeyError(f"{path}: file contains key {key.name_with_rev}, not {name}-{revs[0]}")
    return key


def default_key_cache(env: Mapping[str, str] | None = None) -> Path:
    """Where ring keys live: ``HAB_CACHE_KEY_PATH``; else ``/hab/cache/keys`` when root and it
    exists (share keys with Habitat on the same host); else ``~/.pysup/keys``."""
    env = os.environ if env is None else env
    override = env.get("HAB_CACHE_KEY_PATH", "")
    if override:
        return Path(override)
    hab = Path("/hab/cache/keys")
    if hasattr(os, "geteuid") and os.geteuid() == 0 and hab.is_dir():
        return hab
    return Path.home() / ".pysup" / "keys"


def resolve_ring_key(
    ring: str | None, ring_key_text: str | None, cache_dir: Path
) -> RingKey | None:
    """The ring key the Supervisor should use, from ``--ring`` / ``--ring-key`` (or their env vars).

    - ``ring_key_text`` (the whole key file, e.g. from ``HAB_RING_KEY``) wins; if ``ring`` is also
      given the names must agree.
    - else ``ring`` names a key loaded (newest revision) from ``cache_dir``.
    - neither: None (the ring is unencrypted).
    """
    if ring_key_text and ring_key_text.strip():
        key = parse_ring_key(ring_key_text, source="--ring-key/HAB_RING_KEY")
        if ring and ring != key.name:
            raise RingKeyError(f"--ring {ring!r} does not match the given ring key {key.name!r}")
        return key
    if ring:
        return load_latest_ring_key(ring, cache_dir)
    return None

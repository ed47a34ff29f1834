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

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nacl.exceptions
import nacl.secret
import nacl.utils

from pysup.statedir import atomic_write

SYM_KEY_VERSION = "SYM-SEC-1"
SYM_KEY_SUFFIX = ".sym.key"
KEY_BYTES = 32
NONCE_BYTES = 24
MAC_BYTES = 16
KEY_FILE_MODE = 0o600

_REVISION_RE = re.compile(r"\d{14}")
_NAME_WITH_REV_RE = re.compile(r"(?P<name>.+)-(?P<rev>\d{14})")


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
        if not _REVISION_RE.fullmatch(self.revision):
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
        b64 = base64.b64encode(self.secret).decode("ascii")
        return f"{SYM_KEY_VERSION}\n{self.name_with_rev}\n\n{b64}"

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


def _revision(now: datetime) -> str:
    """UTC ``YYYYMMDDhhmmss``; a naive ``now`` is taken to be UTC already."""
    utc = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return utc.strftime("%Y%m%d%H%M%S")


def generate_ring_key(name: str, now: datetime) -> RingKey:
    """A new random key for ring ``name`` with revision ``now`` (UTC). Writes nothing."""
    return RingKey(name=name, revision=_revision(now), secret=nacl.utils.random(KEY_BYTES))


def parse_ring_key(text: str, source: str = "<ring key>") -> RingKey:
    """Parse key file content; errors name ``source`` (a path, or e.g. ``HAB_RING_KEY``)."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise RingKeyError(f"{source}: empty ring key (want a {SYM_KEY_VERSION} key file)")
    header = lines[0].strip()
    if header != SYM_KEY_VERSION:
        raise RingKeyError(
            f"{source}: unsupported key header {header[:40]!r} (want {SYM_KEY_VERSION!r})"
        )
    if len(lines) < 2 or not lines[1].strip():
        raise RingKeyError(f"{source}: missing <name>-<revision> line")
    m = _NAME_WITH_REV_RE.fullmatch(lines[1].strip())
    if m is None:
        raise RingKeyError(
            f"{source}: cannot parse name and revision from {lines[1].strip()[:80]!r} "
            "(want <name>-<YYYYMMDDhhmmss>)"
        )
    if len(lines) < 4 or not lines[3].strip():
        raise RingKeyError(f"{source}: missing key material (4th line)")
    try:
        secret = base64.b64decode(lines[3].strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise RingKeyError(f"{source}: key material is not valid base64") from e
    if len(secret) != KEY_BYTES:
        raise RingKeyError(f"{source}: key is {len(secret)} bytes, want {KEY_BYTES}")
    return RingKey(name=m.group("name"), revision=m.group("rev"), secret=secret)


def read_ring_key_file(path: Path) -> RingKey:
    """Read and parse one ``.sym.key`` file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RingKeyError(f"{path}: cannot read ring key: {e}") from e
    return parse_ring_key(text, source=str(path))


def write_ring_key(key: RingKey, cache_dir: Path) -> Path:
    """Write ``key`` to ``<cache_dir>/<name>-<rev>.sym.key`` (0600, atomic); returns the path.

    Like Habitat: writing the same key again is a no-op, but a different key under an existing
    name and revision is refused rather than overwritten.
    """
    cache_dir = Path(cache_dir)
    try:
        if not cache_dir.is_dir():
            cache_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(cache_dir, 0o700)
        path = cache_dir / key.filename
        if path.exists():
            existing = read_ring_key_file(path)
            if existing.secret != key.secret:
                raise RingKeyError(
                    f"{path}: a different key with this name and revision already exists"
                )
            return path
        atomic_write(path, key.to_key_text().encode("ascii"), KEY_FILE_MODE)
    except OSError as e:
        raise RingKeyError(f"cannot write ring key to {cache_dir}: {e}") from e
    return path


def list_ring_key_revisions(name: str, cache_dir: Path) -> list[str]:
    """Revisions of ring ``name`` in ``cache_dir``, newest first (``acme`` ignores ``acme-you``)."""
    pattern = re.compile(re.escape(name) + r"-(\d{14})" + re.escape(SYM_KEY_SUFFIX))
    try:
        entries = list(Path(cache_dir).iterdir())
    except OSError as e:
        raise RingKeyError(f"cannot read key cache {cache_dir}: {e}") from e
    revs = {m.group(1) for p in entries if (m := pattern.fullmatch(p.name)) and p.is_file()}
    return sorted(revs, reverse=True)


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

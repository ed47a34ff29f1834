"""Box keys in the key cache: the same directory as the ring keys (``default_key_cache``).

Lookups follow Habitat's ``KeyCache`` (``components/core/src/crypto/keys/cache.rs``):

- the *sender* side takes the newest revision: ``latest_user_secret_key(user)`` and
  ``latest_service_public_key("redis.default@acme")``;
- the *receiver* side takes exactly the revisions an encrypted message names:
  ``user_public_key(named)`` and ``service_secret_key(named)``.

Every key read is checked against its other half when both are in the cache, so a ``.pub`` and a
``.box.key`` of the same name and revision that do not belong together are refused (naming both
files) instead of silently failing to decrypt later.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pysup.crypto.box import (
    PUBLIC_FILE_MODE,
    SECRET_FILE_MODE,
    BoxKeyPair,
    BoxPublicKey,
    BoxSecretKey,
    Half,
    parse_public_key,
    parse_secret_key,
)
from pysup.crypto.keyfiles import (
    KeyFileError,
    NamedRevision,
    ensure_cache_dir,
    list_revisions,
    read_key_file,
    write_key_file,
)


class KeyNotFound(KeyFileError):
    """No file for the wanted key in the cache. ``named`` is the wanted revision, if exact."""

    def __init__(self, message: str, name: str, half: Half, named: NamedRevision | None) -> None:
        super().__init__(message)
        self.name = name
        self.half = half
        self.named = named


class KeyPairMismatch(KeyFileError):
    """A ``.pub`` and a ``.box.key`` with the same name and revision are not one pair."""


@dataclass(frozen=True)
class WrittenPair:
    """Where ``write_pair`` put the two files."""

    public: Path
    secret: Path


class KeyCache:
    """The box keys of one key cache directory. Reads the files on every call (they are tiny and
    an operator may drop a key in at any time); never caches key material in memory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"KeyCache({str(self.path)!r})"

    # -- writing -----------------------------------------------------------------------------------

    def write_pair(self, pair: BoxKeyPair) -> WrittenPair:
        """Write both halves (secret 0600, public 0644, atomically). Writing the same pair again
        is a no-op; a different key under an existing name and revision is refused."""
        if pair.public.named != pair.secret.named:
            raise KeyFileError(
                f"not a pair: public {pair.public.named}, secret {pair.secret.named}"
            )
        if pair.secret.public_key() != pair.public:
            raise KeyPairMismatch(f"public key of {pair.public.named} does not match its secret")
        ensure_cache_dir(self.path)
        secret_path = self.path / pair.secret.filename
        public_path = self.path / pair.public.filename
        write_key_file(secret_path, pair.secret.to_key_text(), SECRET_FILE_MODE)
        write_key_file(public_path, pair.public.to_key_text(), PUBLIC_FILE_MODE)
        return WrittenPair(public=public_path, secret=secret_path)

    # -- sender side: newest revision --------------------------------------------------------------

    def latest_user_secret_key(self, user: str) -> BoxSecretKey:
        """The newest ``<user>-*.box.key`` (``config apply --user USER``)."""
        return self._secret(self._latest(user, Half.SECRET, "user"))

    def latest_service_public_key(self, name: str) -> BoxPublicKey:
        """The newest ``<name>-*.pub``; ``name`` is ``SERVICE.GROUP@ORG``."""
        return self._public(self._latest(name, Half.PUBLIC, "service"))

    # -- receiver side: the exact revision a message names -----------------------------------------

    def user_public_key(self, named: NamedRevision) -> BoxPublicKey:
        """The sender's ``<user>-<rev>.pub``."""
        return self._public(self._exact(named, Half.PUBLIC, "user"))

    def service_secret_key(self, named: NamedRevision) -> BoxSecretKey:
        """The service group's ``<SERVICE.GROUP@ORG>-<rev>.box.key``."""
        return self._secret(self._exact(named, Half.SECRET, "service"))

    def revisions(self, name: str, half: Half) -> list[str]:
        """Revisions of ``name``'s ``half`` in the cache, newest first (empty if no cache)."""
        if not self.path.is_dir():
            return []
        return list_revisions(name, half.suffix, self.path)

    # -- helpers -----------------------------------------------------------------------------------

    def _latest(self, name: str, half: Half, role: str) -> NamedRevision:
        revs = self.revisions(name, half)
        if not revs:
            raise KeyNotFound(
                f"no {role} {half} key {name}-<revision>{half.suffix} in key cache {self.path}",
                name,
                half,
                None,
            )
        return NamedRevision(name, revs[0])

    def _exact(self, named: NamedRevision, half: Half, role: str) -> NamedRevision:
        path = self.path / named.filename(half.suffix)
        if not path.is_file():
            raise KeyNotFound(
                f"no {role} {half} key {named.filename(half.suffix)} in key cache {self.path}",
                named.name,
                half,
                named,
            )
        return named

    def _path(self, named: NamedRevision, half: Half) -> Path:
        return self.path / named.filename(half.suffix)

    def _read(self, named: NamedRevision, half: Half) -> tuple[Path, str]:
        path = self._path(named, half)
        return path, read_key_file(path)

    def _load_public(self, named: NamedRevision) -> BoxPublicKey:
        path, text = self._read(named, Half.PUBLIC)
        return _same_name(parse_public_key(text, str(path)), named, path)

    def _load_secret(self, named: NamedRevision) -> BoxSecretKey:
        path, text = self._read(named, Half.SECRET)
        return _same_name(parse_secret_key(text, str(path)), named, path)

    def _secret(self, named: NamedRevision) -> BoxSecretKey:
        secret = self._load_secret(named)
        if self._path(named, Half.PUBLIC).is_file():
            self._check_pair(self._load_public(named), secret)
        return secret

    def _public(self, named: NamedRevision) -> BoxPublicKey:
        public = self._load_public(named)
        if self._path(named, Half.SECRET).is_file():
            self._check_pair(public, self._load_secret(named))
        return public

    def _check_pair(self, public: BoxPublicKey, secret: BoxSecretKey) -> None:
        if secret.public_key() != public:
            raise KeyPairMismatch(
                f"{self._path(public.named, Half.PUBLIC)} and "
                f"{self._path(secret.named, Half.SECRET)} are not a key pair "
                "(the public key does not belong to the secret key)"
            )


_K = TypeVar("_K", BoxPublicKey, BoxSecretKey)


def _same_name(key: _K, named: NamedRevision, path: Path) -> _K:
    """A file must hold the key its name promises (a renamed file would mislead the lookup)."""
    if key.named != named:
        raise KeyFileError(f"{path}: file contains key {key.named}, not {named}")
    return key

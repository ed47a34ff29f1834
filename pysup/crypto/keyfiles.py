"""Habitat's key file layout, shared by ring keys and box keys, and the key cache's file rules.

Every Habitat key file is (verified against habitat-sh/habitat ``components/core/src/crypto/
keys.rs``, ``keys/util.rs`` and ``keys/cache.rs``)::

    <HEADER>                      e.g. SYM-SEC-1, BOX-SEC-1, BOX-PUB-1
    <name>-<YYYYMMDDhhmmss>       the key's named revision; the revision is the UTC creation time
                                  (blank line)
    <standard base64, padded, of the raw key bytes>

Habitat writes ``"{header}\\n{name_with_rev}\\n\\n{base64}"`` with no trailing newline and reads it
line by line, taking the 4th line as the key. We read the same files and also accept what a person
writing one by hand is likely to produce: a trailing newline, CRLF line ends, surrounding spaces, a
UTF-8 byte order mark. We refuse, naming the file and the problem, what Habitat never writes: text
on the 3rd line (the blank line is missing) or after the key (two keys pasted into one file).

The file name is ``<name>-<revision>.<suffix>`` (``.sym.key``, ``.box.key``, ``.pub``); the newest
revision of a name is the greatest revision among the files in the cache whose name matches
exactly (``acme`` does not pick up ``acme-you-...``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pysup.statedir import atomic_write

REVISION_RE: Final = re.compile(r"\d{14}")
NAME_WITH_REV_RE: Final = re.compile(r"(?P<name>.+)-(?P<rev>\d{14})")
MAX_KEY_FILE_BYTES: Final = 16 * 1024
"""Bytes. The largest key file we read: the biggest honest one (a 64-byte signing key with a
255-character name) is under 400 bytes; the bound stops a misplaced large file being slurped."""
CACHE_DIR_MODE: Final = 0o700
"""A key cache we create is private: it holds secret keys."""


class KeyFileError(Exception):
    """A key file could not be parsed, found, read or written. The message names the file."""


@dataclass(frozen=True, order=True)
class NamedRevision:
    """A key's identity: ``<name>-<revision>`` (``bob-20240301123045``,
    ``redis.default@acme-20240301123045``). Ordered by name, then revision (newest last)."""

    name: str
    revision: str

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not REVISION_RE.fullmatch(self.revision):
            raise KeyFileError(f"invalid key revision {self.revision!r} (want YYYYMMDDhhmmss)")

    def __str__(self) -> str:
        return f"{self.name}-{self.revision}"

    @classmethod
    def parse(cls, text: str) -> NamedRevision:
        """Parse ``<name>-<YYYYMMDDhhmmss>``; KeyFileError says what is wrong."""
        m = NAME_WITH_REV_RE.fullmatch(text)
        if m is None:
            raise KeyFileError(
                f"cannot parse name and revision from {text[:80]!r} (want <name>-<YYYYMMDDhhmmss>)"
            )
        return cls(m.group("name"), m.group("rev"))

    def filename(self, suffix: str) -> str:
        """``<name>-<revision><suffix>`` (not ``with_suffix``: service key names hold dots)."""
        return f"{self}{suffix}"


def check_key_name(name: str) -> str:
    """A key name must be usable as a file name and as one line of a key file."""
    if not name or len(name) > 255 or name in (".", ".."):
        raise KeyFileError(f"invalid key name {name!r}")
    if any(c in name for c in "/\\\x00") or any(c.isspace() for c in name):
        raise KeyFileError(f"invalid key name {name!r} (no slashes, spaces or line breaks)")
    return name


def revision_at(now: datetime) -> str:
    """UTC ``YYYYMMDDhhmmss``; a naive ``now`` is taken to be UTC already."""
    utc = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return utc.strftime("%Y%m%d%H%M%S")


@dataclass(frozen=True)
class KeyText:
    """The parsed parts of a key file. ``material`` is secret for secret keys: never log it."""

    header: str
    named: NamedRevision
    material: bytes


def render_key_text(header: str, named: NamedRevision, material: bytes) -> str:
    """The file content, byte for byte as Habitat writes it (no trailing newline)."""
    return f"{header}\n{named}\n\n{base64.b64encode(material).decode('ascii')}"


def parse_key_text(text: str, source: str, headers: tuple[str, ...], key_bytes: int) -> KeyText:
    """Parse key file content whose header must be one of ``headers`` and whose key must be
    ``key_bytes`` long. Errors start with ``source`` (a path, or e.g. ``HAB_RING_KEY``)."""
    want = " or ".join(repr(h) for h in headers)
    lines = [line.strip() for line in text.removeprefix("\ufeff").splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise KeyFileError(f"{source}: empty key file (want a {want} key file)")
    header = lines[0]
    if header not in headers:
        raise KeyFileError(f"{source}: unsupported key header {header[:40]!r} (want {want})")
    if len(lines) < 2 or not lines[1]:
        raise KeyFileError(f"{source}: missing <name>-<revision> line (line 2)")
    try:
        named = NamedRevision.parse(lines[1])
    except KeyFileError as e:
        raise KeyFileError(f"{source}: {e}") from None
    if len(lines) < 4:
        hint = " (line 3 must be blank; is the blank line missing?)" if len(lines) == 3 else ""
        raise KeyFileError(f"{source}: missing key material (line 4){hint}")
    if lines[2]:
        raise KeyFileError(f"{source}: line 3 must be blank, found text; the key goes on line 4")
    if any(lines[4:]):
        raise KeyFileError(f"{source}: unexpected text after the key on line 4")
    try:
        material = base64.b64decode(lines[3], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{source}: key material on line 4 is not valid base64") from None
    if len(material) != key_bytes:
        raise KeyFileError(f"{source}: key is {len(material)} bytes, want {key_bytes}")
    return KeyText(header, named, material)


def read_key_file(path: Path) -> str:
    """Read one key file's text, bounded; errors name the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file: {e.strerror or e}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: too large for a key file (over {MAX_KEY_FILE_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a text key file (invalid UTF-8)") from None


def ensure_cache_dir(cache_dir: Path) -> Path:
    """Create the key cache (mode 0700) when it does not exist; an existing one is left alone."""
    cache_dir = Path(cache_dir)
    try:
        if not cache_dir.is_dir():
            cache_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(cache_dir, CACHE_DIR_MODE)
    except OSError as e:
        raise KeyFileError(f"cannot create key cache {cache_dir}: {e.strerror or e}") from None
    return cache_dir


def write_key_file(path: Path, text: str, mode: int) -> bool:
    """Write ``text`` to ``path`` atomically with ``mode``. Like Habitat's key cache: the same
    content already there is a no-op (returns False), different content is refused, never
    overwritten. Returns True when the file was written."""
    path = Path(path)
    data = text.encode("utf-8")
    try:
        if path.exists():
            if _normalized(read_key_file(path)) != _normalized(text):
                raise KeyFileError(f"{path}: a different key with this name and revision exists")
            return False
        atomic_write(path, data, mode)
    except OSError as e:
        raise KeyFileError(f"{path}: cannot write key file: {e.strerror or e}") from None
    return True


def _normalized(text: str) -> str:
    """Key text without what a hand edit may add (BOM, CRLF, spaces, trailing newline)."""
    lines = [line.strip() for line in text.removeprefix("\ufeff").splitlines()]
    return "\n".join(lines).strip()


def list_revisions(name: str, suffix: str, cache_dir: Path) -> list[str]:
    """Revisions of key ``name`` with file ``suffix`` in ``cache_dir``, newest first."""
    pattern = re.compile(re.escape(name) + r"-(\d{14})" + re.escape(suffix))
    try:
        entries = list(Path(cache_dir).iterdir())
    except OSError as e:
        raise KeyFileError(f"cannot read key cache {cache_dir}: {e.strerror or e}") from None
    revs = {m.group(1) for p in entries if (m := pattern.fullmatch(p.name)) and p.is_file()}
    return sorted(revs, reverse=True)

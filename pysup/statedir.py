"""The Supervisor's on-disk state directory.

Layout (``<state>`` is e.g. ``/hab/sup/default`` or ``~/.pysup/sup/default``)::

    <state>/                  0711  owner-only listing; others may only traverse (needed by svc/)
    <state>/MEMBER_ID         0600  32 lowercase hex (a UUIDv4), reused across restarts
    <state>/INCARNATION       0600  decimal, our own SWIM incarnation
    <state>/rumors.dat        0600  the rumor store, encoded by the caller
    <state>/CTL_SECRET        0600  control-gateway secret: 64 random bytes, base64
    <state>/specs/            0700  loaded service specs
    <state>/user/<svc>/config/user.toml   operator-written (Habitat: /hab/user/<svc>/config/)
    <state>/svc/              0755  service roots; like /hab/svc, reachable by each svc_user

Why not 0700 everywhere: a service runs as its ``pkg_svc_user`` and must reach its own
``<state>/svc/<name>`` directory, so the root is ``0711`` (traverse without listing) and ``svc/`` is
``0755``. Every secret is a ``0600`` file, and ``specs/`` and ``user/`` are ``0700``.

Every write is atomic (temp file in the same directory, fsync, rename, fsync the directory), so a
crash leaves either the old or the new content, never a torn file; the temp files a kill left
behind are removed at start (``remove_stale_tmp``). Nothing here raises on a corrupt file at load
time: the file (a value out of bounds or a symlink loop included) is moved aside to
``<name>.corrupt-<UTC timestamp>``, a ``state.corrupt`` event is logged, and the caller gets the
"absent" value (a fresh member id, incarnation 0, no rumors). What cannot be fixed here (a full
disk, no permission, the directory itself a broken link) raises OSError; ``describe_error`` turns
it into the one line the daemon exits with.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import random
import re
import stat
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pysup.butterfly.config import MAX_INCARNATION

log = structlog.get_logger(__name__)

FILE_MODE = 0o600
"""Mode of every file the Supervisor writes in its state directory."""
PRIVATE_DIR_MODE = 0o700
"""Mode of directories only the Supervisor reads (specs/, user/)."""
ROOT_DIR_MODE = 0o711
"""Mode of the state directory itself: others may traverse to svc/ but cannot list or read."""
SVC_ROOT_MODE = 0o755
"""Mode of svc/: service users must reach their own service dir (Habitat's /hab/svc is 0755)."""

MEMBER_ID_FILE = "MEMBER_ID"
INCARNATION_FILE = "INCARNATION"
RUMORS_FILE = "rumors.dat"
CTL_SECRET_FILE = "CTL_SECRET"
CTL_SECRET_BYTES = 64

MAX_STORED_INCARNATION = MAX_INCARNATION
"""Largest incarnation accepted from ``INCARNATION``: the ring's bound (2^63 - 1, see
``butterfly/config.py``). A stored 2^64-1 made every start fail (its successor cannot be packed),
and a value above the ring's bound would be refused by every peer; increments saturate at it, so
no honest member writes more. A larger value is treated as corrupt and moved aside."""
_MAX_INCARNATION_DIGITS = len(str(MAX_STORED_INCARNATION))

_MEMBER_ID_RE = re.compile(r"[0-9a-f]{32}")
_STALE_TMP_RE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
"""The names ``atomic_write`` gives its temp files (``tempfile.mkstemp``: 8 random characters)."""
_SERVICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a crash (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace ``path`` with ``data`` atomically, with permissions ``mode``.

    Writes a temp file in the same directory (created with ``mode`` from the start, so a secret is
    never briefly world-readable), fsyncs it, renames it over ``path`` and fsyncs the directory.
    On any failure the temp file is removed and the old content of ``path`` is untouched.
    """
    path = Path(path)
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)


def _utc_now() -> datetime:
    return datetime.now(UTC)


_FIXES = {
    errno.ENOSPC: "free space on its filesystem, or point --state-dir at another one",
    errno.EDQUOT: "raise the disk quota, or point --state-dir at another filesystem",
    errno.EROFS: "the filesystem is read-only: point --state-dir at a writable one",
    errno.EACCES: "let this user write there (chown/chmod), or point --state-dir elsewhere",
    errno.EPERM: "let this user write there (chown/chmod), or point --state-dir elsewhere",
    errno.ELOOP: "remove the symlink loop, or point --state-dir elsewhere",
    errno.ENOTDIR: "a file stands where a directory should be: move it away",
    errno.EEXIST: "a file or broken symlink stands where the directory should be: move it away",
    errno.EMFILE: "raise the open-files limit (ulimit -n)",
    errno.EIO: "the disk reports I/O errors: check it",
}


def describe_error(state_dir: Path, e: OSError) -> str:
    """One line for an operator: what failed in the state dir, and how to fix it."""
    what = e.strerror or str(e)
    where = f" ({e.filename})" if e.filename else ""
    fix = _FIXES.get(e.errno or 0, "fix the state directory, or point --state-dir elsewhere")
    if os.path.islink(state_dir) and not os.path.exists(state_dir):
        what, fix = (
            "it is a symlink that does not resolve (a loop or a dangling link)",
            ("replace the link with a directory, or point --state-dir elsewhere"),
        )
    return f"state dir {state_dir}: {what}{where}; {fix}"


class StateDir:
    """The Supervisor's state directory; see the module docstring for the layout and modes.

    ``clock`` returns the current time and is only used to name quarantined files; tests pass a
    fixed clock.
    """

    def __init__(self, path: Path, clock: Callable[[], datetime] = _utc_now) -> None:
        self.path = Path(path)
        self._clock = clock
        self._ensure_dir(self.path, ROOT_DIR_MODE)

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _ensure_dir(path: Path, mode: int) -> Path:
        """Create ``path`` (and parents) with ``mode``; an existing directory is left as it is."""
        if path.is_dir():
            current = stat.S_IMODE(path.stat().st_mode)
            if current & ~mode & 0o077:
                log.warning(
                    "state.dir_permissive", path=str(path), mode=oct(current), expected=oct(mode)
                )
            return path
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)  # mkdir's mode is filtered by the umask; set it explicitly
        return path

    def _file(self, name: str) -> Path:
        return self.path / name

    def _read(self, name: str) -> bytes | None:
        """Read a state file; None if absent. A directory in its place is quarantined."""
        p = self._file(name)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            self.quarantine(name, reason="is a directory")
            return None
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            self.quarantine(name, reason="a symlink loop")
            return None
        # Other OSErrors (permissions, I/O) propagate: they are not corruption, and replacing e.g.
        # MEMBER_ID because it was momentarily unreadable would silently change our identity.

    def _write(self, name: str, data: bytes) -> None:
        atomic_write(self._file(name), data, FILE_MODE)

    def quarantine(self, name: str, reason: str = "undecodable") -> Path | None:
        """Move ``<state>/<name>`` to ``<name>.corrupt-<UTC timestamp>``; log ``state.corrupt``.

        Returns the new path, or None when the file did not exist or could not be moved (then
        it is logged and left in place). Callers use this for files they cannot decode, e.g.
        ``rumors.dat`` from an incompatible version.
        """
        src = self._file(name)
        if not (src.exists() or src.is_symlink()):
            return None
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        dst = self._file(f"{name}.corrupt-{stamp}")
        n = 1
        while dst.exists():
            dst = self._file(f"{name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(src, dst)
        except OSError as e:
            log.error("state.corrupt", file=str(src), reason=reason, moved_to=None, error=str(e))
            return None
        _fsync_dir(self.path)
        log.warning("state.corrupt", file=str(src), reason=reason, moved_to=str(dst))
        return dst

    def remove_stale_tmp(self) -> list[Path]:
        """Delete the temp files of writes a kill interrupted (``.<name>.XXXXXXXX.tmp``) in the
        directories the supervisor writes: the root, specs/, and each service's own files
        (``svc/<name>``, its config/, hooks/ and files/). Returns what was removed."""
        dirs = [self.path, self.path / "specs"]
        svc = self.path / "svc"
        with contextlib.suppress(OSError):
            for service in sorted(p for p in svc.iterdir() if p.is_dir()):
                dirs.append(service)
                for sub in ("config", "hooks", "files"):
                    dirs.extend(d for d in (service / sub).glob("**") if d.is_dir())
        removed: list[Path] = []
        for d in dirs:
            with contextlib.suppress(OSError):
                for entry in d.iterdir():
                    if _STALE_TMP_RE.fullmatch(entry.name) and entry.is_file():
                        with contextlib.suppress(OSError):
                            entry.unlink()
                            removed.append(entry)
        if removed:
            log.info("state.stale_tmp_removed", files=[str(p) for p in removed])
        return removed

    # -- member id -------------------------------------------------------------------------------

    def load_or_create_member_id(self, rng: random.Random) -> str:
        """Our member id: 32 lowercase hex (a UUIDv4 like Habitat's), stable across restarts.

        ``rng`` draws a new id when there is none (or it was corrupt); in production pass
        ``random.SystemRandom()`` so ids are unique across hosts, in tests a seeded ``Random``.
        """
        raw = self._read(MEMBER_ID_FILE)
        if raw is not None:
            text = raw.decode("ascii", errors="replace").strip()
            if _MEMBER_ID_RE.fullmatch(text):
                return text
            self.quarantine(MEMBER_ID_FILE, reason="not 32 lowercase hex")
        member_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
        self._write(MEMBER_ID_FILE, (member_id + "\n").encode("ascii"))
        log.info("state.member_id_created", member_id=member_id)
        return member_id

    # -- incarnation -----------------------------------------------------------------------------

    def load_incarnation(self) -> int:
        """Our persisted SWIM incarnation; 0 when absent or corrupt (corrupt is quarantined)."""
        raw = self._read(INCARNATION_FILE)
        if raw is None:
            return 0
        text = raw.decode("ascii", errors="replace").strip()
        if not (text.isdigit() and text.isascii()):
            self.quarantine(INCARNATION_FILE, reason="not a non-negative integer")
            return 0
        # Length first: int() of thousands of digits is slow, and refused beyond 4,300.
        if len(text) > _MAX_INCARNATION_DIGITS or int(text) > MAX_STORED_INCARNATION:
            self.quarantine(INCARNATION_FILE, reason=f"beyond {MAX_STORED_INCARNATION}")
            return 0
        return int(text)

    def save_incarnation(self, n: int) -> None:
        """Persist our incarnation (0 <= n <= MAX_STORED_INCARNATION)."""
        if not 0 <= n <= MAX_STORED_INCARNATION:
            raise ValueError(f"incarnation must be within [0, {MAX_STORED_INCARNATION}], got {n}")
        self._write(INCARNATION_FILE, f"{n}\n".encode("ascii"))

    # -- rumors ----------------------------------------------------------------------------------

    def load_rumors(self) -> bytes | None:
        """The saved rumor store bytes, or None. If the caller cannot decode them it calls
        ``quarantine(RUMORS_FILE)`` and starts empty."""
        return self._read(RUMORS_FILE)

    def save_rumors(self, data: bytes) -> None:
        """Persist the encoded rumor store (atomically)."""
        self._write(RUMORS_FILE, data)

    # -- control gateway secret ------------------------------------------------------------------

    def ctl_secret(self) -> str:
        """The control-gateway secret, created at first start like Habitat's ``CTL_SECRET``.

        64 bytes from the OS CSPRNG, base64-encoded, file mode 0600. An existing non-empty file is
        reused as is (an operator may have put their own secret there); an empty or non-text one
        is quarantined and replaced. A readable secret with a looser mode is tightened to 0600.
        """
        raw = self._read(CTL_SECRET_FILE)
        if raw is not None:
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                text = ""
            if text and text.isprintable():
                self._tighten(self._file(CTL_SECRET_FILE))
                return text
            self.quarantine(CTL_SECRET_FILE, reason="empty or not text")
        secret = base64.b64encode(os.urandom(CTL_SECRET_BYTES)).decode("ascii")
        self._write(CTL_SECRET_FILE, secret.encode("ascii"))
        log.info("state.ctl_secret_created", file=str(self._file(CTL_SECRET_FILE)))
        return secret

    @staticmethod
    def _tighten(path: Path) -> None:
        try:
            current = stat.S_IMODE(path.stat().st_mode)
            if current != FILE_MODE:
                os.chmod(path, FILE_MODE)
                log.warning("state.mode_tightened", file=str(path), was=oct(current))
        except OSError as e:
            log.warning("state.mode_tighten_failed", file=str(path), error=str(e))

    # -- directories -----------------------------------------------------------------------------

    @property
    def specs_dir(self) -> Path:
        """``<state>/specs`` (0700), created on first access: loaded service specs."""
        return self._ensure_dir(self.path / "specs", PRIVATE_DIR_MODE)

    @property
    def svc_root(self) -> Path:
        """``<state>/svc`` (0755, like /hab/svc), created on first access: one dir per service."""
        return self._ensure_dir(self.path / "svc", SVC_ROOT_MODE)

    def user_toml_path(self, service_name: str) -> Path:
        """Where an operator puts ``user.toml`` for ``service_name``.

        ``<state>/user/<name>/config/user.toml``: Habitat's ``/hab/user/<name>/config/user.toml``
        shape, rooted in the state dir. Creates ``<state>/user`` (0700) but not the service's
        directories: the file is operator-written and optional.
        """
        if not _SERVICE_NAME_RE.fullmatch(service_name) or service_name in (".", ".."):
            raise ValueError(f"invalid service name {service_name!r}")
        user_root = self._ensure_dir(self.path / "user", PRIVATE_DIR_MODE)
        return user_root / service_name / "config" / "user.toml"

"""Where a plan's dependencies live on this host: what ``{{pkgPathFor "core/curl"}}`` renders.

Under Habitat every ``pkg_deps`` entry is an installed package under ``/hab/pkgs/ORIGIN/NAME/
VERSION/RELEASE`` and ``pkgPathFor`` renders that directory. pysup runs plans on ordinary hosts and
images, where ``core/curl`` is ``/usr/bin/curl``. Each dependency is resolved once, when its plan
is loaded, in this order (the first that answers wins):

1. **an explicit mapping** in the settings: ``pkg_paths`` (``[pkg_paths]`` table in the settings
   file, or ``PYSUP_PKG_PATHS="core/curl=/usr core/jdk=/usr/lib/jvm/java-17"``): ORIGIN/NAME ->
   prefix, whatever version the plan asks for. Exact and never guessed: the way to say where a
   package really is, and the only one for files outside ``bin/`` (``{{pkgPathFor
   "core/nginx"}}/config/mime.types``).
2. **an installed Habitat package** under ``/hab/pkgs`` (a host or image with Habitat packages): the
   newest installed version and release that satisfy the ident, Habitat's own answer.
3. **the system prefix of a tool on PATH** (``pkg_path_fallback``, on by default): a program named
   like the package (``curl`` for ``core/curl``) in a ``bin`` or ``sbin`` directory of the
   supervisor's ``PATH`` gives that directory's parent: ``/usr/bin/curl`` -> ``/usr``, so
   ``{{pkgPathFor "core/curl"}}/bin/curl`` is ``/usr/bin/curl``. A tool in ``/bin`` gives the empty
   prefix (``/bin/bash``, not ``//bin/bash``). It is a guess that is right for the common case (a
   hook calling a package's binary) and is logged (``pkgpath.fallback``) so it can be checked;
   switch it off with ``pkg_path_fallback = false`` (``PYSUP_PKG_PATH_FALLBACK=0``) to get
   Habitat's behaviour exactly.
4. otherwise Habitat's install path ``/hab/pkgs/ORIGIN/NAME[/VERSION[/RELEASE]]``, which does not
   exist here: the hook fails naming it, ``pkgpath.unresolved`` is logged at load with the fix, and
   ``pysup plan check`` lists it.

Why this default: without a fallback nearly every real plan's health check fails on a plain host
(``/hab/pkgs/core/curl/bin/curl: not found``); a mapping alone would make each user rediscover
that curl is in ``/usr``. The fallback only fires for a package whose namesake program exists, and
an explicit mapping always beats it.

As in Habitat, ``pkgPathFor`` only knows the plan's ``pkg_deps``; an ident that is not one of them
renders as "" (``pysup plan check`` reports it). The lookups read the file system, nothing else:
no subprocess, no network, no clock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

HAB_PKGS_ROOT: Final = Path("/hab/pkgs")
"""Where Habitat installs packages (``ORIGIN/NAME/VERSION/RELEASE``)."""

_PART_RE: Final = re.compile(r"^[^/\s]+$")


class PkgPathError(ValueError):
    """A ``pkg_paths`` entry that cannot be used; the message names it."""


@dataclass(frozen=True)
class PkgPaths:
    """How dependencies are resolved (the settings ``pkg_paths`` and ``pkg_path_fallback``)."""

    mapping: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """ORIGIN/NAME -> absolute prefix (step 1 of the module docstring)."""
    fallback: bool = True
    """Resolve from a namesake program on PATH (step 3). On by default: see the module docstring."""
    search_path: tuple[str, ...] = ()
    """The directories searched by the fallback, in order (the supervisor's ``PATH``)."""
    hab_root: Path = HAB_PKGS_ROOT
    """Where installed Habitat packages are looked for (step 2)."""

    @classmethod
    def from_settings(
        cls, mapping: Mapping[str, str], fallback: bool, env_path: str | None
    ) -> PkgPaths:
        path = os.defpath if env_path is None else env_path
        return cls(
            mapping=MappingProxyType(parse_mapping(mapping)),
            fallback=fallback,
            search_path=tuple(d for d in path.split(os.pathsep) if d),
        )


@dataclass(frozen=True)
class Resolution:
    """Where one dependency was found, and how."""

    ident: str
    path: str
    """The prefix ``pkgPathFor`` renders."""
    source: str
    """``mapping``, ``installed``, ``path`` (the PATH fallback) or ``none`` (not found: ``path``
    is Habitat's install path, which does not exist here)."""
    detail: str
    """One sentence saying why, for logs and the plan doctor."""

    @property
    def found(self) -> bool:
        return self.source != "none"


def ident_parts(ident: str) -> list[str] | None:
    """``origin/name[/version[/release]]`` split, or None when it is not such an ident."""
    parts = ident.split("/")
    if not 2 <= len(parts) <= 4 or not all(_PART_RE.match(p) for p in parts):
        return None
    return parts


def parse_mapping(raw: Mapping[str, Any] | str) -> dict[str, str]:
    """Validate ``pkg_paths``: a table, or ``"IDENT=PREFIX IDENT=PREFIX"`` (space or comma
    separated, as ``PYSUP_PKG_PATHS`` holds it). Keys are ORIGIN/NAME, prefixes absolute."""
    if isinstance(raw, str):
        pairs: dict[str, Any] = {}
        for item in raw.replace(",", " ").split():
            ident, sep, prefix = item.partition("=")
            if not sep:
                raise PkgPathError(f"pkg_paths entry {item!r}: expected ORIGIN/NAME=PREFIX")
            pairs[ident] = prefix
        raw = pairs
    out: dict[str, str] = {}
    for ident, prefix in raw.items():
        parts = ident_parts(ident)
        if parts is None or len(parts) != 2:
            raise PkgPathError(f"pkg_paths key {ident!r}: expected ORIGIN/NAME (like core/curl)")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise PkgPathError(f"pkg_paths[{ident!r}] = {prefix!r}: expected an absolute path")
        out[ident] = prefix.rstrip("/") if prefix != "/" else ""
    return out


def resolve(ident: str, paths: PkgPaths) -> Resolution:
    """Resolve one ``pkg_deps`` entry (see the module docstring for the order)."""
    parts = ident_parts(ident)
    if parts is None:
        return Resolution(ident, "", "none", f"{ident!r} is not a package ident")
    origin_name = "/".join(parts[:2])
    mapped = paths.mapping.get(origin_name)
    if mapped is not None:
        return Resolution(ident, mapped, "mapping", f"pkg_paths maps {origin_name} to {mapped}")
    installed = _installed(paths.hab_root, parts)
    if installed is not None:
        return Resolution(ident, str(installed), "installed", f"installed at {installed}")
    if paths.fallback:
        found = _on_path(parts[1], paths.search_path)
        if found is not None:
            prefix = str(found.parent.parent)
            prefix = "" if prefix == "/" else prefix
            return Resolution(ident, prefix, "path", f"{found} is on PATH")
    default = str(paths.hab_root.joinpath(*parts))
    why = f"no pkg_paths entry for {origin_name}, nothing installed under {paths.hab_root}"
    if paths.fallback:
        why += f", no {parts[1]!r} program in a bin/ directory on PATH"
    return Resolution(ident, default, "none", why)


def resolve_all(idents: Iterable[str], paths: PkgPaths) -> dict[str, Resolution]:
    return {ident: resolve(ident, paths) for ident in idents}


def _version_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Order versions like ``1.10.0`` > ``1.9.2`` (numbers numerically, words by text)."""
    return tuple((1, int(p), "") if p.isdigit() else (0, 0, p) for p in re.split(r"[.\-+_]", text))


def _installed(root: Path, parts: Sequence[str]) -> Path | None:
    base = root / parts[0] / parts[1]
    try:
        versions = [d for d in base.iterdir() if d.is_dir()]
    except OSError:
        return None
    if len(parts) > 2:
        versions = [d for d in versions if d.name == parts[2]]
    best: tuple[Any, ...] | None = None
    found: Path | None = None
    for vdir in versions:
        try:
            releases = [d for d in vdir.iterdir() if d.is_dir()]
        except OSError:
            continue
        for rdir in releases:
            if len(parts) > 3 and rdir.name != parts[3]:
                continue
            key = (_version_key(vdir.name), rdir.name)
            if best is None or key > best:
                best, found = key, rdir
    return found


def _on_path(program: str, search_path: Sequence[str]) -> Path | None:
    for directory in search_path:
        d = Path(directory)
        if d.name not in ("bin", "sbin") or not d.is_absolute():
            continue
        candidate = d / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def path_for(want: str, deps: Sequence[Any]) -> str | None:
    """``pkgPathFor``: the path of the first dependency satisfying `want` (``origin/name
    [/version[/release]]``), or "" when none does; None when `want` is not an ident.

    `deps` are the context's ``pkg.deps`` entries (``ident`` or origin/name/version/release, and
    ``path`` when resolved); an entry without ``path`` gets Habitat's install path."""
    wanted = ident_parts(want)
    if wanted is None:
        return None
    for dep in deps:
        if not isinstance(dep, Mapping):
            continue
        parts = _dep_parts(dep)
        if parts[: len(wanted)] == wanted:
            path = dep.get("path")
            return str(path) if isinstance(path, str) else str(HAB_PKGS_ROOT.joinpath(*parts))
    return ""


def _dep_parts(dep: Mapping[str, Any]) -> list[str]:
    ident = dep.get("ident")
    if isinstance(ident, str):
        return [p for p in ident.split("/") if p]
    fields = (dep.get(k) for k in ("origin", "name", "version", "release"))
    return [str(f) for f in fields if f is not None and f != ""]

"""Plan loading: a plan directory -> a frozen ``Plan`` with what the Supervisor needs at run time.

A plan directory holds a plan file, ``default.toml``, ``config/`` (config templates) and ``hooks/``
(hook templates), either at its top or in a ``habitat/`` subdirectory (Habitat's in-repo layout).
The plan file is looked for in this order: ``plan.toml``, ``plan.sh``, ``habitat/plan.toml``,
``habitat/plan.sh``; the first found wins.

``plan.toml`` is pysup's native format (``_TOML_FIELDS`` is the schema). ``plan.sh`` is Habitat's,
read by sourcing it in a clean bash (``plansh.py``). Both see Habitat's run-time variables
(``planfields.svc_variables``): ``pkg_prefix`` = the plan directory (pysup runs plans in place;
``{{pkg.path}}`` is the same), ``pkg_svc_path`` = ``<svc_root>/<pkg_name>`` and the
``pkg_svc_*_path`` below it, ``PLAN_CONTEXT`` = the plan file's directory.

Hook files are named as in Habitat, deprecated underscore spellings included (``hooknames.py``).
Dependencies (``pkg_deps``) are resolved to paths on this host when the plan is loaded
(``pkgpaths.py``); that is what ``{{pkgPathFor ...}}`` renders.

Releases: a plan has no build, hence no release. ``release`` is the UTC ``YYYYMMDDhhmmss`` of the
newest modification time among the plan's files (Habitat's release format): stable while the files
are untouched and newer after an edit. ``plan.toml`` may set ``release`` explicitly.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import structlog

from pysup.service.hooknames import HOOK_NAMES, classify_hook_files
from pysup.service.pkgpaths import PkgPaths, resolve_all
from pysup.service.planfields import PlanError, Validator, svc_variables
from pysup.service.plansh import PLAN_SH_TIMEOUT, sh_fields

__all__ = ["HOOK_NAMES", "PLAN_SH_TIMEOUT", "Plan", "PlanError", "load_plan", "svc_variables"]

log = structlog.get_logger(__name__)

_SKIP_NAMES: Final = frozenset({"__pycache__"})


@dataclass(frozen=True)
class Plan:
    """What a plan declares, as the Supervisor uses it at run time. Mappings are read-only views."""

    path: Path
    """The plan directory (absolute): ``pkg_prefix`` and ``{{pkg.path}}``."""
    origin: str
    name: str
    version: str
    release: str
    """Newest file mtime as ``YYYYMMDDhhmmss`` (UTC), or plan.toml's value (module docstring)."""
    svc_run: str | None = None
    """Command line to run when there is no ``run`` hook (``pkg_svc_run``), variables expanded."""
    svc_user: str = "hab"
    """Recorded as declared; which user really runs the process is the process layer's decision."""
    svc_group: str = "hab"
    exports: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Export key -> dotted cfg path (``port`` -> ``http.port``); these keys are gossiped."""
    exposes: tuple[str, ...] = ()
    """Export keys (or literal port numbers) the service listens on."""
    binds: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    """Bind name -> export keys the bound group must provide (required binds)."""
    binds_optional: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    shutdown_signal: str = "TERM"
    """Signal name without ``SIG`` sent to stop the service."""
    shutdown_timeout: int = 8
    """Seconds between the shutdown signal and KILL."""
    hooks: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))
    """Hook name (``run``, ``health-check``...) -> template file in ``hooks/``."""
    config_dir: Path | None = None
    """The ``config/`` directory of templates, if the plan has one."""
    default_cfg: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """``default.toml`` parsed (treat as read-only; layer with ``cfg.deep_merge``)."""
    deps: tuple[str, ...] = ()
    """``pkg_deps`` idents, for ``pkgPathFor``."""
    dep_paths: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Dependency ident -> where it was found on this host (``pkgpaths.resolve``); deps that were
    not found are absent and render as Habitat's ``/hab/pkgs/...`` path."""
    fingerprint: str = ""
    """sha256 (hex) over the plan directory's files (relative names and contents)."""
    plan_file: Path | None = None
    """The plan.toml or plan.sh this was read from (absolute)."""
    svc_path: Path | None = None
    """``<svc_root>/<name>``: the service's runtime directory."""

    @property
    def ident(self) -> str:
        """``origin/name/version/release``, Habitat's fully qualified package identifier."""
        return f"{self.origin}/{self.name}/{self.version}/{self.release}"

    @property
    def context(self) -> Path:
        """The directory holding the plan file, ``default.toml``, ``config/`` and ``hooks/``."""
        return self.plan_file.parent if self.plan_file is not None else self.path

    def __hash__(self) -> int:
        return hash((self.path, self.ident, self.fingerprint))


def find_plan_file(plan_dir: Path) -> Path:
    """The plan file of `plan_dir` (see the module docstring for the search order)."""
    for rel in ("plan.toml", "plan.sh", "habitat/plan.toml", "habitat/plan.sh"):
        candidate = plan_dir / rel
        if candidate.is_file():
            return candidate
    raise PlanError(plan_dir, "no plan.toml or plan.sh (nor habitat/plan.toml or habitat/plan.sh)")


def load_plan(
    plan_dir: Path,
    svc_root: Path,
    *,
    timeout: float = PLAN_SH_TIMEOUT,
    pkg_paths: PkgPaths | None = None,
) -> Plan:
    """Load the plan in `plan_dir`; its service will live in ``<svc_root>/<name>``. With
    `pkg_paths` its dependencies are resolved on this host (``Plan.dep_paths``).

    Raises ``PlanError`` naming the file (and line, when known) for anything unusable: no plan file,
    bad TOML, a bash syntax error, a plan.sh that exits early or runs longer than `timeout` seconds,
    a missing name, or malformed fields.
    """
    plan_file = find_plan_file(plan_dir)
    root = plan_dir.resolve()
    svc_root = svc_root.absolute()
    if plan_file.suffix == ".toml":
        raw = _read_toml(plan_file)
        fields = _toml_fields(plan_file, raw, root, svc_root)
    else:
        fields = sh_fields(plan_file, root, svc_root, timeout)
    context = plan_file.parent
    default_file = context / "default.toml"
    default_cfg = _read_toml(default_file) if default_file.is_file() else {}
    hooks = _find_hooks(context / "hooks", fields["name"])
    config_dir = context / "config"
    if "run" not in hooks and not fields.get("svc_run"):
        raise PlanError(plan_file, "plan has neither a hooks/run nor svc_run (pkg_svc_run)")
    files = sorted(_plan_files(root))
    release = fields.pop("release", None) or _release_from_mtime(root, files)
    plan = Plan(
        path=root,
        release=release,
        hooks=MappingProxyType(hooks),
        config_dir=config_dir.resolve() if config_dir.is_dir() else None,
        default_cfg=MappingProxyType(default_cfg),
        fingerprint=_fingerprint(root, files),
        plan_file=root / plan_file.relative_to(plan_dir),
        svc_path=svc_root / fields["name"],
        dep_paths=MappingProxyType(_resolve_deps(fields["deps"], pkg_paths, fields["name"])),
        **fields,
    )
    log.debug("plan.loaded", ident=plan.ident, plan_file=str(plan_file), hooks=sorted(hooks))
    return plan


# --- plan.toml ------------------------------------------------------------------------------------

_TOML_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "origin": "string (default 'local')",
        "name": "string, required",
        "version": "string (default '0.0.0')",
        "release": "string (default: newest file mtime, YYYYMMDDhhmmss UTC)",
        "svc_run": "string: command when there is no hooks/run; ${pkg_*} variables expanded",
        "svc_user": "string (default 'hab')",
        "svc_group": "string (default 'hab')",
        "exports": "table: export key -> dotted cfg path",
        "exposes": "array of export keys or port numbers",
        "binds": "table: bind name -> array of required export keys",
        "binds_optional": "table: bind name -> array of export keys",
        "shutdown_signal": "string signal name (default 'TERM')",
        "shutdown_timeout": "integer seconds (default 8)",
        "deps": "array of package idents",
    }
)
"""The plan.toml schema: key -> type and default. Unknown keys are an error (they are typos)."""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(path, f"cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)|\(at end of document\)", message)
        line: int | None = None
        detail = message
        if m:
            line = int(m.group(1)) if m.group(1) else text.count("\n") + 1
            detail = message[: m.start()].strip()
        raise PlanError(path, f"invalid TOML: {detail}", line) from None


def _toml_fields(
    plan_file: Path, raw: Mapping[str, Any], root: Path, svc_root: Path
) -> dict[str, Any]:
    unknown = sorted(set(raw) - set(_TOML_FIELDS))
    if unknown:
        raise PlanError(plan_file, f"unknown key(s) {', '.join(unknown)}")
    v = Validator(plan_file)
    name = v.name("name", raw.get("name"))
    fields: dict[str, Any] = {
        "origin": v.name("origin", raw.get("origin", "local")),
        "name": name,
        "version": v.version(raw.get("version", "0.0.0")),
        "svc_user": v.string("svc_user", raw.get("svc_user", "hab")),
        "svc_group": v.string("svc_group", raw.get("svc_group", "hab")),
        "exports": v.exports(raw.get("exports", {})),
        "exposes": v.str_list("exposes", raw.get("exposes", [])),
        "binds": v.binds("binds", raw.get("binds", {})),
        "binds_optional": v.binds("binds_optional", raw.get("binds_optional", {})),
        "shutdown_signal": v.signal(raw.get("shutdown_signal", "TERM")),
        "shutdown_timeout": v.timeout(raw.get("shutdown_timeout", 8)),
        "deps": v.str_list("deps", raw.get("deps", [])),
    }
    if "release" in raw:
        fields["release"] = v.version(raw["release"], "release")
    svc_run = raw.get("svc_run")
    if svc_run is not None:
        svc_run = v.string("svc_run", svc_run)
        variables = svc_variables(root, svc_root / name, plan_file.parent)
        fields["svc_run"] = re.sub(
            r"\$\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), svc_run
        )
    v.check_exposes(fields["exposes"], fields["exports"])
    return fields


# --- files ----------------------------------------------------------------------------------------


def _find_hooks(hooks_dir: Path, service: str) -> dict[str, Path]:
    """Hook name -> file, logging deprecated and unknown files (``hooknames`` decides)."""
    if not hooks_dir.is_dir():
        return {}
    files = [e.name for e in hooks_dir.iterdir() if e.is_file() and not e.name.startswith(".")]
    hooks, notes = classify_hook_files(files)
    for note in notes:
        path = str(hooks_dir / note.file)
        if note.kind == "unknown":
            log.warning(note.event, service=service, file=path, known=sorted(HOOK_NAMES))
        else:
            log.warning(note.event, service=service, file=path, hook=note.hook, msg=note.message)
    return {name: (hooks_dir / file).resolve() for name, file in hooks.items()}


def _resolve_deps(
    deps: tuple[str, ...], pkg_paths: PkgPaths | None, service: str
) -> dict[str, str]:
    if pkg_paths is None:
        return {}
    found: dict[str, str] = {}
    for ident, res in resolve_all(deps, pkg_paths).items():
        if res.found:
            found[ident] = res.path
        event = {"path": "pkgpath.fallback", "none": "pkgpath.unresolved"}.get(res.source)
        if event is None:
            log.debug("pkgpath.resolved", service=service, ident=ident, path=res.path)
        else:
            fix = f"set pkg_paths: PYSUP_PKG_PATHS='{ident}=/prefix'" if not res.found else None
            log.info(event, service=service, ident=ident, path=res.path, why=res.detail, fix=fix)
    return found


def _plan_files(root: Path) -> Iterator[str]:
    """Relative names of the plan's regular files, skipping dot-files and ``__pycache__``."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _SKIP_NAMES]
        for name in filenames:
            if name.startswith(".") or name.endswith(".pyc"):
                continue
            full = Path(dirpath) / name
            if full.is_file():
                yield full.relative_to(root).as_posix()


def plan_fingerprint(plan_dir: Path) -> str:
    """The fingerprint ``load_plan`` gives the plan in `plan_dir`, without loading it (cheap
    enough to poll: it reads the plan's files, runs nothing)."""
    root = plan_dir.resolve()
    return _fingerprint(root, sorted(_plan_files(root)))


def _fingerprint(root: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for rel in files:
        data = (root / rel).read_bytes()
        name = rel.encode("utf-8", "surrogateescape")
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def _release_from_mtime(root: Path, files: list[str]) -> str:
    newest = max((int((root / rel).stat().st_mtime) for rel in files), default=0)
    return datetime.fromtimestamp(newest, UTC).strftime("%Y%m%d%H%M%S")

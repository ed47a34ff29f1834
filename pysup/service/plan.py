"""Plan loading: a plan directory -> a frozen ``Plan`` with what the Supervisor needs at run time.

A plan directory holds a plan file, ``default.toml``, ``config/`` (config templates) and ``hooks/``
(hook templates), either at its top or in a ``habitat/`` subdirectory (Habitat's in-repo layout).
The plan file is looked for in this order: ``plan.toml``, ``plan.sh``, ``habitat/plan.toml``,
``habitat/plan.sh``; the first found wins.

``plan.toml`` is pysup's native format (``_TOML_FIELDS`` is the schema). ``plan.sh`` is Habitat's:
it is *sourced* by a clean bash (no profile, no inherited environment, ``PATH=/usr/bin:/bin``, cwd
the plan's directory), never built: build callbacks (``do_build``...) are only defined, not called.
Habitat's run-time variables are preset before sourcing, so
``pkg_svc_run="x ${pkg_svc_config_path}/c"`` expands as it does under Habitat:

* ``pkg_prefix`` = the plan directory (pysup runs plans in place; ``{{pkg.path}}`` is the same);
* ``pkg_svc_path`` = ``<svc_root>/<pkg_name>`` and ``pkg_svc_{config,data,files,var,static}_path``
  below it, ``pkg_svc_pid_file`` = ``<svc_path>/PID``; ``PLAN_CONTEXT`` = the plan file's directory.

Since the svc paths need ``pkg_name`` the plan is sourced twice in the same bash run: once in a
subshell to learn the name, then with the variables set. ``pkg_exports``, ``pkg_binds`` and
``pkg_binds_optional`` are declared associative first, as Habitat's build does. The run is bounded
by a timeout and its whole process group is killed afterwards, so a plan that sleeps, exits or
leaves a background job behind cannot hang or leak.

Releases: a plan has no build, hence no release. ``release`` is the UTC ``YYYYMMDDhhmmss`` of the
newest modification time among the plan's files (Habitat's release format): stable while the files
are untouched and newer after an edit. ``plan.toml`` may set ``release`` explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import structlog

log = structlog.get_logger(__name__)

HOOK_NAMES: Final = frozenset(
    {
        "install",
        "init",
        "run",
        "post-run",
        "health-check",
        "reconfigure",
        "suitability",
        "file-updated",
        "post-stop",
    }
)
"""Hook file names (in ``hooks/``) the Supervisor knows; other files there are ignored (warning)."""

PLAN_SH_TIMEOUT: Final = 5.0
"""Seconds a plan.sh may take to be sourced (twice) before it is killed and reported as hung."""

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_VERSION_RE: Final = re.compile(r"^[^/\s]+$")
_KEY_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_CFG_PATH_RE: Final = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_SKIP_NAMES: Final = frozenset({"__pycache__"})


class PlanError(Exception):
    """A plan could not be loaded. ``str()`` is ``"<path>[:<line>]: <detail>"``."""

    def __init__(self, path: Path, detail: str, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.detail = detail
        super().__init__(path, detail, line)  # args that rebuild it (pickle, copy)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.detail}"


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


def load_plan(plan_dir: Path, svc_root: Path, *, timeout: float = PLAN_SH_TIMEOUT) -> Plan:
    """Load the plan in `plan_dir`; its service will live in ``<svc_root>/<name>``.

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
        fields = _sh_fields(plan_file, root, svc_root, timeout)
    context = plan_file.parent
    default_file = context / "default.toml"
    default_cfg = _read_toml(default_file) if default_file.is_file() else {}
    hooks = _find_hooks(context / "hooks")
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
    v = _Validator(plan_file)
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


def svc_variables(root: Path, svc_path: Path, context: Path) -> dict[str, str]:
    """Habitat's run-time variables preset for a plan (and expanded in plan.toml's svc_run)."""
    return {
        "pkg_prefix": str(root),
        "pkg_svc_path": str(svc_path),
        "pkg_svc_config_path": str(svc_path / "config"),
        "pkg_svc_data_path": str(svc_path / "data"),
        "pkg_svc_files_path": str(svc_path / "files"),
        "pkg_svc_var_path": str(svc_path / "var"),
        "pkg_svc_static_path": str(svc_path / "static"),
        "pkg_svc_pid_file": str(svc_path / "PID"),
        "PLAN_CONTEXT": str(context.resolve()),
    }


# --- plan.sh --------------------------------------------------------------------------------------

_SCALARS: Final = (
    "pkg_origin",
    "pkg_name",
    "pkg_version",
    "pkg_svc_run",
    "pkg_svc_user",
    "pkg_svc_group",
    "pkg_shutdown_signal",
    "pkg_shutdown_timeout_sec",
)
_ARRAYS: Final = ("pkg_exposes", "pkg_deps")
_ASSOCS: Final = ("pkg_exports", "pkg_binds", "pkg_binds_optional")

# $1 plan file, $2 svc_root; the preset variables except the svc paths come in the environment.
# Output (fd 3, NUL-separated): "RC" rc, then per variable "U" name | "S" name value |
# "A" name n v... | "M" name n k v ..., then "END". The plan's own stdout goes to stderr, which is
# a file (not a pipe) and fd 3 is closed for the plan: a background job it starts holds no pipe
# open.
# Files written while sourcing (that stderr file included) are capped at 1 MiB by ulimit -f; writes
# past it fail (EFBIG) instead of killing the writer (SIGXFSZ ignored).
_DRIVER: Final = r"""
ulimit -f 1024
trap '' XFSZ
__pysup_plan=$1
__pysup_name=$(
  declare -A pkg_exports pkg_binds pkg_binds_optional
  source "$__pysup_plan" </dev/null >/dev/null 2>&1
  builtin printf '%s' "$pkg_name"
)
pkg_svc_path="$2/$__pysup_name"
pkg_svc_config_path="$pkg_svc_path/config"
pkg_svc_data_path="$pkg_svc_path/data"
pkg_svc_files_path="$pkg_svc_path/files"
pkg_svc_var_path="$pkg_svc_path/var"
pkg_svc_static_path="$pkg_svc_path/static"
pkg_svc_pid_file="$pkg_svc_path/PID"
unset __pysup_name
declare -A pkg_exports pkg_binds pkg_binds_optional
exec 3>&1 1>&2
source "$__pysup_plan" </dev/null 3>&-
__pysup_rc=$?
set +eu
__pysup_emit() {
  local __pysup_decl __pysup_k
  if ! __pysup_decl=$(builtin declare -p "$1" 2>/dev/null); then
    builtin printf 'U\0%s\0' "$1" >&3
    return
  fi
  __pysup_decl=${__pysup_decl#declare -}
  local -n __pysup_ref=$1
  case ${__pysup_decl%% *} in
    *A*)
      builtin printf 'M\0%s\0%s\0' "$1" "${#__pysup_ref[@]}" >&3
      for __pysup_k in "${!__pysup_ref[@]}"; do
        builtin printf '%s\0%s\0' "$__pysup_k" "${__pysup_ref[$__pysup_k]}" >&3
      done ;;
    *a*)
      builtin printf 'A\0%s\0%s\0' "$1" "${#__pysup_ref[@]}" >&3
      builtin printf '%s\0' "${__pysup_ref[@]}" >&3 ;;
    *)
      builtin printf 'S\0%s\0%s\0' "$1" "$__pysup_ref" >&3 ;;
  esac
}
builtin printf 'RC\0%s\0' "$__pysup_rc" >&3
for __pysup_v in __VARS__; do __pysup_emit "$__pysup_v"; done
builtin printf 'END\0' >&3
"""

_STDERR_MAX: Final = 64 * 1024
_BASH_ERR_RE: Final = re.compile(r"^(?P<file>.+?): line (?P<line>\d+): (?P<msg>.*)$")

_Value = str | list[str] | dict[str, str]


def _bash() -> str:
    for d in ("/usr/bin", "/bin"):
        candidate = Path(d) / "bash"
        if candidate.is_file():
            return str(candidate)
    raise PlanError(Path("bash"), "bash not found in /usr/bin or /bin (needed to read plan.sh)")


def _run_plan_sh(plan_file: Path, root: Path, svc_root: Path, timeout: float) -> tuple[bytes, str]:
    """Source `plan_file` in a clean bash; (fd 3 output, stderr text). Bounded by `timeout`."""
    context = plan_file.parent.resolve()
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    env.update(
        (k, v)
        for k, v in svc_variables(root, svc_root / "_", context).items()
        if not k.startswith("pkg_svc_")
    )
    script = _DRIVER.replace("__VARS__", " ".join(_SCALARS + _ARRAYS + _ASSOCS))
    argv = [_bash(), "--noprofile", "--norc", "-c", script, "pysup-plan"]
    argv += [str(context / plan_file.name), str(svc_root)]
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errfile,
            cwd=context,
            env=env,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            try:
                proc.communicate(timeout=1.0)
            except subprocess.TimeoutExpired:  # a child left the group and holds the pipe
                proc.kill()
                proc.wait()
            raise PlanError(
                plan_file, f"sourcing took longer than {timeout:g}s (top-level commands?)"
            ) from None
        finally:
            _kill_group(proc.pid)  # background jobs the plan started must not outlive the read
        errfile.seek(max(0, errfile.seek(0, os.SEEK_END) - _STDERR_MAX))
        err = errfile.read()
    return out, err.decode("utf-8", "replace")


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _parse_driver_output(out: bytes) -> tuple[int | None, dict[str, _Value | None], bool]:
    tokens = [t.decode("utf-8", "replace") for t in out.split(b"\0")]
    values: dict[str, _Value | None] = {}
    rc: int | None = None
    complete = False
    it: Iterator[str] = iter(tokens)
    for kind in it:
        if kind == "RC":
            rc = int(next(it, "1") or "1")
        elif kind == "END":
            complete = True
            break
        elif kind == "U":
            values[next(it)] = None
        elif kind == "S":
            name = next(it)
            values[name] = next(it)
        elif kind == "A":
            name, n = next(it), int(next(it))
            values[name] = [next(it) for _ in range(n)]
        elif kind == "M":
            name, n = next(it), int(next(it))
            values[name] = {next(it): next(it) for _ in range(n)}
        else:
            break
    return rc, values, complete


def _sh_fields(plan_file: Path, root: Path, svc_root: Path, timeout: float) -> dict[str, Any]:
    out, err = _run_plan_sh(plan_file, root, svc_root, timeout)
    rc, values, complete = _parse_driver_output(out)
    syntax = _bash_syntax_error(err, plan_file)
    if syntax is not None:
        raise syntax
    if not complete:
        last = err.strip().splitlines()[-1:] or ["no output"]
        raise PlanError(plan_file, f"plan exited while being sourced ({last[0]})")
    if rc:
        log.warning("plan.sh_status", plan_file=str(plan_file), status=rc, stderr=err[-2000:])
    v = _Validator(plan_file)

    def scalar(var: str, default: str | None) -> str | None:
        value = values.get(var)
        if isinstance(value, dict):
            raise PlanError(plan_file, f"{var} must be a string, not an associative array")
        if isinstance(value, list):  # bash: $var is ${var[0]}
            value = value[0] if value else ""
        return default if value is None or value == "" else value

    def words(var: str) -> list[str]:
        value = values.get(var)
        if isinstance(value, dict):
            raise PlanError(plan_file, f"{var} must be an array, not an associative array")
        if isinstance(value, str):
            return value.split()
        return list(value or [])

    def table(var: str) -> dict[str, str]:
        value = values.get(var)
        if isinstance(value, list) and value:
            raise PlanError(plan_file, f"{var} must be an associative array ([key]=value ...)")
        return dict(value) if isinstance(value, dict) else {}

    fields: dict[str, Any] = {
        "origin": v.name("pkg_origin", scalar("pkg_origin", "local")),
        "name": v.name("pkg_name", scalar("pkg_name", None)),
        "version": v.version(scalar("pkg_version", "0.0.0")),
        "svc_run": scalar("pkg_svc_run", None),
        "svc_user": scalar("pkg_svc_user", "hab"),
        "svc_group": scalar("pkg_svc_group", "hab"),
        "exports": v.exports(table("pkg_exports")),
        "exposes": v.str_list("pkg_exposes", words("pkg_exposes")),
        "binds": v.binds("pkg_binds", {k: s.split() for k, s in table("pkg_binds").items()}),
        "binds_optional": v.binds(
            "pkg_binds_optional", {k: s.split() for k, s in table("pkg_binds_optional").items()}
        ),
        "shutdown_signal": v.signal(scalar("pkg_shutdown_signal", "TERM")),
        "shutdown_timeout": v.timeout(scalar("pkg_shutdown_timeout_sec", "8")),
        "deps": v.str_list("pkg_deps", words("pkg_deps")),
    }
    v.check_exposes(fields["exposes"], fields["exports"])
    return fields


def _bash_syntax_error(stderr: str, plan_file: Path) -> PlanError | None:
    """The first syntax error bash reported, as a PlanError for the file it names."""
    resolved = str(plan_file.parent.resolve() / plan_file.name)
    for text in stderr.splitlines():
        m = _BASH_ERR_RE.match(text)
        if m is None or "syntax error" not in m.group("msg"):
            continue
        path = plan_file if m.group("file") == resolved else Path(m.group("file"))
        return PlanError(path, m.group("msg"), int(m.group("line")))
    return None


# --- validation -----------------------------------------------------------------------------------


class _Validator:
    """Field checks shared by both plan formats; each failure is a PlanError for the plan file."""

    def __init__(self, plan_file: Path) -> None:
        self.plan_file = plan_file

    def fail(self, detail: str) -> PlanError:
        return PlanError(self.plan_file, detail)

    def string(self, key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(f"{key} must be a string, not {type(value).__name__}")
        return value

    def name(self, key: str, value: Any) -> str:
        if value is None or value == "":
            raise self.fail(f"{key} is missing")
        text = self.string(key, value)
        if not _NAME_RE.match(text):
            raise self.fail(f"{key} {text!r} may hold only letters, digits, '_', '-' and '.'")
        return text

    def version(self, value: Any, key: str = "version") -> str:
        text = self.string(key, value)
        if not _VERSION_RE.match(text):
            raise self.fail(f"{key} {text!r} may not be empty or contain '/' or spaces")
        return text

    def str_list(self, key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            raise self.fail(f"{key} must be a list of non-empty strings")
        return tuple(value)

    def exports(self, value: Any) -> Mapping[str, str]:
        if not isinstance(value, dict):
            raise self.fail("exports must be a table of export key -> cfg path")
        for key, path in value.items():
            if not _KEY_RE.match(key):
                raise self.fail(f"export key {key!r} is not a valid name")
            if not isinstance(path, str) or not _CFG_PATH_RE.match(path):
                raise self.fail(f"export {key!r} needs a dotted cfg path, got {path!r}")
        return MappingProxyType(dict(value))

    def binds(self, key: str, value: Any) -> Mapping[str, tuple[str, ...]]:
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be a table of bind name -> list of export keys")
        out: dict[str, tuple[str, ...]] = {}
        for bind, keys in value.items():
            if not _KEY_RE.match(bind):
                raise self.fail(f"{key}: bind name {bind!r} is not a valid name")
            out[bind] = self.str_list(f"{key}.{bind}", keys)
            if not out[bind]:
                raise self.fail(f"{key}.{bind} names no export keys")
        return MappingProxyType(out)

    def signal(self, value: Any) -> str:
        text = self.string("shutdown_signal", value).upper().removeprefix("SIG")
        if f"SIG{text}" not in signal.Signals.__members__:
            raise self.fail(f"shutdown_signal {value!r} is not a signal name")
        return text

    def timeout(self, value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"shutdown timeout must be a whole number of seconds, got {value!r}")
        return value

    def check_exposes(self, exposes: tuple[str, ...], exports: Mapping[str, str]) -> None:
        for item in exposes:
            if item in exports:
                continue
            if item.isdigit() and 0 < int(item) < 65536:
                continue
            raise self.fail(f"exposes {item!r} is neither an export key nor a port number")


# --- files ----------------------------------------------------------------------------------------


def _find_hooks(hooks_dir: Path) -> dict[str, Path]:
    hooks: dict[str, Path] = {}
    if not hooks_dir.is_dir():
        return hooks
    for entry in sorted(hooks_dir.iterdir()):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        if entry.name in HOOK_NAMES:
            hooks[entry.name] = entry.resolve()
        else:
            log.warning("plan.hook_unknown", file=str(entry), known=sorted(HOOK_NAMES))
    return hooks


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

"""Reading a Habitat ``plan.sh``: source it in a clean bash and collect its ``pkg_*`` variables.

The plan is *sourced* by a clean bash (no profile, no inherited environment, ``PATH=/usr/bin:/bin``,
cwd the plan's directory), never built: build callbacks (``do_build``...) are only defined, not
called. Habitat's run-time variables are preset before sourcing, so
``pkg_svc_run="x ${pkg_svc_config_path}/c"`` expands as it does under Habitat (see
``planfields.svc_variables``). Since the svc paths need ``pkg_name`` the plan is sourced twice in
the same bash run: once in a subshell to learn the name, then with the variables set.
``pkg_exports``, ``pkg_binds`` and ``pkg_binds_optional`` are declared associative first, as
Habitat's build does. Arrays may be empty (``pkg_deps=()``), have one element, or be associative.

The run is bounded by a timeout and its whole process group is killed afterwards, so a plan that
sleeps, exits or leaves a background job behind cannot hang or leak. A plan that stops the shell
while being sourced (``exit``, ``set -e`` and a failing command, ``${x:?}``, ``set -u``) is reported
with bash's own error text and the line it stopped at, found by an EXIT trap and a DEBUG trap
that follows the plan's lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import structlog

from pysup.service.planfields import PlanError, Validator, svc_variables

log = structlog.get_logger(__name__)

PLAN_SH_TIMEOUT: Final = 5.0
"""Seconds a plan.sh may take to be sourced (twice) before it is killed and reported as hung."""

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
# An array is printed element by element: printf with an empty argument list would still print
# one empty field and shift every later token. If the plan stops the shell, the EXIT trap writes
# "__pysup_exit__ <status> <line>" to stderr; the line is the last one of the plan the DEBUG trap
# saw (set -T: also inside the plan's functions).
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
__pysup_on_exit() {
  builtin printf '\n__pysup_exit__ %s %s\n' "$1" "${__pysup_at-}" >&2
}
exec 3>&1 1>&2
set -T
trap '__pysup_line=$LINENO
[[ ${BASH_SOURCE-} == "$__pysup_plan" && $BASH_COMMAND != *__pysup_* ]] &&
  __pysup_at=$__pysup_line' DEBUG
trap '__pysup_on_exit "$?"' EXIT
source "$__pysup_plan" </dev/null 3>&-
__pysup_rc=$?
trap - DEBUG EXIT
set +euT
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
      for __pysup_k in "${__pysup_ref[@]}"; do
        builtin printf '%s\0' "$__pysup_k" >&3
      done ;;
    *)
      builtin printf 'S\0%s\0%s\0' "$1" "$__pysup_ref" >&3 ;;
  esac
}
builtin printf 'RC\0%s\0' "$__pysup_rc" >&3
for __pysup_v in __VARS__; do __pysup_emit "$__pysup_v"; done
builtin printf 'END\0' >&3
"""

_STDERR_MAX: Final = 64 * 1024
_EXIT_RE: Final = re.compile(r"^__pysup_exit__ (?P<rc>\d+) (?P<line>\d*)$", re.MULTILINE)
_BASH_ERR_RE: Final = re.compile(r"^(?P<file>.+?): line (?P<line>\d+): (?P<msg>.*)$")

_Value = str | list[str] | dict[str, str]


def _bash() -> str:
    for d in ("/usr/bin", "/bin"):
        candidate = Path(d) / "bash"
        if candidate.is_file():
            return str(candidate)
    raise PlanError(Path("bash"), "bash not found in /usr/bin or /bin (needed to read plan.sh)")


def run_plan_sh(plan_file: Path, root: Path, svc_root: Path, timeout: float) -> tuple[bytes, str]:
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


def sh_fields(plan_file: Path, root: Path, svc_root: Path, timeout: float) -> dict[str, Any]:
    """The ``Plan`` fields `plan_file` declares (``PlanError`` when it cannot be read)."""
    out, err = run_plan_sh(plan_file, root, svc_root, timeout)
    rc, values, complete = _parse_driver_output(out)
    syntax = _bash_error(err, plan_file, lambda msg: "syntax error" in msg)
    if syntax is not None:
        raise syntax
    if not complete:
        raise _stopped_error(err, plan_file)
    if rc:
        log.warning("plan.sh_status", plan_file=str(plan_file), status=rc, stderr=err[-2000:])
    return _fields(plan_file, values)


def _fields(plan_file: Path, values: dict[str, _Value | None]) -> dict[str, Any]:
    v = Validator(plan_file)

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


def _bash_errors(stderr: str, plan_file: Path) -> Iterator[tuple[Path, int, str]]:
    """(file, line, message) of every ``FILE: line N: MESSAGE`` line bash wrote."""
    resolved = str(plan_file.parent.resolve() / plan_file.name)
    for text in stderr.splitlines():
        m = _BASH_ERR_RE.match(text)
        if m is not None:
            path = plan_file if m.group("file") == resolved else Path(m.group("file"))
            yield path, int(m.group("line")), m.group("msg")


def _bash_error(stderr: str, plan_file: Path, wanted: Callable[[str], bool]) -> PlanError | None:
    """The first error bash reported whose message is `wanted`, for the file it names."""
    for path, line, msg in _bash_errors(stderr, plan_file):
        if wanted(msg):
            return PlanError(path, msg, line)
    return None


def _stopped_error(stderr: str, plan_file: Path) -> PlanError:
    """Why sourcing stopped the shell: bash's own message at the line the plan stopped on, or the
    exit status at that line (an ``exit`` says nothing), or bash's last message."""
    errors = list(_bash_errors(stderr, plan_file))
    stops = list(_EXIT_RE.finditer(stderr))
    if stops:
        rc, at = stops[-1].group("rc"), stops[-1].group("line")
        line = int(at) if at else None
        said = [msg for path, n, msg in errors if path == plan_file and n == line]
        if said:
            return PlanError(plan_file, said[-1], line)
        return PlanError(plan_file, f"exited with status {rc} while being sourced", line)
    if errors:
        path, line, msg = errors[-1]
        return PlanError(path, msg, line)
    last = stderr.strip().splitlines()[-1:] or ["no output"]
    return PlanError(plan_file, f"plan exited while being sourced ({last[0]})")

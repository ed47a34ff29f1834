"""``pysup plan check PLAN_DIR...``: the plan doctor, run before deploying a plan.

For each plan it loads the plan (plan.sh through bash, as the Supervisor does), then checks

* hook file names: deprecated underscore names (they run, with a warning), both spellings at
  once, files that are not hooks (``hooknames``);
* every config and hook template: it compiles, and renders with a sample context (``sys``
  defaults, ``cfg`` = default.toml, ``svc`` of one member, one sample member per declared bind
  exporting the keys the bind asks for); a ``cfg.`` value default.toml does not define;
* ``pkgPathFor`` calls: the package is in ``pkg_deps`` and is found on this host (``pkgpaths``);
* the ``#!`` interpreter of every rendered hook exists (``#!/usr/bin/env NAME``: NAME on PATH);
* ``pkg_exports`` name cfg paths default.toml defines; bind export keys are names (space
  separated, not ``"port,host"``); templates use only ``bind.NAME`` the plan declares.

Each problem is printed as ``FILE:LINE: error|warning: WHAT`` and a line saying how to fix it.
Errors stop a plan from working; warnings are worth a look (Habitat would run the plan too). The
exit status is 1 when there is an error (or, with ``--strict``, a warning), else 0.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from pysup.butterfly.member import Member
from pysup.butterfly.rumors import RumorStore
from pysup.census_build import build_census
from pysup.service.cfg import lookup_path
from pysup.service.context import SYS_DEFAULTS, render_context
from pysup.service.handlebars import Template, TemplateError, compile_template
from pysup.service.hooknames import classify_hook_files
from pysup.service.hooks import missing_interpreter, shebang
from pysup.service.pkgpaths import PkgPaths, ident_parts, resolve
from pysup.service.plan import Plan, PlanError, load_plan
from pysup.service.planfields import KEY_RE
from pysup.service.spec import ServiceSpec

SAMPLE_MEMBER_ID: Final = "0" * 32
"""The member id of the sample context (``sys.member_id``, ``svc.me``)."""

_PKG_PATH_FOR_RE: Final = re.compile(r'pkgPathFor\s+"([^"]*)"')
_BIND_RE: Final = re.compile(r"\bbind\.([A-Za-z0-9_-]+)")
_MISSING_RE: Final = re.compile(r"missing value '(cfg\.[^']+)'")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a plan, where it is, and what to do about it."""

    severity: str
    """``error`` (the plan will not work as written) or ``warning``."""
    file: Path
    line: int
    """1-based; 1 for a problem with a whole file (its name, its #! line)."""
    message: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{_shown(self.file)}:{self.line}: {self.severity}: {self.message}\n    fix: {self.fix}"
        )


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (as users type paths)."""
    try:
        return str(path.relative_to(Path.cwd())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def check_plan(plan_dir: Path, pkg_paths: PkgPaths) -> list[Problem]:
    """Every problem found in the plan in `plan_dir` (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pysup-plan-check-") as svc_root:
        try:
            plan = load_plan(plan_dir, Path(svc_root), pkg_paths=pkg_paths)
        except PlanError as e:
            return [Problem("error", e.path, e.line or 1, e.detail, _plan_error_fix(e.detail))]
        problems = list(_hook_name_problems(plan))
        problems += _declaration_problems(plan)
        templates = dict(_template_files(plan))
        problems += _reference_problems(plan, templates, pkg_paths)
        used_binds = {m.group(1) for p in templates.values() for m in _BIND_RE.finditer(_read(p))}
        problems += _render_problems(plan, templates, sample_context(plan, used_binds), pkg_paths)
    return sorted(problems, key=lambda p: (str(p.file), p.line))


def run(plan_dirs: Sequence[Path], pkg_paths: PkgPaths, out: TextIO, strict: bool = False) -> int:
    """Check every plan, print the problems and a summary; the exit status."""
    errors = warnings = 0
    for plan_dir in plan_dirs:
        problems = check_plan(plan_dir, pkg_paths)
        for problem in problems:
            print(problem, file=out)
        e = sum(p.severity == "error" for p in problems)
        errors, warnings = errors + e, warnings + len(problems) - e
        print(f"{plan_dir}: {_count(e, 'error')}, {_count(len(problems) - e, 'warning')}", file=out)
    print(
        f"{_count(len(plan_dirs), 'plan')} checked: "
        f"{_count(errors, 'error')}, {_count(warnings, 'warning')}",
        file=out,
    )
    return 1 if errors or (strict and warnings) else 0


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


_PLAN_ERROR_FIXES: Final = (
    ("syntax error", "fix the shell syntax there (`bash -n plan.sh` shows it too)"),
    ("unbound variable", "give the variable a value, or a default: ${NAME:-default}"),
    (
        "exited with status",
        "plan.sh may only set variables and define functions: remove the "
        "top-level command that exits or fails (build steps belong in do_build)",
    ),
    ("invalid TOML", "fix the TOML syntax there"),
    ("is missing", 'set it (pkg_name=NAME in plan.sh, name = "NAME" in plan.toml)'),
    ("neither a hooks/run", "add a hooks/run (exec your program) or set pkg_svc_run"),
    ("longer than", "plan.sh must not run long commands at the top level"),
)


def _plan_error_fix(detail: str) -> str:
    for needle, fix in _PLAN_ERROR_FIXES:
        if needle in detail:
            return fix
    return "correct the value named above; the plan cannot be loaded until then"


def _hook_name_problems(plan: Plan) -> Iterator[Problem]:
    hooks_dir = plan.context / "hooks"
    if not hooks_dir.is_dir():
        return
    files = [e.name for e in hooks_dir.iterdir() if e.is_file() and not e.name.startswith(".")]
    for note in classify_hook_files(files)[1]:
        if note.kind == "deprecated":
            shown = _shown(hooks_dir)
            fix = f"rename it: git mv {shown}/{note.file} {shown}/{note.hook}"
        elif note.kind == "deprecated_ignored":
            fix = f"remove {note.file}: {note.hook} is the one that runs"
        else:
            fix = "rename it to a hook name, or move it out of hooks/ (it never runs)"
        yield Problem("warning", hooks_dir / note.file, 1, note.message, fix)


def _declaration_problems(plan: Plan) -> Iterator[Problem]:
    plan_file = plan.plan_file or plan.path
    text = _read(plan_file)
    for key, path in plan.exports.items():
        try:
            lookup_path(plan.default_cfg, path)
        except KeyError:
            yield Problem(
                "error",
                plan_file,
                _line_of(text, rf"\[\s*{re.escape(key)}\s*\]|^\s*\"?{re.escape(key)}\"?\s*="),
                f"export {key!r} names cfg path {path!r}, which default.toml does not define",
                f"define {path} in {_shown(plan.context / 'default.toml')}, or export a key it has",
            )
    for kind, binds in (("pkg_binds", plan.binds), ("pkg_binds_optional", plan.binds_optional)):
        for bind, keys in binds.items():
            for key in keys:
                if not KEY_RE.match(key):
                    yield Problem(
                        "error",
                        plan_file,
                        _line_of(text, rf"\[\s*{re.escape(bind)}\s*\]|^\s*{re.escape(bind)}\s*="),
                        f"{kind} {bind!r}: {key!r} is not an export key name",
                        f'list export keys separated by spaces: [{bind}]="port host"',
                    )


def _template_files(plan: Plan) -> Iterator[tuple[str, Path]]:
    """(hook name or config file's relative path, file) of every template of the plan."""
    if plan.config_dir is not None:
        for path in sorted(p for p in plan.config_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(plan.config_dir)
            if not any(part.startswith(".") for part in rel.parts):
                yield f"config/{rel.as_posix()}", path
    for name, path in sorted(plan.hooks.items()):
        yield name, path


def _reference_problems(
    plan: Plan, templates: Mapping[str, Path], pkg_paths: PkgPaths
) -> Iterator[Problem]:
    declared = set(plan.binds) | set(plan.binds_optional)
    for path in templates.values():
        text = _read(path)
        for m in _PKG_PATH_FOR_RE.finditer(text):
            yield from _pkg_path_problem(
                plan, path, _line_at(text, m.start()), m.group(1), pkg_paths
            )
        for m in _BIND_RE.finditer(text):
            if m.group(1) not in declared:
                yield Problem(
                    "warning",
                    path,
                    _line_at(text, m.start()),
                    f"bind.{m.group(1)} is used, but the plan declares no bind {m.group(1)!r}",
                    f'declare it: pkg_binds_optional=( [{m.group(1)}]="port" ) in plan.sh',
                )


def _pkg_path_problem(
    plan: Plan, path: Path, line: int, ident: str, pkg_paths: PkgPaths
) -> Iterator[Problem]:
    wanted = ident_parts(ident)
    dep = next(
        (d for d in plan.deps if wanted and (ident_parts(d) or [])[: len(wanted)] == wanted), None
    )
    if dep is None:
        yield Problem(
            "error",
            path,
            line,
            f'pkgPathFor "{ident}" is not one of pkg_deps ({", ".join(plan.deps) or "none"}): '
            "it renders as empty",
            f"add {ident} to pkg_deps",
        )
        return
    res = resolve(dep, pkg_paths)
    if not res.found:
        name = (wanted or ["", ident])[1]
        yield Problem(
            "error",
            path,
            line,
            f'pkgPathFor "{ident}" renders {res.path}, which is not on this host ({res.detail})',
            f"install {name}, or map it: PYSUP_PKG_PATHS='{'/'.join((wanted or [])[:2])}=/prefix' "
            "(or a [pkg_paths] table in the settings file)",
        )


def _render_problems(
    plan: Plan, templates: Mapping[str, Path], ctx: Mapping[str, Any], pkg_paths: PkgPaths
) -> Iterator[Problem]:
    for name, path in templates.items():
        try:
            template = compile_template(path.read_text(encoding="utf-8"), name=str(path))
        except (OSError, UnicodeDecodeError) as e:
            yield Problem("error", path, 1, f"cannot read: {e}", "make it a readable UTF-8 file")
            continue
        except TemplateError as e:
            yield Problem("error", path, e.line, f"{e.detail} (column {e.column})", _TPL_FIX)
            continue
        try:
            text = template.render(ctx)
        except TemplateError as e:
            yield Problem("error", path, e.line, f"{e.detail} (column {e.column})", _TPL_FIX)
            continue
        yield from _strict_problems(template, ctx, path)
        if not name.startswith("config/"):
            yield from _interpreter_problems(path, text, pkg_paths)
            yield from _line_ending_problems(path)


_TPL_FIX: Final = "correct the template there (Handlebars, as Habitat renders it)"


def _strict_problems(template: Template, ctx: Mapping[str, Any], path: Path) -> Iterator[Problem]:
    try:
        template.render(ctx, strict=True)
    except TemplateError as e:
        m = _MISSING_RE.search(e.detail)
        if m is not None:
            yield Problem(
                "warning",
                path,
                e.line,
                f"{m.group(1)} is not defined in default.toml: it renders as empty",
                f"give {m.group(1).removeprefix('cfg.')} a default in default.toml",
            )


def _interpreter_problems(path: Path, rendered: str, pkg_paths: PkgPaths) -> Iterator[Problem]:
    head = rendered.encode("utf-8", "surrogateescape")[:256]
    parsed = shebang(head)
    if parsed is None:
        return
    interp, arg = parsed
    if interp.endswith("/env") and arg:
        program = arg.split()[0]
        search = ":".join(pkg_paths.search_path) or None
        if shutil.which(program, path=search) is None:
            yield Problem(
                "error",
                path,
                1,
                f"#!{interp} {arg}: {program} is not on PATH",
                f"install {program}, or name the interpreter by its path",
            )
        return
    problem = missing_interpreter(path, head)
    if problem is not None:
        yield Problem(
            "error",
            path,
            1,
            problem.removeprefix(f"{path}: ") + " (after rendering)",
            "install it, fix the #! line, or map the package it comes from with pkg_paths",
        )


def _line_ending_problems(path: Path) -> Iterator[Problem]:
    """Templates are read with universal newlines, so pysup runs a CRLF hook; Habitat keeps the
    ``\r`` and its kernel then looks for the interpreter ``/bin/sh\r``."""
    try:
        first = path.read_bytes().split(b"\n", 1)[0]
    except OSError:
        return
    if first.endswith(b"\r"):
        yield Problem(
            "warning",
            path,
            1,
            "Windows line endings (CRLF): pysup runs it, but under Habitat the #! interpreter "
            "would end in \\r and not be found",
            "convert the file to LF line endings (dos2unix, or your editor's setting)",
        )


def sample_context(plan: Plan, extra_binds: Iterable[str] = ()) -> dict[str, Any]:
    """The context the doctor renders with: one member (this one, also the group's leader),
    default.toml as cfg, and a sample member in every bind the plan declares (exporting the keys
    the bind asks for) and in `extra_binds` (so that a strict render goes past them: an
    undeclared bind is reported on its own)."""
    cfg = dict(plan.default_cfg)
    exported = {}
    for key, cfg_path in plan.exports.items():
        try:
            exported[key] = lookup_path(cfg, cfg_path)
        except KeyError:
            continue
    local = Member(SAMPLE_MEMBER_ID, 0, "127.0.0.1", 9638)
    census = build_census(local, [local], RumorStore())
    spec = ServiceSpec(plan.path)
    sys_info = dict(SYS_DEFAULTS)
    ctx = render_context(
        plan=plan,
        spec=spec,
        sys_info=sys_info,
        member_id=SAMPLE_MEMBER_ID,
        cfg=cfg,
        exported=exported,
        census=census,
        initialized=True,
    )
    svc = ctx["svc"]
    for role in ("leader", "update_leader"):  # as if elected: templates for leaders render too
        svc[role] = svc[role] or svc["me"]
    binds: dict[str, Any] = {}
    wanted = {**dict.fromkeys(extra_binds, ()), **plan.binds_optional, **plan.binds}
    for bind, keys in wanted.items():
        sample = {**svc["me"], "service": bind, "cfg": {k: k for k in keys}}
        binds[bind] = {"first": sample, "leader": sample, "members": [sample]}
    ctx["bind"] = binds
    return ctx


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _line_of(text: str, pattern: str) -> int:
    m = re.search(pattern, text, re.MULTILINE)
    return _line_at(text, m.start()) if m else 1

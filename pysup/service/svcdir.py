"""A service's directory: templates compiled and rendered into it, gossiped files, its owner.

Config templates (``config/`` of the plan, recursively) render to ``<svc>/config/<same path>``
(mode 0644), hook templates to ``<svc>/hooks/<hook>`` (mode 0755). Everything is rendered in
memory first, so a template that fails to render writes nothing, and only files whose content
changed are written (atomically); the ``RenderResult`` says which, which is what the restart vs
reconfigure decision needs. Compile errors are ``ServiceLoadError``s whose message starts with
``<file>:<line>:<column>``.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from pysup.service.errors import ServiceLoadError as ServiceLoadError  # re-exported
from pysup.service.handlebars import Template, TemplateError, compile_template
from pysup.service.plan import Plan
from pysup.statedir import atomic_write

log = structlog.get_logger(__name__)

SVC_SUBDIRS: Final = ("config", "data", "files", "hooks", "logs", "static", "var")
CONFIG_MODE: Final = 0o644
HOOK_MODE: Final = 0o755
FILE_MODE: Final = 0o640


@dataclass(frozen=True)
class Templates:
    """A plan's compiled templates: config file (relative path) and hook name -> template."""

    config: Mapping[str, Template] = field(default_factory=dict)
    hooks: Mapping[str, Template] = field(default_factory=dict)


def compile_templates(plan: Plan) -> Templates:
    """Compile every config and hook template; ``ServiceLoadError`` names file:line:column."""
    config: dict[str, Template] = {}
    if plan.config_dir is not None:
        for path in sorted(p for p in plan.config_dir.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in path.relative_to(plan.config_dir).parts):
                continue
            config[path.relative_to(plan.config_dir).as_posix()] = _compile(path)
    hooks = {name: _compile(path) for name, path in sorted(plan.hooks.items())}
    return Templates(config=config, hooks=hooks)


def _compile(path: Path) -> Template:
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ServiceLoadError(f"{path}: cannot read template: {e}") from None
    try:
        return compile_template(source, name=str(path))
    except TemplateError as e:
        raise ServiceLoadError(f"{e} (template)") from None


def resolve_run_user(plan: Plan) -> tuple[str | None, str | None]:
    """Who runs the service's processes: (user, group), or (None, None) for ourselves.

    Only root can switch users. As root, ``pkg_svc_user`` must exist, except Habitat's default
    ``hab``: when it is missing the service runs as root (``service.user_missing``), so plans
    with the default user work in containers that have no ``hab`` account.
    """
    if os.geteuid() != 0:
        return None, None
    try:
        pwd.getpwnam(plan.svc_user)
    except KeyError:
        if plan.svc_user == "hab":
            log.warning("service.user_missing", service=plan.name, user="hab", running_as="root")
            return None, None
        raise ServiceLoadError(
            f"{plan.plan_file}: pkg_svc_user {plan.svc_user!r} does not exist"
        ) from None
    try:
        grp.getgrnam(plan.svc_group)
    except KeyError:
        return plan.svc_user, None  # the user's primary group
    return plan.svc_user, plan.svc_group


@dataclass
class RenderResult:
    config: list[str] = field(default_factory=list)
    """Config files (relative) whose content changed."""
    hooks: list[str] = field(default_factory=list)
    """Hooks whose content changed."""


def write_if_changed(path: Path, text: str, mode: int) -> bool:
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            if (path.stat().st_mode & 0o7777) != mode:
                path.chmod(mode)
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data, mode)
    return True


def valid_file_name(name: str) -> bool:
    """A gossiped file name: one path component, not ``.``/``..``, no NUL."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def render_templates(
    templates: Templates, context: Mapping[str, Any], svc_path: Path
) -> RenderResult:
    """Render all templates with `context` into `svc_path`; raises ``TemplateError`` (nothing
    written) when one fails."""
    config = {rel: t.render(context) for rel, t in templates.config.items()}
    hooks = {name: t.render(context) for name, t in templates.hooks.items()}
    result = RenderResult()
    for rel, text in config.items():
        if write_if_changed(svc_path / "config" / rel, text, CONFIG_MODE):
            result.config.append(rel)
    for name, text in hooks.items():
        if write_if_changed(svc_path / "hooks" / name, text, HOOK_MODE):
            result.hooks.append(name)
    return result


def write_files(files: Mapping[str, bytes], files_dir: Path) -> list[str]:
    """Write gossiped files into `files_dir`; the names whose content changed. Raises OSError."""
    changed: list[str] = []
    files_dir.mkdir(parents=True, exist_ok=True)
    for name, body in sorted(files.items()):
        if not valid_file_name(name):
            raise ValueError(f"invalid file name {name!r}")
        path = files_dir / name
        if not path.is_file() or path.read_bytes() != body:
            atomic_write(path, body, FILE_MODE)
            changed.append(name)
    return changed

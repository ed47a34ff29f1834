"""What both plan formats share: the error type, field validation and Habitat's preset variables.

``plan.py`` (plan.toml, files, the ``Plan``) and ``plansh.py`` (sourcing plan.sh through bash) both
turn raw values into ``Plan`` fields with ``Validator``; every failure is a ``PlanError`` naming
the plan file (and line, when known).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

NAME_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
"""pkg_origin and pkg_name: Habitat's package name characters."""
VERSION_RE: Final = re.compile(r"^[^/\s]+$")
KEY_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
"""Export keys and bind names."""
CFG_PATH_RE: Final = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
"""A dotted cfg path (``http.port``)."""


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


class Validator:
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
        if not NAME_RE.match(text):
            raise self.fail(f"{key} {text!r} may hold only letters, digits, '_', '-' and '.'")
        return text

    def version(self, value: Any, key: str = "version") -> str:
        text = self.string(key, value)
        if not VERSION_RE.match(text):
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
            if not KEY_RE.match(key):
                raise self.fail(f"export key {key!r} is not a valid name")
            if not isinstance(path, str) or not CFG_PATH_RE.match(path):
                raise self.fail(f"export {key!r} needs a dotted cfg path, got {path!r}")
        return MappingProxyType(dict(value))

    def binds(self, key: str, value: Any) -> Mapping[str, tuple[str, ...]]:
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be a table of bind name -> list of export keys")
        out: dict[str, tuple[str, ...]] = {}
        for bind, keys in value.items():
            if not KEY_RE.match(bind):
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

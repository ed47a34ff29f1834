"""Saved service specs: what ``svc load`` asked for, kept in ``<state>/specs/<name>.spec.toml``.

The service layer owns these files: the control gateway saves and forgets them through the
functions here, and the daemon loads them at start (`load_saved_specs`) so a restarted supervisor
runs the same services with the operator's last desired state. Saving raises ``OSError`` (a full
disk ...); the caller decides what the operator is told.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Final

from pysup.census import ServiceGroup
from pysup.service.spec import DesiredState, ServiceSpec, SpecError
from pysup.statedir import StateDir, atomic_write

SPEC_SUFFIX: Final = ".spec.toml"
"""A saved spec's file name is the service name plus this."""


def spec_path(state: StateDir, name: str) -> Path:
    """Where the spec of service `name` is saved; ValueError when `name` is no service name."""
    ServiceGroup.of(name, "default")  # validates the name: no separators, no leading dot
    return state.specs_dir / f"{name}{SPEC_SUFFIX}"


def save_spec(state: StateDir, name: str, spec: ServiceSpec) -> None:
    """Save (atomically) the spec of `name`; raises OSError when it could not be saved."""
    atomic_write(spec_path(state, name), spec.to_toml().encode("utf-8"))


def forget_spec(state: StateDir, name: str) -> None:
    """Remove the saved spec of `name` (unloaded): a restart no longer loads it."""
    with contextlib.suppress(FileNotFoundError):
        spec_path(state, name).unlink()


def save_desired(state: StateDir, name: str, current: ServiceSpec, desired: DesiredState) -> None:
    """Record `desired` in the saved spec of `name`, if it has one (a service given on the command
    line has none). An unreadable saved spec is replaced by `current` with `desired`.
    Raises OSError when it could not be saved."""
    path = spec_path(state, name)
    if not path.is_file():
        return
    try:
        saved = ServiceSpec.from_toml(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, SpecError):
        saved = current
    save_spec(state, name, _with_desired(saved, desired))


def load_saved_specs(state: StateDir) -> list[ServiceSpec]:
    """Every spec saved by ``svc load``, for the daemon to load at start.

    A spec that cannot be read or is invalid is reported (``state.corrupt``) and moved aside; it
    never stops the supervisor.
    """
    specs: list[ServiceSpec] = []
    specs_dir = state.specs_dir
    for path in sorted(specs_dir.glob(f"*{SPEC_SUFFIX}")):
        rel = f"{specs_dir.name}/{path.name}"
        try:
            text = path.read_text(encoding="utf-8")
            specs.append(ServiceSpec.from_toml(text, source=str(path)))
        except (OSError, UnicodeDecodeError, SpecError) as e:
            state.quarantine(rel, reason=str(e).splitlines()[0] if str(e) else type(e).__name__)
    return specs


def _with_desired(spec: ServiceSpec, desired: DesiredState) -> ServiceSpec:
    raw = spec.to_dict()
    raw["desired_state"] = desired.value
    return ServiceSpec.from_dict(raw)

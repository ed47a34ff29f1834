"""Which files in a plan's ``hooks/`` are hooks, under which name (pure: names in, names out).

Habitat's hook names are ``install``, ``init``, ``run``, ``post-run``, ``health-check``,
``reconfigure``, ``suitability``, ``file-updated`` and ``post-stop``. Before Habitat 0.69 the dashed
ones were spelled with an underscore (``health_check``, ``post_run``, ``post_stop``,
``file_updated``); Habitat still runs those files under the dashed name and says so. We do the
same, with Habitat's words:

* only ``health_check``: it is the health-check hook; "Deprecated hook file detected:
  health_check. You should use health-check instead." (event ``plan.hook_deprecated``);
* both ``health_check`` and ``health-check``: the dashed file wins and the other is ignored;
  "Deprecated hook file detected along with expected one. You should remove health_check and keep
  only health-check." (event ``plan.hook_deprecated_ignored``);
* any other file: not a hook, ignored (event ``plan.hook_unknown``), with the closest hook name
  as a hint when there is one (``healthcheck`` -> ``health-check``).

Hooks render (and log) under their dashed name whatever their file is called, as Habitat's do.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

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
"""Hook names the Supervisor knows (the dashed spelling)."""

DEPRECATED_HOOK_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {name.replace("-", "_"): name for name in sorted(HOOK_NAMES) if "-" in name}
)
"""Underscore file name -> the hook it still is (``health_check`` -> ``health-check``)."""

RETIRED_HOOK_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "reload": "Habitat replaced the reload hook with reconfigure",
        "uninstall": "pysup runs plans in place and never uninstalls a package",
        "pre-uninstall": "pysup runs plans in place and never uninstalls a package",
        "pre_uninstall": "pysup runs plans in place and never uninstalls a package",
    }
)
"""Hook files Habitat knows (or knew) that pysup does not run, and why: a better hint than
"unknown"."""


@dataclass(frozen=True)
class HookNote:
    """Something to tell the plan's author about one file in ``hooks/``."""

    kind: str
    """``deprecated`` (runs, renamed), ``deprecated_ignored`` (shadowed by the dashed file) or
    ``unknown`` (not a hook; ignored)."""
    file: str
    """The file name in ``hooks/``."""
    hook: str | None
    """The hook it is (or would be), when there is one."""
    message: str
    """One sentence for the log and the plan doctor (Habitat's wording where Habitat has one)."""

    @property
    def event(self) -> str:
        """The stable log event name."""
        return f"plan.hook_{self.kind}"


def classify_hook_files(files: Iterable[str]) -> tuple[dict[str, str], list[HookNote]]:
    """(hook name -> file name, notes) for the file names found in a plan's ``hooks/``."""
    present = set(files)
    hooks: dict[str, str] = {}
    notes: list[HookNote] = []
    for file in sorted(present):
        if file in HOOK_NAMES:
            hooks[file] = file
            continue
        hook = DEPRECATED_HOOK_NAMES.get(file)
        if hook is None:
            notes.append(HookNote("unknown", file, None, _unknown_message(file)))
        elif hook in present:
            notes.append(
                HookNote(
                    "deprecated_ignored",
                    file,
                    hook,
                    "Deprecated hook file detected along with expected one. "
                    f"You should remove {file} and keep only {hook}.",
                )
            )
        else:
            hooks[hook] = file
            notes.append(
                HookNote(
                    "deprecated",
                    file,
                    hook,
                    f"Deprecated hook file detected: {file}. You should use {hook} instead.",
                )
            )
    return hooks, notes


def _unknown_message(file: str) -> str:
    retired = RETIRED_HOOK_NAMES.get(file)
    if retired is not None:
        return f"{file} is not run: {retired}."
    known = sorted(HOOK_NAMES | set(DEPRECATED_HOOK_NAMES))
    close = difflib.get_close_matches(file.lower(), known, n=1, cutoff=0.75)
    hint = f" Did you mean {DEPRECATED_HOOK_NAMES.get(close[0], close[0])}?" if close else ""
    return f"{file} is not a hook name and is ignored.{hint}"

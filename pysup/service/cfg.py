"""Service configuration layering (pure): default.toml < HAB_<PKG> < user.toml < gossip.

Habitat merges four layers, later wins, tables merged key by key, any other value replaced whole:

1. the plan's ``default.toml``;
2. the ``HAB_<PKGNAME>`` environment variable (TOML, or JSON when it starts with ``{``);
3. the operator's ``user.toml``;
4. the last config applied to the service group through gossip (``hab config apply``),
   at most 64 KiB.

Only the keys a plan names in ``pkg_exports`` leave the member (in its Service rumor);
``exported_cfg`` picks them out. This module does no I/O: callers read files and environment
variables and pass text.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import structlog

from pysup.gossipcfg import MAX_GOSSIP_CONFIG as MAX_GOSSIP_CONFIG
from pysup.gossipcfg import ConfigError as ConfigError
from pysup.gossipcfg import parse_gossip_config as parse_gossip_config
from pysup.gossipcfg import parse_toml as parse_toml

log = structlog.get_logger(__name__)

_MISSING: Final = object()


def deep_merge(base: Mapping[str, Any], *overlays: Mapping[str, Any]) -> dict[str, Any]:
    """Merge config tables left to right: later wins.

    Where both sides hold a table the tables are merged key by key; any other value (scalar, array,
    or a table replacing a non-table and vice versa) is replaced whole by the later one. The result
    is a fresh structure: no input is mutated and the result shares no mutable object with them.

    Merging is associative for configs that agree on which keys hold tables (the normal case: all
    layers follow default.toml's shape). When one layer turns a table into a scalar it is
    not, just as in Habitat: the order of the layers decides.
    """
    result: dict[str, Any] = _copy_table(base)
    for overlay in overlays:
        _merge_into(result, overlay)
    return result


def _copy_table(table: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: _copy_table(v) if isinstance(v, Mapping) else copy.deepcopy(v) for k, v in table.items()
    }


def _merge_into(target: dict[str, Any], overlay: Mapping[str, Any]) -> None:
    for key, value in overlay.items():
        current = target.get(key)
        if isinstance(value, Mapping):
            if isinstance(current, dict):
                _merge_into(current, value)
            else:
                target[key] = _copy_table(value)
        else:
            target[key] = copy.deepcopy(value)


def env_var_name(pkg_name: str) -> str:
    """The environment variable holding a package's config layer: ``redis`` -> ``HAB_REDIS``."""
    return "HAB_" + pkg_name.upper().replace("-", "_")


def parse_env_config(text: str, source: str = "environment config") -> dict[str, Any]:
    """Parse a ``HAB_<PKG>`` value: JSON when it starts with ``{`` (after whitespace), else TOML.

    Empty text is an empty layer. JSON must be an object and may not contain ``null`` (TOML, which
    every layer must be renderable as, has no null).
    """
    stripped = text.strip()
    if not stripped:
        return {}
    if not stripped.startswith("{"):
        return parse_toml(text, source)
    try:
        value = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source} must be a JSON object, not {type(value).__name__}")
    null_path = _find_null(value, "")
    if null_path is not None:
        raise ConfigError(f"{source} has null at {null_path or '<root>'}: TOML has no null")
    return value


def _find_null(value: Any, path: str) -> str | None:
    if value is None:
        return path
    if isinstance(value, dict):
        for k, v in value.items():
            found = _find_null(v, f"{path}.{k}" if path else str(k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_null(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def layer_config(
    default: Mapping[str, Any],
    env_text: str | None = None,
    user: Mapping[str, Any] | None = None,
    gossip: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The service's effective config: default.toml < HAB_<PKG> < user.toml < gossip.

    `env_text` is the raw value of the ``HAB_<PKG>`` variable (None or empty: no layer); a bad value
    raises ``ConfigError`` rather than being silently dropped.
    """
    env = parse_env_config(env_text) if env_text else {}
    return deep_merge(default, env, user or {}, gossip or {})


_PATH_RE: Final = re.compile(r"^[^.]+(\.[^.]+)*$")


def lookup_path(cfg: Mapping[str, Any], path: str, default: Any = _MISSING) -> Any:
    """The value at dotted `path` (``"http.port"``) in `cfg`.

    A missing key, or a path through a non-table, raises ``KeyError(path)`` unless `default` is
    given. Keys may contain dashes (``tcp-backlog``) but not dots.
    """
    found, value = _lookup(cfg, path)
    if found:
        return value
    if default is _MISSING:
        raise KeyError(path)
    return default


def _lookup(cfg: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    if not _PATH_RE.match(path):
        raise ValueError(f"bad config path {path!r}")
    node: Any = cfg
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def missing_exports(cfg: Mapping[str, Any], exports: Mapping[str, str]) -> tuple[str, ...]:
    """Export keys (sorted) whose cfg path does not exist in `cfg`."""
    return tuple(sorted(k for k, p in exports.items() if not _lookup(cfg, p)[0]))


def exported_cfg(cfg: Mapping[str, Any], exports: Mapping[str, str]) -> dict[str, Any]:
    """Export key -> value at its cfg path (what a member gossips in its Service rumor).

    A path missing from `cfg` is omitted and reported once here (``cfg.export_missing``); callers
    that need the list use ``missing_exports``.
    """
    out: dict[str, Any] = {}
    missing: list[str] = []
    for key, path in exports.items():
        found, value = _lookup(cfg, path)
        if not found:
            missing.append(key)
        else:
            out[key] = _copy_table(value) if isinstance(value, Mapping) else copy.deepcopy(value)
    if missing:
        log.warning(
            "cfg.export_missing",
            keys=sorted(missing),
            paths=[exports[k] for k in sorted(missing)],
        )
    return out

"""Value model shared by the renderer and the helpers: lookup, truthiness, rendering to text.

Context values are JSON-like: mappings, lists/tuples, str, int, float, bool, None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final


class _Missing:
    """A path that does not exist (distinct from a present ``None``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def get(value: Any, key: str) -> Any:
    """``value[key]`` for mappings, ``value[int(key)]`` for lists; MISSING when absent."""
    if type(value) is dict:
        return value.get(key, MISSING)
    if isinstance(value, Mapping):
        return value.get(key, MISSING)
    if isinstance(value, list | tuple):
        if key.isdigit():
            i = int(key)
            return value[i] if i < len(value) else MISSING
        if key == "length":
            return len(value)
    return MISSING


def plain(value: Any) -> Any:
    """MISSING -> None, for helpers that should not see the sentinel."""
    return None if value is MISSING else value


def truthy(value: Any, include_zero: bool = False) -> bool:
    """handlebars-rust truthiness: null, false, 0, "", [] and {} are falsy."""
    if value is None or value is MISSING or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, int | float):
        return include_zero or value != 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return True


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def to_json(value: Any, *, pretty: bool) -> str:
    """JSON text; pretty is 2-space indented like serde_json's to_string_pretty."""
    if pretty:
        return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def to_str(value: Any) -> str:
    """How a value renders in ``{{x}}``: strings verbatim, numbers and bools like JSON,
    null/missing as empty, lists and mappings as (single-line) JSON."""
    if type(value) is str:
        return value
    if value is None or value is MISSING:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping | list | tuple):
        return to_json(value, pretty=False)
    return str(value)

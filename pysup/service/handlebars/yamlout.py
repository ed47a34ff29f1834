"""A small YAML emitter for JSON-like values (block style, 2-space indent), used by ``toYaml``.

Strings are emitted plain only when they cannot be misread as another type; otherwise they are
double-quoted with JSON escapes (a JSON string is a valid YAML double-quoted scalar).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./-]*(?: [A-Za-z0-9_./-]+)*")
_RESERVED = frozenset(
    {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf"},
)


def _string(s: str) -> str:
    if _PLAIN.fullmatch(s) and s.lower() not in _RESERVED:
        return s
    return json.dumps(s, ensure_ascii=False)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return float.__repr__(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list | tuple):
        return "[]"
    return _string(str(value))


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple) and len(value) > 0


def _lines(value: Any, indent: int, out: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = _string(str(k))
            if isinstance(v, Mapping) and v:
                out.append(f"{pad}{key}:")
                _lines(v, indent + 2, out)
            elif _is_block(v):  # a non-empty list: "- item" lines at the key's indent
                out.append(f"{pad}{key}:")
                _lines(v, indent, out)
            else:
                out.append(f"{pad}{key}: {_scalar(v)}")
        return
    for item in value:
        if _is_block(item):
            sub: list[str] = []
            _lines(item, indent + 2, sub)
            out.append(f"{pad}- {sub[0][indent + 2 :]}")
            out.extend(sub[1:])
        else:
            out.append(f"{pad}- {_scalar(item)}")


def dump_yaml(value: Any) -> str:
    """YAML document for ``value``, ending with a newline (no ``---`` header)."""
    if not _is_block(value):
        return _scalar(value) + "\n"
    out: list[str] = []
    _lines(value, 0, out)
    return "\n".join(out) + "\n"

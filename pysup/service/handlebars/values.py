"""Value model shared by the renderer and the helpers, as handlebars-rust (serde_json) sees values.

Context values are JSON-like: mappings, lists/tuples, str, int, float, bool, None. Habitat hands
handlebars-rust a ``serde_json::Value``, so the rules here are serde_json's: a non-finite float
is null, an integer outside i64/u64 is a float, floats print as Rust's shortest round-trip form
(``1.0``, ``1e16``, ``1.5e-7``).
"""

from __future__ import annotations

import json
import math
import re
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

_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_SMALLEST_NORMAL: Final = 2.2250738585072014e-308
_USIZE = re.compile(r"\+?[0-9]+")


class IndexError_(Exception):
    """A list was indexed with something that is not a number (handlebars-rust refuses)."""


def get(value: Any, key: str) -> Any:
    """One path step: ``value[key]`` for mappings, ``value[int(key)]`` for lists (a non-numeric
    key on a list raises IndexError_), MISSING for anything else."""
    if type(value) is dict or isinstance(value, Mapping):
        return value.get(key, MISSING)
    if isinstance(value, list | tuple):
        if not _USIZE.fullmatch(key):
            raise IndexError_(key)
        i = int(key)
        return value[i] if i < len(value) else MISSING
    return MISSING


def plain(value: Any) -> Any:
    """MISSING and non-finite floats -> None (serde_json has no other representation)."""
    if value is MISSING:
        return None
    if type(value) is float and not math.isfinite(value):
        return None
    return value


def truthy(value: Any, include_zero: bool = False) -> bool:
    """handlebars-rust truthiness: null, false, 0, "", [] and {} are falsy; a float is truthy
    only when it is a normal number (``includeZero`` also accepts 0)."""
    if value is None or value is MISSING or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, int):
        return include_zero or value != 0
    if isinstance(value, float):
        if not math.isfinite(value):
            return False
        return include_zero or abs(value) >= _SMALLEST_NORMAL
    if isinstance(value, str | list | tuple | Mapping):
        return len(value) > 0
    return True


def format_float(f: float) -> str:
    """``f`` as serde_json prints it (Rust's ryu layout of the shortest round-trip digits)."""
    if f == 0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    mant, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mant.partition(".")
    s = whole + frac
    lead = len(s) - len(s.lstrip("0"))
    digits = s[lead:].rstrip("0") or "0"
    k = len(whole) - lead + (int(exp) if exp else 0)  # decimal point after k digits
    n = len(digits)
    if k - n >= 0 and k <= 16:
        return f"{sign}{digits}{'0' * (k - n)}.0"
    if 0 < k <= 16:
        return f"{sign}{digits[:k]}.{digits[k:]}"
    if -5 < k <= 0:
        return f"{sign}0.{'0' * -k}{digits}"
    tail = f".{digits[1:]}" if n > 1 else ""
    return f"{sign}{digits[0]}{tail}e{k - 1}"


def format_number(value: int | float) -> str:
    if isinstance(value, int):
        if _INT_MIN <= value <= _INT_MAX:
            return int.__repr__(value)
        return format_float(float(value))
    if not math.isfinite(value):
        return "null"
    return format_float(value)


def render(value: Any) -> str:
    """How ``{{x}}`` prints a value (handlebars-rust's JsonRender): strings verbatim, null as
    empty, numbers and bools like JSON, ``[a, b]`` for a list (items rendered the same way, joined
    by ", "), ``[object]`` for a mapping."""
    if type(value) is str:
        return value
    if value is None or value is MISSING:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        text = format_number(value)
        return "" if text == "null" else text
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, Mapping):
        return "[object]"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return str(value)


to_str = render  # the name the helpers use


def to_json(value: Any, *, pretty: bool, indent: str = "") -> str:
    """serde_json's ``to_string`` (compact) or ``to_string_pretty`` (2-space indent)."""
    value = plain(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return format_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
        if not items:
            return "{}"
        if not pretty:
            pairs = (f"{to_json(k, pretty=False)}:{to_json(v, pretty=False)}" for k, v in items)
            return "{" + ",".join(pairs) + "}"
        inner = indent + "  "
        body = ",\n".join(
            f"{inner}{to_json(k, pretty=False)}: {to_json(v, pretty=True, indent=inner)}"
            for k, v in items
        )
        return "{\n" + body + "\n" + indent + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        if not pretty:
            return "[" + ",".join(to_json(v, pretty=False) for v in value) + "]"
        inner = indent + "  "
        body = ",\n".join(f"{inner}{to_json(v, pretty=True, indent=inner)}" for v in value)
        return "[\n" + body + "\n" + indent + "]"
    return json.dumps(str(value), ensure_ascii=False)


def json_equal(a: Any, b: Any) -> bool:
    """serde_json Value equality: 1 and 1.0 differ, true and 1 differ."""
    a, b = plain(a), plain(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return isinstance(a, float) == isinstance(b, float) and a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and bool(a == b)

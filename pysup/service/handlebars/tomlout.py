"""TOML output as Habitat's ``toToml`` writes it: the Rust ``toml`` crate's serializer (1.1).

Habitat (2.1, toml 1.1.4) serializes the helper's ``serde_json::Value`` with ``toml::to_string``
when it is an object and with ``toml::ser::ValueSerializer`` otherwise. This module follows that
serializer's layout rules for JSON-like values, written from its documented behaviour and source:

- Tables are laid out in the order they are first met (depth first); a table's own key/value
  lines come right after its header, whatever their order relative to its sub-tables in the
  input. Tables are separated by one blank line. A header is printed for a table with lines of
  its own, for an empty table (``[a]``) and for every element of an array of tables
  (``[[a]]``); a table holding only sub-tables gets no header of its own.
- A non-empty list whose elements are all tables is an array of tables; any other list is an
  inline array ``[1, "a", { k = 1 }]`` (mixed lists allowed), on one line.
- Inline tables are ``{ a = 1, b = 2 }`` and ``{}``.
- Strings take the first form that needs no escapes: ``"basic"``, ``'literal'``, then
  multi-line ``\"\"\"`` / ``'''`` for text with newlines, else escaped basic strings. Escapes
  are ``\\b \\t \\n \\f \\r \\" \\\\`` and ``\\uXXXX`` (upper-case hex) for other controls.
- Keys are bare when made of ``A-Za-z0-9_-``, else quoted the same way (never multi-line).
- Floats print as Rust's ``Display`` (all digits, no exponent) plus ``.0`` when integral;
  ``nan``, ``inf``, ``-inf``, ``-0.0``. Integers print in full (u64 too).
- JSON null has no TOML form: the serializer fails with ``unsupported unit type``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
"""Characters only an escape can carry in a string value (tab may stand raw, newline in a
multi-line string; the basic-string writer still escapes both)."""
_KEY_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""The same for keys, which are never multi-line."""

_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}


class TomlError(ValueError):
    """The value has no TOML form; the message is the toml crate's (``unsupported unit type``)."""


def dump_document(table: Mapping[str, Any]) -> str:
    """``toml::to_string`` of a table: the whole document, each line ending with a newline
    (empty for an empty table)."""
    tables: list[_Table] = []
    root = _Table(tables, None, array=False)
    root.fill(table)
    return "\n".join(t.text() for t in tables if t.printed())


def dump_value(value: Any) -> str:
    """``ValueSerializer`` output: one inline TOML value, no newline."""
    if value is None:
        raise TomlError("unsupported unit type")
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        pairs = [f" {_key(str(k))} = {dump_value(v)}" for k, v in value.items()]
        return "{" + ",".join(pairs) + (" }" if pairs else "}")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(dump_value(v) for v in value) + "]"
    return _string(str(value))


class _Table:
    """One ``[header]`` section: its path of encoded keys, its own lines, and whether it has
    sub-tables (a table with sub-tables and no lines of its own gets no header)."""

    __slots__ = ("_tables", "array", "body", "has_children", "path")

    def __init__(self, tables: list[_Table], path: list[str] | None, *, array: bool) -> None:
        self.path = path
        self.array = array
        self.body: list[str] = []
        self.has_children = False
        tables.append(self)  # position is fixed when first met, as the crate's buffer does
        self._tables = tables

    def child(self, key: str, *, array: bool) -> _Table:
        self.has_children = True
        return _Table(self._tables, [*(self.path or []), key], array=array)

    def fill(self, mapping: Mapping[str, Any]) -> None:
        for k, v in mapping.items():
            key = _key(str(k))
            if isinstance(v, Mapping):
                self.child(key, array=False).fill(v)
            elif _is_array_of_tables(v):
                self.has_children = True
                for element in v:
                    self.child(key, array=True).fill(element)
            else:
                self.body.append(f"{key} = {dump_value(v)}\n")

    def printed(self) -> bool:
        if self.path is None:
            return bool(self.body)
        return self.array or bool(self.body) or not self.has_children

    def text(self) -> str:
        if self.path is None:
            return "".join(self.body)
        name = ".".join(self.path)
        header = f"[[{name}]]\n" if self.array else f"[{name}]\n"
        return header + "".join(self.body)


def _is_array_of_tables(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )


def _float(f: float) -> str:
    if math.isnan(f):
        return "nan"  # the serializer drops NaN's sign
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == 0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    text = format(_shortest_digits(f), "f")  # Rust's Display: positional, never an exponent
    return text if "." in text else text + ".0"


def _shortest_digits(f: float) -> Decimal:
    """The shortest decimal that reads back as ``f``, as Rust's formatter picks it.

    ``repr`` finds the same shortest digits, but when ``f`` lies exactly halfway between two
    candidates it takes the even one, while Rust (Grisu with Dragon4 as fallback) rounds the
    last digit up (away from zero)."""
    shortest = Decimal(repr(f))
    exact = Fraction(f)
    gap = exact - Fraction(shortest)
    exponent = shortest.as_tuple().exponent
    assert isinstance(exponent, int)
    step = Fraction(10) ** exponent
    if gap == 0 or abs(gap) * 2 != step:
        return shortest
    other = shortest + Decimal(1 if gap > 0 else -1).scaleb(exponent)
    if abs(other) > abs(shortest) and float(other) == f:
        return other
    return shortest


def _string(s: str) -> str:
    newline = "\n" in s
    controls = _VALUE_CONTROL.search(s) is not None
    backslash = "\\" in s
    squotes, dquotes = _longest_run(s, "'"), _longest_run(s, '"')
    if not (controls or backslash or dquotes or newline):
        return '"' + _escaped(s, multiline=False) + '"'
    if not (controls or squotes or newline):
        return "'" + s + "'"
    lead = "\n" if newline else ""
    if not (controls or backslash or dquotes > 2):
        return '"""' + lead + _escaped(s, multiline=True) + '"""'
    if not (controls or squotes > 2):
        return "'''" + lead + s + "'''"
    if newline:
        return '"""' + lead + _escaped(s, multiline=True) + '"""'
    return '"' + _escaped(s, multiline=False) + '"'


def _key(k: str) -> str:
    if _BARE_KEY.fullmatch(k):
        return k
    controls = _KEY_CONTROL.search(k) is not None
    if not (controls or "\\" in k or '"' in k):
        return '"' + _escaped(k, multiline=False) + '"'
    if not (controls or "'" in k):
        return "'" + k + "'"
    return '"' + _escaped(k, multiline=False) + '"'


def _longest_run(s: str, ch: str) -> int:
    if ch not in s:
        return 0
    return max(len(m) for m in re.findall(f"{re.escape(ch)}+", s))


def _escaped(s: str, *, multiline: bool) -> str:
    """A basic string's body: in a multi-line string newlines stay and only every third
    ``"`` in a row is escaped; in a one-line string every ``"`` is."""
    out: list[str] = []
    run = 0
    for ch in s:
        if ch == '"':
            run += 1
            if not multiline or run > 2:
                out.append('\\"')
                run = 0
            else:
                out.append(ch)
            continue
        run = 0
        if ch == "\n" and multiline:
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)

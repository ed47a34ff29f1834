"""YAML output as Habitat's ``toYaml`` writes it: ``serde_yaml`` 0.9 over libyaml's emitter.

Habitat calls ``serde_yaml::to_string`` on the helper's ``serde_json::Value``. serde_yaml picks a
style for each string and hands events to libyaml's emitter (unsafe-libyaml 0.2.11: indent 2,
unlimited width, unicode on), which decides the final form. This module follows both, written
from their documented behaviour and source, for JSON-like values:

- Block mappings and sequences; a sequence under a mapping key is not indented (``key:\\n- a``);
  empty ones are ``{}`` and ``[]``. No ``---`` header; the document ends with a newline.
- A key longer than 128 bytes, or spanning lines, is written as ``? key`` / ``: value``.
- Strings with a newline are literal blocks (``|``, ``|-``, ``|+``, ``|2`` when the text starts
  with a space or a line break). Strings that would read back as another type (``null``, ``~``,
  ``''``, ``true``/``True``/``TRUE``, integers in Rust's syntax incl. ``0x``/``0o``/``0b``,
  floats incl. ``.inf``/``.nan``, digits with a leading zero) are single-quoted. Others are
  plain when libyaml allows it (YAML 1.1 words such as ``yes`` and ``on`` stay plain, as
  serde_yaml follows YAML 1.2), else single-quoted, else double-quoted with escapes.
- Numbers print as serde_json prints them (ryu: ``1e16``, ``1.5e-7``); null is ``null``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .values import format_float

BEST_INDENT = 2
"""libyaml's default indentation, which serde_yaml keeps."""
MAX_SIMPLE_KEY = 128
"""libyaml writes a key of more UTF-8 bytes than this in the explicit ``? key`` form."""

PLAIN, SINGLE, DOUBLE, LITERAL, ANY = "plain", "single", "double", "literal", "any"

_BREAKS = frozenset("\r\n\x85\u2028\u2029")
_FIRST_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")
_FLOW_INDICATORS = frozenset(",?[]{}")
_DOUBLE_ESCAPES = {
    "\x00": "0", "\x07": "a", "\x08": "b", "\t": "t", "\n": "n", "\x0b": "v", "\x0c": "f",
    "\r": "r", "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N", "\xa0": "_", "\u2028": "L",
    "\u2029": "P",
}  # fmt: skip
_RUST_FLOAT = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def dump_yaml(value: Any) -> str:
    """``serde_yaml::to_string(value)``: one document, no header, ending with a newline."""
    emitter = _Emitter()
    emitter.node(value, mapping=False, simple_key=False)
    emitter.write_indent()  # the document end; serde_yaml never sends the stream end, so the
    # "..." libyaml writes there after a "|+" block never appears
    return "".join(emitter.out)


# ---- serde_yaml: which scalar style to ask for -------------------------------------------------


def _scalar(value: Any) -> tuple[str, str]:
    """(text, requested style) for a non-collection value."""
    if value is None:
        return "null", PLAIN
    if value is True or value is False:
        return ("true" if value else "false"), PLAIN
    if isinstance(value, int):
        return int.__repr__(value), PLAIN
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan", PLAIN
        if math.isinf(value):
            return (".inf" if value > 0 else "-.inf"), PLAIN
        return format_float(value), PLAIN
    text = value if isinstance(value, str) else str(value)
    if "\n" in text:
        return text, LITERAL
    return text, SINGLE if _reads_as_non_string(text) else ANY


def _reads_as_non_string(s: str) -> bool:
    """Whether serde_yaml would read ``s``, written plain, as null, a bool or a number."""
    if s in ("", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE"):
        return True
    if _digits_but_not_number(s):
        return True
    return _unsigned_int(s) or _negative_int(s) or _float(s)


def _digits_but_not_number(s: str) -> bool:
    t = s[1:] if s[:1] in ("-", "+") else s
    return len(t) > 1 and t[0] == "0" and all(c in _DIGITS[10] for c in t[1:])


def _rust_int(text: str, radix: int, signed: bool) -> bool:
    """Rust's ``i128``/``u128::from_str_radix``: one optional sign, digits, in range."""
    body = text[1:] if text[:1] == "+" or (signed and text[:1] == "-") else text
    if not body or any(c not in _DIGITS[radix] for c in body):
        return False
    n = int(body, radix) * (-1 if text[:1] == "-" else 1)
    return -(2**127) <= n < 2**127 if signed else n < 2**128


def _unsigned_int(s: str) -> bool:
    unpositive = s[1:] if s[:1] == "+" else s
    for prefix, radix in (("0x", 16), ("0o", 8), ("0b", 2)):
        if unpositive.startswith(prefix):
            rest = unpositive[2:]
            if rest[:1] in ("+", "-"):
                return False
            if _rust_int(rest, radix, signed=False):
                return True
    return unpositive[:1] not in ("+", "-") and _rust_int(unpositive, 10, signed=False)


def _negative_int(s: str) -> bool:
    for prefix, radix in (("-0x", 16), ("-0o", 8), ("-0b", 2)):
        if s.startswith(prefix) and _rust_int("-" + s[3:], radix, signed=True):
            return True
    return _rust_int(s, 10, signed=True)


def _float(s: str) -> bool:
    unpositive = s[1:] if s[:1] == "+" else s
    if s[:1] == "+" and unpositive[:1] in ("+", "-"):
        return False
    if unpositive in (".inf", ".Inf", ".INF") or s in ("-.inf", "-.Inf", "-.INF"):
        return True
    if s in (".nan", ".NaN", ".NAN"):
        return True
    # Rust's f64 parser also reads inf/infinity/nan, but those are not finite: not numbers here
    return _RUST_FLOAT.fullmatch(unpositive) is not None and math.isfinite(float(unpositive))


# ---- libyaml: what a scalar allows, and the emitter -------------------------------------------


def _printable(ch: str) -> bool:
    o = ord(ch)
    return (
        o == 0x0A
        or 0x20 <= o <= 0x7E
        or 0xA0 <= o <= 0xD7FF
        or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)
        or o >= 0x10000
    )


def _blank_or_end(s: str, i: int) -> bool:
    return i >= len(s) or s[i] in " \t\x00" or s[i] in _BREAKS


@dataclass(frozen=True, slots=True)
class _Analysis:
    multiline: bool
    flow_plain: bool
    block_plain: bool
    single_quoted: bool
    block: bool


def _analyze(s: str) -> _Analysis:
    """libyaml's yaml_emitter_analyze_scalar: which styles can carry ``s`` unchanged."""
    if not s:
        return _Analysis(False, False, True, True, False)
    flow_ind = block_ind = s.startswith(("---", "..."))
    breaks = special = lead_space = lead_break = trail_space = trail_break = False
    break_space = space_break = prev_space = prev_break = False
    preceded_ws, last = True, len(s) - 1
    for i, ch in enumerate(s):
        followed_ws = _blank_or_end(s, i + 1)
        if i == 0:
            if ch in _FIRST_INDICATORS:
                flow_ind = block_ind = True
            if ch in "?:":
                flow_ind = True
                block_ind = block_ind or followed_ws
            if ch == "-" and followed_ws:
                flow_ind = block_ind = True
        else:
            if ch in _FLOW_INDICATORS:
                flow_ind = True
            if ch == ":":
                flow_ind = True
                block_ind = block_ind or followed_ws
            if ch == "#" and preceded_ws:
                flow_ind = block_ind = True
        special = special or not _printable(ch)
        if ch == " ":
            lead_space, trail_space = lead_space or i == 0, trail_space or i == last
            break_space = break_space or prev_break
            prev_space, prev_break = True, False
        elif ch in _BREAKS:
            breaks = True
            lead_break, trail_break = lead_break or i == 0, trail_break or i == last
            space_break = space_break or prev_space
            prev_space, prev_break = False, True
        else:
            prev_space = prev_break = False
        preceded_ws = _blank_or_end(s, i)
    plain = not (lead_space or lead_break or trail_space or trail_break or breaks)
    plain = plain and not (break_space or space_break or special)
    return _Analysis(
        multiline=breaks,
        flow_plain=plain and not flow_ind,
        block_plain=plain and not block_ind,
        single_quoted=not (break_space or space_break or special),
        block=not (trail_space or space_break or special),
    )


class _Emitter:
    """The part of libyaml's emitter that serde_yaml's events for JSON values reach: block
    collections, empty flow collections, and the four scalar writers."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.column = 0
        self.whitespace = True
        self.indention = True
        self.indent = -1
        self.indents: list[int] = []
        self.flow_level = 0

    # -- low-level writes (column counts characters, as libyaml's does)
    def put(self, text: str) -> None:
        self.out.append(text)
        self.column += len(text)

    def put_break(self) -> None:
        self.out.append("\n")
        self.column = 0

    def write_break(self, ch: str) -> None:
        if ch == "\n":
            self.put_break()
        else:
            self.out.append(ch)
            self.column = 0

    def write_indent(self) -> None:
        indent = max(self.indent, 0)
        if (
            not self.indention
            or self.column > indent
            or (self.column == indent and not self.whitespace)
        ):
            self.put_break()
        if self.column < indent:
            self.put(" " * (indent - self.column))
        self.whitespace = self.indention = True

    def indicator(self, text: str, need_ws: bool, is_ws: bool, is_indention: bool) -> None:
        if need_ws and not self.whitespace:
            self.put(" ")
        self.put(text)
        self.whitespace = is_ws
        self.indention = self.indention and is_indention

    def increase_indent(self, flow: bool, indentless: bool) -> None:
        self.indents.append(self.indent)
        if self.indent < 0:
            self.indent = BEST_INDENT if flow else 0
        elif not indentless:
            self.indent += BEST_INDENT

    # -- nodes
    def node(self, value: Any, *, mapping: bool, simple_key: bool) -> None:
        if isinstance(value, Mapping):
            items = [(str(k), v) for k, v in value.items()]
            if items and not self.flow_level:
                self.block_mapping(items)
            else:
                self.flow_mapping(items)
        elif isinstance(value, list | tuple):
            if value and not self.flow_level:
                self.block_sequence(value, indentless=mapping and not self.indention)
            else:
                self.flow_sequence(value)
        else:
            text, style = _scalar(value)
            self.scalar(text, style, simple_key)

    def block_sequence(self, items: Any, *, indentless: bool) -> None:
        self.increase_indent(False, indentless)
        for item in items:
            self.write_indent()
            self.indicator("-", True, False, True)
            self.node(item, mapping=False, simple_key=False)
        self.indent = self.indents.pop()

    def block_mapping(self, items: list[tuple[str, Any]]) -> None:
        self.increase_indent(False, False)
        for key, value in items:
            self.write_indent()
            if _simple_key(key):
                self.node(key, mapping=True, simple_key=True)
                self.indicator(":", False, False, False)
            else:
                self.indicator("?", True, False, True)
                self.node(key, mapping=True, simple_key=False)
                self.write_indent()
                self.indicator(":", True, False, True)
            self.node(value, mapping=True, simple_key=False)
        self.indent = self.indents.pop()

    def flow_sequence(self, items: Any) -> None:
        self.indicator("[", True, True, False)
        self.increase_indent(True, False)
        self.flow_level += 1
        for i, item in enumerate(items):
            if i:
                self.indicator(",", False, False, False)
            self.node(item, mapping=False, simple_key=False)
        self.flow_level -= 1
        self.indent = self.indents.pop()
        self.indicator("]", False, False, False)

    def flow_mapping(self, items: list[tuple[str, Any]]) -> None:
        self.indicator("{", True, True, False)
        self.increase_indent(True, False)
        self.flow_level += 1
        for i, (key, value) in enumerate(items):
            if i:
                self.indicator(",", False, False, False)
            simple = _simple_key(key)
            if not simple:
                self.indicator("?", True, False, False)
            self.node(key, mapping=True, simple_key=simple)
            self.indicator(":", not simple, False, False)
            self.node(value, mapping=True, simple_key=False)
        self.flow_level -= 1
        self.indent = self.indents.pop()
        self.indicator("}", False, False, False)

    def scalar(self, text: str, requested: str, simple_key: bool) -> None:
        style = self.select_style(text, requested, simple_key)
        self.increase_indent(True, False)
        if style == PLAIN:
            self.plain(text)
        elif style == SINGLE:
            self.single_quoted(text)
        elif style == DOUBLE:
            self.double_quoted(text)
        else:
            self.literal(text)
        self.indent = self.indents.pop()

    def select_style(self, text: str, style: str, simple_key: bool) -> str:
        a = _analyze(text)
        if style == ANY:
            style = PLAIN
        if simple_key and a.multiline:
            style = DOUBLE
        if style == PLAIN and (
            not (a.flow_plain if self.flow_level else a.block_plain)
            or (not text and (self.flow_level or simple_key))
        ):
            style = SINGLE
        if style == SINGLE and not a.single_quoted:
            style = DOUBLE
        if style == LITERAL and (not a.block or self.flow_level or simple_key):
            style = DOUBLE
        return style

    # -- scalar writers
    def plain(self, text: str) -> None:
        if not self.whitespace and (text or self.flow_level):
            self.put(" ")
        self.quoted_body(text, quote=None)
        self.whitespace = self.indention = False

    def single_quoted(self, text: str) -> None:
        self.indicator("'", True, False, False)
        if self.quoted_body(text, quote="'"):
            self.write_indent()
        self.indicator("'", False, False, False)
        self.whitespace = self.indention = False

    def quoted_body(self, text: str, quote: str | None) -> bool:
        """Plain and single-quoted text: a line break is doubled (folding reads one back) and
        the next line indented; ``'`` doubles inside single quotes. True if it ends in a break."""
        breaks = False
        for ch in text:
            if ch == " ":
                self.put(ch)
            elif ch in _BREAKS:
                if not breaks and ch == "\n":
                    self.put_break()
                self.write_break(ch)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(ch + ch if ch == quote else ch)
                self.indention = breaks = False
        return breaks

    def double_quoted(self, text: str) -> None:
        self.indicator('"', True, False, False)
        for ch in text:
            if not _printable(ch) or ch in _BREAKS or ch in '"\\':
                self.put("\\" + _double_escape(ch))
            else:
                self.put(ch)
        self.indicator('"', False, False, False)
        self.whitespace = self.indention = False

    def literal(self, text: str) -> None:
        self.indicator("|", True, False, False)
        if text[0] == " " or text[0] in _BREAKS:
            self.indicator(str(BEST_INDENT), False, False, False)
        if text[-1] not in _BREAKS:
            self.indicator("-", False, False, False)
        elif len(text) == 1 or text[-2] in _BREAKS:
            self.indicator("+", False, False, False)
        self.put_break()
        self.indention = self.whitespace = True
        breaks = True
        for ch in text:
            if ch in _BREAKS:
                self.write_break(ch)
                self.indention = breaks = True
            else:
                if breaks:
                    self.write_indent()
                self.put(ch)
                self.indention = breaks = False


def _simple_key(key: str) -> bool:
    return not _analyze(key).multiline and len(key.encode()) <= MAX_SIMPLE_KEY


def _double_escape(ch: str) -> str:
    if ch in _DOUBLE_ESCAPES:
        return _DOUBLE_ESCAPES[ch]
    o = ord(ch)
    if o <= 0xFF:
        return f"x{o:02X}"
    if o <= 0xFFFF:
        return f"u{o:04X}"
    return f"U{o:08X}"

"""Template lexer: splits source into text and tag tokens, then applies whitespace control.

Whitespace control follows Handlebars:

* ``~`` next to a tag delimiter strips *all* whitespace (newlines included) on that side.
* The standalone-line rule: a block open/close, ``else`` or comment tag that is alone on its line
  (only spaces/tabs before it since the previous newline or start of template, only whitespace up to
  the next newline or end of template after it) removes that line's indentation and its newline.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field

from .errors import SourceMap


class TagKind(enum.Enum):
    MUSTACHE = "mustache"  # {{x}}, {{{x}}}, {{&x}} -- all unescaped in Habitat
    OPEN = "open"  # {{#x}}
    INVERSE_OPEN = "inverse_open"  # {{^x}}
    CLOSE = "close"  # {{/x}}
    ELSE = "else"  # {{else}}, {{^}}, {{else if y}}
    COMMENT = "comment"  # {{! x}}, {{!-- x --}}


_STANDALONE = frozenset({TagKind.OPEN, TagKind.INVERSE_OPEN, TagKind.CLOSE, TagKind.ELSE})


@dataclass(slots=True)
class Tok:
    """A token inside a tag: kind is one of the ``_EXPR_TOKENS`` names."""

    kind: str
    value: str
    offset: int
    end: int  # offset just past the token's source text


@dataclass(slots=True)
class Text:
    original: str
    offset: int
    lstrip_all: bool = False
    lstrip_line: bool = False
    rstrip_all: bool = False
    rstrip_line: bool = False
    verbatim: bool = False  # raw-block content: never stripped, never merged

    def value(self) -> str:
        v = self.original
        if self.verbatim:
            return v
        if self.lstrip_all:
            v = v.lstrip()
        elif self.lstrip_line:
            v = _LEADING_LINE.sub("", v, count=1)
        if self.rstrip_all:
            v = v.rstrip()
        elif self.rstrip_line:
            v = _TRAILING_INDENT.sub("", v, count=1)
        return v


@dataclass(slots=True)
class Tag:
    kind: TagKind
    offset: int  # of the opening "{{"
    strip_left: bool
    strip_right: bool
    toks: list[Tok] = field(default_factory=list)
    close_offset: int = 0  # of the closing "}}"


Token = Text | Tag

_LEADING_LINE = re.compile(r"^[ \t]*\r?\n?")
_TRAILING_INDENT = re.compile(r"[ \t]+$")
_NEXT_WS = re.compile(r"^[ \t\f\v]*\r?\n")
_NEXT_WS_LAST = re.compile(r"^[ \t\f\v]*(?:\r?\n|$)")

_LOOK = r"(?=[=~}\s/.)|]|$)"
_LIT_LOOK = r"(?=[~}\s)]|$)"
_EXPR_TOKENS = re.compile(
    r"(?P<WS>\s+)"
    r'|(?P<STRING>"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\')'
    rf"|(?P<NUMBER>-?[0-9]+(?:\.[0-9]+)?){_LIT_LOOK}"
    rf"|(?P<BOOL>true|false){_LIT_LOOK}"
    rf"|(?P<NULL>null|undefined){_LIT_LOOK}"
    r"|(?P<OPEN_BP>as\s+\|)"
    rf"|(?P<ID>\.\.|\.|[^\s!\"#%-,\./;->@\[-\^`{{-~]+){_LOOK}"
    rf"|(?P<LITERAL>\[[^\]]*\]){_LOOK}"
    r"|(?P<SEP>[./])"
    r"|(?P<OPEN_SEXPR>\()"
    r"|(?P<CLOSE_SEXPR>\))"
    r"|(?P<EQUALS>=)"
    r"|(?P<DATA>@)"
    r"|(?P<PIPE>\|)"
)
_BARE_ID = re.compile(r"[^\s!\"#%-,\./;->@\[-\^`{-~]+")
_ELSE = re.compile(r"\s*else(?=[\s~}])")
_LONG_COMMENT_END = re.compile(r"--(~?)\}\}")
_COMMENT_END = re.compile(r"(~?)\}\}")
_RAW_OPEN = re.compile(r"\{\{\{\{\s*([^\s}]+)\s*\}\}\}\}")


def _string_value(raw: str) -> str:
    if raw[0] == '"':
        try:
            value = json.loads(raw)
        except ValueError:
            return raw[1:-1].replace('\\"', '"')
        assert isinstance(value, str)
        return value
    return raw[1:-1].replace("\\'", "'")


class Lexer:
    def __init__(self, source: str, smap: SourceMap) -> None:
        self.src = source
        self.smap = smap
        self.tokens: list[Token] = []

    def _text(self, text: str, offset: int) -> None:
        if not text:
            return
        last = self.tokens[-1] if self.tokens else None
        if isinstance(last, Text) and not last.verbatim:
            last.original += text
        else:
            self.tokens.append(Text(text, offset))

    def run(self) -> list[Token]:
        src = self.src
        pos = 0
        n = len(src)
        while pos < n:
            i = src.find("{{", pos)
            if i < 0:
                self._text(src[pos:], pos)
                break
            if i - pos >= 2 and src[i - 2 : i] == "\\\\":
                # "\\{{x}}": a literal backslash, then a real tag
                self._text(src[pos : i - 1], pos)
            elif i - pos >= 1 and src[i - 1] == "\\":
                # "\{{x}}": the tag is literal text up to the next "{{"
                self._text(src[pos : i - 1], pos)
                j = src.find("{{", i + 2)
                if j < 0:
                    j = n
                k = j
                while k > i + 2 and j - k < 2 and src[k - 1] == "\\":
                    k -= 1  # stop before an escape ("\{{" or "\\{{") of the next tag
                self._text(src[i:k], i)
                pos = k
                continue
            else:
                self._text(src[pos:i], pos)
            pos = self._tag(i)
        _whitespace_control(self.tokens)
        return self.tokens

    def _tag(self, start: int) -> int:
        src = self.src
        if src.startswith("{{{{", start):
            return self._raw_block(start)
        pos = start + 2
        strip_left = src.startswith("~", pos)
        if strip_left:
            pos += 1
        if src.startswith("!", pos):
            return self._comment(start, pos + 1, strip_left)
        triple = False
        kind = TagKind.MUSTACHE
        c = src[pos : pos + 1]
        if c == "{":
            triple = True
            pos += 1
        elif c == "&":
            pos += 1
        elif c == "#":
            if src.startswith(("#>", "#*"), pos):
                raise self.smap.error(start, "partial blocks and decorators are not supported")
            kind = TagKind.OPEN
            pos += 1
        elif c == "^":
            kind = TagKind.INVERSE_OPEN
            pos += 1
        elif c == "/":
            kind = TagKind.CLOSE
            pos += 1
        elif c in (">", "*"):
            raise self.smap.error(start, "partials and decorators are not supported")
        else:
            m = _ELSE.match(src, pos)
            if m:
                kind = TagKind.ELSE
                pos = m.end()
        tag = Tag(kind, start, strip_left, False)
        pos = self._expr(tag, pos, triple)
        if kind is TagKind.INVERSE_OPEN and not tag.toks:
            tag.kind = TagKind.ELSE  # "{{^}}" is an else
        self.tokens.append(tag)
        return pos

    def _expr(self, tag: Tag, pos: int, triple: bool) -> int:
        src = self.src
        n = len(src)
        toks = tag.toks
        while True:
            if pos >= n:
                raise self.smap.error(tag.offset, "unclosed tag: expected '}}'")
            tag.close_offset = pos
            if triple:
                if src.startswith("}}}", pos):
                    return pos + 3
                if src.startswith("}~}}", pos):
                    tag.strip_right = True
                    return pos + 4
                if src.startswith("~}}}", pos):  # lenient: "~" before the triple close
                    tag.strip_right = True
                    return pos + 4
            else:
                if src.startswith("}}", pos):
                    return pos + 2
                if src.startswith("~}}", pos):
                    tag.strip_right = True
                    return pos + 3
            m = _EXPR_TOKENS.match(src, pos)
            if m is None:
                bare = _BARE_ID.match(src, pos)  # an identifier glued to a bad character
                bad = bare.end() if bare and bare.end() < n else pos
                raise self.smap.error(bad, f"unexpected character {src[bad]!r} in tag")
            kind = m.lastgroup
            assert kind is not None
            if kind != "WS":
                raw = m.group()
                if kind == "STRING":
                    raw = _string_value(raw)
                elif kind == "LITERAL":
                    raw = raw[1:-1]
                toks.append(Tok(kind, raw, pos, m.end()))
            pos = m.end()

    def _comment(self, start: int, pos: int, strip_left: bool) -> int:
        src = self.src
        if src.startswith("--", pos):
            m = _LONG_COMMENT_END.search(src, pos + 2)
        else:
            m = _COMMENT_END.search(src, pos)
        if m is None:
            raise self.smap.error(start, "unclosed comment")
        self.tokens.append(Tag(TagKind.COMMENT, start, strip_left, bool(m.group(1))))
        return m.end()

    def _raw_block(self, start: int) -> int:
        m = _RAW_OPEN.match(self.src, start)
        if m is None:
            raise self.smap.error(start, "malformed raw block: expected '{{{{name}}}}'")
        close = "{{{{/" + m.group(1) + "}}}}"
        end = self.src.find(close, m.end())
        if end < 0:
            raise self.smap.error(start, f"unclosed raw block '{m.group(1)}'")
        body = self.src[m.end() : end]
        self.tokens.append(Text(body, m.end(), verbatim=True))
        return end + len(close)


def _ends_line(text: str, *, first: bool) -> bool:
    """Only blanks since the last newline of ``text`` (or in all of it, at template start)."""
    stripped = text.rstrip()
    if first and not stripped:
        return True
    return "\n" in text[len(stripped) :]


def _whitespace_control(tokens: list[Token]) -> None:
    last = len(tokens) - 1
    for k, tok in enumerate(tokens):
        if not isinstance(tok, Tag):
            continue
        prev = tokens[k - 1] if k > 0 else None
        nxt = tokens[k + 1] if k < last else None
        if tok.strip_left and isinstance(prev, Text):
            prev.rstrip_all = True
        if tok.strip_right and isinstance(nxt, Text):
            nxt.lstrip_all = True
        if tok.kind in _STANDALONE or tok.kind is TagKind.COMMENT:
            if prev is None:
                prev_ok = True
            elif isinstance(prev, Text):
                prev_ok = _ends_line(prev.original, first=k == 1)
            else:
                prev_ok = False
            if not prev_ok:
                continue
            if nxt is None:
                next_ok = True
            elif isinstance(nxt, Text):
                pattern = _NEXT_WS_LAST if k + 1 == last else _NEXT_WS
                next_ok = pattern.match(nxt.original) is not None
            else:
                next_ok = False
            if next_ok:
                if isinstance(prev, Text):
                    prev.rstrip_line = True
                if isinstance(nxt, Text):
                    nxt.lstrip_line = True

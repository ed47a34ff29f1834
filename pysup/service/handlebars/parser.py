"""Tokens -> a tree of text, expressions and blocks, with handlebars-rust's whitespace rules.

Whitespace control is handlebars-rust 6.3's, step by step (it differs from Handlebars.js):

* ``{{~x}}`` trims the end of the text element just before the tag (any Unicode whitespace);
  ``{{x~}}`` trims the start of the text that follows, and keeps doing so for text after
  comments until the next tag that is not a comment.
* A block tag, ``else`` or comment is *standalone* when only spaces/tabs and then a newline (or the
  end of the template) follow it in the source; if only spaces/tabs precede it since the last
  newline (or the start), the indentation before it and the first newline after it go. Plain
  ``{{x}}`` tags are never standalone. Only the element right before the tag is trimmed, so a
  comment or an expression there protects the text before it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import SourceMap
from .nodes import K, Spec, Tok

# Rust's char::is_whitespace (Python's str.isspace also counts U+001C..U+001F).
_RUST_WS = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(slots=True)
class Text:
    value: str


@dataclass(slots=True)
class Expr:
    spec: Spec
    offset: int


@dataclass(slots=True)
class Block:
    spec: Spec
    program: list[Node]
    inverse: list[Node] | None
    offset: int


@dataclass(slots=True)
class _Comment:
    pass


Node = Text | Expr | Block
_Elem = Text | Expr | Block | _Comment


def _ends_with_empty_line(text: str) -> bool:
    s = text.rstrip(" \t")
    return not s or s[-1] in "\n\r"


def _starts_with_empty_line(text: str) -> bool:
    s = text.lstrip(" \t")
    return bool(s) and s[0] in "\n\r"


def _strip_first_newline(s: str) -> str:
    if s.startswith("\r\n"):
        return s[2:]
    if s.startswith("\n"):
        return s[1:]
    return s


@dataclass(slots=True)
class _Open:
    """A block being built: its chain of (spec, program) and an optional else body."""

    tok: Tok
    chain: list[tuple[Spec, list[_Elem] | None, int]]
    in_else: bool = False
    else_body: list[_Elem] | None = None


class Builder:
    def __init__(self, source: str, smap: SourceMap) -> None:
        self.src = source
        self.smap = smap
        self.stack: list[list[_Elem]] = []  # templates; [-1] is the front
        self.opens: list[_Open] = []
        self.omit_pro_ws = False
        self.trim_line = False  # "standalone statement: trim the next text's first line"

    def build(self, toks: list[Tok]) -> list[Node]:
        prev_end = 0
        for tok in toks:
            kind = tok.kind
            if kind is K.TEMPLATE:
                self.stack.append([])
                continue
            if (
                tok.start != prev_end
                and not self.omit_pro_ws
                and kind is not K.TEXT
                and kind is not K.RAW_TEXT
            ):
                gap = self._raw(self.src[prev_end : tok.start], [], prev_end, False)
                if kind is K.RAW_END:
                    self.stack.append([gap])
                else:
                    self.stack[-1].append(gap)
                self.trim_line = False
            self._token(tok, prev_end)
            prev_end = tok.end
        assert len(self.stack) == 1 and not self.opens
        return _final(self.stack[0])

    def _token(self, tok: Tok, prev_end: int) -> None:
        kind = tok.kind
        if kind is K.TEXT:
            start = prev_end if tok.start != prev_end else tok.start
            text = self._raw(self.src[start : tok.end], tok.escapes, start, self.omit_pro_ws)
            self.stack[-1].append(text)
            self.trim_line = False
        elif kind is K.RAW_TEXT:
            raw = self._raw(self.src[tok.start : tok.end], tok.escapes, tok.start, self.omit_pro_ws)
            self.stack.append([raw])
        elif kind is K.COMMENT:
            self.trim_line = self._standalone(tok)
            self.stack[-1].append(_Comment())
        elif kind is K.EOI:
            return
        else:
            spec = tok.spec
            assert spec is not None
            if spec.omit_pre:
                last = self.stack[-1][-1] if self.stack[-1] else None
                if isinstance(last, Text):
                    last.value = last.value.rstrip(_RUST_WS)
            self.omit_pro_ws = spec.omit_pro
            if kind is K.EXPR:
                self.stack[-1].append(Expr(spec, tok.start))
                return
            self.trim_line = self._standalone(tok)
            if kind in (K.BLOCK_START, K.RAW_START):
                self.opens.append(_Open(tok, [(spec, None, tok.start)]))
            elif kind in (K.INVERT, K.INVERT_CHAIN):
                self._invert(tok, spec)
            else:
                self._close(tok, spec)

    def _invert(self, tok: Tok, spec: Spec) -> None:
        body = self.stack.pop()
        op = self.opens[-1]
        s, _, off = op.chain[-1]
        op.chain[-1] = (s, body, off)
        if tok.kind is K.INVERT_CHAIN:
            op.chain.append((spec, None, tok.start))
        else:
            op.in_else = True

    def _close(self, tok: Tok, spec: Spec) -> None:
        op = self.opens.pop()
        head = op.chain[0][0]
        if head.helper_name != spec.helper_name:
            line, _ = self.smap.position(op.tok.start)
            raise self.smap.error(
                tok.start,
                f"'{{{{/{spec.helper_name}}}}}' does not match "
                f"'{{{{#{head.helper_name}}}}}' opened at line {line}",
            )
        body = self.stack.pop()
        if op.in_else:
            op.else_body = body
        else:
            s, _, off = op.chain[-1]
            op.chain[-1] = (s, body, off)
        inverse: list[_Elem] | None = op.else_body
        node: Block | None = None
        for s, program, off in reversed(op.chain):
            else_nodes = _final(inverse) if inverse is not None else None
            node = Block(s, _final(program or []), else_nodes, off)
            inverse = [node]
        assert node is not None
        self.stack[-1].append(node)

    def _raw(self, text: str, escapes: list[int], start: int, trim_start: bool) -> Text:
        if escapes:
            chars = list(text)
            for pos in reversed(escapes):
                del chars[pos - start]
            text = "".join(chars)
        if trim_start:
            return Text(text.lstrip(_RUST_WS))
        if self.trim_line:
            return Text(_strip_first_newline(text.lstrip(" \t")))
        return Text(text)

    def _standalone(self, tok: Tok) -> bool:
        after = self.src[tok.end :]
        if not (_starts_with_empty_line(after) or not after):
            return False
        leading = _ends_with_empty_line(self.src[: tok.start])
        if leading:
            elems = self.stack[-1]
            if elems and isinstance(elems[-1], Text):
                elems[-1].value = elems[-1].value.rstrip(" \t")
        return tok.start == 0 or leading


def _final(elems: list[_Elem]) -> list[Node]:
    """Drop comments and empty text, merge adjacent text."""
    out: list[Node] = []
    for e in elems:
        if isinstance(e, _Comment):
            continue
        if isinstance(e, Text):
            if not e.value:
                continue
            if out and isinstance(out[-1], Text):
                out[-1] = Text(out[-1].value + e.value)
                continue
        out.append(e)
    return out

"""Parser: lexer tokens -> an immutable AST of text, mustaches and blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import SourceMap
from .lexer import Tag, TagKind, Text, Tok, Token


@dataclass(frozen=True, slots=True)
class PathExpr:
    """``a.b``, ``../x``, ``this.y``, ``@index``, ``@root.cfg``, ``[weird key]``."""

    original: str
    data: bool  # "@name"
    depth: int  # number of leading "../"
    parts: tuple[str, ...]
    scoped: bool  # explicit "this"/"." prefix: never a helper call nor a block param
    offset: int

    @property
    def is_simple(self) -> bool:
        """A bare identifier such as ``toJson`` that may name a helper."""
        return not self.data and not self.scoped and self.depth == 0 and len(self.parts) == 1


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any  # str | int | float | bool | None
    offset: int


@dataclass(frozen=True, slots=True)
class SubExpr:
    call: Call


Expr = PathExpr | Literal | SubExpr


@dataclass(frozen=True, slots=True)
class Call:
    """A tag's expression: ``head param* key=value* [as |a b|]``."""

    head: Expr
    params: tuple[Expr, ...]
    hash: tuple[tuple[str, Expr], ...]
    block_params: tuple[str, ...]
    offset: int

    @property
    def is_bare(self) -> bool:
        return not self.params and not self.hash


@dataclass(frozen=True, slots=True)
class TextNode:
    value: str


@dataclass(frozen=True, slots=True)
class MustacheNode:
    call: Call
    offset: int


@dataclass(frozen=True, slots=True)
class BlockNode:
    call: Call
    program: tuple[Node, ...]
    inverse: tuple[Node, ...] | None
    offset: int


Node = TextNode | MustacheNode | BlockNode


def expr_offset(expr: Expr) -> int:
    return expr.call.offset if isinstance(expr, SubExpr) else expr.offset


_SEGMENT_KINDS = frozenset({"ID", "LITERAL", "NUMBER", "STRING", "BOOL", "NULL", "DATA"})


class _ExprParser:
    """Recursive descent over the tokens of one tag."""

    def __init__(self, toks: list[Tok], end: int, smap: SourceMap) -> None:
        self.toks = toks
        self.i = 0
        self.end = end  # offset used for "unexpected end of tag"
        self.smap = smap

    def peek(self, ahead: int = 0) -> Tok | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def fail(self, tok: Tok | None, detail: str) -> Exception:
        return self.smap.error(tok.offset if tok else self.end, detail)

    def call(self, *, in_sexpr: bool) -> Call:
        first = self.peek()
        if first is None:
            raise self.fail(None, "empty expression")
        head = self.param()
        params: list[Expr] = []
        hashes: list[tuple[str, Expr]] = []
        block_params: tuple[str, ...] = ()
        while (tok := self.peek()) is not None:
            if tok.kind == "CLOSE_SEXPR" and in_sexpr:
                break
            if tok.kind == "OPEN_BP" and not in_sexpr:
                block_params = self.block_params()
                break
            nxt = self.peek(1)
            if tok.kind == "ID" and nxt is not None and nxt.kind == "EQUALS":
                self.i += 2
                hashes.append((tok.value, self.param()))
                continue
            if hashes:
                raise self.fail(tok, "positional argument after key=value arguments")
            params.append(self.param())
        return Call(head, tuple(params), tuple(hashes), block_params, first.offset)

    def block_params(self) -> tuple[str, ...]:
        opener = self.peek()
        self.i += 1
        names: list[str] = []
        while (tok := self.peek()) is not None and tok.kind == "ID":
            names.append(tok.value)
            self.i += 1
        tok = self.peek()
        if tok is None or tok.kind != "PIPE" or not names:
            raise self.fail(tok or opener, "malformed block parameters: expected 'as |name ...|'")
        self.i += 1
        if self.peek() is not None:
            raise self.fail(self.peek(), "unexpected token after block parameters")
        return tuple(names)

    def param(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise self.fail(None, "unexpected end of tag")
        kind = tok.kind
        if kind == "OPEN_SEXPR":
            self.i += 1
            call = self.call(in_sexpr=True)
            close = self.peek()
            if close is None or close.kind != "CLOSE_SEXPR":
                raise self.fail(close, "unclosed subexpression: expected ')'")
            self.i += 1
            return SubExpr(call)
        if kind in ("STRING", "NUMBER", "BOOL", "NULL"):
            self.i += 1
            value: Any
            if kind == "STRING":
                value = tok.value
            elif kind == "NUMBER":
                value = float(tok.value) if "." in tok.value else int(tok.value)
            elif kind == "BOOL":
                value = tok.value == "true"
            else:
                value = None
            return Literal(value, tok.offset)
        if kind in ("ID", "LITERAL", "DATA"):
            return self.path()
        raise self.fail(tok, f"unexpected {tok.value!r}")

    def path(self) -> PathExpr:
        start = self.peek()
        assert start is not None
        data = start.kind == "DATA"
        if data:
            self.i += 1
        segs: list[tuple[str, bool]] = []  # (segment, is [literal])
        original = "@" if data else ""
        while True:
            tok = self.peek()
            if tok is None or tok.kind not in ("ID", "LITERAL", "NUMBER"):
                raise self.fail(tok, "expected a path segment")
            if tok.kind == "NUMBER" and (not segs or not tok.value.isdigit()):
                raise self.fail(tok, f"unexpected {tok.value!r}")
            self.i += 1
            segs.append((tok.value, tok.kind == "LITERAL"))
            original += f"[{tok.value}]" if tok.kind == "LITERAL" else tok.value
            sep = self.peek()
            if sep is not None and sep.offset == tok.end and sep.kind in _SEGMENT_KINDS:
                raise self.fail(sep, f"unexpected {sep.value!r} in path")
            if sep is None or sep.kind != "SEP":
                break
            self.i += 1
            original += sep.value
        depth = 0
        scoped = False
        parts: list[str] = []
        for seg, literal in segs:
            if not literal and not parts and seg == "..":
                depth += 1
            elif not literal and not parts and seg in (".", "this"):
                scoped = True
            elif not literal and seg in ("..", ".", "this"):
                raise self.fail(start, f"invalid path {original!r}")
            else:
                parts.append(seg)
        if data and not parts:
            raise self.fail(start, f"invalid data reference {original!r}")
        return PathExpr(original, data, depth, tuple(parts), scoped, start.offset)


class Parser:
    def __init__(self, tokens: list[Token], smap: SourceMap) -> None:
        self.tokens = tokens
        self.i = 0
        self.smap = smap

    def parse(self) -> tuple[Node, ...]:
        nodes, term = self._program(None)
        assert term is None
        return nodes

    def _call(self, tag: Tag) -> Call:
        p = _ExprParser(tag.toks, tag.close_offset, self.smap)
        call = p.call(in_sexpr=False)
        if (extra := p.peek()) is not None:
            raise p.fail(extra, f"unexpected {extra.value!r}")
        if call.block_params and tag.kind not in (TagKind.OPEN, TagKind.ELSE):
            raise self.smap.error(call.offset, "block parameters are only allowed on block tags")
        return call

    def _program(self, opener: Tag | None) -> tuple[tuple[Node, ...], Tag | None]:
        nodes: list[Node] = []
        tokens = self.tokens
        while self.i < len(tokens):
            tok = tokens[self.i]
            self.i += 1
            if isinstance(tok, Text):
                value = tok.value()
                if not value:
                    continue
                if nodes and isinstance(nodes[-1], TextNode):
                    nodes[-1] = TextNode(nodes[-1].value + value)
                else:
                    nodes.append(TextNode(value))
            elif tok.kind is TagKind.MUSTACHE:
                nodes.append(MustacheNode(self._call(tok), tok.offset))
            elif tok.kind is TagKind.COMMENT:
                continue
            elif tok.kind in (TagKind.OPEN, TagKind.INVERSE_OPEN):
                nodes.append(self._block(tok, tok))
            elif opener is None:
                what = "{{else}}" if tok.kind is TagKind.ELSE else "closing tag"
                raise self.smap.error(tok.offset, f"unexpected {what} outside of a block")
            else:
                return tuple(nodes), tok
        if opener is not None:
            sigil, name = _describe(opener)
            raise self.smap.error(
                opener.offset,
                f"unclosed block '{{{{{sigil}{name}}}}}': missing '{{{{/{name}}}}}'",
            )
        return tuple(nodes), None

    def _block(self, tag: Tag, opener: Tag) -> BlockNode:
        """Parse a block whose expression is in ``tag`` (the opener or a chained else)."""
        call = self._call(tag)
        if not isinstance(call.head, PathExpr):
            raise self.smap.error(tag.offset, "a block must start with a helper name or path")
        program, term = self._program(opener)
        assert term is not None
        inverse: tuple[Node, ...] | None = None
        if term.kind is TagKind.ELSE:
            if term.toks:  # "{{else if x}}": a nested block sharing our closing tag
                inverse = (self._block(term, opener),)
                return self._finish(tag, opener, call, program, inverse, None)
            inverse, term = self._program(opener)
            assert term is not None
            if term.kind is TagKind.ELSE:
                raise self.smap.error(term.offset, "more than one {{else}} in a block")
        return self._finish(tag, opener, call, program, inverse, term)

    def _finish(
        self,
        tag: Tag,
        opener: Tag,
        call: Call,
        program: tuple[Node, ...],
        inverse: tuple[Node, ...] | None,
        close: Tag | None,
    ) -> BlockNode:
        if close is not None:
            self._check_close(opener, close)
        if tag.kind is TagKind.INVERSE_OPEN:
            program, inverse = inverse or (), program
        return BlockNode(call, program, inverse, tag.offset)

    def _check_close(self, opener: Tag, close: Tag) -> None:
        p = _ExprParser(close.toks, close.close_offset, self.smap)
        tok = p.peek()
        if tok is None or tok.kind not in ("ID", "LITERAL", "DATA"):
            raise p.fail(tok, "a closing tag needs a name, like '{{/if}}'")
        path = p.path()
        if p.peek() is not None:
            raise p.fail(p.peek(), "unexpected tokens in closing tag")
        head = self._call(opener).head
        assert isinstance(head, PathExpr)
        if path.original != head.original:
            line, _ = self.smap.position(opener.offset)
            sigil, name = _describe(opener)
            raise self.smap.error(
                close.offset,
                f"'{{{{/{path.original}}}}}' does not match "
                f"'{{{{{sigil}{name}}}}}' opened at line {line}",
            )


def _describe(tag: Tag) -> tuple[str, str]:
    """(sigil, name) of a block opener, for error messages."""
    sigil = "^" if tag.kind is TagKind.INVERSE_OPEN else "#"
    name = "".join(t.value for t in tag.toks[:1])
    if tag.toks and tag.toks[0].kind == "DATA" and len(tag.toks) > 1:
        name = "@" + tag.toks[1].value
    return sigil, name

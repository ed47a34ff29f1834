"""Template syntax: a recursive-descent parser that accepts exactly handlebars-rust 6.3's grammar.

handlebars-rust parses with a PEG (pest) whose rules skip whitespace (space, tab, CR, LF) between
the parts of a tag, so ``{{ #if x }}``, ``{{~ #unless y}}``, ``{{ / if }}``, ``{{ else }}``,
``key = value`` and ``as | a b |`` are all valid; ``{{! x}}`` must start with ``{{!`` exactly. We
follow the same ordered choices (first match wins, no backtracking into a repetition), so a
template is accepted here if and only if handlebars-rust accepts it.

The result is a flat list of tokens in source order, as pest reports them: text runs, tags, a
``TEMPLATE`` marker where a block's body starts, and ``EOI``. Whitespace that pest skipped between
two elements belongs to no token; ``parser.py`` puts it back the way handlebars-rust does.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import SourceMap
from .nodes import LOCAL, ROOT, UP, K, Literal, Param, PathRef, Spec, SubExpr, Tok

WS = " \t\n\r"
_HEX = frozenset("0123456789abcdefABCDEF")
_BLOCK_TAG = re.compile(r"\{\{~?\s*(?:([#/])\s*([^\s}~]+)|else\b)")


class _NoMatch(Exception):
    """This alternative does not match here (internal backtracking signal)."""


def _is_symbol(c: str) -> bool:
    return (c.isascii() and (c.isalnum() or c in "-_$")) or (not c.isascii())


class Scanner:
    """Parses a whole template into tokens; raises TemplateError where pest would fail."""

    def __init__(self, source: str, smap: SourceMap) -> None:
        self.src = source
        self.n = len(source)
        self.smap = smap
        self.toks: list[Tok] = []
        self.furthest = 0  # furthest position a failed alternative reached, for the error

    # ---- helpers -------------------------------------------------------------------------------

    def skip(self, p: int) -> int:
        src, n = self.src, self.n
        while p < n and src[p] in WS:
            p += 1
        return p

    def at(self, p: int, s: str) -> bool:
        return self.src.startswith(s, p)

    def expect(self, p: int, s: str) -> int:
        if not self.src.startswith(s, p):
            self.furthest = max(self.furthest, p)
            raise _NoMatch
        return p + len(s)

    def attempt(self, fn: Any, p: int) -> Any:
        """Run ``fn(p)``; on no match, drop the tokens it added and return None."""
        mark = len(self.toks)
        try:
            return fn(p)
        except _NoMatch:
            del self.toks[mark:]
            return None

    # ---- entry ---------------------------------------------------------------------------------

    def run(self) -> list[Tok]:
        self.toks.append(Tok(K.TEMPLATE, 0, 0))
        p = self.template(0)
        q = self.skip(p)
        if q != self.n:
            raise self._diagnose(q)
        self.toks.append(Tok(K.EOI, q, q))
        return self.toks

    def _diagnose(self, stop: int) -> Exception:
        """A readable error for a template pest would refuse: an unclosed block or a stray
        closing tag/else when the tags say so, else the furthest position reached."""
        opens: list[re.Match[str]] = []
        for m in _BLOCK_TAG.finditer(self.src):
            if m.group(1) == "#":
                opens.append(m)
            elif m.group(1) == "/" and opens:
                top = opens.pop()
                if top.group(2) != m.group(2):
                    line, _ = self.smap.position(top.start())
                    detail = f"'{{{{/{m.group(2)}}}}}' does not match '{{{{#{top.group(2)}}}}}'"
                    return self.smap.error(m.start(), f"{detail} opened at line {line}")
            elif m.start() >= stop and not opens:
                what = "{{else}}" if m.group(1) is None else f"'{{{{/{m.group(2)}}}}}'"
                return self.smap.error(m.start(), f"unexpected {what} outside of a block")
        if opens and self.skip(self.furthest) >= self.n:
            name = opens[-1].group(2)
            detail = f"unclosed block '{{{{#{name}}}}}': missing '{{{{/{name}}}}}'"
            return self.smap.error(opens[-1].start(), detail)
        where = max(stop, self.furthest)
        return self.smap.error(where, f"invalid syntax near {self.src[where : where + 12]!r}")

    def template(self, p: int) -> int:
        """``element*``: the first element right at p, later ones after skipped whitespace."""
        first = True
        while True:
            q = p if first else self.skip(p)
            end = self.element(q)
            if end is None:
                return p
            p, first = end, False

    def element(self, p: int) -> int | None:
        if p >= self.n:
            return None
        for alt in (
            self.raw_text,
            self.expression,
            self.html_expression,
            self.helper_block,
            self.raw_block,
            self.comment,
            self.unsupported,
        ):
            end = self.attempt(alt, p)
            if end is not None:
                return int(end)
        return None

    # ---- text ----------------------------------------------------------------------------------

    def _escape(self, p: int, stop: str) -> int | None:
        """``escape`` at p: '\\{{' (+ '{{'), or 2+ backslashes before '{{'; returns its end."""
        src = self.src
        if src[p] != "\\":
            return None
        if src.startswith("{{", p + 1):
            end = p + 3
            return end + 2 if src.startswith("{{", end) else end
        q = p + 1
        while q < self.n and src[q] == "\\":
            q += 1
        if q > p + 1 and src.startswith("{{", q):
            return q
        return None

    def raw_text(self, p: int) -> int:
        tok = Tok(K.TEXT, p, p)
        end = self._text_run(p, "{{", tok.escapes)
        if end == p:
            raise _NoMatch
        tok.end = end
        self.toks.append(tok)
        return end

    def _text_run(self, p: int, stop: str, escapes: list[int]) -> int:
        src, n = self.src, self.n
        while p < n:
            i = src.find(stop, p)
            j = src.find("\\", p, n if i < 0 else i)
            if j < 0:
                return n if i < 0 else i
            e = self._escape(j, stop)
            if e is None:
                p = j + 1
                continue
            escapes.append(j)
            p = e
        return p

    # ---- tags ----------------------------------------------------------------------------------

    def _open(self, p: int, opener: str) -> tuple[int, bool]:
        p = self.expect(p, opener)
        q = self.skip(p)
        if self.at(q, "~"):
            return q + 1, True
        return p, False

    def _close(self, p: int, closer: str, spec: Spec) -> int:
        q = self.skip(p)
        if self.at(q, "~"):
            spec.omit_pro = True
            q = self.skip(q + 1)
        return self.expect(q, closer)

    def _is_invert(self, p: int) -> bool:
        return (
            self.attempt(lambda q: self.invert_tag(q, emit=False), p) is not None
            or self.attempt(lambda q: self.invert_chain(q, emit=False), p) is not None
        )

    def expression(self, p: int) -> int:
        if self._is_invert(p):
            raise _NoMatch
        q, pre = self._open(p, "{{")
        spec = self.call_or_name(self.skip(q))
        spec.omit_pre = pre
        end = self._close(self.spec_end, "}}", spec)
        self.toks.append(Tok(K.EXPR, p, end, spec))
        return end

    def html_expression(self, p: int) -> int:
        for form in (self._html_legacy, self._html_triple, self._html_amp):
            end = self.attempt(form, p)
            if end is not None:
                return int(end)
        raise _NoMatch

    def _html_legacy(self, p: int) -> int:
        q, pre = self._open(p, "{{{")
        spec = self.call_or_name(self.skip(q))
        spec.omit_pre = pre
        end = self._close(self.spec_end, "}}}", spec)
        self.toks.append(Tok(K.EXPR, p, end, spec))
        return end

    def _html_triple(self, p: int) -> int:
        q, pre = self._open(p, "{{")
        q = self.expect(self.skip(q), "{")
        spec = self.call_or_name(self.skip(q))
        spec.omit_pre = pre
        q = self.expect(self.skip(self.spec_end), "}")
        end = self._close(q, "}}", spec)
        self.toks.append(Tok(K.EXPR, p, end, spec))
        return end

    def _html_amp(self, p: int) -> int:
        q, pre = self._open(p, "{{")
        q = self.expect(self.skip(q), "&")
        name, q = self.name(self.skip(q))
        spec = Spec(name, omit_pre=pre)
        end = self._close(q, "}}", spec)
        self.toks.append(Tok(K.EXPR, p, end, spec))
        return end

    def helper_block(self, p: int) -> int:
        q, pre = self._open(p, "{{")
        q = self.expect(self.skip(q), "#")
        spec = self.exp_line(self.skip(q))
        spec.omit_pre = pre
        end = self._close(self.spec_end, "}}", spec)
        self.toks.append(Tok(K.BLOCK_START, p, end, spec))
        p = self._body(end)
        while True:
            q = self.skip(p)
            e = self.attempt(self.invert_chain, q)
            if e is None:
                break
            p = self._body(int(e))
        q = self.skip(p)
        e = self.attempt(self.invert_tag, q)
        if e is not None:
            p = self._body(int(e))
        return self.block_end(self.skip(p), "{{", "}}", K.BLOCK_END)

    def _body(self, p: int) -> int:
        q = self.skip(p)
        self.toks.append(Tok(K.TEMPLATE, q, q))
        return self.template(q)

    def _invert_open(self, p: int) -> tuple[int, bool]:
        """``{{ ~? (else|^)``: returns the position after the keyword and the tilde flag."""
        q, pre = self._open(p, "{{")
        q = self.skip(q)
        return (q + 4 if self.at(q, "else") else self.expect(q, "^")), pre

    def invert_tag(self, p: int, emit: bool = True) -> int:
        q, pre = self._invert_open(p)
        spec = Spec("else", omit_pre=pre)
        end = self._close(q, "}}", spec)
        if emit:
            self.toks.append(Tok(K.INVERT, p, end, spec))
        return end

    def invert_chain(self, p: int, emit: bool = True) -> int:
        q, pre = self._invert_open(p)
        spec = self.exp_line(self.skip(q))
        spec.omit_pre = pre
        end = self._close(self.spec_end, "}}", spec)
        if emit:
            self.toks.append(Tok(K.INVERT_CHAIN, p, end, spec))
        return end

    def block_end(self, p: int, opener: str, closer: str, kind: K) -> int:
        q, pre = self._open(p, opener)
        q = self.expect(self.skip(q), "/")
        name, q = self.identifier(self.skip(q))
        spec = Spec(name, omit_pre=pre)
        end = self._close(q, closer, spec)
        self.toks.append(Tok(kind, p, end, spec))
        return end

    def raw_block(self, p: int) -> int:
        q, pre = self._open(p, "{{{{")
        spec = self.exp_line(self.skip(q))
        spec.omit_pre = pre
        end = self._close(self.spec_end, "}}}}", spec)
        self.toks.append(Tok(K.RAW_START, p, end, spec))
        q = self.skip(end)
        text = Tok(K.RAW_TEXT, q, q)
        text.end = self._text_run(q, "{{{{", text.escapes)
        self.toks.append(text)
        return self.block_end(self.skip(text.end), "{{{{", "}}}}", K.RAW_END)

    def comment(self, p: int) -> int:
        q = self.expect(p, "{{!")
        r = self.skip(q)
        if self.at(r, "--"):
            close = self.src.find("--}}", r + 2)
            if close >= 0:
                end = close + 4
                self.toks.append(Tok(K.COMMENT, p, end))
                return end
        close = self.src.find("}}", q)
        if close < 0:
            self.furthest = max(self.furthest, self.n)
            raise _NoMatch
        self.toks.append(Tok(K.COMMENT, p, close + 2))
        return close + 2

    def unsupported(self, p: int) -> int:
        q, _ = self._open(p, "{{")
        q = self.skip(q)
        if self.at(q, "#"):
            q = self.skip(q + 1)
        if self.at(q, ">") or self.at(q, "*"):
            raise self.smap.error(p, "partials and decorators are not supported")
        raise _NoMatch

    # ---- expressions ---------------------------------------------------------------------------

    spec_end = 0  # where the last call_or_name/exp_line stopped

    def call_or_name(self, p: int) -> Spec:
        """``(identifier ~ (hash|helper_parameter)+) | name``."""
        mark = len(self.toks)
        try:
            name, q = self.identifier(p)
            params, hashes, q = self.params(q)
            if not params and not hashes:
                raise _NoMatch
            self.spec_end = q
            return Spec(name, tuple(params), tuple(hashes))
        except _NoMatch:
            del self.toks[mark:]
        ref, q = self.name(p)
        self.spec_end = q
        return Spec(ref)

    def exp_line(self, p: int) -> Spec:
        """``identifier ~ (hash|helper_parameter)* ~ block_param?``."""
        name, q = self.identifier(p)
        params, hashes, q = self.params(q)
        block_params: tuple[str, ...] = ()
        bp = self.attempt(self.block_param, self.skip(q))
        if bp is not None:
            block_params, q = bp
        self.spec_end = q
        return Spec(name, tuple(params), tuple(hashes), block_params)

    def params(self, p: int) -> tuple[list[Param], list[tuple[str, Param]], int]:
        params: list[Param] = []
        hashes: list[tuple[str, Param]] = []
        while True:
            q = self.skip(p)
            h = self.attempt(self.hash, q)
            if h is not None:
                hashes.append(h[0])
                p = h[1]
                continue
            r = self.attempt(self.helper_parameter, q)
            if r is None:
                return params, hashes, p
            params.append(r[0])
            p = r[1]

    def hash(self, p: int) -> tuple[tuple[str, Param], int]:
        key, q = self.identifier(p)
        q = self.expect(self.skip(q), "=")
        value, q = self.helper_parameter(self.skip(q))
        return (key, value), q

    def block_param(self, p: int) -> tuple[tuple[str, ...], int]:
        q = self.expect(p, "as")
        q = self.expect(self.skip(q), "|")
        first, q = self.identifier(self.skip(q))
        names = [first]
        r = self.attempt(self.identifier, self.skip(q))
        if r is not None:
            names.append(r[0])
            q = r[1]
        return tuple(names), self.expect(self.skip(q), "|")

    def identifier(self, p: int) -> tuple[str, int]:
        src, n = self.src, self.n
        q = p
        while q < n and _is_symbol(src[q]):
            q += 1
        if q == p:
            self.furthest = max(self.furthest, p)
            raise _NoMatch
        return src[p:q], q

    def _keyword_here(self, p: int) -> bool:
        for kw in ("as", "else"):
            if self.at(p, kw) and not (p + len(kw) < self.n and _is_symbol(self.src[p + len(kw)])):
                return True
        return False

    def helper_parameter(self, p: int) -> tuple[Param, int]:
        if self._keyword_here(p):
            raise _NoMatch
        lit = self.attempt(self.literal, p)
        if lit is not None:
            return lit  # type: ignore[no-any-return]
        ref = self.attempt(self.reference, p)
        if ref is not None:
            return ref  # type: ignore[no-any-return]
        return self.subexpression(p)

    def name(self, p: int) -> tuple[PathRef | SubExpr, int]:
        sub = self.attempt(self.subexpression, p)
        if sub is not None:
            return sub  # type: ignore[no-any-return]
        return self.reference(p)

    def subexpression(self, p: int) -> tuple[SubExpr, int]:
        q = self.expect(p, "(")
        q = self.skip(q)
        mark = len(self.toks)
        try:
            name, r = self.identifier(q)
            params, hashes, r = self.params(r)
            if not params and not hashes:
                raise _NoMatch
            end = self.expect(self.skip(r), ")")
            return SubExpr(name, tuple(params), tuple(hashes), p), end
        except _NoMatch:
            del self.toks[mark:]
        ref, r = self.reference(q)
        end = self.expect(self.skip(r), ")")
        return SubExpr(ref, (), (), p), end

    # ---- literals ------------------------------------------------------------------------------

    def literal(self, p: int) -> tuple[Literal, int]:
        c = self.src[p : p + 1]
        if c in ('"', "'"):
            return self._string(p)
        if c in ("[", "{"):
            end = self._json_shape(p)
            return Literal(self._json(p, end), p), end
        for word, value in (("null", None), ("true", True), ("false", False)):
            after = p + len(word)
            if self.at(p, word) and not (after < self.n and _is_symbol(self.src[after])):
                return Literal(value, p), after
        end = self._number(p)
        return Literal(self._json(p, end), p), end

    def _json(self, p: int, end: int) -> Any:
        try:
            return json.loads(self.src[p:end])
        except ValueError:
            raise self.smap.error(p, f"invalid parameter {self.src[p:end]!r}") from None

    def _number(self, p: int) -> int:
        src, n = self.src, self.n
        q = p + 1 if self.at(p, "-") else p
        d = q
        while q < n and src[q].isascii() and src[q].isdigit():
            q += 1
        if q == d:
            raise _NoMatch
        if self.at(q, "."):
            q += 1
        while q < n and src[q].isascii() and src[q].isdigit():
            q += 1
        if self.at(q, "E"):
            r = q + 1 + (1 if self.at(q + 1, "-") else 0)
            s = r
            while r < n and src[r].isascii() and src[r].isdigit():
                r += 1
            if r > s:
                q = r
        if q < n and _is_symbol(src[q]):
            raise _NoMatch
        return q

    def _string_end(self, p: int) -> int:
        src, n, quote = self.src, self.n, self.src[p]
        q = p + 1
        while q < n:
            c = src[q]
            if c == quote:
                return q + 1
            if c == "\\":
                e = src[q + 1 : q + 2]
                hexes = src[q + 2 : q + 6]
                if e == "u" and len(hexes) == 4 and all(h in _HEX for h in hexes):
                    q += 6
                    continue
                if e and e in quote + "\\/bfnrt":
                    q += 2
                    continue
                raise _NoMatch
            q += 1
        raise _NoMatch

    def _string(self, p: int) -> tuple[Literal, int]:
        end = self._string_end(p)
        if self.src[p] == "'":
            inner = self.src[p + 1 : end - 1].replace("\\'", "'").replace('"', '\\"')
            text = f'"{inner}"'
        else:
            text = self.src[p:end]
        try:
            return Literal(json.loads(text), p), end
        except ValueError:
            raise self.smap.error(p, f"invalid parameter {self.src[p:end]!r}") from None

    def _json_shape(self, p: int) -> int:
        """End of an array_literal / object_literal (grammar only; values are JSON-parsed)."""
        close = "]" if self.src[p] == "[" else "}"
        q = self.skip(p + 1)
        first = True
        while True:
            if self.at(q, close):
                return q + 1
            if not first:
                q = self.skip(self.expect(q, ","))
            if close == "}":
                if self.src[q : q + 1] not in ('"', "'"):
                    raise _NoMatch
                q = self.skip(self._string_end(q))
                q = self.skip(self.expect(q, ":"))
            _, q = self.literal(q)
            q = self.skip(q)
            first = False

    # ---- paths ---------------------------------------------------------------------------------

    def reference(self, p: int) -> tuple[PathRef, int]:
        src, n = self.src, self.n
        q = p
        segs: list[str | int] = []
        if self.at(q, "this") and src[q + 4 : q + 5] in ("/", ".") and q + 4 < n:
            q += 5
        elif self.at(q, "./"):
            q += 2
        if self.at(q, "@root") and q + 5 < n and src[q + 5] in "/.":
            segs.append(ROOT)
            q += 6
        if self.at(q, "@"):
            segs.append(LOCAL)
            q += 1
        while self.at(q, "..") and q + 2 < n and src[q + 2] in "/.":
            segs.append(UP)
            q += 3
        item, q = self._path_item(q)
        if item != "this":
            segs.append(item)
        while q < n and src[q] in "/.":
            try:
                item, r = self._path_item(q + 1)
            except _NoMatch:
                break
            if item != "this":
                segs.append(item)
            q = r
        return PathRef(src[p:q], tuple(segs), p), q

    def _path_item(self, p: int) -> tuple[str, int]:
        if self.at(p, "["):
            close = self.src.find("]", p + 1)
            if close < 0:
                raise _NoMatch
            return self.src[p + 1 : close], close + 1
        return self.identifier(p)

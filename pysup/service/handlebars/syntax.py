"""Template syntax: a recursive-descent parser that accepts exactly handlebars-rust 6.3's grammar.

handlebars-rust parses with a PEG (pest) whose rules skip whitespace (space, tab, CR, LF) between
the parts of a tag, so ``{{ #if x }}``, ``{{~ #unless y}}``, ``{{ / if }}``, ``{{ else }}``,
``key = value`` and ``as | a b |`` are all valid; ``{{! x}}`` must start with ``{{!`` exactly. We
follow the same ordered choices (first match wins, no backtracking into a repetition), so a
template is accepted here if and only if handlebars-rust accepts it.

The result is a flat list of tokens in source order, as pest reports them: text runs, tags, a
``TEMPLATE`` marker where a block's body starts, and ``EOI``. Whitespace that pest skipped between
two elements belongs to no token; ``parser.py`` puts it back the way handlebars-rust does. This
module is the block level; what is inside a tag is ``expressions.py``.
"""

from __future__ import annotations

import re

from .expressions import ExpressionGrammar, NoMatch
from .nodes import K, Spec, Tok

_BLOCK_TAG = re.compile(r"\{\{~?\s*(?:([#/])\s*([^\s}~]+)|else\b)")


class Scanner(ExpressionGrammar):
    """Parses a whole template into tokens; raises TemplateError where pest would fail."""

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
            raise NoMatch
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
            raise NoMatch
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
        raise NoMatch

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
            raise NoMatch
        self.toks.append(Tok(K.COMMENT, p, close + 2))
        return close + 2

    def unsupported(self, p: int) -> int:
        q, _ = self._open(p, "{{")
        q = self.skip(q)
        if self.at(q, "#"):
            q = self.skip(q + 1)
        if self.at(q, ">") or self.at(q, "*"):
            raise self.smap.error(p, "partials and decorators are not supported")
        raise NoMatch

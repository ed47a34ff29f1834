"""Template syntax, the expression level: the parts inside a tag (helper calls, parameters, hash
pairs, block parameters, literals, paths), in handlebars-rust 6.3's ordered choices; and the cursor
both levels share. ``syntax.py`` is the block level (text, tags, blocks) built on it."""

from __future__ import annotations

import json
from typing import Any

from .errors import SourceMap
from .nodes import LOCAL, ROOT, UP, Literal, Param, PathRef, Spec, SubExpr, Tok

WS = " \t\n\r"
_HEX = frozenset("0123456789abcdefABCDEF")


class NoMatch(Exception):
    """This alternative does not match here (internal backtracking signal)."""


def _is_symbol(c: str) -> bool:
    return (c.isascii() and (c.isalnum() or c in "-_$")) or (not c.isascii())


class ExpressionGrammar:
    """The cursor over a template's source (tokens so far, the furthest failed position) and the
    expression rules; ``syntax.Scanner`` adds the block level."""

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
            raise NoMatch
        return p + len(s)

    def attempt(self, fn: Any, p: int) -> Any:
        """Run ``fn(p)``; on no match, drop the tokens it added and return None."""
        mark = len(self.toks)
        try:
            return fn(p)
        except NoMatch:
            del self.toks[mark:]
            return None

    # ---- expressions ---------------------------------------------------------------------------

    spec_end = 0  # where the last call_or_name/exp_line stopped

    def call_or_name(self, p: int) -> Spec:
        """``(identifier ~ (hash|helper_parameter)+) | name``."""
        mark = len(self.toks)
        try:
            name, q = self.identifier(p)
            params, hashes, q = self.params(q)
            if not params and not hashes:
                raise NoMatch
            self.spec_end = q
            return Spec(name, tuple(params), tuple(hashes))
        except NoMatch:
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
            raise NoMatch
        return src[p:q], q

    def _keyword_here(self, p: int) -> bool:
        for kw in ("as", "else"):
            if self.at(p, kw) and not (p + len(kw) < self.n and _is_symbol(self.src[p + len(kw)])):
                return True
        return False

    def helper_parameter(self, p: int) -> tuple[Param, int]:
        if self._keyword_here(p):
            raise NoMatch
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
                raise NoMatch
            end = self.expect(self.skip(r), ")")
            return SubExpr(name, tuple(params), tuple(hashes), p), end
        except NoMatch:
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
            raise NoMatch
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
            raise NoMatch
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
                raise NoMatch
            q += 1
        raise NoMatch

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
                    raise NoMatch
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
            except NoMatch:
                break
            if item != "this":
                segs.append(item)
            q = r
        return PathRef(src[p:q], tuple(segs), p), q

    def _path_item(self, p: int) -> tuple[str, int]:
        if self.at(p, "["):
            close = self.src.find("]", p + 1)
            if close < 0:
                raise NoMatch
            return self.src[p + 1 : close], close + 1
        return self.identifier(p)

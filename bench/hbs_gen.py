"""Random Habitat-style templates and render contexts, for differential tests against the oracle.

One generator serves two drivers through ``Chooser``: hypothesis (tests: shrinking, bounded
examples) and ``random.Random`` (the bench: 100,000+ templates quickly). The grammar is what
Habitat plans use: text with newlines and indentation, ``~`` on either side, standalone block
lines, if/unless/each/with/else (and else-if chains), block params ``as |x|``/``as |v k|``,
@index/@first/@last/@key, ``../``, dashed keys, comments, raw blocks, triple-stash, Habitat's
helpers and eachAlive over bind members; whitespace inside tags in every position the grammar
allows; and, in a small share, one random character mutation so that both engines must also
agree on what they refuse.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Chooser(Protocol):
    def int(self, lo: int, hi: int) -> int: ...


class RandomChooser:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)


def pick(ch: Chooser, seq: Sequence[T]) -> T:
    return seq[ch.int(0, len(seq) - 1)]


def chance(ch: Chooser, percent: int) -> bool:
    return ch.int(1, 100) <= percent


# ---- contexts ------------------------------------------------------------------------------------

KEYS = ("port", "tcp-backlog", "bind", "log_level", "name", "list", "nested", "enabled", "ratio")
STRINGS = ("", "x", "hello world", "a\"b", "it's", "tab\there", "line\nbreak", "{{x}}",
           "back\\slash", "ünïcode ☃", "  padded  ", "0", "false", "a,b", "<&>",
           "$HOME")  # fmt: skip
FLOATS = (0.0, 1.0, 1.5, -2.25, 0.1, 1e16, 1e-7, 123456.789, 2.5e-5, 1e21, 3.0e300)


def scalar(ch: Chooser) -> Any:
    kind = ch.int(0, 6)
    if kind == 0:
        return pick(ch, (0, 1, -1, 6379, 511, 2**40, -(2**40)))
    if kind == 1:
        return pick(ch, FLOATS)
    if kind == 2:
        return pick(ch, (True, False))
    if kind == 3:
        return None
    return pick(ch, STRINGS)


def value(ch: Chooser, depth: int) -> Any:
    kind = ch.int(0, 9 if depth > 0 else 5)
    if kind <= 5:
        return scalar(ch)
    if kind <= 7:
        return [value(ch, depth - 1) for _ in range(ch.int(0, 3))]
    return {pick(ch, KEYS): value(ch, depth - 1) for _ in range(ch.int(0, 3))}


def member(ch: Chooser, n: int) -> dict[str, Any]:
    return {
        "alive": chance(ch, 70),
        "leader": n == 0,
        "member_id": f"m{n}",
        "sys": {"hostname": f"host-{n}", "ip": f"10.0.0.{n + 1}"},
        "cfg": {"port": 6379 + n},
    }


def context(ch: Chooser) -> dict[str, Any]:
    cfg = {k: value(ch, 2) for k in KEYS if chance(ch, 60)}
    members = [member(ch, n) for n in range(ch.int(0, 4))]
    backend = [member(ch, n + 10) for n in range(ch.int(0, 3))]
    ctx = {
        "cfg": cfg,
        "sys": {"hostname": "host-0", "ip": "10.0.0.1"},
        "pkg": {
            "name": "redis",
            "path": "/hab/pkgs/core/redis/7.2.4/20240101000000",
            "deps": [{"ident": "core/curl/8.0.1/20240101000000"}],
        },
        "svc": {"members": members, "me": members[0] if members else {}},
        "bind": {"backend": {"members": backend, "first": backend[0] if backend else None}},
    }
    return sort_keys(ctx)


def sort_keys(v: Any) -> Any:
    """Sorted keys everywhere: the oracle's serde_json iterates objects in key order."""
    if isinstance(v, dict):
        return {k: sort_keys(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [sort_keys(x) for x in v]
    return v


# ---- templates -----------------------------------------------------------------------------------

TEXT = ("port ", "x", " ", "  ", "\t", "\n", "\n", "\n  ", "}", "{", "\\", "=", "# c", ";",
        "\r\n", "a b", "\u00a0")  # fmt: skip
ROOT_PATHS = ("cfg.port", "cfg.tcp-backlog", "cfg.bind", "cfg.list", "cfg.nested", "cfg",
              "cfg.enabled", "cfg.ratio", "cfg.name", "sys.ip", "sys.hostname", "pkg.name",
              "cfg.list.[0]", "cfg.list.0", "cfg.nested.port", "svc.me.sys.ip", "cfg.missing",
              "bind.backend.first.sys.ip", "svc.members", "cfg.log_level", "pkg.path")  # fmt: skip
LOCAL_PATHS = ("this", "port", "sys.ip", "member_id", "alive", "this.cfg.port", "./name",
               "list", "[tcp-backlog]", "nested.port", "enabled")  # fmt: skip
DATA = ("@index", "@first", "@last", "@key", "@../index", "@root.cfg.port")
LITERALS = ('"x"', "'y'", '"a\\"b"', '"\\t"', "1", "-2", "1.5", "0", "true", "false", "null",
            '"core/curl"', "'9'", '""', "[1, 2]")  # fmt: skip
INLINE_HELPERS = ("strConcat", "strJoin", "strReplace", "toUppercase", "toLowercase", "toJson",
                  "eq", "ne", "gt", "lt", "gte", "and", "or", "not", "len", "lookup",
                  "pkgPathFor", "toToml")  # fmt: skip
MUTATIONS = "{}~#/^!& \n\\.|()=\"'"


class Gen:
    def __init__(self, ch: Chooser) -> None:
        self.ch = ch
        self.params: list[str] = []  # block params in scope
        self.nesting = 0  # enclosing blocks

    def ws(self) -> str:
        return pick(self.ch, ("", "", "", " ", "  ", "\n", "\t"))

    def path(self) -> str:
        ch = self.ch
        kind = ch.int(0, 9)
        if kind <= 3:
            return pick(ch, ROOT_PATHS)
        if kind <= 5:
            return pick(ch, LOCAL_PATHS)
        if kind == 6 and self.params:
            p = pick(ch, self.params)
            return p + pick(ch, ("", "", ".sys.ip", ".port", ".[0]"))
        if kind == 7:
            return pick(ch, DATA)
        if kind == 8:
            return "../" + pick(ch, ("cfg.port", "port", "this", "sys.ip", "../cfg.bind"))
        return "@root." + pick(ch, ROOT_PATHS)

    def param(self, depth: int) -> str:
        kind = self.ch.int(0, 9)
        if kind <= 5:
            return self.path()
        if kind <= 8 or depth <= 0:
            return pick(self.ch, LITERALS)
        return "(" + self.helper_call(depth - 1) + ")"

    def helper_call(self, depth: int) -> str:
        name = pick(self.ch, INLINE_HELPERS)
        n = {"strReplace": 3, "strJoin": 2, "lookup": 2, "eq": 2, "ne": 2, "gt": 2, "lt": 2}
        count = n.get(name, self.ch.int(1, 3) if name in ("strConcat", "and", "or") else 1)
        if chance(self.ch, 5):
            count += pick(self.ch, (-1, 1))
        args = " ".join(self.param(depth) for _ in range(max(count, 0)))
        return f"{name} {args}".rstrip()

    def tag(self, inner: str, sigil: str = "") -> str:
        ch = self.ch
        left = "~" if chance(ch, 25) else ""
        right = "~" if chance(ch, 25) else ""
        return (
            "{{"
            + self.ws()
            + left
            + self.ws()
            + sigil
            + self.ws()
            + inner
            + self.ws()
            + right
            + "}}"
        )

    def mustache(self) -> str:
        ch = self.ch
        kind = ch.int(0, 9)
        if kind <= 4:
            return self.tag(self.path())
        if kind <= 6:
            return self.tag(self.helper_call(2))
        if kind == 7:
            return "{{{" + self.ws() + self.path() + self.ws() + "}}}"
        if kind == 8:
            return self.tag(self.path(), "&")
        return "{{" + pick(ch, ("", "~")) + "{" + self.path() + "}" + pick(ch, ("", "~")) + "}}"

    def standalone(self, tag: str) -> str:
        """Put a block tag on a line of its own, often (Habitat's usual layout)."""
        if chance(self.ch, 50):
            return "\n" + pick(self.ch, ("", "  ", "\t")) + tag + pick(self.ch, ("", " ")) + "\n"
        return tag

    def body(self, depth: int) -> str:
        return "".join(self.element(depth) for _ in range(self.ch.int(0, 4)))

    def element(self, depth: int) -> str:
        ch = self.ch
        kind = ch.int(0, 12)
        if kind <= 3 or (depth <= 0 and kind >= 8):
            return "".join(pick(ch, TEXT) for _ in range(ch.int(1, 3)))
        if kind <= 6:
            return self.mustache()
        if kind == 7:
            return pick(ch, ("{{! note }}", "{{!-- a }} b --}}", "{{!c}}", "{{!-- x --}}\n"))
        if kind == 8:
            return self.raw_block()
        return self.block(depth - 1)

    def raw_block(self) -> str:
        body = pick(self.ch, ("{{x}}", " {{#if}} ", "\n{{ y }}\n", "", "a{{/if}}b"))
        return "{{{{" + self.ws() + "raw" + self.ws() + "}}}}" + body + "{{{{/raw}}}}"

    def block(self, depth: int) -> str:
        ch = self.ch
        name = pick(ch, ("if", "if", "unless", "each", "each", "with", "eachAlive"))
        args = self.param(1)
        extra = ""
        if name == "if" and chance(ch, 10):
            extra = " includeZero=" + pick(ch, ("true", "false"))
        names: list[str] = []
        if name in ("each", "with", "eachAlive"):
            if name == "eachAlive":
                args = pick(ch, ("bind.backend.members", "svc.members"))
                if self.nesting or chance(ch, 30):  # bare paths only at the top (see for_oracle)
                    args = "@root." + args
            elif name == "each" and chance(ch, 50):
                args = pick(
                    ch, ("cfg.list", "cfg.nested", "svc.members", "cfg", "bind.backend.members")
                )
            limit = 2 if name == "each" else 1  # eachAlive's 2nd param counts from 1
            if chance(ch, 40):
                names = [pick(ch, ("v", "item", "m"))] + (
                    ["k"] if limit == 2 and chance(ch, 50) else []
                )
                extra = " as |" + " ".join(names) + "|"
        open_tag = self.standalone(self.tag(f"{name}{self.ws()} {args}{extra}", "#"))
        saved = list(self.params)
        self.params += names
        self.nesting += 1
        program = self.body(depth)
        inverse = ""
        if name != "eachAlive" and chance(ch, 35):
            if name in ("if", "unless") and chance(ch, 30):
                inverse = self.standalone(self.tag("if " + self.param(1), "else ")) + self.body(
                    depth
                )
            else:
                inverse = self.standalone(self.tag(pick(ch, ("else", "^")))) + self.body(depth)
        if name == "eachAlive":  # Habitat's eachAlive @index counts from 1: not comparable
            program = program.replace("@index", "@first").replace("@../index", "@../first")
        self.params = saved
        self.nesting -= 1
        close = self.standalone(self.tag(name, "/"))
        return open_tag + program + inverse + close

    def template(self) -> str:
        text = self.body(3)
        if chance(self.ch, 8) and text:
            i = self.ch.int(0, len(text) - 1)
            op = self.ch.int(0, 2)
            c = pick(self.ch, MUTATIONS)
            text = (
                text[:i] + text[i + 1 :]
                if op == 0
                else text[:i] + c + text[i:]
                if op == 1
                else text[:i] + c + text[i + 1 :]
            )
        return text

"""What the template parser produces: tokens in source order and what is inside a tag (paths,
literals, sub-expressions). ``syntax.py`` builds them; ``parser.py`` and ``render.py`` read them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

UP = 1  # "../" segment
ROOT = 2  # "@root." segment
LOCAL = 3  # "@" (a data variable such as @index)


class K(enum.Enum):
    TEXT = "text"
    EXPR = "expr"  # {{x}}, {{{x}}}, {{&x}}, {{helper a b}}
    BLOCK_START = "block_start"  # {{#helper ...}}
    RAW_START = "raw_start"  # {{{{helper ...}}}}
    RAW_TEXT = "raw_text"
    RAW_END = "raw_end"  # {{{{/helper}}}}
    INVERT = "invert"  # {{else}}, {{^}}
    INVERT_CHAIN = "invert_chain"  # {{else helper ...}}, {{^helper ...}}
    BLOCK_END = "block_end"  # {{/helper}}
    COMMENT = "comment"
    TEMPLATE = "template"  # a (block body) template starts here
    EOI = "eoi"


@dataclass(frozen=True, slots=True)
class PathRef:
    """A path as handlebars-rust resolves it: ``segs`` are names and UP/ROOT/LOCAL markers
    (``this`` segments are dropped, as handlebars-rust drops them)."""

    raw: str
    segs: tuple[str | int, ...]
    offset: int

    @property
    def local(self) -> tuple[int, str] | None:
        """(level, name) of a data variable (``@index``, ``@../key``), else None. Segments after
        the name are ignored, as in handlebars-rust."""
        if not self.segs or self.segs[0] != LOCAL:
            return None
        level = 0
        while level + 1 < len(self.segs) and self.segs[level + 1] == UP:
            level += 1
        name = self.segs[level + 1] if level + 1 < len(self.segs) else None
        return (level, name) if isinstance(name, str) else None


@dataclass(frozen=True, slots=True)
class Literal:
    value: Any
    offset: int


@dataclass(frozen=True, slots=True)
class SubExpr:
    name: str | PathRef  # an identifier, or a bare path: "(x)" calls a helper named by raw
    params: tuple[Param, ...]
    hash: tuple[tuple[str, Param], ...]
    offset: int


Param = PathRef | Literal | SubExpr


@dataclass(slots=True)
class Spec:
    """What is inside one tag."""

    name: str | PathRef | SubExpr
    params: tuple[Param, ...] = ()
    hash: tuple[tuple[str, Param], ...] = ()
    block_params: tuple[str, ...] = ()
    omit_pre: bool = False  # "{{~"
    omit_pro: bool = False  # "~}}"

    @property
    def name_only(self) -> bool:
        return not self.params and not self.hash

    @property
    def helper_name(self) -> str:
        """The name a helper is looked up by (a path's raw text)."""
        return self.name if isinstance(self.name, str) else _raw(self.name)


def _raw(name: PathRef | SubExpr) -> str:
    return name.raw if isinstance(name, PathRef) else ""


@dataclass(slots=True)
class Tok:
    kind: K
    start: int
    end: int
    spec: Spec | None = None
    escapes: list[int] = field(default_factory=list)  # backslashes to drop (absolute offsets)

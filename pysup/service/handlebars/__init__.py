"""Handlebars templates for Habitat plans (hooks and config files), written from scratch.

Usage::

    tpl = compile_template(source, name="config/redis.config")  # parse once
    text = tpl.render({"cfg": cfg, "sys": sys, ...})  # render many times

Habitat semantics: no HTML escaping anywhere (``{{x}}`` == ``{{{x}}}`` == ``{{&x}}``),
handlebars-rust truthiness (null, false, 0, "", [] and {} are falsy) and Habitat's helpers
(eachAlive, pkgPathFor, strConcat, strJoin, strReplace, toUppercase, toLowercase, toJson, toToml,
toYaml). A missing value renders as "" unless ``render(..., strict=True)``.

Deliberate choices (where Handlebars.js and handlebars-rust differ, or neither decides):

* Truthiness is handlebars-rust's: null, false, 0, 0.0, "", [] and {} are falsy
  (``{{#if x includeZero=true}}`` makes 0 truthy).
* ``{{x}}`` renders numbers and bools like JSON (``511``, ``1.5``, ``true``), null as "", and a
  list or mapping as one-line JSON (``[1, "a"]``, ``{"k": 1}``): unambiguous, and valid TOML for
  arrays of scalars. ``toJson`` is 2-space pretty JSON (serde_json's to_string_pretty), keys in
  insertion order. ``toToml`` uses tomli_w and needs a mapping without nulls. ``toYaml`` is our
  own block-style emitter (no ``---`` header; strings that would read as another type are quoted).
* Unknown helpers, wrong argument counts and block helpers used inline are reported when the
  template is compiled, not when the branch is first taken: a typo fails at load time.
* ``../`` follows Handlebars.js: each/with/eachAlive (and ``{{#path}}`` sections) push a context,
  if/unless do not. ``@key`` of a list item is its index.
* Double-quoted literals decode JSON escapes (``"\t"`` is a tab), as handlebars-rust reads them.
* handlebars-rust's eq/ne/gt/gte/lt/lte/and/or/not/len are available; partials and decorators are
  not (TemplateError); ``{{{{raw}}}}...{{{{/raw}}}}`` emits its content verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import SourceMap, TemplateError
from .lexer import Lexer
from .parser import Parser
from .render import Compiler, Frame, RenderFn

__all__ = ["Template", "TemplateError", "compile_template"]


class Template:
    """A compiled template; immutable and safe to render concurrently."""

    __slots__ = ("_fn", "name", "source")

    def __init__(self, source: str, name: str, fn: RenderFn) -> None:
        self.source = source
        self.name = name
        self._fn = fn

    def render(self, context: Mapping[str, Any], *, strict: bool = False) -> str:
        """Render with ``context`` as the root. ``strict=True`` makes a path that does not exist
        (as opposed to one holding null) raise TemplateError, except in an ``#if``/``#unless``
        condition, which exists to test presence."""
        out: list[str] = []
        self._fn(Frame(context, None, {}, None, context, strict), out)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.name!r})"


def compile_template(source: str, name: str = "<template>") -> Template:
    """Parse ``source`` into a Template; raises TemplateError (with ``name``, line and column)
    on a syntax error, an unknown helper or a helper called with the wrong number of arguments."""
    smap = SourceMap(source, name)
    tokens = Lexer(source, smap).run()
    nodes = Parser(tokens, smap).parse()
    return Template(source, name, Compiler(smap).program(nodes))

"""Handlebars templates for Habitat plans (hooks and config files), written from scratch to
render exactly what Habitat's engine, handlebars-rust 6.3, renders.

Usage::

    tpl = compile_template(source, name="config/redis.config")  # parse once
    text = tpl.render({"cfg": cfg, "sys": sys, ...})  # render many times

What that means in practice (docs/templates.md has the full list and the few deviations):

* Syntax is handlebars-rust's grammar: whitespace is allowed inside tags (``{{ #if x }}``,
  ``{{~ /if }}``, ``{{ else }}``), ``{{^}}`` is an else but ``{{^x}}`` sections do not exist,
  partials and decorators are not supported.
* Whitespace control (``~`` and standalone lines) follows handlebars-rust, not Handlebars.js.
* No HTML escaping anywhere (Habitat registers a no-op escape function).
* ``{{x}}`` prints a list as ``[a, b]`` and a mapping as ``[object]``; numbers like serde_json.
* Truthiness: null, false, 0, "", [] and {} are falsy.
* Errors (unknown helper, a helper refusing its arguments, a list indexed by a name) are raised
  when the offending tag is rendered, as in handlebars-rust; a missing value renders as "" unless
  ``render(..., strict=True)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import SourceMap, TemplateError
from .helpers import OUTPUT_HELPERS, VALUE_HELPERS
from .parser import Builder, Node
from .render import Ctx, Renderer
from .syntax import Scanner

__all__ = ["Template", "TemplateError", "compile_template"]


class Template:
    """A compiled template; immutable and safe to render concurrently."""

    __slots__ = ("_nodes", "_renderer", "name", "source")

    def __init__(self, source: str, name: str, nodes: list[Node], renderer: Renderer) -> None:
        self.source = source
        self.name = name
        self._nodes = nodes
        self._renderer = renderer

    def render(self, context: Mapping[str, Any], *, strict: bool = False) -> str:
        """Render with ``context`` as the root. ``strict=True`` makes a ``{{path}}`` that does
        not exist (as opposed to one holding null) raise TemplateError."""
        ctx = Ctx(context, strict)
        self._renderer.nodes(self._nodes, ctx)
        return "".join(ctx.out)

    def __repr__(self) -> str:
        return f"Template({self.name!r})"


def compile_template(source: str, name: str = "<template>") -> Template:
    """Parse ``source`` into a Template; raises TemplateError (with ``name``, line and column)
    where handlebars-rust refuses the template."""
    smap = SourceMap(source, name)
    tokens = Scanner(source, smap).run()
    nodes = Builder(source, smap).build(tokens)
    return Template(source, name, nodes, Renderer(smap, VALUE_HELPERS, OUTPUT_HELPERS))

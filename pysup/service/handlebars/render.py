"""Renders the tree the way handlebars-rust 6.3 does.

Scoping is handlebars-rust's block stack: the root, and one block per ``each``/``with``/
``eachAlive`` (``if``/``unless`` push none). A path resolves, in order: as a block parameter
(``as |x|``) of any enclosing block, searched from the innermost, whatever ``../`` precede it;
with ``../`` (n of them), from the value of the n-th enclosing block (or the innermost one when
there are fewer); with ``@root.``, from the root; otherwise from the innermost block's value.
``@index``/``@key``/``@first``/``@last`` are variables of the innermost block only
(``@../index`` of the next one), so ``{{#with}}`` hides the loop's ``@index``.

Errors happen when the offending tag is rendered, as in handlebars-rust: an unknown helper, a
helper refusing its arguments, a list indexed with a non-number (``list.length``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import HelperError, SourceMap, TemplateError
from .nodes import LOCAL, ROOT, UP, Literal, Param, PathRef, Spec, SubExpr
from .parser import Block, Expr, Node, Text
from .values import MISSING, IndexError_, get, render


class Scope:
    """One entry of the block stack: its value, block parameters and @-variables."""

    __slots__ = ("base", "locals", "params")

    def __init__(self, base: Any) -> None:
        self.base = base
        self.params: dict[str, Any] | None = None
        self.locals: dict[str, Any] | None = None


class Ctx:
    """Render state: the block stack (innermost last), the root, strictness and the output."""

    __slots__ = ("blocks", "out", "root", "strict")

    def __init__(self, root: Any, strict: bool) -> None:
        self.root = root
        self.blocks = [Scope(root)]
        self.strict = strict
        self.out: list[str] = []


class Call:
    """What a helper gets: evaluated arguments, the block's bodies, the render state."""

    __slots__ = ("block_params", "ctx", "hash", "inverse", "name", "params", "program", "render")

    def __init__(
        self,
        name: str,
        params: list[Any],
        hash: dict[str, Any],
        block: Block | None,
        ctx: Ctx,
        renderer: Renderer,
    ) -> None:
        self.name = name
        self.params = params  # values; MISSING where a path did not resolve
        self.hash = hash
        self.program = block.program if block is not None else None
        self.inverse = block.inverse if block is not None else None
        self.block_params = block.spec.block_params if block is not None else ()
        self.ctx = ctx
        self.render = renderer

    def param(self, i: int) -> Any:
        """The i-th argument, or HelperError when it was not given."""
        if i >= len(self.params):
            raise HelperError(f"param {i} not found for helper '{self.name}'")
        return self.params[i]

    def body(self, nodes: Sequence[Node] | None) -> None:
        if nodes:
            self.render.nodes(nodes, self.ctx)

    def push(self, base: Any) -> Scope:
        scope = Scope(base)
        self.ctx.blocks.append(scope)
        return scope

    def pop(self) -> None:
        self.ctx.blocks.pop()


ValueHelper = Callable[[Call], Any]  # returns a value (handlebars-rust's call_inner)
OutputHelper = Callable[[Call], None]  # writes to call.ctx.out (handlebars-rust's call)


class Renderer:
    def __init__(
        self,
        smap: SourceMap,
        value_helpers: Mapping[str, ValueHelper],
        output_helpers: Mapping[str, OutputHelper],
    ) -> None:
        self.smap = smap
        self.value_helpers = value_helpers
        self.output_helpers = output_helpers

    def error(self, offset: int, detail: str) -> TemplateError:
        return self.smap.error(offset, detail)

    def is_helper(self, name: str) -> bool:
        return name in self.value_helpers or name in self.output_helpers

    # ---- nodes ---------------------------------------------------------------------------------

    def nodes(self, nodes: Sequence[Node], ctx: Ctx) -> None:
        out = ctx.out
        for node in nodes:
            if type(node) is Text:
                out.append(node.value)
            elif type(node) is Expr:
                self.expression(node, ctx)
            else:
                assert isinstance(node, Block)
                self.call_helper(node.spec, node, ctx, node.offset)

    def expression(self, node: Expr, ctx: Ctx) -> None:
        spec = node.spec
        if spec.name_only:
            head = spec.name
            name = head if isinstance(head, str) else self.name_of(head, ctx, node.offset)
            if self.is_helper(name):
                self.call_helper(spec, None, ctx, node.offset)
                return
            assert not isinstance(head, str)
            value = self.param(head, ctx)
            if value is MISSING:
                if ctx.strict:
                    raise self.error(node.offset, f"missing value '{name}'")
                return
            ctx.out.append(render(value))
            return
        self.call_helper(spec, None, ctx, node.offset)

    def name_of(self, head: PathRef | SubExpr, ctx: Ctx, offset: int) -> str:
        if isinstance(head, PathRef):
            return head.raw
        return render(self.subexpression(head, ctx))

    def call_helper(self, spec: Spec, block: Block | None, ctx: Ctx, offset: int) -> None:
        name = spec.helper_name
        params = [self.param(p, ctx) for p in spec.params]
        hashes = {k: self.param(v, ctx) for k, v in spec.hash}
        call = Call(name, params, hashes, block, ctx, self)
        try:
            out_fn = self.output_helpers.get(name)
            if out_fn is not None:
                out_fn(call)
                return
            value_fn = self.value_helpers.get(name)
            if value_fn is None:
                raise self.error(offset, f"helper not found: '{name}'")
            value = value_fn(call)
        except HelperError as e:
            raise self.error(offset, f"{name}: {e}") from None
        if value is MISSING and ctx.strict:
            raise self.error(offset, f"{name}: missing value")
        ctx.out.append(render(value))

    # ---- values --------------------------------------------------------------------------------

    def param(self, p: Param, ctx: Ctx) -> Any:
        if type(p) is PathRef:
            return self.path(p, ctx)
        if type(p) is Literal:
            return p.value
        assert isinstance(p, SubExpr)
        return self.subexpression(p, ctx)

    def subexpression(self, sub: SubExpr, ctx: Ctx) -> Any:
        name = sub.name if isinstance(sub.name, str) else sub.name.raw
        params = [self.param(p, ctx) for p in sub.params]
        hashes = {k: self.param(v, ctx) for k, v in sub.hash}
        call = Call(name, params, hashes, None, ctx, self)
        try:
            value_fn = self.value_helpers.get(name)
            if value_fn is not None:
                return value_fn(call)
            out_fn = self.output_helpers.get(name)
            if out_fn is None:
                raise self.error(sub.offset, f"helper not found: '{name}'")
            saved, ctx.out = ctx.out, []
            try:
                out_fn(call)
                return "".join(ctx.out)
            finally:
                ctx.out = saved
        except HelperError as e:
            raise self.error(sub.offset, f"{name}: {e}") from None

    def path(self, ref: PathRef, ctx: Ctx) -> Any:
        try:
            return _resolve(ref, ctx)
        except IndexError_ as e:
            raise self.error(ref.offset, f"cannot index a list with '{e}' in '{ref.raw}'") from None


def _traverse(value: Any, names: Sequence[str]) -> Any:
    for name in names:
        if value is MISSING:
            return MISSING
        value = get(value, name)
    return value


def _resolve(ref: PathRef, ctx: Ctx) -> Any:
    segs = ref.segs
    blocks = ctx.blocks
    if segs and segs[0] == LOCAL:
        local = ref.local
        if local is not None:
            level, name = local
            if level >= len(blocks):
                return MISSING
            scope_vars = blocks[-1 - level].locals
            return MISSING if scope_vars is None else scope_vars.get(name, MISSING)
    depth = 0
    first: str | None = None
    from_root = False
    rest_at = 0
    for i, seg in enumerate(segs):
        if type(seg) is str:
            first, rest_at = seg, i + 1
            break
        if seg == ROOT:
            from_root = True
            break
        if seg != UP:
            break
        depth += 1
    names = [s for s in segs if type(s) is str]
    if first is not None:
        for scope in reversed(blocks):
            if scope.params is not None and first in scope.params:
                return _traverse(scope.params[first], [s for s in segs[rest_at:] if type(s) is str])
    if depth > 0:
        base = blocks[-1 - depth].base if depth < len(blocks) else blocks[-1].base
        return _traverse(base, names)
    if from_root:
        return _traverse(ctx.root, names)
    return _traverse(blocks[-1].base, names)

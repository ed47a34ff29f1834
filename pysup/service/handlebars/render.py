"""Compiles the AST into nested closures once; rendering just calls them.

Scoping follows Handlebars.js: ``each``/``with``/``eachAlive`` (and a section over a path) push a
new context frame, so ``../`` inside them reaches the enclosing context; ``if``/``unless`` do not.
Data variables (``@index``, ``@key``, ``@first``, ``@last``) live in a chain of data frames
(``@../index`` reads the enclosing loop's); ``@root`` is the context given to ``render``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import HelperError, SourceMap, TemplateError
from .helpers import BLOCK_HELPERS, HELPERS
from .parser import BlockNode, Call, Expr, Literal, MustacheNode, Node, PathExpr, SubExpr
from .values import MISSING, get, plain, to_str, truthy

Data = dict[str, Any]


class Frame:
    __slots__ = ("ctx", "data", "params", "root", "strict", "up")

    def __init__(
        self,
        ctx: Any,
        up: Frame | None,
        data: Data,
        params: dict[str, Any] | None,
        root: Any,
        strict: bool,
    ) -> None:
        self.ctx = ctx
        self.up = up  # the enclosing context, for "../"
        self.data = data  # "@" variables; key "../" links the enclosing data frame
        self.params = params  # block parameters in scope ("as |x|"), innermost wins
        self.root = root
        self.strict = strict


Out = list[str]
RenderFn = Callable[[Frame, Out], None]
EvalFn = Callable[[Frame], Any]


def _nothing(frame: Frame, out: Out) -> None:
    return None


def _data_get(data: Data | None, name: str) -> Any:
    while data is not None:
        value = data.get(name, MISSING)
        if value is not MISSING:
            return value
        data = data.get("../")
    return MISSING


def _traverse(value: Any, parts: Sequence[str]) -> Any:
    for part in parts:
        value = get(value, part)
        if value is MISSING:
            return MISSING
    return value


def _is_alive(member: Any) -> bool:
    if not isinstance(member, Mapping):
        return False
    if member.get("alive") is True:
        return True
    health = member.get("health")
    return isinstance(health, str) and health.lower() == "alive"


def _pairs(value: Any) -> list[tuple[Any, Any]] | None:
    """(key, item) pairs of a list or mapping; None for anything else."""
    if isinstance(value, list | tuple):
        return list(enumerate(value))
    if isinstance(value, Mapping):
        return list(value.items())
    return None


def _iterate(
    frame: Frame, out: Out, pairs: list[tuple[Any, Any]], body: RenderFn, names: Sequence[str]
) -> None:
    last = len(pairs) - 1
    parent = frame.data
    outer_params = frame.params
    for i, (key, item) in enumerate(pairs):
        data = {"index": i, "key": key, "first": i == 0, "last": i == last, "../": parent}
        params = outer_params
        if names:
            params = dict(outer_params) if outer_params else {}
            params[names[0]] = item
            if len(names) > 1:
                params[names[1]] = key
        body(Frame(item, frame, data, params, frame.root, frame.strict), out)


class Compiler:
    def __init__(self, smap: SourceMap) -> None:
        self.smap = smap

    def error(self, offset: int, detail: str) -> TemplateError:
        return self.smap.error(offset, detail)

    # ---- programs and nodes ------------------------------------------------------------------

    def program(self, nodes: Sequence[Node] | None) -> RenderFn:
        if not nodes:
            return _nothing
        fns = [self.node(n) for n in nodes]
        if len(fns) == 1:
            return fns[0]
        fns_t = tuple(fns)

        def run(frame: Frame, out: Out) -> None:
            for fn in fns_t:
                fn(frame, out)

        return run

    def node(self, node: Node) -> RenderFn:
        if isinstance(node, MustacheNode):
            return self.mustache(node)
        if isinstance(node, BlockNode):
            return self.block(node)
        text = node.value

        def emit(frame: Frame, out: Out) -> None:
            out.append(text)

        return emit

    def mustache(self, node: MustacheNode) -> RenderFn:
        ev = self.call(node.call, lenient=False, in_sexpr=False)

        def emit(frame: Frame, out: Out) -> None:
            value = ev(frame)
            if type(value) is str:
                out.append(value)
            else:
                out.append(to_str(value))

        return emit

    # ---- expressions ---------------------------------------------------------------------------

    def expr(self, expr: Expr, *, lenient: bool = False) -> EvalFn:
        if isinstance(expr, Literal):
            value = expr.value
            return lambda frame: value
        if isinstance(expr, SubExpr):
            return self.call(expr.call, lenient=lenient, in_sexpr=True)
        return self.path(expr, lenient=lenient)

    def call(self, call: Call, *, lenient: bool, in_sexpr: bool) -> EvalFn:
        """Value of a mustache or subexpression: a helper call, or a plain path/literal."""
        head = call.head
        if isinstance(head, PathExpr) and head.is_simple:
            name = head.parts[0]
            if name in BLOCK_HELPERS:
                raise self.error(call.offset, f"'{name}' is a block helper: use '{{{{#{name}}}}}'")
            if name in HELPERS:
                return self.helper(name, call)
        if call.block_params:
            raise self.error(call.offset, "block parameters are only allowed on blocks")
        if in_sexpr or not call.is_bare:
            if isinstance(head, PathExpr):
                raise self.error(call.offset, f"unknown helper '{head.original}'")
            raise self.error(call.offset, "only a helper name can take arguments")
        return self.expr(head, lenient=lenient)

    def helper(self, name: str, call: Call) -> EvalFn:
        spec = HELPERS[name]
        n = len(call.params)
        if n < spec.min_args or (spec.max_args is not None and n > spec.max_args):
            if spec.max_args is None:
                want = f"at least {spec.min_args}"
            elif spec.min_args == spec.max_args:
                want = str(spec.min_args)
            else:
                want = f"{spec.min_args} to {spec.max_args}"
            plural = "" if (spec.max_args or spec.min_args) == 1 else "s"
            raise self.error(call.offset, f"'{name}' takes {want} argument{plural}, got {n}")
        args = tuple(self.expr(p) for p in call.params)
        hashes = tuple((k, self.expr(v)) for k, v in call.hash)
        fn = spec.fn
        offset = call.offset

        def ev(frame: Frame) -> Any:
            values = [plain(a(frame)) for a in args]
            kw = {k: plain(h(frame)) for k, h in hashes}
            try:
                return fn(values, kw, frame.root)
            except HelperError as e:
                raise self.error(offset, f"{name}: {e}") from None

        return ev

    def path(self, path: PathExpr, *, lenient: bool) -> EvalFn:
        ev = self._path(path)
        if lenient:
            return ev
        original = path.original
        offset = path.offset

        def strict(frame: Frame) -> Any:
            value = ev(frame)
            if value is MISSING and frame.strict:
                raise self.error(offset, f"missing value '{original}'")
            return value

        return strict

    def _path(self, path: PathExpr) -> EvalFn:
        parts = path.parts
        depth = path.depth
        if path.data:
            name, rest = parts[0], parts[1:]
            if name == "root" and depth == 0:
                return lambda frame: _traverse(frame.root, rest)

            def data(frame: Frame) -> Any:
                d: Data | None = frame.data
                for _ in range(depth):
                    d = d.get("../") if d is not None else None
                value = _data_get(d, name)
                return _traverse(value, rest) if rest and value is not MISSING else value

            return data
        if depth:

            def parent(frame: Frame) -> Any:
                f: Frame | None = frame
                for _ in range(depth):
                    f = f.up if f is not None else None
                return MISSING if f is None else _traverse(f.ctx, parts)

            return parent
        if path.scoped:
            if not parts:
                return lambda frame: frame.ctx
            return lambda frame: _traverse(frame.ctx, parts)
        head, rest = parts[0], parts[1:]

        def lookup(frame: Frame) -> Any:
            params = frame.params
            in_params = params is not None and head in params
            value = params[head] if in_params else get(frame.ctx, head)  # type: ignore[index]
            if rest and value is not MISSING:
                return _traverse(value, rest)
            return value

        return lookup

    # ---- blocks --------------------------------------------------------------------------------

    def block(self, node: BlockNode) -> RenderFn:
        call = node.call
        head = call.head
        assert isinstance(head, PathExpr)
        body = self.program(node.program)
        inverse = self.program(node.inverse)
        if head.is_simple and head.parts[0] in BLOCK_HELPERS:
            name = head.parts[0]
            if len(call.params) != 1:
                raise self.error(call.offset, f"'#{name}' takes exactly one argument")
            if name in ("if", "unless"):
                return self._if(call, body, inverse, negate=name == "unless")
            if name == "with":
                return self._with(call, body, inverse)
            return self._each(call, body, inverse, alive_only=name == "eachAlive")
        if head.is_simple and head.parts[0] in HELPERS:
            raise self.error(call.offset, f"'{head.parts[0]}' is not a block helper")
        if not call.is_bare:
            raise self.error(call.offset, f"unknown helper '{head.original}'")
        if call.block_params:
            raise self.error(call.offset, "block parameters need a block helper (each, with, ...)")
        return self._section(head, body, inverse)

    def _check_params(self, call: Call, allowed: int, name: str) -> tuple[str, ...]:
        if len(call.block_params) > allowed:
            raise self.error(call.offset, f"'#{name}' takes at most {allowed} block parameters")
        return call.block_params

    def _if(self, call: Call, body: RenderFn, inverse: RenderFn, *, negate: bool) -> RenderFn:
        self._check_params(call, 0, "unless" if negate else "if")
        cond = self.expr(call.params[0], lenient=True)
        include_zero = False
        for key, value in call.hash:
            if key != "includeZero" or not isinstance(value, Literal):
                raise self.error(call.offset, f"unsupported argument '{key}=' on '#if'")
            include_zero = bool(value.value)
        first, second = (inverse, body) if negate else (body, inverse)

        def run(frame: Frame, out: Out) -> None:
            if truthy(cond(frame), include_zero):
                first(frame, out)
            else:
                second(frame, out)

        return run

    def _with(self, call: Call, body: RenderFn, inverse: RenderFn) -> RenderFn:
        names = self._check_params(call, 1, "with")
        ev = self.expr(call.params[0])

        def run(frame: Frame, out: Out) -> None:
            value = ev(frame)
            if not truthy(value):
                inverse(frame, out)
                return
            params = frame.params
            if names:
                params = dict(params) if params else {}
                params[names[0]] = value
            body(Frame(value, frame, frame.data, params, frame.root, frame.strict), out)

        return run

    def _each(self, call: Call, body: RenderFn, inverse: RenderFn, *, alive_only: bool) -> RenderFn:
        names = self._check_params(call, 2, "eachAlive" if alive_only else "each")
        ev = self.expr(call.params[0])

        def run(frame: Frame, out: Out) -> None:
            pairs = _pairs(ev(frame))
            if pairs and alive_only:
                pairs = [(k, m) for k, m in pairs if _is_alive(m)]
            if pairs:
                _iterate(frame, out, pairs, body, names)
            else:
                inverse(frame, out)

        return run

    def _section(self, head: PathExpr, body: RenderFn, inverse: RenderFn) -> RenderFn:
        """``{{#path}}`` without a helper (Handlebars' blockHelperMissing): iterate a list, enter
        a truthy value as the new context, or render the inverse for a falsy one."""
        ev = self.path(head, lenient=False)

        def run(frame: Frame, out: Out) -> None:
            value = ev(frame)
            if not truthy(value):
                inverse(frame, out)
            elif value is True:
                body(frame, out)
            elif isinstance(value, list | tuple):
                _iterate(frame, out, list(enumerate(value)), body, ())
            else:
                body(Frame(value, frame, frame.data, frame.params, frame.root, frame.strict), out)

        return run

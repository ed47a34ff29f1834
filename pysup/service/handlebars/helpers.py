"""Helpers: handlebars-rust's built-ins and Habitat's, with their exact semantics.

Value helpers return a value (usable in subexpressions as that value): ``lookup``, ``eq``, ``ne``,
``gt``, ``gte``, ``lt``, ``lte``, ``and``, ``or``, ``not``, ``len``. Output helpers write text
(in a subexpression their text becomes a string): ``if``, ``unless``, ``each``, ``with``, ``raw``,
``log`` and all of Habitat's (``eachAlive``, ``pkgPathFor``, ``strConcat``, ``strJoin``,
``strReplace``, ``toUppercase``, ``toLowercase``, ``toJson``, ``toToml``, ``toYaml``), as in
Habitat, where they are handlebars-rust ``call`` helpers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pysup.service.pkgpaths import path_for

from .errors import HelperError
from .render import Call, OutputHelper, ValueHelper
from .tomlout import TomlError, dump_document, dump_value
from .values import get, json_equal, plain, to_json, to_str, truthy
from .yamlout import dump_yaml

HelperFn = Callable[[Sequence[Any], Mapping[str, Any], Any], Any]

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1

# ---- handlebars-rust built-ins -------------------------------------------------------------------


def _if(call: Call, *, negate: bool = False) -> None:
    cond = call.param(0)
    include_zero = call.hash.get("includeZero") is True
    if truthy(cond, include_zero) != negate:
        call.body(call.program)
    else:
        call.body(call.inverse)


def _unless(call: Call) -> None:
    _if(call, negate=True)


def _iterate(call: Call, pairs: list[tuple[Any, Any]], keyed: bool, index_from: int = 0) -> None:
    scope = call.push(None)
    names = call.block_params
    last = len(pairs) - 1
    for i, (key, item) in enumerate(pairs):
        scope.base = item
        local: dict[str, Any] = {"first": i == 0, "last": i == last, "index": i + index_from}
        if keyed:
            local["key"] = key
        scope.locals = local
        if len(names) == 1:
            scope.params = {names[0]: item}
        elif len(names) == 2:
            scope.params = {names[0]: item, names[1]: key if keyed else i + index_from}
        call.body(call.program)
    call.pop()


def _each(call: Call) -> None:
    value = call.param(0)
    if call.program is None:
        return
    has_inverse = call.inverse is not None
    if isinstance(value, list | tuple) and (value or not has_inverse):
        _iterate(call, list(enumerate(value)), keyed=False)
    elif isinstance(value, Mapping) and (value or not has_inverse):
        _iterate(call, [(str(k), v) for k, v in value.items()], keyed=True)
    else:
        call.body(call.inverse)


def _with(call: Call) -> None:
    value = call.param(0)
    if not truthy(value):
        call.body(call.inverse)
        return
    scope = call.push(value)
    if len(call.block_params) == 1:
        scope.params = {call.block_params[0]: value}
    call.body(call.program)
    call.pop()


def _raw(call: Call) -> None:
    call.body(call.program)


def _log(call: Call) -> None:
    return None  # handlebars-rust logs at debug level and writes nothing


def _lookup(call: Call) -> Any:
    coll, key = call.param(0), call.param(1)
    if isinstance(coll, list | tuple):
        ok = isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(coll)
        return coll[key] if ok else None
    if isinstance(coll, Mapping) and isinstance(key, str):
        return coll.get(key, None)
    return None


def _number(text: str) -> int | float | None:
    """serde_json's Number::from_str: a JSON number or None."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _compare(a: Any, b: Any) -> int | None:
    """handlebars-rust's compare_json: numbers, strings, bools, or number vs numeric string."""
    a, b = plain(a), plain(b)
    if isinstance(a, str) and isinstance(b, int | float) and not isinstance(b, bool):
        r = _compare(b, a)
        return None if r is None else -r
    if isinstance(a, bool) or isinstance(b, bool):
        if isinstance(a, bool) and isinstance(b, bool):
            return (a > b) - (a < b)
        return None
    if isinstance(a, int | float) and isinstance(b, str):
        b = _number(b)
        if b is None:
            return None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    return None


def _value_helper(arity: int, fn: Callable[..., Any]) -> ValueHelper:
    def helper(call: Call) -> Any:
        return fn(*(plain(call.param(i)) for i in range(arity)))

    return helper


def _len(x: Any) -> int:
    if isinstance(x, list | tuple | Mapping):
        return len(x)
    if isinstance(x, str):
        return len(x.encode("utf-8"))  # Rust's str::len counts bytes
    return 0


# ---- Habitat's helpers ---------------------------------------------------------------------------


def _is_alive(member: Any) -> bool:
    if not isinstance(member, Mapping) or "alive" not in member:
        return False
    alive = member["alive"]
    if not isinstance(alive, bool):
        raise HelperError(f"member field 'alive' is not a boolean: {alive!r}")
    return alive


def _each_alive(call: Call) -> None:
    """Habitat's eachAlive: each over the members whose ``alive`` is true. Like Habitat,
    ``@index`` (and a second block parameter) counts alive members from 1, and an empty result
    renders nothing (not the else branch)."""
    value = call.param(0)
    if call.program is None:
        return
    if not truthy(value):
        call.body(call.inverse)
    elif isinstance(value, list | tuple):
        alive = [m for m in value if _is_alive(m)]
        _iterate(call, list(enumerate(alive)), keyed=False, index_from=1)
    elif isinstance(value, Mapping):
        if _is_alive(value):
            _iterate_object_members(call, value)
    else:
        raise HelperError("Param type is not iterable.")


def _iterate_object_members(call: Call, obj: Mapping[str, Any]) -> None:
    scope = call.push(None)
    names = call.block_params
    for i, (key, item) in enumerate(obj.items()):
        scope.base = item
        scope.locals = {"first": i == 0, "key": str(key)}
        if len(names) == 1:
            scope.params = {names[0]: item}
        elif len(names) == 2:
            scope.params = {names[0]: item, names[1]: str(key)}
        call.body(call.program)
    call.pop()


def _unquoted(value: Any) -> str:
    """Habitat's ``v.to_string().replace('"', "")``: compact JSON with every quote removed."""
    return to_json(value, pretty=False).replace('"', "")


def _str_concat(call: Call) -> None:
    parts = [_unquoted(v) for v in call.params if not isinstance(v, Mapping)]
    call.ctx.out.append("".join(parts))


def _str_join(call: Call) -> None:
    items = plain(call.params[0]) if call.params else None
    sep = plain(call.params[1]) if len(call.params) > 1 else None
    if not isinstance(items, list | tuple):
        raise HelperError("first argument must be a list")
    if not isinstance(sep, str):
        raise HelperError("second argument must be a string")
    call.ctx.out.append(sep.join(_unquoted(i) for i in items if not isinstance(i, Mapping)))


def _strings(call: Call, n: int) -> list[str]:
    values = [plain(call.params[i]) if i < len(call.params) else None for i in range(n)]
    strings = [v for v in values if isinstance(v, str)]
    if len(strings) != n:
        raise HelperError(f"expects {n} string argument{'s' if n > 1 else ''}")
    return strings


def _str_replace(call: Call) -> None:
    s, old, new = _strings(call, 3)
    call.ctx.out.append(s.replace(old, new))


def _upper(call: Call) -> None:
    call.ctx.out.append(_strings(call, 1)[0].upper())


def _lower(call: Call) -> None:
    call.ctx.out.append(_strings(call, 1)[0].lower())


def _to_json(call: Call) -> None:
    call.ctx.out.append(to_json(call.param(0), pretty=True))


def _serde_value(value: Any) -> Any:
    """The value as Habitat's helpers get it (a ``serde_json::Value``): plain dicts and lists,
    non-finite floats as None, integers outside i64/u64 as floats."""
    if isinstance(value, Mapping):
        return {str(k): _serde_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_serde_value(v) for v in value]
    value = plain(value)
    if isinstance(value, int) and not isinstance(value, bool) and not _I64_MIN <= value <= _U64_MAX:
        return float(value)
    return value


def _to_toml(call: Call) -> None:
    """Habitat's toToml: ``toml::to_string`` for an object, the ``ValueSerializer`` otherwise."""
    value = _serde_value(call.param(0))
    try:
        text = dump_document(value) if isinstance(value, Mapping) else dump_value(value)
    except TomlError as e:
        raise HelperError(f"Can't serialize parameter to TOML: {e}") from e
    call.ctx.out.append(text)


def _to_yaml(call: Call) -> None:
    """Habitat's toYaml: ``serde_yaml::to_string``."""
    call.ctx.out.append(dump_yaml(_serde_value(call.param(0))))


def _pkg_path_for(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    """Install path of the ``pkg.deps`` entry matching ``origin/name[/version[/release]]``; ""
    when none matches (``pysup.service.pkgpaths.path_for`` decides)."""
    ident = to_str(args[0])
    deps = get(get(root, "pkg"), "deps")
    path = path_for(ident, deps if isinstance(deps, list | tuple) else ())
    if path is None:
        raise HelperError(f"{ident!r} is not a package identifier like 'origin/name'")
    return path


def _legacy(fn: HelperFn) -> OutputHelper:
    """Adapts an ``(args, hash, root)`` helper (pkgPathFor's signature) to an output helper."""

    def helper(call: Call) -> None:
        args = [plain(a) for a in call.params]
        if not args:
            raise HelperError("param 0 not found")
        value = fn(args, {k: plain(v) for k, v in call.hash.items()}, call.ctx.root)
        call.ctx.out.append(to_str(value))

    return helper


VALUE_HELPERS: Mapping[str, ValueHelper] = {
    "lookup": _lookup,
    "eq": _value_helper(2, json_equal),
    "ne": _value_helper(2, lambda a, b: not json_equal(a, b)),
    "gt": _value_helper(2, lambda a, b: _compare(a, b) == 1),
    "gte": _value_helper(2, lambda a, b: _compare(a, b) in (0, 1)),
    "lt": _value_helper(2, lambda a, b: _compare(a, b) == -1),
    "lte": _value_helper(2, lambda a, b: _compare(a, b) in (0, -1)),
    "not": _value_helper(1, lambda a: not truthy(a)),
    "len": _value_helper(1, _len),
    "and": lambda call: all(truthy(p) for p in call.params),
    "or": lambda call: any(truthy(p) for p in call.params),
}

OUTPUT_HELPERS: Mapping[str, OutputHelper] = {
    "if": _if,
    "unless": _unless,
    "each": _each,
    "with": _with,
    "raw": _raw,
    "log": _log,
    "eachAlive": _each_alive,
    "pkgPathFor": _legacy(_pkg_path_for),
    "strConcat": _str_concat,
    "strJoin": _str_join,
    "strReplace": _str_replace,
    "toUppercase": _upper,
    "toLowercase": _lower,
    "toJson": _to_json,
    "toToml": _to_toml,
    "toYaml": _to_yaml,
}

HELPER_NAMES = frozenset(VALUE_HELPERS) | frozenset(OUTPUT_HELPERS)

"""Inline helpers: Habitat's (strConcat, toJson, pkgPathFor, ...) plus Handlebars' ``lookup`` and
handlebars-rust's comparison/logic helpers (eq, ne, gt, gte, lt, lte, and, or, not, len).

Every helper takes ``(args, hash, root)`` -- positional values (MISSING already mapped to None),
``key=value`` arguments and the template's root context -- and returns a value. Misuse raises
HelperError, which the renderer turns into a TemplateError at the tag's position.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tomli_w

from pysup.service.pkgpaths import path_for

from .errors import HelperError
from .values import MISSING, get, to_json, to_str, truthy
from .yamlout import dump_yaml

HelperFn = Callable[[Sequence[Any], Mapping[str, Any], Any], Any]


@dataclass(frozen=True, slots=True)
class HelperSpec:
    fn: HelperFn
    min_args: int
    max_args: int | None  # None: any number


def _lookup(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    obj, key = args
    if key is None:
        return None
    if isinstance(key, bool) or not isinstance(key, int | str):
        key = to_str(key)
    value = get(obj, str(key))
    return None if value is MISSING else value


def _str_concat(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return "".join(to_str(a) for a in args)


def _str_join(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    items, sep = args
    if items is None:
        return ""
    if not isinstance(items, list | tuple):
        raise HelperError(f"first argument must be a list, got {type(items).__name__}")
    return to_str(sep).join(to_str(i) for i in items)


def _str_replace(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    s, old, new = args
    return to_str(s).replace(to_str(old), to_str(new))


def _upper(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return to_str(args[0]).upper()


def _lower(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return to_str(args[0]).lower()


def _to_json(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return to_json(args[0], pretty=True)


def _plain_data(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_data(v) for v in value]
    return value


def _to_toml(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    value = args[0]
    if not isinstance(value, Mapping):
        raise HelperError(f"needs a table (mapping), got {type(value).__name__}")
    try:
        return tomli_w.dumps(_plain_data(value))
    except (TypeError, ValueError) as e:
        raise HelperError(f"cannot encode as TOML: {e}") from e


def _to_yaml(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return dump_yaml(args[0])


def _pkg_path_for(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    """Install path of the ``pkg.deps`` entry matching ``origin/name[/version[/release]]``; ""
    when none matches (``pysup.service.pkgpaths.path_for`` decides)."""
    ident = to_str(args[0])
    deps = get(get(root, "pkg"), "deps")
    path = path_for(ident, deps if isinstance(deps, list | tuple) else ())
    if path is None:
        raise HelperError(f"{ident!r} is not a package identifier like 'origin/name'")
    return path


def _compare(op: Callable[[Any, Any], bool]) -> HelperFn:
    def helper(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
        a, b = args
        try:
            return op(a, b)
        except TypeError as e:
            raise HelperError(f"cannot compare {a!r} and {b!r}") from e

    return helper


def _and(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return all(truthy(a) for a in args)


def _or(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return any(truthy(a) for a in args)


def _not(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    return not truthy(args[0])


def _len(args: Sequence[Any], hash: Mapping[str, Any], root: Any) -> Any:
    value = args[0]
    if value is None:
        return 0
    if isinstance(value, str | list | tuple | Mapping):
        return len(value)
    raise HelperError(f"needs a string, list or mapping, got {type(value).__name__}")


HELPERS: Mapping[str, HelperSpec] = {
    "lookup": HelperSpec(_lookup, 2, 2),
    "strConcat": HelperSpec(_str_concat, 1, None),
    "strJoin": HelperSpec(_str_join, 2, 2),
    "strReplace": HelperSpec(_str_replace, 3, 3),
    "toUppercase": HelperSpec(_upper, 1, 1),
    "toLowercase": HelperSpec(_lower, 1, 1),
    "toJson": HelperSpec(_to_json, 1, 1),
    "toToml": HelperSpec(_to_toml, 1, 1),
    "toYaml": HelperSpec(_to_yaml, 1, 1),
    "pkgPathFor": HelperSpec(_pkg_path_for, 1, 1),
    "eq": HelperSpec(_compare(lambda a, b: bool(a == b)), 2, 2),
    "ne": HelperSpec(_compare(lambda a, b: bool(a != b)), 2, 2),
    "gt": HelperSpec(_compare(lambda a, b: bool(a > b)), 2, 2),
    "gte": HelperSpec(_compare(lambda a, b: bool(a >= b)), 2, 2),
    "lt": HelperSpec(_compare(lambda a, b: bool(a < b)), 2, 2),
    "lte": HelperSpec(_compare(lambda a, b: bool(a <= b)), 2, 2),
    "and": HelperSpec(_and, 2, None),
    "or": HelperSpec(_or, 2, None),
    "not": HelperSpec(_not, 1, 1),
    "len": HelperSpec(_len, 1, 1),
}

BLOCK_HELPERS = frozenset({"if", "unless", "each", "with", "eachAlive"})

"""handlebars-rust as an oracle for pysup's templates, and the comparison of the two.

The oracle is PyPI ``dotprompt-handlebars`` 0.1.1 (module ``handlebarrz``), a binding of
handlebars-rust 6.3.2, the engine Habitat's Supervisor used from 2025-03 (and 6.4.x since
2026-01). Habitat registers its helpers as Rust code; here they are registered as Python
helpers that transliterate that Rust code (components/common/src/templating/helpers/*.rs):

* compared: strConcat, strJoin, strReplace, toUppercase, toLowercase, toJson, pkgPathFor (over
  ``pkg.deps`` idents, as Habitat resolves them: ``/hab/pkgs/<ident>``), and eachAlive through a
  rewrite to ``each`` over the alive members (handlebarrz's helper API cannot render a block with
  a new context). Habitat's eachAlive counts ``@index`` from 1 and skips its else branch when no
  member is alive, which ``each`` cannot imitate: generated templates avoid both, unit tests
  cover them.
* toToml and toYaml: the oracle side calls pysup's own implementation, so templates using them
  compare everything around them; the emitters themselves are compared with the Rust crates
  Habitat uses in bench/serde_oracle.py.

The oracle's serde_json sorts object keys (Habitat's keeps insertion order, as pysup does), so
contexts given to ``compare`` should have sorted keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pysup.service.handlebars import TemplateError, compile_template
from pysup.service.handlebars.values import format_float

try:
    from handlebarrz._native import HandlebarrzTemplate
except ImportError:  # no wheel for this platform: tests skip with this reason
    HandlebarrzTemplate = None

ORACLE = "dotprompt-handlebars 0.1.1 (handlebars-rust 6.3.2)"
UNAVAILABLE = (
    "the handlebars-rust oracle (PyPI dotprompt-handlebars, module handlebarrz) is not "
    "installed; it ships wheels for Linux (glibc >= 2.36) x86_64/aarch64, macOS and Windows"
)

_EACH_ALIVE_OPEN = re.compile(r"(\{\{\s*~?\s*#\s*)eachAlive(\s+)(@root[./])?([\w.-]+)(?=[\s}~])")
_EACH_ALIVE_ANY_OPEN = re.compile(r"\{\{\s*~?\s*#\s*eachAlive\b")
_EACH_ALIVE_CLOSE = re.compile(r"(\{\{\s*~?\s*/\s*)eachAlive(?=[\s}~])")
# Paths that can reach the root object itself, which the rewrite extends with __alive__.
_ROOT_REACHING = re.compile(r"\{\{[^}]*(?:\bthis\b(?![./\[])|@root(?![./]))")


def available() -> bool:
    return HandlebarrzTemplate is not None


# ---- Habitat's helpers, transliterated from their Rust source --------------------------------


def _serde(value: Any, indent: int | None) -> str:
    """serde_json text; floats in Rust's layout (json.dumps writes 1e+16, serde_json 1e16)."""
    floats: list[float] = []

    def mark(v: Any) -> Any:
        if isinstance(v, float):
            floats.append(v)
            return f"\ue000{len(floats) - 1}\ue000"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    sep = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(mark(value), ensure_ascii=False, indent=indent, separators=sep)
    return re.sub('"\ue000(\\d+)\ue000"', lambda m: format_float(floats[int(m.group(1))]), text)


def _unquoted(v: Any) -> str:
    return _serde(v, None).replace('"', "")


def _hab_str_concat(params: list[Any]) -> str:
    return "".join(_unquoted(v) for v in params if not isinstance(v, dict))


def _hab_str_join(params: list[Any]) -> str:
    items = params[0] if params else None
    sep = params[1] if len(params) > 1 else None
    if not isinstance(items, list) or not isinstance(sep, str):
        raise ValueError("strJoin: expected a list and a string")
    return sep.join(_unquoted(v) for v in items if not isinstance(v, dict))


def _strings(params: list[Any], n: int) -> list[str]:
    values = [params[i] if i < len(params) else None for i in range(n)]
    out = [v for v in values if isinstance(v, str)]
    if len(out) != n:
        raise ValueError("expected string parameters")
    return out


def _hab_str_replace(params: list[Any]) -> str:
    s, old, new = _strings(params, 3)
    return s.replace(old, new)


def _hab_to_json(params: list[Any]) -> str:
    if not params:
        raise ValueError("toJson: expected 1 parameter")
    return _serde(params[0], 2)


def _pysup_helper(name: str) -> Callable[[list[Any]], str]:
    """toToml/toYaml: pysup's own (bench/serde_oracle.py compares them with the crates)."""
    tpl = compile_template("{{" + name + " x}}")

    def helper(params: list[Any]) -> str:
        if not params:
            raise ValueError(f"{name}: expected 1 parameter")
        try:
            return tpl.render({"x": params[0]})
        except TemplateError as e:
            raise ValueError(str(e)) from None

    return helper


def _hab_pkg_path_for(root: Mapping[str, Any]) -> Callable[[list[Any]], str]:
    def helper(params: list[Any]) -> str:
        want = params[0] if params else None
        parts = want.split("/") if isinstance(want, str) else []
        if not 2 <= len(parts) <= 4 or not all(parts):
            raise ValueError("Invalid package identifier for pkgPathFor")
        for dep in root.get("pkg", {}).get("deps", []):
            ident = str(dep.get("ident", "")).split("/")
            if ident[: len(parts)] == parts:
                return "/hab/pkgs/" + "/".join(ident)
        return ""

    return helper


HABITAT_HELPERS: Mapping[str, Callable[[list[Any]], str]] = {
    "strConcat": _hab_str_concat,
    "strJoin": _hab_str_join,
    "strReplace": _hab_str_replace,
    "toUppercase": lambda p: _strings(p, 1)[0].upper(),
    "toLowercase": lambda p: _strings(p, 1)[0].lower(),
    "toJson": _hab_to_json,
    "toToml": _pysup_helper("toToml"),
    "toYaml": _pysup_helper("toYaml"),
}


# ---- running both ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one engine did: the text, or an error (``panic`` for a Rust panic)."""

    text: str | None
    error: str | None = None
    panic: bool = False


class Oracle:
    """One handlebars-rust registry with Habitat's helpers (no escaping, like Habitat)."""

    def __init__(self) -> None:
        if HandlebarrzTemplate is None:
            raise RuntimeError(UNAVAILABLE)
        self._root: Mapping[str, Any] = {}
        self._hb = HandlebarrzTemplate()
        self._hb.set_escape_fn("no_escape")
        for name, fn in HABITAT_HELPERS.items():
            self._hb.register_helper(name, _native(fn))
        self._hb.register_helper("pkgPathFor", _native(lambda p: _hab_pkg_path_for(self._root)(p)))

    def render(self, template: str, context: Mapping[str, Any]) -> Outcome:
        self._root = context
        try:
            return Outcome(self._hb.render_template(template, json.dumps(context)))
        except ValueError as e:
            return Outcome(None, str(e).splitlines()[0] if str(e) else "error")
        except BaseException as e:  # pyo3's PanicException derives from BaseException
            if isinstance(e, KeyboardInterrupt | SystemExit | MemoryError):
                raise
            return Outcome(None, f"panic: {e}", panic=True)


def _native(fn: Callable[[list[Any]], str]) -> Callable[[str, Any], str]:
    def helper(params_json: str, options: Any) -> str:
        return fn(json.loads(params_json))

    return helper


def for_oracle(template: str, context: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The template and context the oracle renders: eachAlive over a root path becomes each over
    that path's alive members (kept under ``__alive__``). None when an eachAlive argument is not
    a root path to a list, or when the template could see the root object itself (it would see
    ``__alive__`` too). A bare eachAlive path is taken as a root path: keep such eachAlive tags
    outside other blocks (the generator and the corpus do)."""
    alive: dict[str, Any] = {}
    failed = False

    def swap(m: re.Match[str]) -> str:
        nonlocal failed
        path = m.group(4)
        if "" in path.split("."):  # "a..b", "a.": not a path the rewrite can take
            failed = True
            return m.group(0)
        value: Any = context
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, list):
            failed = True
            return m.group(0)
        if value is not None:  # a missing or null path stays missing: both take the else branch
            alive[path] = [x for x in value if isinstance(x, dict) and x.get("alive") is True]
        return f"{m.group(1)}each{m.group(2)}@root.__alive__.[{path}]"

    if "eachAlive" not in template:
        return template, dict(context)
    if _ROOT_REACHING.search(template):
        return None
    opened, swaps = _EACH_ALIVE_OPEN.subn(swap, template)
    text = _EACH_ALIVE_CLOSE.sub(r"\1each", opened)
    opens = len(_EACH_ALIVE_ANY_OPEN.findall(template))
    if failed or swaps != opens or template.count("eachAlive") != 2 * swaps or "\\{{" in template:
        return None
    return text, {**context, "__alive__": alive}


def ours(template: str, context: Mapping[str, Any]) -> Outcome:
    try:
        return Outcome(compile_template(template).render(context))
    except TemplateError as e:
        return Outcome(None, str(e))


@dataclass(frozen=True)
class Verdict:
    kind: str  # identical | both_refuse | text_differs | only_oracle_refuses | only_pysup_refuses
    #          | oracle_panic | not_comparable
    oracle: Outcome | None
    pysup: Outcome

    @property
    def agrees(self) -> bool:
        return self.kind in ("identical", "both_refuse", "oracle_panic", "not_comparable")


def compare(oracle: Oracle, template: str, context: Mapping[str, Any]) -> Verdict:
    mine = ours(template, context)
    prepared = for_oracle(template, context)
    if prepared is None:
        return Verdict("not_comparable", None, mine)
    theirs = oracle.render(*prepared)
    if theirs.panic:
        return Verdict("oracle_panic", theirs, mine)
    if theirs.text is None and mine.text is None:
        return Verdict("both_refuse", theirs, mine)
    if theirs.text is None:
        return Verdict("only_oracle_refuses", theirs, mine)
    if mine.text is None:
        return Verdict("only_pysup_refuses", theirs, mine)
    kind = "identical" if theirs.text == mine.text else "text_differs"
    return Verdict(kind, theirs, mine)

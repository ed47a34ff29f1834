"""The Rust crates behind Habitat's toToml and toYaml as oracles for pysup's emitters.

Habitat's helpers (components/common/src/templating/helpers/to_toml.rs, to_yaml.rs) serialize
the helper's ``serde_json::Value`` with the ``toml`` crate (1.1.4 in Habitat 2.1) and with
``serde_yaml`` 0.9.34 (on unsafe-libyaml 0.2.11). Two PyPI packages run those crates:

* ``rtoml`` 0.14.0 bundles toml 1.1.8 (toml_writer 1.1.3). Its Python-to-serde bridge differs
  from serde_json's in two ways the comparison works around: it skips None (so values given
  to it hold none; null is tested by hand) and it reorders each table's keys to scalars, then
  lists, then tables. ``rtoml_order`` puts keys in that order first, so the bridge changes
  nothing and its output is the crate's for that very input; pysup's emitter gets the same
  input. It also takes integers as i64 only: generated integers stay in that range.
* ``ryaml`` 0.5.1 bundles serde_yaml 0.9.34+deprecated and unsafe-libyaml 0.2.11 (the same
  versions as Habitat) and serializes through ``serde_yaml::Value``, which emits the same
  events as a ``serde_json::Value``.

``python -m bench.templates --toml/--yaml`` is the long run; tests/unit/test_handlebars_serde.py
runs a bounded one.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pysup.service.handlebars.tomlout import TomlError, dump_document, dump_value
from pysup.service.handlebars.yamlout import dump_yaml

try:
    import rtoml
except ImportError:  # no wheel for this platform: tests skip with UNAVAILABLE
    rtoml = None
try:
    import ryaml
except ImportError:
    ryaml = None

ORACLES = "rtoml 0.14.0 (toml 1.1.8), ryaml 0.5.1 (serde_yaml 0.9.34, unsafe-libyaml 0.2.11)"
UNAVAILABLE = (
    "the toToml/toYaml oracles (PyPI rtoml 0.14.0 and ryaml 0.5.1) are not installed; they ship "
    "wheels for Linux (glibc) x86_64/aarch64, macOS and Windows"
)


def available() -> bool:
    return rtoml is not None and ryaml is not None


def rtoml_order(value: Any) -> Any:
    """``value`` with every table's keys in rtoml's order: scalars, then lists, then tables
    (stable), which rtoml's bridge then leaves as they are."""
    if isinstance(value, Mapping):
        rank = {
            k: 2 if isinstance(v, Mapping) else int(isinstance(v, list)) for k, v in value.items()
        }
        return {k: rtoml_order(value[k]) for k in sorted(value, key=rank.__getitem__)}
    if isinstance(value, list):
        return [rtoml_order(v) for v in value]
    return value


def _outcome(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except (TomlError, ValueError):  # rtoml's errors are ValueErrors
        return "error"


@dataclass(frozen=True, slots=True)
class Verdict:
    value: Any
    oracle: str
    pysup: str

    @property
    def agrees(self) -> bool:
        return self.oracle == self.pysup


def compare_toml(value: Any, pysup: Callable[[Any], str] | None = None) -> Verdict:
    """toToml of ``value`` (no None, integers within i64): a table as a document, anything else
    as one inline value (through ``v = [value]``, where the crate writes it the same way).
    ``pysup`` renders the value (default: the emitter itself; tests pass the helper)."""
    assert rtoml is not None
    oracle_lib = rtoml
    value = rtoml_order(value)
    if isinstance(value, Mapping):
        expected = _outcome(lambda: oracle_lib.dumps(value))
    else:
        expected = _outcome(lambda: oracle_lib.dumps({"v": [value]}))
        if expected.startswith("v = [") and expected.endswith("]\n"):
            expected = expected[len("v = [") : -len("]\n")]
    ours = pysup or (lambda v: dump_document(v) if isinstance(v, Mapping) else dump_value(v))
    return Verdict(value, expected, _outcome(lambda: ours(value)))


def compare_yaml(value: Any, pysup: Callable[[Any], str] = dump_yaml) -> Verdict:
    assert ryaml is not None
    return Verdict(value, ryaml.dumps(value), pysup(value))


# ---- values: what a template context holds -----------------------------------------------------

TOKENS = (
    # text, and what TOML/YAML must quote or escape
    "a", "Z", "_", "-", ".", " ", "  ", "word", "9", "0", "é", "ü", "日本", "😀",
    '"', "'", "''", '"""', "'''", "\\", "\n", "\t", "\r", "\r\n", "\x00", "\x01", "\x1b", "\x1f",
    "\x7f", "\x85", "\xa0", "\u2028", "\u2029", "\ufeff", "#", ":", ": ", "?", "- ", ",", "[",
    "]", "{", "}", "&", "*", "!", "|", ">", "%", "@", "`", "=", "---", "...",
    # strings that read as other types in YAML (and numbers' spellings)
    "~", "null", "Null", "true", "True", "FALSE", "yes", "no", "on", "off", "y", "1", "-1", "+1",
    "007", "0x1F", "0o17", "0b101", "-0x1f", "1.5", "1e5", "1E-5", ".5", "5.", ".inf", "-.Inf",
    ".nan", "inf", "nan", "infinity", "1_000", "12345678901234567890123456789012345678901",
)  # fmt: skip
KEYS = ("a", "b", "port", "k-1", "x_y", "Key", "1", "", " ", "a.b", "a b", "é", "\n", '"', "'")


LINES = ("", " ", "  indented", "word", "two words", "key: value", "- item", "# note", "'q'", '"q"')


def random_string(rng: random.Random) -> str:
    if rng.random() < 0.15:  # text with line breaks: a script, a certificate, a config file
        return "\n".join(rng.choice(LINES) for _ in range(rng.randrange(1, 5)))
    n = rng.choice((0, 1, 1, 1, 2, 2, 3, 4, 6))
    return "".join(rng.choice(TOKENS) for _ in range(n))


def random_float(rng: random.Random) -> float:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice((0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 1e16, 1.5e-7, 1e300, 5e-324, 2.0**63))
    if kind == 1:  # exact binary fractions: halfway cases for the shortest-digit rounding
        return math.ldexp(rng.randrange(1, 2 ** rng.randrange(1, 54)), rng.randrange(-60, 60))
    if kind == 2:
        return rng.randrange(1, 10 ** rng.randrange(1, 18)) / 10 ** rng.randrange(0, 20)
    while True:
        f: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(f):
            return f


def random_scalar(rng: random.Random, *, null: bool) -> Any:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.random() < 0.5
    if kind <= 2:
        return rng.choice((0, 1, -1, 80, 2**63 - 1, -(2**63), rng.randrange(-(10**9), 10**9)))
    if kind <= 4:
        return random_float(rng)
    if kind == 5 and null:
        return None
    return random_string(rng)


def random_value(rng: random.Random, depth: int = 0, *, null: bool) -> Any:
    """A JSON-like value: nested tables and lists (lists of scalars, of tables, mixed, empty)."""
    kind = rng.randrange(10)
    if depth >= 4 or kind < 5:
        return random_scalar(rng, null=null)
    if kind < 7:
        return [random_value(rng, depth + 1, null=null) for _ in range(rng.randrange(4))]
    if kind < 8:
        return [random_table(rng, depth + 1, null=null) for _ in range(rng.randrange(1, 3))]
    return random_table(rng, depth + 1, null=null)


def random_table(rng: random.Random, depth: int = 0, *, null: bool) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for _ in range(rng.randrange(5)):
        key = rng.choice(KEYS) if rng.random() < 0.6 else random_string(rng)
        if rng.random() < 0.02:
            key *= 70  # past libyaml's 128-byte simple keys
        table[key] = random_value(rng, depth, null=null)
    return table

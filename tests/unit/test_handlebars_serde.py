"""toToml and toYaml write what Habitat's helpers write, byte for byte.

Differential tests run the Rust crates Habitat uses (toml 1.1 through PyPI rtoml, serde_yaml
0.9.34 through PyPI ryaml; bench/serde_oracle.py says how) on generated values, through the
helpers as templates call them. What those bindings cannot show (key orders they change, null,
integers past i64) is pinned by hand below, from the crates' source. The long run is
``python -m bench.templates --toml --yaml``.
"""

from __future__ import annotations

import math
import os
import random
import tomllib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.serde_oracle import (
    KEYS,
    TOKENS,
    UNAVAILABLE,
    Verdict,
    available,
    compare_toml,
    compare_yaml,
    random_float,
    random_table,
    random_value,
)
from pysup.service.handlebars import TemplateError, compile_template

if not available() and os.environ.get("CI"):  # CI must run the differential tests
    raise RuntimeError(UNAVAILABLE)
needs_oracle = pytest.mark.skipif(not available(), reason=UNAVAILABLE)


def render(source: str, ctx: dict[str, Any]) -> str:
    return compile_template(source, "t.hbs").render(ctx)


def to_toml(value: Any) -> str:
    return render("{{toToml v}}", {"v": value})


def to_yaml(value: Any) -> str:
    return render("{{toYaml v}}", {"v": value})


def _explain(verdict: Verdict) -> str:
    return f"value: {verdict.value!r}\noracle: {verdict.oracle!r}\npysup:  {verdict.pysup!r}"


# ---- generated values against the crates --------------------------------------------------------

_text = st.lists(
    st.one_of(st.sampled_from(TOKENS), st.characters(exclude_categories=("Cs",))), max_size=5
).map("".join)
_keys = st.one_of(st.sampled_from(KEYS), _text)


def _values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def nest(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        tables = st.dictionaries(_keys, children, max_size=4)
        return st.one_of(
            st.lists(children, max_size=4), tables, st.lists(tables, min_size=1, max_size=3)
        )

    return st.recursive(scalars, nest, max_leaves=12)


_toml_values = _values(
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),  # rtoml's bridge takes i64 only
        st.floats(allow_nan=False, allow_infinity=False),
        _text,
    )
)
_yaml_values = _values(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        _text,
    )
)


@needs_oracle
@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(_keys, _toml_values, max_size=4))
def test_to_toml_of_a_table_matches_the_toml_crate(table: dict[str, Any]) -> None:
    verdict = compare_toml(table, to_toml)
    assert verdict.agrees, _explain(verdict)


@needs_oracle
@settings(max_examples=200, deadline=None, derandomize=True)
@given(_toml_values.filter(lambda v: not isinstance(v, dict)))
def test_to_toml_of_a_value_matches_the_toml_value_serializer(value: Any) -> None:
    verdict = compare_toml(value, to_toml)
    assert verdict.agrees, _explain(verdict)


@needs_oracle
@settings(max_examples=300, deadline=None, derandomize=True)
@given(_yaml_values)
def test_to_yaml_matches_serde_yaml(value: Any) -> None:
    verdict = compare_yaml(value, to_yaml)
    assert verdict.agrees, _explain(verdict)


@needs_oracle
def test_seeded_values_match_both_crates() -> None:
    """2,000 values per crate from the bench's generator (nested tables, arrays of tables,
    mixed arrays, strings full of quotes, escapes and YAML indicators), plus 2,000 floats
    (exact halves, where Rust's and Python's shortest digits could round apart)."""
    rng = random.Random(20261205)
    for _ in range(2000):
        verdict = compare_toml(random_table(rng, null=False))
        assert verdict.agrees, _explain(verdict)
        verdict = compare_yaml(random_value(rng, null=True))
        assert verdict.agrees, _explain(verdict)
    for _ in range(2000):
        f = random_float(rng)
        for verdict in (compare_toml([f]), compare_yaml(f)):
            assert verdict.agrees, _explain(verdict)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(_keys, _toml_values, max_size=4))
def test_to_toml_output_reads_back_as_the_same_table(table: dict[str, Any]) -> None:
    """Whatever the layout, a TOML parser (the standard library's) reads the same data back."""
    assert tomllib.loads(to_toml(table)) == table


# ---- how plans use them (expected bytes are the crates', checked against them above) ------------

CFG = {
    "log_level": "info",
    "build_targets": ["x86_64-linux"],
    "job_timeout": 60,
    "archive": {"backend": "local", "retries": [1, 2, 3]},
    "inputs": {"prometheus": [{"urls": ["http://127.0.0.1:15000/metrics"], "tags": {"s": "x"}}]},
}


def test_to_toml_in_plan_templates() -> None:
    """Habitat's own to_toml.rs tests: a value after ``key =`` and a table after its header;
    arrays stay on one line (tomli-w, used before, wrote one item per line)."""
    assert render("build_targets = {{toToml cfg.build_targets}}", {"cfg": CFG}) == (
        'build_targets = ["x86_64-linux"]'
    )
    assert render("[archive]\n{{toToml cfg.archive}}", {"cfg": CFG}) == (
        '[archive]\nbackend = "local"\nretries = [1, 2, 3]\n'
    )
    assert render("{{toToml cfg}}", {"cfg": CFG}) == (
        'log_level = "info"\n'
        'build_targets = ["x86_64-linux"]\n'
        "job_timeout = 60\n"
        "\n"
        "[archive]\n"
        'backend = "local"\n'
        "retries = [1, 2, 3]\n"
        "\n"
        "[[inputs.prometheus]]\n"
        'urls = ["http://127.0.0.1:15000/metrics"]\n'
        "\n"
        "[inputs.prometheus.tags]\n"
        's = "x"\n'
    )


def test_to_toml_keeps_the_context_order_of_tables_and_values() -> None:
    """Habitat hands the crate serde_json objects in their own key order: a table's lines come
    under its header wherever its sub-tables were, and tables print in the order met (the
    oracle reorders keys, so this order is pinned here from the crate's buffer code)."""
    value = {"z": {"inner": {"deep": 1}, "x": 2}, "a": 1, "m": [{"k": 1}], "b": [1]}
    assert to_toml(value) == (
        "a = 1\nb = [1]\n\n[z]\nx = 2\n\n[z.inner]\ndeep = 1\n\n[[m]]\nk = 1\n"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, ""),  # nothing at all, not even a newline
        ({"t": {}}, "[t]\n"),
        ({"t": {"u": {}}}, "[t.u]\n"),  # a table holding only tables has no header
        ({"a": []}, "a = []\n"),
        ({"a": [{}]}, "[[a]]\n"),
        ({"a": [1, {"b": 2}]}, "a = [1, { b = 2 }]\n"),  # mixed: inline
        ({"a": [[{"b": 2}], []]}, "a = [[{ b = 2 }], []]\n"),
        ({"a b": 1, "é": 2, "": 3, 'q"': 4, "q'\"": 5}, '"a b" = 1\n"é" = 2\n"" = 3\n'
         "'q\"' = 4\n\"q'\\\"\" = 5\n"),
        ({"s": "it's"}, "s = \"it's\"\n"),
        ({"s": 'say "hi"'}, "s = 'say \"hi\"'\n"),
        ({"s": "C:\\dir"}, "s = 'C:\\dir'\n"),
        ({"s": "two\nlines"}, 's = """\ntwo\nlines"""\n'),
        ({"s": "tab\there"}, 's = "tab\\there"\n'),
        ({"s": "nul\x00"}, 's = "nul\\u0000"\n'),
        ({"i": 2**63 - 1, "j": -(2**63), "u": 2**64 - 1}, "i = 9223372036854775807\n"
         "j = -9223372036854775808\nu = 18446744073709551615\n"),
        ({"f": 2**64}, "f = 18446744073709552000.0\n"),  # past u64: a float, as in serde_json
        ({"f": 1e16, "g": 1.5e-7, "h": -0.0, "k": 3.0}, "f = 10000000000000000.0\n"
         "g = 0.00000015\nh = -0.0\nk = 3.0\n"),
    ],
    ids=repr,
)  # fmt: skip
def test_to_toml_layout(value: Any, expected: str) -> None:
    assert to_toml(value) == expected


@pytest.mark.parametrize(
    "ctx",
    [
        {"v": {"a": None}},
        {"v": {"a": [1, None]}},
        {"v": {"t": {"a": None}}},
        {"v": None},
        {},  # a missing path is null too
        {"v": {"a": math.nan}},  # serde_json has no NaN: null
        {"v": math.inf},
    ],
    ids=repr,
)
def test_to_toml_refuses_null_as_habitat_does(ctx: dict[str, Any]) -> None:
    """TOML has no null: the crate fails (``unsupported unit type``) and so does the tag."""
    with pytest.raises(TemplateError) as info:
        render("{{toToml v}}", ctx)
    assert str(info.value) == (
        "t.hbs:1:1: toToml: Can't serialize parameter to TOML: unsupported unit type"
    )


def test_to_yaml_in_a_kubernetes_style_file() -> None:
    """The block layout serde_yaml writes: sequences under a key are not indented, strings that
    would read as numbers, bools or null are single-quoted, YAML 1.1 words are not, multi-line
    text is a literal block, and the output ends with one newline."""
    cfg = {
        "replicas": 3,
        "labels": {"app": "web", "tier": "1", "enabled": "true", "legacy": "yes"},
        "ports": [{"name": "http", "containerPort": 8080}],
        "args": ["--port", "8080", "--verbose"],
        "host": "0.0.0.0",
        "script": "set -e\nexec web\n",
        "empty": [],
        "none": None,
    }
    source = "apiVersion: v1\nkind: ConfigMap\nspec:\n{{toYaml cfg}}---\n"
    assert render(source, {"cfg": cfg}) == (
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "spec:\n"
        "replicas: 3\n"
        "labels:\n"
        "  app: web\n"
        "  tier: '1'\n"
        "  enabled: 'true'\n"
        "  legacy: yes\n"
        "ports:\n"
        "- name: http\n"
        "  containerPort: 8080\n"
        "args:\n"
        "- --port\n"
        "- '8080'\n"
        "- --verbose\n"
        "host: 0.0.0.0\n"
        "script: |\n"
        "  set -e\n"
        "  exec web\n"
        "empty: []\n"
        "none: null\n"
        "---\n"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null\n"),
        ({}, "{}\n"),
        ([], "[]\n"),
        ("", "''\n"),
        ("~", "'~'\n"),
        ("True", "'True'\n"),
        ("on", "on\n"),
        ("0x1F", "'0x1F'\n"),
        ("007", "'007'\n"),
        (".inf", "'.inf'\n"),
        ("inf", "inf\n"),
        ("a: b", "'a: b'\n"),
        ("- x", "'- x'\n"),
        ("it's", "it's\n"),
        ("'q'", "'''q'''\n"),
        ("tab\there", '"tab\\there"\n'),
        ("bom\ufeff", '"bom\\uFEFF"\n'),
        ("a\n\n", "|+\n  a\n\n"),
        (" x\ny", "|2-\n   x\n  y\n"),
        ({"k\nl": 1}, "? |-\n  k\n  l\n: 1\n"),
        ({"k" * 129: 1}, f"? {'k' * 129}\n: 1\n"),
        ([[1, [2]], {"a": [{"b": []}]}], "- - 1\n  - - 2\n- a:\n  - b: []\n"),
        (2**64 - 1, "18446744073709551615\n"),
        (2**64, "1.8446744073709552e19\n"),  # past u64: a float, as in serde_json
        (math.nan, "null\n"),  # serde_json has no NaN: null
        (1e16, "1e16\n"),
    ],
    ids=repr,
)
def test_to_yaml_scalars_and_layout(value: Any, expected: str) -> None:
    assert to_yaml(value) == expected

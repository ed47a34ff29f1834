"""Habitat helpers and how values render."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pysup.service.handlebars import TemplateError, compile_template


def render(source: str, ctx: dict[str, Any] | None = None, **kw: Any) -> str:
    return compile_template(source, "t.hbs").render(ctx or {}, **kw)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s", "s"),
        (511, "511"),
        (-7, "-7"),
        (2**70, "1.1805916207174113e21"),  # beyond u64: a float, as serde_json has it
        (1.5, "1.5"),
        (0.1, "0.1"),
        (3.0, "3.0"),
        (1e20, "1e20"),
        (1e15, "1000000000000000.0"),
        (1e21, "1e21"),
        (1e-7, "1e-7"),
        (float("nan"), ""),  # serde_json turns NaN into null
        (True, "true"),
        (False, "false"),
        (None, ""),
        ([8080], "[8080]"),  # issue 14 item 5: handlebars-rust's rendering of collections
        ([1, "a", True, None, 2.5], "[1, a, true, , 2.5]"),
        ([[1, [2]], {"k": 1}], "[[1, [2]], [object]]"),
        ({"a": 1, "b": [2, {"c": "d"}]}, "[object]"),
        ((), "[]"),
        ({}, "[object]"),
    ],
    ids=repr,
)
def test_values_render_like_handlebars_rust(value: Any, expected: str) -> None:
    assert render("{{v}}", {"v": value}) == expected


def test_str_concat_renders_each_argument() -> None:
    ctx = {"cfg": {"host": "db", "port": 5432, "ssl": False}}
    assert render('{{strConcat cfg.host ":" cfg.port "?ssl=" cfg.ssl}}', ctx) == "db:5432?ssl=false"
    assert render("{{strConcat cfg.nope}}", ctx) == "null"  # Habitat prints null's JSON


def test_str_join() -> None:
    ctx = {"l": ["a", 1, True], "empty": []}
    assert render('{{strJoin l ", "}}', ctx) == "a, 1, true"
    assert render('{{strJoin empty ","}}', ctx) == ""
    with pytest.raises(TemplateError, match="must be a list"):
        render('{{strJoin nope ","}}', ctx)


def test_str_replace() -> None:
    assert render('{{strReplace v "-" "_"}}', {"v": "a-b-c"}) == "a_b_c"
    assert render('{{strReplace v "x" ""}}', {"v": "xaxx"}) == "a"


def test_case_helpers() -> None:
    assert render("{{toUppercase v}} {{toLowercase v}}", {"v": "MiXed-1"}) == "MIXED-1 mixed-1"


def test_to_json_is_pretty_two_space_json() -> None:
    ctx = {"cfg": {"name": "x", "ports": [1, 2], "tls": {}, "on": True, "nil": None}}
    expected = (
        "{\n"
        '  "name": "x",\n'
        '  "ports": [\n'
        "    1,\n"
        "    2\n"
        "  ],\n"
        '  "tls": {},\n'
        '  "on": true,\n'
        '  "nil": null\n'
        "}"
    )
    assert render("{{toJson cfg}}", ctx) == expected
    assert render("{{toJson cfg.name}}|{{toJson cfg.nil}}|{{toJson cfg.tls}}", ctx) == '"x"|null|{}'


DEPS = {
    "pkg": {
        "deps": [
            {"ident": "core/glibc/2.35/20230101000000"},
            {"ident": "core/openssl/3.0.9/20230601000000", "path": "/custom/openssl"},
            {"origin": "core", "name": "jre", "version": "17", "release": "20240101"},
        ]
    }
}


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        ("core/glibc", "/hab/pkgs/core/glibc/2.35/20230101000000"),
        ("core/glibc/2.35", "/hab/pkgs/core/glibc/2.35/20230101000000"),
        ("core/glibc/2.36", ""),
        ("core/openssl", "/custom/openssl"),
        ("core/jre", "/hab/pkgs/core/jre/17/20240101"),
        ("core/missing", ""),
    ],
)
def test_pkg_path_for(ident: str, expected: str) -> None:
    assert render(f'{{{{pkgPathFor "{ident}"}}}}', DEPS) == expected


@pytest.mark.parametrize("ident", ["core", "", "core//x", "a/b/c/d/e"])
def test_pkg_path_for_rejects_malformed_identifiers(ident: str) -> None:
    with pytest.raises(TemplateError, match="is not a package identifier like 'origin/name'"):
        render(f'{{{{pkgPathFor "{ident}"}}}}', DEPS)


def test_pkg_path_for_reads_the_root_even_inside_loops_and_without_deps() -> None:
    ctx = DEPS | {"l": [1]}
    assert (
        render('{{#each l}}{{pkgPathFor "core/jre"}}{{/each}}', ctx)
        == "/hab/pkgs/core/jre/17/20240101"
    )
    assert render('{{pkgPathFor "core/jre"}}', {"pkg": {}}) == ""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{eq 1 1}} {{eq 1 2}} {{eq 'a' 'a'}}", "true false true"),
        ("{{ne 1 2}} {{gt 2 1}} {{gte 1 1}} {{lt 1 2}} {{lte 2 1}}", "true true true true false"),
        ("{{and 1 'x' true}} {{and 1 0}} {{or 0 '' 3}} {{or 0 null}}", "true false true false"),
        ("{{not 0}} {{not 'x'}}", "true false"),
        ("{{len l}} {{len m}} {{len 'abc'}} {{len nope}}", "2 1 3 0"),
    ],
)
def test_comparison_and_logic_helpers(source: str, expected: str) -> None:
    assert render(source, {"l": [1, 2], "m": {"a": 1}}) == expected


def test_helpers_report_misuse_at_the_tag() -> None:
    with pytest.raises(TemplateError) as info:
        render("line one\n  {{strJoin cfg.s ','}}", {"cfg": {"s": "not-a-list"}})
    assert str(info.value) == "t.hbs:2:3: strJoin: first argument must be a list"
    with pytest.raises(TemplateError, match="toToml: Can't serialize parameter to TOML"):
        render("{{toToml m}}", {"m": {"a": None}})
    assert render("{{gt 1 'a'}} {{gt 2 '1'}}") == "false true"  # no order: false, no error


def test_to_json_round_trips_nested_values() -> None:
    value = {"a": [1, 2.5, None, {"b": 'c\n"q"'}], "é": True}
    assert json.loads(render("{{toJson v}}", {"v": value})) == value

"""TemplateError: what handlebars-rust refuses, pysup refuses, with file name, line, column and
a readable detail; helper misuse fails when the tag renders (as in handlebars-rust), not when the
template is compiled; strict rendering turns missing values into errors."""

from __future__ import annotations

from typing import Any

import pytest

from pysup.service.handlebars import TemplateError, compile_template


def compile_error(source: str, name: str = "config/redis.config") -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_template(source, name)
    return info.value


def render_error(source: str, ctx: dict[str, Any] | None = None) -> TemplateError:
    tpl = compile_template(source, "config/redis.config")
    with pytest.raises(TemplateError) as info:
        tpl.render(ctx or {"cfg": {"x": 1}, "l": [1], "s": "str"})
    return info.value


def test_error_attributes_and_message_format() -> None:
    err = render_error("bind {{cfg.x}}\n\n\n\n\n\n\n\n\n\n\n    {{foo cfg.x}}\n")
    assert (err.name, err.line, err.column) == ("config/redis.config", 12, 5)
    assert err.detail == "helper not found: 'foo'"
    assert str(err) == "config/redis.config:12:5: helper not found: 'foo'"


def test_default_name() -> None:
    with pytest.raises(TemplateError) as info:
        compile_template("{{#if x}}")
    assert str(info.value) == "<template>:1:1: unclosed block '{{#if}}': missing '{{/if}}'"


def test_unclosed_block_names_the_line_where_it_opened() -> None:
    err = compile_error("a\nb\n  {{#if cfg.x}}\n  {{#each l}}{{/each}}\nmore text\n")
    assert (err.line, err.column) == (3, 3)
    assert err.detail == "unclosed block '{{#if}}': missing '{{/if}}'"


@pytest.mark.parametrize(
    ("source", "where"),
    [("{{#each l}}\n{{#with x}}\n{{/each}}", (3, 1)), ("x\n{{#if a}}\nA\n{{/each}}\n", (4, 1))],
)
def test_mismatched_close_names_the_opener(source: str, where: tuple[int, int]) -> None:
    err = compile_error(source)
    assert (err.line, err.column) == where
    assert "does not match" in err.detail and "opened at line" in err.detail


@pytest.mark.parametrize(
    ("source", "where", "detail"),
    [
        ("x\n{{/if}}", (2, 1), "unexpected '{{/if}}' outside of a block"),
        ("{{else}}", (1, 1), "unexpected {{else}} outside of a block"),
        ("{{> partial}}", (1, 1), "partials and decorators are not supported"),
        ("{{#> layout}}{{/layout}}", (1, 1), "partials and decorators are not supported"),
        ("{{x 01}}", (1, 5), "invalid parameter '01'"),
    ],
)
def test_syntax_errors_with_a_specific_message(
    source: str, where: tuple[int, int], detail: str
) -> None:
    err = compile_error(source)
    assert ((err.line, err.column), err.detail) == (where, detail)


@pytest.mark.parametrize(
    "source",
    [
        "abc {{cfg.x",
        "{{! never closed",
        "{{#if a}}1{{else}}2{{else}}3{{/if}}",
        "{{}}",
        "{{ ! spaced bang}}",
        "{{~! tilde before the bang}}",
        "{{#if a}}{{/if a}}",
        "{{strConcat (toUppercase a}}",
        "{{a..b}}",
        "{{cfg.x.}}",
        "{{x as |y|}}",
        "{{#each l as |x}}{{/each}}",
        "{{#each l as |a b c|}}{{/each}}",
        "{{{{raw}}}} never closed",
        '{{#"lit"}}{{/x}}',
        "{{^x}}inverted sections do not exist{{/x}}",
        "{{#cfg.x}}x{{/cfg.x}}",
        "{{elsewhere}}",
    ],
)
def test_handlebars_rust_syntax_errors_are_refused(source: str) -> None:
    """Each of these is refused by handlebars-rust 6.3 too (test_handlebars_oracle checks the
    generated ones against it); the error points into the template."""
    err = compile_error(source)
    assert err.line >= 1 and err.column >= 1 and err.detail


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ("{{foo cfg.x}}", "helper not found: 'foo'"),
        ("{{#foo}}x{{/foo}}", "helper not found: 'foo'"),
        ("{{strConcat (nope 1)}}", "helper not found: 'nope'"),
        ("{{strConcat (cfg.x)}}", "helper not found: 'cfg.x'"),
        ("{{toJson}}", "toJson: param 0 not found for helper 'toJson'"),
        ("{{#if}}x{{/if}}", "if: param 0 not found for helper 'if'"),
        ("{{strJoin l}}", "strJoin: second argument must be a string"),
        ("{{toUppercase cfg.x}}", "toUppercase: expects 1 string argument"),
        ("{{l.length}}", "cannot index a list with 'length' in 'l.length'"),
        ("{{#eachAlive s}}x{{/eachAlive}}", "eachAlive: Param type is not iterable."),
    ],
)
def test_helper_misuse_fails_when_the_tag_renders(source: str, detail: str) -> None:
    err = render_error(source)
    assert err.detail == detail


def test_helper_misuse_in_an_untaken_branch_is_not_an_error() -> None:
    """handlebars-rust only evaluates what it renders: Habitat renders this template."""
    tpl = compile_template("{{#if off}}{{foo x}}{{toJson}}{{/if}}ok")
    assert tpl.render({"off": False}) == "ok"


def test_columns_count_from_the_start_of_the_line() -> None:
    err = render_error("ok\nok\n\tx = {{bad helper}}\n")
    assert (err.line, err.column) == (3, 6)


STRICT_CTX: dict[str, Any] = {"cfg": {"port": 1, "nil": None, "l": [], "m": {}}}


@pytest.mark.parametrize(
    ("source", "missing", "where"),
    [
        ("x\n  {{cfg.tcp-backlog}}", "cfg.tcp-backlog", (2, 3)),
        ("{{cfg.port.deeper}}", "cfg.port.deeper", (1, 1)),
        ("{{@index}}", "@index", (1, 1)),
        ("{{#each cfg.l}}{{else}}{{nope}}{{/each}}", "nope", (1, 24)),
    ],
)
def test_strict_mode_names_the_missing_path(
    source: str, missing: str, where: tuple[int, int]
) -> None:
    tpl = compile_template(source, "hooks/run")
    with pytest.raises(TemplateError) as info:
        tpl.render(STRICT_CTX, strict=True)
    assert info.value.detail == f"missing value '{missing}'"
    assert (info.value.line, info.value.column) == where
    tpl.render(STRICT_CTX)  # the same template renders leniently by default


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("[{{cfg.nil}}]", "[]"),  # present but null is not missing
        ("{{#if cfg.nope}}y{{else}}n{{/if}}", "n"),  # if/unless test presence
        ("{{#if x}}{{cfg.nope}}{{/if}}", ""),  # an untaken branch is never evaluated
        ("{{#each cfg.m}}x{{else}}empty{{/each}}", "empty"),
    ],
)
def test_strict_mode_allows_nulls_and_presence_tests(source: str, expected: str) -> None:
    assert compile_template(source).render(STRICT_CTX, strict=True) == expected

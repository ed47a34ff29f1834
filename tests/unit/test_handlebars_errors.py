"""TemplateError: parse errors and render errors carry file name, line, column and detail;
strict rendering turns missing values into errors."""

from __future__ import annotations

from typing import Any

import pytest

from pysup.service.handlebars import TemplateError, compile_template


def compile_error(source: str, name: str = "config/redis.config") -> TemplateError:
    with pytest.raises(TemplateError) as info:
        compile_template(source, name)
    return info.value


def test_error_attributes_and_message_format() -> None:
    err = compile_error("bind {{cfg.bind}}\n\n\n\n\n\n\n\n\n\n\n    {{foo cfg.x}}\n")
    assert (err.name, err.line, err.column) == ("config/redis.config", 12, 7)
    assert err.detail == "unknown helper 'foo'"
    assert str(err) == "config/redis.config:12:7: unknown helper 'foo'"


def test_default_name() -> None:
    with pytest.raises(TemplateError) as info:
        compile_template("{{#if x}}")
    assert str(info.value) == "<template>:1:1: unclosed block '{{#if}}': missing '{{/if}}'"


def test_unclosed_block_names_the_line_where_it_opened() -> None:
    src = "a\nb\n  {{#if cfg.x}}\n  {{#each l}}{{/each}}\nmore text\n"
    err = compile_error(src)
    assert (err.line, err.column) == (3, 3)
    assert err.detail == "unclosed block '{{#if}}': missing '{{/if}}'"


def test_innermost_unclosed_block_is_reported() -> None:
    err = compile_error("{{#each l}}\n{{#with x}}\n{{/each}}")
    assert str(err) == (
        "config/redis.config:3:1: '{{/each}}' does not match '{{#with}}' opened at line 2"
    )


def test_mismatched_close() -> None:
    err = compile_error("x\n{{#if a}}\nA\n{{/each}}\n")
    assert (err.line, err.column) == (4, 1)
    assert err.detail == "'{{/each}}' does not match '{{#if}}' opened at line 2"


@pytest.mark.parametrize(
    ("source", "where", "detail"),
    [
        ("{{#foo bar}}x{{/foo}}", (1, 4), "unknown helper 'foo'"),
        ("a {{x (nope 1)}}", (1, 5), "unknown helper 'x'"),
        ("{{strConcat (nope 1)}}", (1, 14), "unknown helper 'nope'"),
        ("{{strConcat (cfg.x)}}", (1, 14), "unknown helper 'cfg.x'"),
        ("{{cfg.x k=1}}", (1, 3), "unknown helper 'cfg.x'"),
        ("{{each l}}", (1, 3), "'each' is a block helper: use '{{#each}}'"),
        ("{{#toJson x}}{{/toJson}}", (1, 4), "'toJson' is not a block helper"),
        ("{{strJoin l}}", (1, 3), "'strJoin' takes 2 arguments, got 1"),
        ("{{toJson}}", (1, 3), "'toJson' takes 1 argument, got 0"),
        ("{{strConcat}}", (1, 3), "'strConcat' takes at least 1 argument, got 0"),
        ("{{#if}}x{{/if}}", (1, 4), "'#if' takes exactly one argument"),
        ("{{#if a b}}x{{/if}}", (1, 4), "'#if' takes exactly one argument"),
        ("{{#if a as |x|}}x{{/if}}", (1, 4), "'#if' takes at most 0 block parameters"),
        ("{{#each l as |a b c|}}x{{/each}}", (1, 4), "'#each' takes at most 2 block parameters"),
        ("{{#if a foo=1}}x{{/if}}", (1, 4), "unsupported argument 'foo=' on '#if'"),
        (
            "{{#cfg.x as |y|}}{{/cfg.x}}",
            (1, 4),
            "block parameters need a block helper (each, with, ...)",
        ),
    ],
)
def test_helper_misuse_is_reported_at_compile_time(
    source: str, where: tuple[int, int], detail: str
) -> None:
    err = compile_error(source)
    assert ((err.line, err.column), err.detail) == (where, detail)


@pytest.mark.parametrize(
    ("source", "where", "detail"),
    [
        ("abc {{cfg.x", (1, 5), "unclosed tag: expected '}}'"),
        ("{{! never closed", (1, 1), "unclosed comment"),
        ("{{!-- never closed }}", (1, 1), "unclosed comment"),
        ("x\n{{/if}}", (2, 1), "unexpected closing tag outside of a block"),
        ("{{else}}", (1, 1), "unexpected {{else}} outside of a block"),
        ("{{#if a}}1{{else}}2{{else}}3{{/if}}", (1, 20), "more than one {{else}} in a block"),
        ("{{}}", (1, 3), "empty expression"),
        ("{{#if a}}{{/}}", (1, 13), "a closing tag needs a name, like '{{/if}}'"),
        ("{{#if a}}{{/if a}}", (1, 16), "unexpected tokens in closing tag"),
        ("{{strConcat (toUppercase a}}", (1, 27), "unclosed subexpression: expected ')'"),
        ("{{strConcat a=1 b}}", (1, 17), "positional argument after key=value arguments"),
        ("{{cfg.this}}", (1, 3), "invalid path 'cfg.this'"),
        ("{{a..b}}", (1, 4), "unexpected '.' in path"),
        ("{{a.b[c]}}", (1, 6), "unexpected character '[' in tag"),
        ("{{a b=}}", (1, 7), "unexpected end of tag"),
        ("{{a ,}}", (1, 5), "unexpected character ',' in tag"),
        ("{{> partial}}", (1, 1), "partials and decorators are not supported"),
        ("{{#> layout}}{{/layout}}", (1, 1), "partial blocks and decorators are not supported"),
        (
            "{{#each l as |x}}{{/each}}",
            (1, 11),
            "malformed block parameters: expected 'as |name ...|'",
        ),
        ("{{x as |y|}}", (1, 3), "block parameters are only allowed on block tags"),
        ("{{{{raw}}}} never closed", (1, 1), "unclosed raw block 'raw'"),
        ('{{#"lit"}}{{/x}}', (1, 1), "a block must start with a helper name or path"),
        ("{{@}}", (1, 4), "expected a path segment"),
    ],
)
def test_syntax_errors(source: str, where: tuple[int, int], detail: str) -> None:
    err = compile_error(source)
    assert ((err.line, err.column), err.detail) == (where, detail)


def test_columns_count_from_the_start_of_the_line() -> None:
    err = compile_error("ok\nok\n\tx = {{bad helper}}\n")
    assert (err.line, err.column) == (3, 8)


STRICT_CTX: dict[str, Any] = {"cfg": {"port": 1, "nil": None, "l": [], "m": {}}}


@pytest.mark.parametrize(
    ("source", "missing", "where"),
    [
        ("x\n  {{cfg.tcp-backlog}}", "cfg.tcp-backlog", (2, 5)),
        ("{{cfg.port.deeper}}", "cfg.port.deeper", (1, 3)),
        ("{{#each cfg.nope}}{{/each}}", "cfg.nope", (1, 9)),
        ("{{#with cfg.nope}}{{/with}}", "cfg.nope", (1, 9)),
        ("{{#cfg.nope}}x{{/cfg.nope}}", "cfg.nope", (1, 4)),
        ("{{toJson cfg.nope}}", "cfg.nope", (1, 10)),
        ("{{strConcat (toUppercase cfg.nope)}}", "cfg.nope", (1, 26)),
        ("{{#each cfg.l}}{{else}}{{nope}}{{/each}}", "nope", (1, 26)),
        ("{{@index}}", "@index", (1, 3)),
        ("{{../x}}", "../x", (1, 3)),
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
        ("{{#unless cfg.nope.deeper}}u{{/unless}}", "u"),
        ("{{#if x}}{{cfg.nope}}{{/if}}", ""),  # an untaken branch is never evaluated
        ("{{lookup cfg 'nope'}}", ""),  # lookup is a dynamic probe
        ("{{#each cfg.m}}x{{else}}empty{{/each}}", "empty"),
    ],
)
def test_strict_mode_allows_nulls_and_presence_tests(source: str, expected: str) -> None:
    assert compile_template(source).render(STRICT_CTX, strict=True) == expected

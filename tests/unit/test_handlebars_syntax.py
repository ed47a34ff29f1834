"""Handlebars syntax: paths, literals, comments, escapes, whitespace control, standalone lines.

Expected strings follow Handlebars.js / the mustache spec, with Habitat's rule of no HTML escaping.
"""

from __future__ import annotations

from typing import Any

import pytest

from pysup.service.handlebars import TemplateError, compile_template


def render(source: str, ctx: dict[str, Any] | None = None, **kw: Any) -> str:
    return compile_template(source, "t.hbs").render(ctx or {}, **kw)


HTMLISH = '<a href="x">&\'`=</a>'


@pytest.mark.parametrize("source", ["{{v}}", "{{{v}}}", "{{&v}}", "{{~{v}~}}", "{{& v }}"])
def test_no_html_escaping_in_any_mustache_form(source: str) -> None:
    assert render(source, {"v": HTMLISH}) == HTMLISH


CTX: dict[str, Any] = {
    "cfg": {
        "tcp-backlog": 511,
        "a": {"b": {"c": "deep"}},
        "weird key": "spaces",
        "list": ["zero", "one"],
        "x:y": "colon",
    },
    "name": "top",
    "foo": "FOO",
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{cfg.tcp-backlog}}", "511"),
        ("{{cfg.a.b.c}}", "deep"),
        ("{{cfg/a/b/c}}", "deep"),
        ("{{this.foo}}", "FOO"),
        ("{{./foo}}", "FOO"),
        ("{{this/foo}}", "FOO"),
        ("{{[foo]}}", "FOO"),
        ("{{cfg.[weird key]}}", "spaces"),
        ("{{cfg.[tcp-backlog]}}", "511"),
        ("{{cfg.list.1}}", "one"),
        ("{{cfg.list.[0]}}", "zero"),
        ("{{@root.cfg.a.b.c}}", "deep"),
        ("{{cfg.a.missing.deeper}}", ""),
        ("{{cfg.list.7}}", ""),
        ("{{cfg.tcp-backlog.nope}}", ""),
        ("{{ cfg.a.b.c }}", "deep"),
    ],
)
def test_path_forms(source: str, expected: str) -> None:
    assert render(source, CTX) == expected


def test_this_renders_the_current_context_and_a_bare_dot_is_refused() -> None:
    assert render("{{#each l}}[{{this}}|{{this.[0]}}]{{/each}}", {"l": ["a", "b"]}) == "[a|][b|]"
    with pytest.raises(TemplateError):
        compile_template("{{.}}")


def test_parent_paths_climb_context_frames() -> None:
    ctx = {"name": "root", "outer": {"name": "o", "inner": {"name": "i"}}}
    src = "{{#with outer}}{{#with inner}}{{name}}<{{../name}}<{{../../name}}{{/with}}{{/with}}"
    assert render(src, ctx) == "i<o<root"


def test_if_does_not_push_a_context_frame_for_parent_paths() -> None:
    ctx = {"name": "root", "items": [{"name": "a", "on": True}]}
    src = "{{#each items}}{{#if on}}{{name}}/{{../name}}{{/if}}{{/each}}"
    assert render(src, ctx) == "a/root"


def test_parent_path_beyond_the_outermost_block_stays_in_the_current_one() -> None:
    """handlebars-rust: more ``../`` than enclosing blocks resolve in the innermost block."""
    assert render("[{{../name}}]", {"name": "x"}) == "[x]"
    assert render("{{#each l}}[{{../../n}}]{{/each}}", {"l": [{"n": 1}], "n": 0}) == "[1]"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # strConcat prints each argument as JSON and drops every '"' (Habitat's code)
        ("{{strConcat \"dq\" 'sq' 12 -3 1.5 true false null}}", "dqsq12-31.5truefalsenull"),
        ('{{strConcat "say \\"hi\\""}}', "say \\hi\\"),
        ('{{strConcat "tab\\there"}}', "tab\\there"),
        ('{{toUppercase "tab\\there"}}', "TAB\tHERE"),
        ("{{strConcat 'it\\'s'}}", "it's"),
        ("{{42}}", ""),  # a tag's head is a path, never a literal: the key "42"
        ("{{true}}", ""),
        ("{{null}}", ""),
    ],
)
def test_literals(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a{{! short }}b", "ab"),
        ("a{{!-- long with }} inside --}}b", "ab"),
        ("a{{!--\nmulti\nline\n--}}b", "ab"),
        ("a {{!-- no stripping --~}} b", "a  b"),  # comments take no "~" in handlebars-rust
        ("Begin.\n{{! Comment Block! }}\nEnd.\n", "Begin.\nEnd.\n"),
        ("Begin.\n  {{! Indented Comment Block! }}\nEnd.\n", "Begin.\nEnd.\n"),
        ("!\n  {{! I'm Still Standalone }}", "!\n"),
        ("Begin.\n{{!\nSomething's going on here...\n}}\nEnd.\n", "Begin.\nEnd.\n"),
        ("  12 {{! 34 }}\n", "  12 \n"),
    ],
)
def test_comments(source: str, expected: str) -> None:
    assert render(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("\\{{name}}", "{{name}}"),
        ("\\{{name}} {{name}}", "{{name}} top"),
        ("\\{{a}}\\{{b}} {{name}}", "{{a}}{{b}} top"),
        ("\\\\{{name}}", "\\top"),
        ("a \\ b {{name}} c \\", "a \\ b top c \\"),
        ("\\{{#if x}}", "{{#if x}}"),
        ("{{{{raw}}}}{{x}} {{/if}}{{{{/raw}}}}", "{{x}} {{/if}}"),
    ],
)
def test_escapes_and_raw_blocks(source: str, expected: str) -> None:
    assert render(source, CTX) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (" {{~foo~}} ", "FOO"),
        (" {{~foo}} ", "FOO "),
        (" {{foo~}} ", " FOO"),
        (" {{~&foo~}} ", "FOO"),
        (" {{~{foo}~}} ", "FOO"),
        ("1\n{{nope~}} \n\n 23\n{{nope}}4", "1\n23\n4"),
        (" {{~#if foo~}} bar {{~/if~}} ", "bar"),
        (" {{#if foo~}} bar {{/if~}} ", " bar "),
        (" {{~#if foo}} bar {{~/if}} ", " bar "),
        (" {{#if foo}} bar {{/if}} ", "  bar  "),
        (" \n\n{{~#if foo~}} \n\nbar \n\n{{~/if~}}\n\n ", "bar"),
        (" {{~#if nope~}} bar {{~else~}} baz {{~/if}} ", "baz "),
        (" {{~#if nope~}} bar {{~^~}} baz {{~/if~}} ", "baz"),
        ("a,\n  {{~#each l}} {{this}}{{/each~}}\n;", "a, 1 2;"),
        ("{{#if foo}}\n   x   \n{{~else~}}\n   y   \n{{/if}}", "   x"),
    ],
)
def test_tilde_strips_all_whitespace_on_its_side(source: str, expected: str) -> None:
    assert render(source, {"foo": "FOO", "l": [1, 2]}) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # mustache spec "Standalone Lines" family, for sections
        ("| This Is\n{{#if boolean}}\n|\n{{/if}}\n| A Line", "| This Is\n|\n| A Line"),
        ("| This Is\n  {{#if boolean}}\n|\n  {{/if}}\n| A Line", "| This Is\n|\n| A Line"),
        ("|\r\n{{#if boolean}}\r\n{{/if}}\r\n|", "|\r\n|"),
        ("  {{#if boolean}}\n#{{/if}}\n/", "#\n/"),
        ("#{{#if boolean}}\n/\n  {{/if}}", "#\n/\n"),
        (" {{#if boolean}}YES{{/if}}\n {{#if boolean}}GOOD{{/if}}\n", " YES\n GOOD\n"),
        # else lines, indented with tabs and spaces
        ("a\n{{#if no}}\nyes\n \t{{else}}\t \nno\n{{/if}}\nz\n", "a\nno\nz\n"),
        ("{{#unless no}}\n  x\n{{^}}\n  y\n{{/unless}}\n", "  x\n"),
        # two tags sharing a line are not standalone
        ("{{#if boolean}}{{#if boolean}}\nx\n{{/if}}{{/if}}\n", "\nx\n\n"),
        # a plain mustache alone on a line keeps its line
        ("a\n  {{v}}\nb", "a\n  V\nb"),
        # empty bodies: the open tag is not standalone (nothing follows on its line)
        ("x\n{{#if boolean}}{{/if}}\ny", "x\n\ny"),
        # nested standalone blocks all vanish
        ("{{#each l}}\n  {{#if this}}\n  - {{this}}\n  {{/if}}\n{{/each}}\n", "  - 1\n  - 2\n"),
    ],
)
def test_standalone_block_lines_are_removed(source: str, expected: str) -> None:
    assert render(source, {"boolean": True, "v": "V", "l": [1, 0, 2]}) == expected


def test_else_if_chain_lines_are_standalone() -> None:
    src = "{{#if a}}\nA\n{{else if b}}\nB\n{{else}}\nC\n{{/if}}\nend\n"
    assert render(src, {"a": 1}) == "A\nend\n"
    assert render(src, {"b": 1}) == "B\nend\n"
    assert render(src, {}) == "C\nend\n"


def test_text_without_tags_is_unchanged_including_whitespace() -> None:
    text = "  leading\n\n\ttabs }} and {single} braces \\ \r\n  trailing  \n"
    assert render(text) == text


def test_template_renders_many_times_with_different_contexts() -> None:
    tpl = compile_template("port {{cfg.port}}\n")
    assert [tpl.render({"cfg": {"port": p}}) for p in (1, 2, 3)] == [
        "port 1\n",
        "port 2\n",
        "port 3\n",
    ]

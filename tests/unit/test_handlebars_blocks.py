"""Block helpers: if/unless/else chains, each, with, eachAlive, block params, sections,
subexpressions and hash arguments."""

from __future__ import annotations

from typing import Any

import pytest

from pysup.service.handlebars import TemplateError, compile_template


def render(source: str, ctx: dict[str, Any] | None = None, **kw: Any) -> str:
    return compile_template(source, "t.hbs").render(ctx or {}, **kw)


FALSY: list[Any] = [None, False, 0, 0.0, "", [], {}, ()]
TRUTHY: list[Any] = [True, 1, -1, 0.5, "0", "false", " ", [0], [None], {"a": 0}]


@pytest.mark.parametrize("value", FALSY, ids=repr)
def test_falsy_values_follow_handlebars_rust(value: Any) -> None:
    ctx = {"v": value}
    assert render("{{#if v}}T{{else}}F{{/if}}", ctx) == "F"
    assert render("{{#unless v}}U{{else}}N{{/unless}}", ctx) == "U"


@pytest.mark.parametrize("value", TRUTHY, ids=repr)
def test_truthy_values(value: Any) -> None:
    ctx = {"v": value}
    assert render("{{#if v}}T{{else}}F{{/if}}", ctx) == "T"
    assert render("{{#unless v}}U{{else}}N{{/unless}}", ctx) == "N"


def test_missing_value_is_falsy() -> None:
    assert render("{{#if cfg.nope.deeper}}T{{else}}F{{/if}}", {"cfg": {}}) == "F"


def test_if_without_else_renders_nothing_when_false() -> None:
    assert render("a{{#if v}}T{{/if}}b", {"v": 0}) == "ab"


def test_include_zero_makes_zero_truthy() -> None:
    assert render("{{#if v includeZero=true}}T{{else}}F{{/if}}", {"v": 0}) == "T"
    assert render("{{#if v includeZero=false}}T{{else}}F{{/if}}", {"v": 0}) == "F"


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        ({"a": 1, "b": 1}, "A"),
        ({"b": 1}, "B"),
        ({"c": 1}, "C"),
        ({}, "D"),
    ],
)
def test_else_if_chain(ctx: dict[str, Any], expected: str) -> None:
    src = "{{#if a}}A{{else if b}}B{{else unless c}}D{{else}}C{{/if}}"
    assert render(src, ctx) == expected


def test_else_chain_into_other_block_helpers() -> None:
    src = "{{#if a}}A{{else each l}}[{{this}}]{{else}}empty{{/if}}"
    assert render(src, {"a": True, "l": [1]}) == "A"
    assert render(src, {"l": [1, 2]}) == "[1][2]"
    assert render(src, {"l": []}) == "empty"
    src = "{{#if a}}A{{else with w}}{{x}}{{/if}}"
    assert render(src, {"w": {"x": "wx"}}) == "wx"


def test_caret_is_an_else() -> None:
    assert render("{{#if v}}T{{^}}F{{/if}}", {"v": False}) == "F"


def test_caret_alone_is_an_else() -> None:
    src = "{{#if cfg.peers}}peers{{^}}no peers{{/if}}"
    assert render(src, {"cfg": {"peers": []}}) == "no peers"
    assert render(src, {"cfg": {"peers": ["a"]}}) == "peers"


def test_each_over_list_with_data_variables() -> None:
    src = "{{#each l}}{{@index}}:{{this}}:{{@first}}:{{@last}} {{/each}}"
    assert render(src, {"l": ["a", "b", "c"]}) == ("0:a:true:false 1:b:false:false 2:c:false:true ")


def test_each_over_mapping_in_insertion_order_with_key() -> None:
    src = "{{#each m}}{{@index}}.{{@key}}={{this}}{{#unless @last}},{{/unless}}{{/each}}"
    assert render(src, {"m": {"z": 1, "a": 2, "m": 3}}) == "0.z=1,1.a=2,2.m=3"


@pytest.mark.parametrize("value", [[], {}, None, "a string", 5, True])
def test_each_else_for_empty_or_non_collections(value: Any) -> None:
    assert render("{{#each v}}x{{else}}none{{/each}}", {"v": value}) == "none"


def test_each_without_else_over_missing_renders_nothing() -> None:
    assert render("[{{#each nope}}x{{/each}}]") == "[]"


def test_each_block_params_for_list_and_mapping() -> None:
    ctx = {"l": ["a", "b"], "m": {"k1": "v1", "k2": "v2"}}
    assert render("{{#each l as |item|}}{{item}}{{/each}}", ctx) == "ab"
    assert render("{{#each l as |item i|}}{{i}}={{item}} {{/each}}", ctx) == "0=a 1=b "
    assert render("{{#each m as |value key|}}{{key}}={{value}} {{/each}}", ctx) == "k1=v1 k2=v2 "


def test_block_params_shadow_context_and_nest() -> None:
    ctx = {"rows": [{"cells": [1, 2], "x": "row-x"}], "x": "top-x"}
    src = (
        "{{#each rows as |row r|}}{{#each row.cells as |cell c|}}"
        "{{r}}.{{c}}={{cell}}({{row.x}},{{x}},{{../x}}) {{/each}}{{/each}}"
    )
    # "x" is looked up on the current context (the cell, a number): missing; ../x is the row's x.
    assert render(src, ctx) == "0.0=1(row-x,,row-x) 0.1=2(row-x,,row-x) "


def test_block_param_named_like_a_context_key_wins() -> None:
    ctx = {"member": "ctx-member", "ms": [{"n": 1}]}
    assert render("{{#each ms as |member|}}{{member.n}}{{/each}}{{member}}", ctx) == "1ctx-member"


def test_nested_each_parent_data_and_context() -> None:
    ctx = {"a": [{"n": "x", "b": [1, 2]}, {"n": "y", "b": [3]}]}
    src = "{{#each a}}{{#each b}}{{@../index}}.{{@index}}:{{../n}}/{{this}} {{/each}}{{/each}}"
    assert render(src, ctx) == "0.0:x/1 0.1:x/2 1.0:y/3 "


def test_each_inside_each_sees_outer_key_via_data_chain() -> None:
    ctx = {"m": {"k": [1, 2]}}
    assert render("{{#each m}}{{#each this}}{{@../key}}{{this}}{{/each}}{{/each}}", ctx) == "k1k2"


def test_with_changes_context_and_supports_else_and_block_params() -> None:
    ctx = {"svc": {"leader": {"sys": {"ip": "10.0.0.9"}}}, "name": "me"}
    assert render("{{#with svc.leader}}{{sys.ip}} {{../name}}{{/with}}", ctx) == "10.0.0.9 me"
    assert render("{{#with svc.leader as |l|}}{{l.sys.ip}} {{name}}{{/with}}", ctx) == "10.0.0.9 "
    assert render("{{#with svc.nobody}}x{{else}}no leader{{/with}}", ctx) == "no leader"
    assert render("{{#with svc.nobody}}x{{/with}}", ctx) == ""


def member(n: int, **fields: Any) -> dict[str, Any]:
    return {"member_id": f"m{n}", "sys": {"ip": f"10.0.0.{n}"}} | fields


MEMBERS_LIST = [
    member(1, alive=True),
    member(2, alive=False),
    member(3, health="Alive"),
    member(4, health="Confirmed"),
    member(5, alive=True),
]


def test_each_alive_over_list_iterates_alive_subset_with_data() -> None:
    """Habitat's eachAlive: members whose ``alive`` is true (a ``health`` field does not count),
    and ``@index`` counting the alive members from 1 (Habitat's code increments it first)."""
    src = (
        "{{#eachAlive members}}{{@index}}:{{sys.ip}}"
        "{{#if @first}}(first){{/if}}{{#if @last}}(last){{/if}} {{/eachAlive}}"
    )
    expected = "1:10.0.0.1(first) 2:10.0.0.5(last) "
    assert render(src, {"members": MEMBERS_LIST}) == expected
    pairs = "{{#eachAlive members as |m i|}}{{i}}={{m.member_id}} {{/eachAlive}}"
    assert render(pairs, {"members": MEMBERS_LIST}) == "1=m1 2=m5 "


def test_each_alive_over_one_member_object_iterates_its_fields() -> None:
    """Given one member (a mapping), Habitat iterates its fields when it is alive."""
    src = "{{#eachAlive m as |v k|}}{{k}}={{v}};{{/eachAlive}}"
    assert render(src, {"m": {"alive": True, "port": 1}}) == "alive=true;port=1;"
    assert render(src, {"m": {"alive": False, "port": 1}}) == ""


def test_each_alive_else_only_when_the_list_is_empty_or_missing() -> None:
    """Habitat renders the else branch for a falsy argument only: a list whose members are
    all dead renders nothing."""
    src = "{{#eachAlive ms as |m|}}{{m.member_id}}{{else}}nobody{{/eachAlive}}"
    assert render(src, {"ms": [member(2, alive=False), "junk", None]}) == ""
    assert render(src, {"ms": []}) == "nobody"
    assert render(src, {}) == "nobody"


def test_each_alive_standalone_lines_render_a_clean_upstream_block() -> None:
    src = (
        "upstream app {\n"
        "  {{#eachAlive bind.app.members as |m|}}\n"
        "  server {{m.sys.ip}}:{{m.cfg.port}};\n"
        "  {{/eachAlive}}\n"
        "}\n"
    )
    ms = [member(1, alive=True, cfg={"port": 80}), member(2, alive=True, cfg={"port": 81})]
    expected = "upstream app {\n  server 10.0.0.1:80;\n  server 10.0.0.2:81;\n}\n"
    assert render(src, {"bind": {"app": {"members": ms}}}) == expected


def test_section_on_a_plain_path_is_an_unknown_helper() -> None:
    """handlebars-rust has no blockHelperMissing: ``{{#s}}`` fails when rendered."""
    tpl = compile_template("{{#s}}{{host}}{{/s}}")
    with pytest.raises(TemplateError, match="helper not found: 's'"):
        tpl.render({"s": {"host": "h"}})


def test_subexpressions_nest_and_feed_block_helpers() -> None:
    ctx = {"cfg": {"mode": "cluster", "name": "db", "n": 3}}
    assert render('{{#if (eq cfg.mode "cluster")}}C{{else}}S{{/if}}', ctx) == "C"
    assert render('{{#if (eq cfg.mode "single")}}C{{else}}S{{/if}}', ctx) == "S"
    assert render(
        '{{strConcat (toUppercase cfg.name) "-" (strReplace cfg.mode "c" "k")}}', ctx
    ) == ("DB-kluster")
    src = "{{#if (and (gt cfg.n 2) (not (eq cfg.mode 'x')))}}big{{/if}}"
    assert render(src, ctx) == "big"


def test_lookup_with_dynamic_keys_in_loops() -> None:
    ctx = {"order": ["b", "a"], "ports": {"a": 1, "b": 2}, "list": ["x", "y"]}
    src = "{{#each order}}{{this}}={{lookup @root.ports this}} {{/each}}"
    assert render(src, ctx) == "b=2 a=1 "
    assert render("{{lookup list 1}}{{lookup list 5}}{{lookup ports 'zz'}}", ctx) == "y"
    assert render("{{#with (lookup ports 'a')}}{{this}}{{/with}}", ctx) == "1"


def test_loop_renders_consistently_across_many_renders() -> None:
    tpl = compile_template("{{#each l as |x|}}{{x}}{{/each}}")
    assert tpl.render({"l": [1, 2]}) == "12"
    assert tpl.render({"l": []}) == ""
    assert tpl.render({"l": ["a"]}) == "a"

"""Differential tests: pysup's templates render byte for byte what handlebars-rust renders.

The oracle is handlebars-rust 6.3.2 through PyPI dotprompt-handlebars (bench/hbs_oracle.py says
which of Habitat's helpers are compared and how). Generated templates (bench/hbs_gen.py) cover
the grammar Habitat plans use; the corpus (tests/fixtures/templates/corpus) has hand-written
plan templates. The long run is ``python -m bench.templates`` (100,000 templates).
"""

from __future__ import annotations

import math
import os
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.hbs_gen import Gen, RandomChooser, context
from bench.hbs_oracle import UNAVAILABLE, Oracle, Verdict, available, compare
from bench.templates import corpus_cases
from pysup.service.handlebars import compile_template
from pysup.service.handlebars.values import format_float

if not available():
    if os.environ.get("CI"):  # CI must run these: a missing oracle is a failure there
        raise RuntimeError(UNAVAILABLE)
    pytest.skip(UNAVAILABLE, allow_module_level=True)

ORACLE = Oracle()
DIFFERENT = ("text_differs", "only_oracle_refuses", "only_pysup_refuses")


class DrawChooser:
    """Hypothesis as the generator's source of choices (so failures shrink)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))


def _explain(template: str, ctx: Any, verdict: Verdict) -> str:
    return (
        f"{verdict.kind}\ntemplate: {template!r}\ncontext: {ctx!r}\n"
        f"oracle: {verdict.oracle}\npysup:  {verdict.pysup}"
    )


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.data())
def test_generated_templates_render_like_handlebars_rust(data: st.DataObject) -> None:
    """Any Habitat-style template and context: same bytes, or both refuse."""
    ch = DrawChooser(data)
    template = Gen(ch).template()
    ctx = context(ch)
    verdict = compare(ORACLE, template, ctx)
    assert verdict.kind not in DIFFERENT, _explain(template, ctx, verdict)


def test_seeded_batch_has_no_differences() -> None:
    """3,000 seeded templates (the bench runs 100,000): no difference of any kind, and most
    of them really render (not refusals or incomparable cases), so the comparison has teeth."""
    rng = random.Random(20261205)
    kinds: dict[str, int] = {}
    for _ in range(3000):
        ch = RandomChooser(rng)
        template = Gen(ch).template()
        ctx = context(ch)
        verdict = compare(ORACLE, template, ctx)
        kinds[verdict.kind] = kinds.get(verdict.kind, 0) + 1
        assert verdict.kind not in DIFFERENT, _explain(template, ctx, verdict)
    assert kinds["identical"] >= 2000, kinds


@pytest.mark.parametrize(("name", "template", "ctx"), corpus_cases(), ids=lambda v: str(v)[:30])
def test_corpus_template_renders_like_handlebars_rust(
    name: str, template: str, ctx: dict[str, Any]
) -> None:
    """Hand-written plan templates (redis, nginx, postgresql, toml/json configs, hooks)."""
    verdict = compare(ORACLE, template, ctx)
    assert verdict.kind == "identical", _explain(template, ctx, verdict)


def _random_float(rng: random.Random) -> float:
    while True:
        f: float = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(f):
            return f


def test_numbers_print_like_serde_json() -> None:
    """Floats of every magnitude (random bit patterns, plus round ones) and big integers print
    as serde_json prints them: 1.0, 1e16, 1.5e-7, -0.0 ... The oracle receives the context as
    JSON text and serde_json's default float parser is not always correctly rounded, so some
    random floats arrive a few ULPs off there (Habitat converts TOML floats to values without
    text). For those, our formatter must print the oracle's value exactly as the oracle did."""
    rng = random.Random(7)
    values: list[Any] = [_random_float(rng) for _ in range(2000)]
    values += [0.0, -0.0, 1.0, 1e15, 1e16, 1e-5, 1e-6, 0.1, 2.5e-5, 123456.789, 1e300]
    values += [10**k for k in range(0, 25)] + [-(2**63), 2**64 - 1, 2**64, -(2**63) - 1]
    template = "{{#each l}}{{this}}|{{/each}}"
    verdict = compare(ORACLE, template, {"l": values})
    assert verdict.oracle is not None and verdict.oracle.text is not None
    assert verdict.pysup.text is not None
    theirs = verdict.oracle.text.split("|")
    mine = verdict.pysup.text.split("|")
    assert len(theirs) == len(mine) == len(values) + 1
    off_by_ulps = 0
    for value, a, b in zip(values, theirs, mine, strict=False):
        if a != b:
            assert isinstance(value, float) and float(b) == value, (value, a, b)
            assert math.isclose(value, float(a), rel_tol=1e-15), (value, a, b)
            assert format_float(float(a)) == a, (value, a)  # same layout for its value
            off_by_ulps += 1
    assert off_by_ulps < len(values) // 2, off_by_ulps


@pytest.mark.parametrize(
    "template",
    [
        "{{ #if x }}A{{ /if }}",
        "{{~ #unless y}}B{{/unless ~}}",
        "{{#if y}}A{{ else }}B{{/if}}",
        "{{ # each l as | v k | }}{{ k }}={{ v }};{{ / each }}",
        "{{ ~ # with o ~ }}{{ k }}{{ ~ / with ~ }}",
        "{{#if y}}A{{ ^ }}B{{/if}}",
        "{{#if y}}A{{ else if x }}B{{/if}}",
        "{{ & x }}{{ { x } }}{{{ x }}}{{~{x}~}}",
        "{{ eq x  'X' }}|{{ strConcat x \"-\" l }}|{{lookup l 1 }}",
        "{{{{ raw }}}} {{x}} {{{{ / raw }}}}",
        "{{! no space before the bang is allowed, {{ ! x }} is an error }}",
        "{{ ! x }}",
        "{{ ^y }}B{{/y}}",
    ],
)
def test_whitespace_inside_tags_is_accepted_as_handlebars_rust_does(template: str) -> None:
    """Issue 14 item 4: every spelling handlebars-rust accepts, and the ones it refuses."""
    ctx = {"x": "X", "y": False, "l": [8080, 9090], "o": {"k": 1}}
    verdict = compare(ORACLE, template, ctx)
    assert verdict.kind in ("identical", "both_refuse"), _explain(template, ctx, verdict)


def test_arrays_and_objects_print_like_handlebars_rust() -> None:
    """Issue 14 item 5, checked against the oracle for every JSON type inside a list."""
    ctx = {
        "ports": [8080],
        "obj": {"a": 1},
        "mixed": ["s", 1, 1.5, True, False, None, [1, [2, "x"]], {"k": 1}, [], {}],
        "empty": [],
    }
    template = "{{ports}}|{{obj}}|{{mixed}}|{{empty}}|{{{mixed}}}"
    verdict = compare(ORACLE, template, ctx)
    assert verdict.kind == "identical", _explain(template, ctx, verdict)
    assert compile_template(template).render(ctx).startswith("[8080]|[object]|")

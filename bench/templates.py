"""Differential run: pysup's template engine against handlebars-rust on generated templates.

    python -m bench.templates [--count 100000] [--seed 1] [--corpus] [--show 5] [--save]
    python -m bench.templates --toml --yaml [--count 100000] [--seed 1] [--show 5] [--save]

Generates ``--count`` templates with contexts (bench/hbs_gen.py), renders each with pysup and with
the oracle (bench/hbs_oracle.py), compares byte for byte (and refusal against refusal) and prints
the tally by verdict. ``--corpus`` also renders tests/fixtures/templates/corpus/*.hbs against
their contexts. Exit status 1 when any difference is found. ``--save`` writes the tally to
``bench/results/templates-<date>.json``.

``--toml`` / ``--yaml`` instead compare the toToml / toYaml emitters with the Rust crates Habitat
uses (bench/serde_oracle.py) on ``--count`` generated values each.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench import serde_oracle
from bench.hbs_gen import Gen, RandomChooser, context
from bench.hbs_oracle import ORACLE, UNAVAILABLE, Oracle, Verdict, available, compare

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "templates" / "corpus"


def corpus_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(name, template, context) for each corpus template and each of its contexts."""
    cases = []
    for tpl in sorted(CORPUS.glob("*.hbs")):
        contexts = json.loads(tpl.with_suffix(".json").read_text())
        for i, ctx in enumerate(contexts):
            cases.append((f"{tpl.name}#{i}", tpl.read_text(), ctx))
    return cases


def run(count: int, seed: int, show: int) -> collections.Counter[str]:
    oracle = Oracle()
    rng = random.Random(seed)
    tally: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        ch = RandomChooser(rng)
        template = Gen(ch).template()
        verdict = compare(oracle, template, context(ch))
        tally[verdict.kind] += 1
        if not verdict.agrees and tally[verdict.kind] <= show:
            _show(template, verdict)
    return tally


def run_serde(kind: str, count: int, seed: int, show: int) -> collections.Counter[str]:
    """``count`` generated values through pysup's ``kind`` emitter and the crate's."""
    rng = random.Random(seed)
    tally: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        if kind == "toml":  # mostly whole tables ({{toToml cfg}}), some single values
            table = rng.random() < 0.8
            value = serde_oracle.random_table(rng, null=False) if table else None
            if not table:
                value = serde_oracle.random_value(rng, 1, null=False)
            verdict = serde_oracle.compare_toml(value)
        else:
            verdict = serde_oracle.compare_yaml(serde_oracle.random_value(rng, null=True))
        outcome = "identical" if verdict.agrees else "text_differs"
        tally[f"{kind}_{outcome}"] += 1
        if not verdict.agrees and tally[f"{kind}_{outcome}"] <= show:
            print(f"--- {kind}: {verdict.value!r}")
            print(f"    oracle: {verdict.oracle!r}")
            print(f"    pysup:  {verdict.pysup!r}")
    return tally


def _show(template: str, verdict: Verdict) -> None:
    print(f"--- {verdict.kind}: {template!r}")
    print(f"    oracle: {verdict.oracle}")
    print(f"    pysup:  {verdict.pysup}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", action="store_true")
    ap.add_argument("--show", type=int, default=5, help="differences printed per kind")
    ap.add_argument("--save", action="store_true")
    ap.add_argument("--toml", action="store_true", help="compare toToml with the toml crate")
    ap.add_argument("--yaml", action="store_true", help="compare toYaml with serde_yaml")
    args = ap.parse_args(argv)
    if args.toml or args.yaml:
        return _main_serde(args)
    if not available():
        print(UNAVAILABLE, file=sys.stderr)
        return 2
    started = time.monotonic()
    tally = run(args.count, args.seed, args.show)
    if args.corpus:
        oracle = Oracle()
        for name, template, ctx in corpus_cases():
            verdict = compare(oracle, template, ctx)
            tally["corpus_" + verdict.kind] += 1
            if not verdict.agrees:
                print(f"--- corpus {name}")
                _show(template, verdict)
    elapsed = time.monotonic() - started
    differ = sum(n for kind, n in tally.items() if kind.split("corpus_")[-1] in _DIFFERENT)
    print(f"oracle: {ORACLE}; seed {args.seed}; {elapsed:.1f} s")
    for kind, n in sorted(tally.items()):
        print(f"  {kind:24} {n}")
    print(f"compared {sum(tally.values())}, differences {differ}")
    if args.save:
        out = (
            Path(__file__).parent / "results" / f"templates-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        )
        payload = {"oracle": ORACLE, "seed": args.seed, "count": args.count, "tally": tally}
        out.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if differ else 0


def _main_serde(args: argparse.Namespace) -> int:
    if not serde_oracle.available():
        print(serde_oracle.UNAVAILABLE, file=sys.stderr)
        return 2
    started = time.monotonic()
    tally: collections.Counter[str] = collections.Counter()
    for kind in ("toml", "yaml"):
        if getattr(args, kind):
            tally += run_serde(kind, args.count, args.seed, args.show)
    elapsed = time.monotonic() - started
    differ = sum(n for kind, n in tally.items() if kind.endswith("text_differs"))
    print(f"oracles: {serde_oracle.ORACLES}; seed {args.seed}; {elapsed:.1f} s")
    for kind, n in sorted(tally.items()):
        print(f"  {kind:24} {n}")
    print(f"compared {sum(tally.values())}, differences {differ}")
    if args.save:
        stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
        out = Path(__file__).parent / "results" / f"templates-serde-{stamp}.json"
        payload = {"oracles": serde_oracle.ORACLES, "seed": args.seed, "count": args.count}
        out.write_text(json.dumps(payload | {"tally": tally}, indent=2) + "\n")
    return 1 if differ else 0


_DIFFERENT = ("text_differs", "only_oracle_refuses", "only_pysup_refuses")

if __name__ == "__main__":
    sys.exit(main())

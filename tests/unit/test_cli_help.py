"""`pysup run --help`: every flag has one line of help with its default and, where one exists,
its environment variable (as `hab sup run --help` shows them)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from pysup.cli import build_parser
from pysup.settings import Settings, env_var


def _run_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices["run"]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def _documented() -> list[argparse.Action]:
    return [
        a
        for a in _run_parser()._actions
        if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)
    ]


def test_every_run_flag_has_one_line_of_help_with_its_default() -> None:
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in _documented()
        if not a.help or "\n" in a.help or "[default: " not in a.help
    ]
    assert missing == [], f"flags without one line of help naming their default: {missing}"


def test_help_names_the_environment_variable_of_each_setting_that_has_one() -> None:
    by_dest = {a.dest: a for a in _documented()}
    names = {f.name for f in fields(Settings)}
    wrong = [
        dest
        for dest, action in by_dest.items()
        if dest in names and (var := env_var(dest)) and f"[env: {var}]" not in (action.help or "")
    ]
    assert wrong == []
    # And the defaults shown are the settings' own, not numbers typed into the help.
    assert "[default: 0.0.0.0:9638]" in (by_dest["listen_gossip"].help or "")
    assert f"[default: {Settings.health_check_interval_s:g}]" in (
        by_dest["health_check_interval_s"].help or ""
    )
    assert "[default: off]" in (by_dest["permanent_peer"].help or "")


def test_the_flags_the_issue_named_are_documented() -> None:
    flags = {s for a in _documented() for s in a.option_strings}
    for flag in ("-I", "-D", "--gossip-profile", "--json-logging", "-v", "--topology"):
        assert flag in flags
    for flag in ("--strategy", "--bind", "--cache-key-path"):
        assert flag in flags

"""Command line: argparse -> settings -> the module that does the work. No logic here.

Errors for the user are one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pysup import __version__

EXIT_USAGE = 2
EXIT_ERROR = 1
COMMANDS: dict[str, Callable[[argparse._SubParsersAction[Any]], None]] = {}
"""Extra subcommands registered by other modules (the control client, census)."""


def _add_run(sub: argparse._SubParsersAction[Any]) -> None:
    from pysup.run_flags import add_run_flags

    p = sub.add_parser("run", help="run the supervisor (like `hab sup run`)")
    add_run_flags(p)
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from pysup.daemon import StartupError, Supervisor
    from pysup.logs import configure_logging
    from pysup.settings import SettingsError, load_settings

    flags = {k: v for k, v in vars(args).items() if k not in ("func", "config_file", "command")}
    if not flags.get("plans"):
        flags.pop("plans", None)
    try:
        settings = load_settings(flags, config_file=args.config_file)
    except SettingsError as e:
        print(f"pysup: {e}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.json_logging, settings.verbose)
    try:
        return asyncio.run(Supervisor(settings).run())
    except StartupError as e:
        print(f"pysup: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _add_ring(sub: argparse._SubParsersAction[Any]) -> None:
    from pysup.ringinfo import DEFAULT_BASE_PORT, DEFAULT_RING_ROOT

    p = sub.add_parser(
        "ring",
        help="a local ring (`ring --members N PLAN_DIR...`), or `ring key generate NAME`",
    )
    p.add_argument("args", nargs="*", metavar="PLAN_DIR | key generate NAME")
    p.add_argument("--members", type=int, default=3, help="supervisors to start [default: 3]")
    p.add_argument(
        "--state-root",
        default=DEFAULT_RING_ROOT,
        metavar="DIR",
        help="member i keeps its state in DIR/member-i; DIR/ring.json says how to reach each "
        f"[default: {DEFAULT_RING_ROOT}]",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        metavar="PORT",
        help="member 0's HTTP port; every port of the ring, the plans' too, moves with it "
        f"[default: {DEFAULT_BASE_PORT}]",
    )
    p.add_argument("--key-cache", metavar="DIR", help="ring key cache directory (key generate)")
    p.set_defaults(func=_cmd_ring)


def _cmd_ring(args: argparse.Namespace) -> int:
    if args.args[:2] == ["key", "generate"]:
        return _ring_key_generate(args)
    if args.args[:1] == ["key"]:
        print("pysup: usage: pysup ring key generate NAME", file=sys.stderr)
        return EXIT_USAGE
    from pysup.localring import run_local_ring

    if args.members < 1:
        print("pysup: --members must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    for d in args.args:
        if not Path(d).is_dir():
            print(f"pysup: plan directory {d} does not exist", file=sys.stderr)
            return EXIT_USAGE
    return run_local_ring(args.members, args.args, Path(args.state_root), [], args.base_port)


def _ring_key_generate(args: argparse.Namespace) -> int:
    from pysup.butterfly.keys import (
        RingKeyError,
        default_key_cache,
        generate_ring_key,
        write_ring_key,
    )

    if len(args.args) != 3:
        print("pysup: usage: pysup ring key generate NAME", file=sys.stderr)
        return EXIT_USAGE
    cache = Path(args.key_cache) if args.key_cache else default_key_cache()
    try:
        key = generate_ring_key(args.args[2], datetime.now(UTC))
        path = write_ring_key(key, cache)
    except (RingKeyError, OSError, ValueError) as e:
        print(f"pysup: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"Generated ring key {key.name_with_rev} at {path}")
    return 0


def _add_plan(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("plan", help="`plan check PLAN_DIR...`: find problems in plans")
    plan_sub = p.add_subparsers(dest="plan_command", metavar="check", required=True)
    c = plan_sub.add_parser(
        "check",
        help="load each plan, render its templates and hooks with a sample context, and print "
        "each problem with FILE:LINE and a fix; exit 1 if there is an error",
    )
    c.add_argument("plan_dirs", nargs="+", metavar="PLAN_DIR", help="plan directories")
    c.add_argument(
        "--config", dest="config_file", help="pysup settings file (pkg_paths, pkg_path_fallback)"
    )
    c.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    c.add_argument("-v", "--verbose", action="store_true", help="also show the loader's log")
    c.set_defaults(func=_cmd_plan_check)


def _cmd_plan_check(args: argparse.Namespace) -> int:
    import logging
    import os

    import structlog

    from pysup.logs import configure_logging
    from pysup.service.doctor import run
    from pysup.service.pkgpaths import PkgPaths
    from pysup.settings import SettingsError, load_settings

    try:
        s = load_settings({}, config_file=args.config_file)
    except SettingsError as e:
        print(f"pysup: {e}", file=sys.stderr)
        return EXIT_USAGE
    missing = [d for d in args.plan_dirs if not Path(d).is_dir()]
    if missing:
        print(f"pysup: not a directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(verbose=args.verbose)
    if not args.verbose:  # the report says it all; the loader's own lines would repeat it
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    paths = PkgPaths.from_settings(s.pkg_paths, s.pkg_path_fallback, os.environ.get("PATH"))
    return run([Path(d) for d in args.plan_dirs], paths, sys.stdout, strict=args.strict)


def build_parser(only_run: bool = False) -> argparse.ArgumentParser:
    """The whole command line, or with `only_run` the `run` command alone: the same `pysup run`
    parser without importing and building every other command's (issue 18: ~0.3 MiB and ms that
    every supervisor paid at start for the control client's and key commands' parsers)."""
    parser = argparse.ArgumentParser(
        prog="pysup", description="A Habitat-style Supervisor in Python"
    )
    parser.add_argument("--version", action="version", version=f"pysup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    if only_run:
        return parser
    from pysup.key_cli import add_user_commands

    _add_ring(sub)
    _add_plan(sub)
    add_user_commands(sub)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    only_run = argv[:1] == ["run"]  # subcommand names are matched exactly, never abbreviated
    if not only_run:
        _register_optional_commands()
    parser = build_parser(only_run)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    result: int = args.func(args)
    return result


def _register_optional_commands() -> None:
    import importlib

    try:
        ctl_cli = importlib.import_module("pysup.ctl_cli")
    except ImportError:
        return
    ctl_cli.register(COMMANDS)


if __name__ == "__main__":
    sys.exit(main())

"""Command line: argparse -> settings -> the module that does the work. No logic here.

Errors for the user are one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pysup import __version__

EXIT_USAGE = 2
EXIT_ERROR = 1
COMMANDS: dict[str, Callable[[argparse._SubParsersAction[Any]], None]] = {}
"""Extra subcommands registered by other modules (the control client, census)."""


def _setting_help(dest: str, text: str, default: str | None = None) -> str:
    """`text [default: X] [env: VAR]`, like `hab sup run --help`; the default and the variable
    come from pysup.settings, so the help cannot drift from what the flag does."""
    from pysup.settings import Settings, env_var

    if default is None:
        value = next(f.default for f in fields(Settings) if f.name == dest)
        if isinstance(value, bool):
            default = "on" if value else "off"
        elif isinstance(value, float):
            default = f"{value:g}"
        elif value in (None, ()):
            default = "none"
        else:
            default = str(value)
    var = env_var(dest)
    return f"{text} [default: {default}]" + (f" [env: {var}]" if var else "")


def _add_run(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("run", help="run the supervisor (like `hab sup run`)")

    def flag(*names: str, dest: str, help: str, default: str | None = None, **kw: Any) -> None:
        p.add_argument(*names, dest=dest, help=_setting_help(dest, help, default), **kw)

    def switch(*names: str, dest: str, help: str) -> None:
        flag(*names, dest=dest, help=help, action="store_true", default=None)

    p.add_argument(
        "plans",
        nargs="*",
        metavar="PLAN_DIR",
        help=_setting_help("plans", "plan directories to load at start"),
    )
    flag("--listen-gossip", dest="listen_gossip", metavar="IP:PORT", help="gossip, UDP and TCP")
    flag("--listen-http", dest="listen_http", metavar="IP:PORT", help="the HTTP API gateway")
    flag(
        "--listen-ctl",
        dest="listen_ctl",
        metavar="IP:PORT",
        help="the control gateway (`pysup svc`, `pysup config apply`, ...)",
    )
    flag(
        "--peer",
        dest="peers",
        action="append",
        metavar="HOST[:PORT]",
        help="a member to join at start (repeatable)",
    )
    flag(
        "--peer-watch-file",
        dest="peer_watch_file",
        metavar="FILE",
        help="a file of IP[:PORT] lines to join, read again when it changes",
    )
    switch(
        "-I",
        "--permanent-peer",
        dest="permanent_peer",
        help="others keep probing this member even after they confirm it dead (seeds)",
    )
    flag(
        "-r",
        "--ring",
        dest="ring",
        metavar="NAME",
        default="none (gossip in the clear)",
        help="encrypt gossip with the newest ring key NAME in the key cache",
    )
    flag(
        "--ring-key",
        dest="ring_key",
        metavar="TEXT",
        help="the ring key file's contents, instead of the key cache",
    )
    flag(
        "--cache-key-path",
        dest="key_cache",
        metavar="DIR",
        default="/hab/cache/keys as root if it exists, else ~/.pysup/keys",
        help="the ring key cache",
    )
    switch("-D", "--http-disable", dest="http_disable", help="do not start the HTTP gateway")
    flag(
        "--sys-ip-address",
        dest="sys_ip_address",
        metavar="IP",
        default="detected",
        help="the IP others use for this member, as templates see it (sys.ip)",
    )
    flag(
        "--state-dir",
        dest="state_dir",
        metavar="DIR",
        help="member id, rumors, CTL_SECRET and service directories",
    )
    flag(
        "--gossip-profile",
        dest="gossip_profile",
        choices=["lan", "wan", "local", "habitat"],
        help="gossip timing: lan, wan, local (one machine) or habitat (Habitat's own)",
    )
    flag(
        "--udp-backend",
        dest="udp_backend",
        choices=["asyncio-dgram", "asyncio"],
        help="datagram I/O (asyncio: less CPU per member, for many members in one process)",
    )
    flag(
        "--readiness",
        dest="readiness",
        choices=["api", "ring", "services"],
        help="what /readyz waits for: the API, joining a ring, or every service up",
    )
    p.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="a TOML file with any of these settings; flags and environment win "
        "[default: none] [env: PYSUP_CONFIG]",
    )
    flag("--group", dest="group", metavar="NAME", help="service group of the plans given")
    flag(
        "-t",
        "--topology",
        dest="topology",
        choices=["standalone", "leader"],
        help="leader: the service group elects one leader",
    )
    flag(
        "-s",
        "--strategy",
        dest="strategy",
        choices=["none", "at-once", "rolling"],
        help="how the plans' services take updates",
    )
    flag(
        "--bind",
        dest="binds",
        action="append",
        metavar="NAME:SVC.GROUP[@ORG]",
        help="bind NAME of the plans to a service group (repeatable)",
    )
    flag(
        "--binding-mode",
        dest="binding_mode",
        choices=["strict", "relaxed"],
        help="strict: hold a service until every bind has a member; relaxed: start anyway",
    )
    flag(
        "-i",
        "--health-check-interval",
        dest="health_check_interval_s",
        type=float,
        metavar="SECONDS",
        help="time between health checks",
    )
    flag(
        "--shutdown-timeout",
        dest="shutdown_timeout_s",
        type=float,
        metavar="SECONDS",
        default="the plan's pkg_shutdown_timeout_sec",
        help="time a service gets to stop before it is killed",
    )
    flag(
        "--hook-timeout",
        dest="hook_timeout_s",
        type=float,
        metavar="SECONDS",
        help="time a hook other than run may take before it is killed",
    )
    flag(
        "--departure-timeout",
        dest="departure_timeout_s",
        type=float,
        metavar="SECONDS",
        default="3 days, from the gossip profile",
        help="Confirmed -> Departed, and Departed members' rumors kept, this long",
    )
    flag(
        "--peer-discovery",
        dest="peer_discovery",
        metavar="kubernetes|dns:NAME",
        help="find peers through the Kubernetes API or the DNS records of NAME",
    )
    flag(
        "--kubernetes-service",
        dest="kubernetes_service",
        metavar="NAME",
        help="the Service whose EndpointSlices list the peers",
    )
    flag(
        "--kubernetes-selector",
        dest="kubernetes_selector",
        metavar="LABELS",
        help="label selector of the peer pods, when EndpointSlices cannot be read",
    )
    flag(
        "--mode",
        dest="mode",
        choices=["gossip", "kubernetes"],
        help="a SWIM gossip ring, or Kubernetes-native (members, leader, config from the API)",
    )
    switch("--json-logging", dest="json_logging", help="log one JSON object per line")
    switch("-v", "--verbose", dest="verbose", help="log debug events too")
    # Habitat flags with no meaning here, accepted so existing manifests keep working.
    for name in ("--channel", "--url", "-u", "--org", "--config-from", "--update-condition"):
        p.add_argument(
            name, dest=f"ignored_{name.lstrip('-').replace('-', '_')}", help=argparse.SUPPRESS
        )
    for name in ("--auto-update", "-A", "--no-color"):
        p.add_argument(
            name,
            action="store_true",
            dest=f"ignored_{name.lstrip('-').replace('-', '_')}",
            help=argparse.SUPPRESS,
        )
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
    sup = Supervisor(settings)
    try:
        return asyncio.run(sup.run())
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pysup", description="A Habitat-style Supervisor in Python"
    )
    parser.add_argument("--version", action="version", version=f"pysup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    _add_ring(sub)
    for add in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _register_optional_commands()
    parser = build_parser()
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

"""The control commands of the CLI: ``svc``, ``config``, ``file``, ``sup`` and ``census``.

Each command builds one request (``pysup.gateway.ctl_proto``), sends it to the control gateway of
``--remote-sup`` (default ``$HAB_LISTEN_CTL`` or 127.0.0.1:9632) with the secret from
``HAB_CTL_SECRET``/``PYSUP_CTL_SECRET`` or ``<state dir>/CTL_SECRET``, and prints the result.
``--member N`` takes both from the ring file of a ``pysup ring`` run in this directory; with
nothing named at all, member 0 of such a ring is used (``pysup.ctl_target``).
``census`` reads the HTTP gateway instead (HTTPS too: ``pysup.http_client``). Every error is one
line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

from pysup.crypto.tls import TlsConfigError
from pysup.ctl_client import CtlClientError, send
from pysup.ctl_target import (
    DEFAULT_CTL,
    DEFAULT_STATE_DIR,
    UserError,
    control_target,
    ring_member,
    ring_root,
)
from pysup.gateway.ctl_proto import (
    MAX_BODY,
    ConfigApply,
    CtlProtocolError,
    FileUpload,
    Request,
    SupDepart,
    SupTerm,
    SvcLoad,
    SvcStart,
    SvcStatus,
    SvcStop,
    SvcUnload,
    check_filename,
    check_version,
)
from pysup.gateway.tls_setup import ctl_client_tls
from pysup.http_client import (
    HTTP_CA_ENV,
    HTTP_CLIENT_CERT_ENV,
    HTTP_CLIENT_KEY_ENV,
    get_json,
    http_target,
)
from pysup.key_cli import (
    CommandError,
    add_sup_secret_commands,
    add_svc_key_commands,
    add_user_encryption_args,
    seal_for_group,
)
from pysup.ringinfo import DEFAULT_RING_ROOT, RING_ROOT_ENV

EXIT_ERROR: Final = 1
DEFAULT_HTTP: Final = "127.0.0.1:9631"
STATUS_COLUMNS: Final = ("package", "type", "desired", "state", "elapsed (s)", "pid", "group")

AddCommand = Callable[["argparse._SubParsersAction[Any]"], None]


# --- plumbing -----------------------------------------------------------------------------------


def _env() -> Mapping[str, str]:
    return os.environ


def _request(args: argparse.Namespace, req: Request) -> dict[str, Any]:
    target = control_target(
        remote=args.remote_sup,
        state_dir=args.state_dir,
        member=args.member,
        ring_root_flag=args.ring_root,
        env=_env(),
    )
    if target.note:
        print(target.note, file=sys.stderr)
    try:
        tls = ctl_client_tls(_env(), target.host)
    except TlsConfigError as e:
        raise UserError(f"control gateway TLS: {e}") from None
    try:
        return asyncio.run(send(target.host, target.port, target.secret, req, tls))
    except CtlClientError as e:
        raise UserError(str(e)) from None


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (UserError, CtlProtocolError, CommandError) as e:
            print(f"pysup: {e}", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            return 130

    return wrapper


def _ring_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--member",
        type=int,
        metavar="N",
        help=f"member N of the `pysup ring` run in this directory: its {what}",
    )
    p.add_argument(
        "--ring-root",
        metavar="DIR",
        help=f"that ring's --state-root [default: ${RING_ROOT_ENV} or {DEFAULT_RING_ROOT}]",
    )


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--remote-sup",
        metavar="HOST:PORT",
        help=f"control gateway to talk to [default: $HAB_LISTEN_CTL or {DEFAULT_CTL}]",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help=f"where CTL_SECRET is [default: $PYSUP_STATE_DIR or {DEFAULT_STATE_DIR}]",
    )
    _ring_flags(p, "control gateway and secret")
    return p


def _version(text: str) -> int:
    try:
        version = int(text)
    except ValueError:
        raise UserError(f"version {text!r} must be a positive integer") from None
    try:
        check_version(version)
    except CtlProtocolError as e:
        raise UserError(str(e)) from None
    return version


def _read_limited(stream: BinaryIO, what: str) -> bytes:
    data = stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise UserError(f"{what} is over the {MAX_BODY} byte limit (64 KiB)")
    return data


def _read_input(path: str, what: str) -> bytes:
    if path == "-":
        return _read_limited(sys.stdin.buffer, what)
    try:
        with open(path, "rb") as f:
            return _read_limited(f, what)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


# --- svc ----------------------------------------------------------------------------------------


def _add_svc(sub: argparse._SubParsersAction[Any]) -> None:
    common = _common()
    svc = sub.add_parser("svc", help="load, unload, start, stop services; show their status")
    ssub = svc.add_subparsers(dest="svc_command", metavar="SUBCOMMAND", required=True)

    p = ssub.add_parser("load", parents=[common], help="load a plan (kept across restarts)")
    p.add_argument("plan_dir", metavar="PLAN_DIR")
    p.add_argument("--group", help="service group [default]")
    p.add_argument("-t", "--topology", choices=["standalone", "leader"])
    p.add_argument("-s", "--strategy", choices=["none", "at-once", "rolling"])
    p.add_argument("--bind", action="append", dest="binds", metavar="NAME:SVC.GROUP[@ORG]")
    p.add_argument("--binding-mode", choices=["strict", "relaxed"])
    p.add_argument("-i", "--health-check-interval", type=float, metavar="SECONDS")
    p.add_argument("--shutdown-timeout", type=float, metavar="SECONDS")
    p.set_defaults(func=_run(_svc_load))

    for name, help_, func in (
        ("unload", "stop a service and forget it", _svc_unload),
        ("start", "set a service's desired state to up", _svc_start),
        ("stop", "set a service's desired state to down", _svc_stop),
    ):
        p = ssub.add_parser(name, parents=[common], help=help_)
        p.add_argument("name", metavar="SVC", help="service name (or origin/name)")
        p.set_defaults(func=_run(func))

    p = ssub.add_parser("status", parents=[common], help="the services of this supervisor")
    p.add_argument("name", metavar="SVC", nargs="?")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=_run(_svc_status))

    add_svc_key_commands(ssub)


def _svc_load(args: argparse.Namespace) -> int:
    # A directory that exists here is sent as an absolute path; anything else is sent as given
    # and judged by the supervisor (with --remote-sup it may exist only over there).
    plan_dir = Path(args.plan_dir)
    req = SvcLoad(
        plan_dir=str(plan_dir.absolute()) if plan_dir.is_dir() else args.plan_dir,
        group=args.group,
        topology=args.topology,
        strategy=args.strategy,
        binds=tuple(args.binds or ()),
        binding_mode=args.binding_mode,
        health_check_interval_s=args.health_check_interval,
        shutdown_timeout_s=args.shutdown_timeout,
    )
    r = _request(args, req)
    print(f"Loaded {r.get('name')} into {r.get('service_group')}")
    return 0


def _svc_unload(args: argparse.Namespace) -> int:
    r = _request(args, SvcUnload(args.name))
    print(f"Unloaded {r.get('name')}")
    return 0


def _svc_start(args: argparse.Namespace) -> int:
    r = _request(args, SvcStart(args.name))
    print(f"Desired state of {r.get('name')} is now up")
    return 0


def _svc_stop(args: argparse.Namespace) -> int:
    r = _request(args, SvcStop(args.name))
    print(f"Desired state of {r.get('name')} is now down")
    return 0


def _svc_status(args: argparse.Namespace) -> int:
    r = _request(args, SvcStatus(args.name))
    services = r.get("services")
    rows = [s for s in services if isinstance(s, dict)] if isinstance(services, list) else []
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    if not rows:
        print("No services loaded.")
        return 0
    print(status_table(rows))
    return 0


def status_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """``svc status`` as a table with Habitat's columns."""
    keys = ("package", "type", "desired", "state", "elapsed_s", "pid", "group")
    cells = [["<none>" if row.get(k) is None else str(row.get(k)) for k in keys] for row in rows]
    return _table(list(STATUS_COLUMNS), cells)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    return "\n".join(lines)


# --- config / file ------------------------------------------------------------------------------


def _add_config(sub: argparse._SubParsersAction[Any]) -> None:
    cfg = sub.add_parser("config", help="apply configuration to a service group across the ring")
    csub = cfg.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    p = csub.add_parser("apply", parents=[_common()], help="gossip a TOML config (<= 64 KiB)")
    p.add_argument("service_group", metavar="SVC.GROUP")
    p.add_argument("version", metavar="VERSION", help="greater than the group's current version")
    p.add_argument("file", metavar="FILE", nargs="?", default="-", help="TOML file, - for stdin")
    add_user_encryption_args(p)
    p.set_defaults(func=_run(_config_apply))


def _config_apply(args: argparse.Namespace) -> int:
    version = _version(args.version)
    data = _read_input(args.file, "the config")
    if args.user:
        data = seal_for_group(args, data, "TOML")
    r = _request(args, ConfigApply(args.service_group, version, data, bool(args.user)))
    print(f"Applied version {r.get('version')} of the config of {r.get('service_group')}")
    return 0


def _add_file(sub: argparse._SubParsersAction[Any]) -> None:
    f = sub.add_parser("file", help="upload a file to a service group across the ring")
    fsub = f.add_subparsers(dest="file_command", metavar="SUBCOMMAND", required=True)
    p = fsub.add_parser("upload", parents=[_common()], help="gossip a file (<= 64 KiB)")
    p.add_argument("service_group", metavar="SVC.GROUP")
    p.add_argument("version", metavar="VERSION", help="greater than the file's current version")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", help="the name in files/ [the FILE's base name]")
    add_user_encryption_args(p)
    p.set_defaults(func=_run(_file_upload))


def _file_upload(args: argparse.Namespace) -> int:
    version = _version(args.version)
    name = args.name if args.name is not None else Path(args.file).name
    try:
        check_filename(name)
    except CtlProtocolError as e:
        raise UserError(str(e)) from None
    body = _read_input(args.file, f"file {args.file}")
    if args.user:
        body = seal_for_group(args, body, f"file {name}")
    r = _request(args, FileUpload(args.service_group, version, name, body, bool(args.user)))
    print(f"Uploaded {r.get('filename')} version {r.get('version')} to {r.get('service_group')}")
    return 0


# --- sup ----------------------------------------------------------------------------------------


def _add_sup(sub: argparse._SubParsersAction[Any]) -> None:
    s = sub.add_parser("sup", help="depart a member from the ring; stop the supervisor")
    ssub = s.add_subparsers(dest="sup_command", metavar="SUBCOMMAND", required=True)
    p = ssub.add_parser("depart", parents=[_common()], help="mark a member Departed everywhere")
    p.add_argument("member_id", metavar="MEMBER_ID")
    p.set_defaults(func=_run(_sup_depart))
    p = ssub.add_parser("term", parents=[_common()], help="stop the supervisor gracefully")
    p.set_defaults(func=_run(_sup_term))

    add_sup_secret_commands(ssub)


def _sup_depart(args: argparse.Namespace) -> int:
    r = _request(args, SupDepart(args.member_id))
    print(f"Departed {r.get('member_id')}")
    return 0


def _sup_term(args: argparse.Namespace) -> int:
    _request(args, SupTerm())
    print("The supervisor is stopping")
    return 0


# --- census -------------------------------------------------------------------------------------


def _add_census(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("census", help="members and service groups, from the HTTP gateway")
    p.add_argument(
        "--http",
        metavar="[https://]HOST:PORT",
        help=f"HTTP gateway [$HAB_LISTEN_HTTP or {DEFAULT_HTTP}]",
    )
    p.add_argument(
        "--cacert",
        metavar="FILE",
        help=f"speak HTTPS, trusting this CA or certificate [${HTTP_CA_ENV}]",
    )
    p.add_argument(
        "--cert", metavar="FILE", help=f"HTTPS client certificate [${HTTP_CLIENT_CERT_ENV}]"
    )
    p.add_argument("--key", metavar="FILE", help=f"its private key [${HTTP_CLIENT_KEY_ENV}]")
    p.add_argument("--json", action="store_true", help="the gateway's JSON, for scripts")
    _ring_flags(p, "HTTP gateway")
    p.set_defaults(func=_run(_census))


def census_tables(census: Mapping[str, Any]) -> str:
    """Members, then service groups, as two tables."""
    me = census.get("local_member_id")
    members = [m for m in census.get("members") or [] if isinstance(m, dict)]
    mrows = [
        [
            str(m.get("member_id", "")) + (" (self)" if m.get("member_id") == me else ""),
            f"{m.get('address')}:{m.get('gossip_port')}",
            str(m.get("health", "")),
            str(m.get("incarnation", "")),
        ]
        for m in members
    ]
    out = [_table(["member", "address", "health", "incarnation"], mrows)]
    groups = census.get("census_groups") or {}
    grows: list[list[str]] = []
    for name in sorted(groups):
        g = groups[name]
        if not isinstance(g, dict):
            continue
        population = g.get("population") or {}
        alive = sum(1 for p in population.values() if isinstance(p, dict) and p.get("alive"))
        cfg = g.get("service_config")
        files = g.get("service_files") or {}
        grows.append(
            [
                name,
                f"{alive}/{len(population)}",
                str(g.get("leader_id") or "-"),
                str(cfg.get("incarnation")) if isinstance(cfg, dict) else "-",
                ", ".join(
                    f"{n}@{f.get('incarnation')}"
                    for n, f in sorted(files.items())
                    if isinstance(f, dict)
                )
                or "-",
            ]
        )
    out.append("")
    out.append(_table(["service group", "alive", "leader", "config", "files"], grows))
    return "\n".join(out)


def _census(args: argparse.Namespace) -> int:
    if args.member is not None and not args.http:
        addr = ring_member(ring_root(args.ring_root, _env()), args.member).http
    else:
        addr = args.http or _env().get("HAB_LISTEN_HTTP") or DEFAULT_HTTP
    target = http_target(addr, _env(), args.cacert, args.cert, args.key)
    census = get_json(target, "/census")
    if args.json:
        print(json.dumps(census, indent=2, sort_keys=True))
    else:
        print(census_tables(census))
    return 0


# --- registration -------------------------------------------------------------------------------


def register(commands: dict[str, AddCommand]) -> None:
    """Add the control commands to the CLI (called by ``pysup.cli``)."""
    commands["svc"] = _add_svc
    commands["config"] = _add_config
    commands["file"] = _add_file
    commands["sup"] = _add_sup
    commands["census"] = _add_census

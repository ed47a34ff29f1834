"""Key and TLS commands of the CLI, with Habitat's names and output lines:

- ``pysup user key generate USER``              (``hab user key generate``)
- ``pysup svc key generate SERVICE.GROUP [ORG]`` (``hab svc key generate``; ORG or ``$HAB_ORG``)
- ``pysup sup secret generate-tls --subject-alternative-name NAME [PATH]``
  (``hab sup secret generate-tls``; ``--path DIR`` is accepted too)

Keys go to ``--cache-key-path`` (``$HAB_CACHE_KEY_PATH``, else the default key cache, the same as
the ring keys'); TLS files to ``PATH`` (else ``<key cache>/ctl``). The crypto modules are imported
only when a command runs, so ``pysup --help`` stays fast. Errors are one line and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

EXIT_ERROR: Final = 1
BEGIN_GLYPHS: Final = ("»", " >>")
"""Habitat's ``ui.begin`` prefix, and its ASCII fallback for terminals that cannot show it."""
END_GLYPHS: Final = ("★", "***")
"""Habitat's ``ui.end`` prefix, and its ASCII fallback."""


class CommandError(Exception):
    """A problem the operator must fix; printed as one line."""


def _say(glyphs: tuple[str, str], message: str) -> None:
    encoding = sys.stdout.encoding or "ascii"
    try:
        glyphs[0].encode(encoding)
        glyph = glyphs[0]
    except (UnicodeEncodeError, LookupError):
        glyph = glyphs[1]
    print(f"{glyph} {message}")


def _run(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapper(args: argparse.Namespace) -> int:
        from pysup.crypto.certgen import TlsFileError
        from pysup.crypto.keyfiles import KeyFileError

        try:
            return func(args)
        except (CommandError, KeyFileError, TlsFileError) as e:
            print(f"pysup: {e}", file=sys.stderr)
            return EXIT_ERROR

    return wrapper


def _cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache-key-path",
        metavar="DIR",
        help="key cache [$HAB_CACHE_KEY_PATH, /hab/cache/keys as root on a Habitat host, "
        "else ~/.pysup/keys]",
    )


def _key_cache_path(args: argparse.Namespace) -> Path:
    from pysup.butterfly.keys import default_key_cache

    return Path(args.cache_key_path) if args.cache_key_path else default_key_cache()


# --- user key generate ----------------------------------------------------------------------------


def add_user_commands(sub: argparse._SubParsersAction[Any]) -> None:
    """``pysup user key generate USER``."""
    user = sub.add_parser("user", help="user keys (`user key generate USER`)")
    usub = user.add_subparsers(dest="user_command", metavar="SUBCOMMAND", required=True)
    key = usub.add_parser("key", help="user box keys, for `config apply --user`")
    ksub = key.add_subparsers(dest="user_key_command", metavar="SUBCOMMAND", required=True)
    p = ksub.add_parser("generate", help="generate a user key pair (.box.key and .pub)")
    p.add_argument("user", metavar="USER", help="name of the user key")
    _cache_arg(p)
    p.set_defaults(func=_run(_user_key_generate))


def _user_key_generate(args: argparse.Namespace) -> int:
    from pysup.crypto.box import generate_user_key
    from pysup.crypto.keycache import KeyCache

    _say(BEGIN_GLYPHS, f"Generating user key for {args.user}")
    pair = generate_user_key(args.user, datetime.now(UTC))
    KeyCache(_key_cache_path(args)).write_pair(pair)
    _say(END_GLYPHS, f"Generated user encryption key pair {pair.public.named}.")
    return 0


# --- svc key generate -----------------------------------------------------------------------------


def add_svc_key_commands(ssub: argparse._SubParsersAction[Any]) -> None:
    """``pysup svc key generate SERVICE.GROUP [ORG]``; ``ssub`` is the ``svc`` subcommands."""
    key = ssub.add_parser("key", help="service group box keys (`svc key generate`)")
    ksub = key.add_subparsers(dest="svc_key_command", metavar="SUBCOMMAND", required=True)
    p = ksub.add_parser("generate", help="generate a service group key pair (.box.key and .pub)")
    p.add_argument(
        "service_group", metavar="SERVICE.GROUP", help="e.g. redis.default (or redis.default@org)"
    )
    p.add_argument("org", metavar="ORG", nargs="?", help="the service organization [$HAB_ORG]")
    _cache_arg(p)
    p.set_defaults(func=_run(_svc_key_generate))


def service_group_and_org(text: str, org_arg: str | None, env_org: str | None) -> tuple[str, str]:
    """``(svc.group, org)`` from ``SERVICE.GROUP[@ORG]``, the ORG argument and ``$HAB_ORG``, in
    that order of precedence; two different orgs given at once are refused."""
    from pysup.census import ServiceGroup

    try:
        sg = ServiceGroup.parse(text)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if sg.org and org_arg and sg.org != org_arg:
        raise CommandError(f"{text} names organization {sg.org!r}, but ORG is {org_arg!r}")
    org = sg.org or org_arg or env_org
    if not org:
        raise CommandError("No organization specified (give ORG or set HAB_ORG)")
    try:
        ServiceGroup.of(sg.service, sg.group, org)
    except ValueError as e:
        raise CommandError(str(e)) from None
    return f"{sg.service}.{sg.group}", org


def _svc_key_generate(args: argparse.Namespace) -> int:
    from pysup.crypto.box import generate_service_key
    from pysup.crypto.keycache import KeyCache

    group, org = service_group_and_org(args.service_group, args.org, os.environ.get("HAB_ORG"))
    _say(BEGIN_GLYPHS, f"Generating service key for {group} in {org}")
    pair = generate_service_key(group, org, datetime.now(UTC))
    KeyCache(_key_cache_path(args)).write_pair(pair)
    _say(END_GLYPHS, f"Generated service key pair {pair.public.named}.")
    return 0


# --- sup secret generate-tls ----------------------------------------------------------------------


def add_sup_secret_commands(ssub: argparse._SubParsersAction[Any]) -> None:
    """``pysup sup secret generate-tls``; ``ssub`` is the ``sup`` subcommands."""
    secret = ssub.add_parser("secret", help="control gateway TLS files (`secret generate-tls`)")
    sec = secret.add_subparsers(dest="secret_command", metavar="SUBCOMMAND", required=True)
    p = sec.add_parser(
        "generate-tls", help="a self-signed certificate and key for the control gateway"
    )
    p.add_argument(
        "--subject-alternative-name",
        required=True,
        metavar="NAME",
        help="the DNS name (or IP) clients use to reach the supervisor; localhost is added",
    )
    p.add_argument("path", nargs="?", metavar="PATH", help="directory [<key cache>/ctl]")
    p.add_argument("--path", dest="path_option", metavar="DIR", help="the same as PATH")
    p.set_defaults(func=_run(_generate_tls))


def _generate_tls(args: argparse.Namespace) -> int:
    from pysup.crypto.certgen import default_ctl_keys_cache, generate_ctl_tls

    if args.path and args.path_option and Path(args.path) != Path(args.path_option):
        raise CommandError("give the directory once: PATH or --path")
    where = args.path or args.path_option
    directory = Path(where) if where else default_ctl_keys_cache()
    out = generate_ctl_tls(args.subject_alternative_name, directory, datetime.now(UTC))
    print(f"Generated control gateway certificate {out.certificate} and key {out.key}")
    return 0


# --- config apply / file upload --user ------------------------------------------------------------


def add_user_encryption_args(p: argparse.ArgumentParser) -> None:
    """``--user USER`` (and where its keys are) for ``config apply`` and ``file upload``."""
    p.add_argument(
        "--user",
        metavar="USER",
        help="encrypt with USER's newest box key to the service group's newest public key "
        "SVC.GROUP@ORG (ORG from SVC.GROUP@ORG or $HAB_ORG); only members holding that "
        "service's secret key can read it",
    )
    _cache_arg(p)


def seal_for_group(args: argparse.Namespace, data: bytes, what: str) -> bytes:
    """``data`` encrypted from ``--user`` to the service group named in ``args``; prints
    Habitat's ``Encrypting ... as USER-REV for SVC.GROUP@ORG-REV`` line. Errors are one line."""
    from pysup.crypto.keycache import KeyCache
    from pysup.crypto.keyfiles import KeyFileError
    from pysup.crypto.message import BoxMessageError, encrypt_for_service_group

    group, org = service_group_and_org(args.service_group, None, os.environ.get("HAB_ORG"))
    cache = KeyCache(_key_cache_path(args))
    try:
        sealed = encrypt_for_service_group(data, args.user, f"{group}@{org}", cache)
    except (KeyFileError, BoxMessageError) as e:
        raise CommandError(f"cannot encrypt {what}: {e}") from None
    _say(BEGIN_GLYPHS, f"Encrypting {what} as {sealed.user} for {sealed.service}")
    return sealed.data

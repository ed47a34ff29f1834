"""The flags of `pysup run`, as data: each names the setting it sets and one line of help.

`--help` shows every flag with its default and its environment variable, as `hab sup run --help`
does; both come from `pysup.settings` (the Settings field's default, `env_var`), so the help
cannot drift from what the flag does. A flag whose default needs words (it depends on something)
says so in `shown_default`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

from pysup.settings import Settings, env_var

Kind = Literal["str", "float", "list", "switch", "optional"]
"""``optional``: the value may be left out (``nargs="?"``); the flag alone sets ``""``, which
the setting reads as "the default place" (the ctl TLS flags: ``<key cache>/ctl``)."""


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    dest: str
    """The Settings field it sets."""
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    kind: Kind = "str"
    shown_default: str | None = None
    """The default as words, where the Settings field's value alone would not say it."""


FLAGS: Final = (
    Flag(("--listen-gossip",), "listen_gossip", "gossip, UDP and TCP", "IP:PORT"),
    Flag(("--listen-http",), "listen_http", "the HTTP API gateway", "IP:PORT"),
    Flag(
        ("--listen-ctl",),
        "listen_ctl",
        "the control gateway (`pysup svc`, `pysup config apply`, ...)",
        "IP:PORT",
    ),
    Flag(
        ("--peer",), "peers", "a member to join at start (repeatable)", "HOST[:PORT]", None, "list"
    ),
    Flag(
        ("--peer-watch-file",),
        "peer_watch_file",
        "a file of IP[:PORT] lines to join, read again when it changes",
        "FILE",
    ),
    Flag(
        ("-I", "--permanent-peer"),
        "permanent_peer",
        "others keep probing this member even after they confirm it dead (seeds)",
        kind="switch",
    ),
    Flag(
        ("-r", "--ring"),
        "ring",
        "encrypt gossip with the newest ring key NAME in the key cache",
        "NAME",
        shown_default="none (gossip in the clear)",
    ),
    Flag(
        ("--ring-key",),
        "ring_key",
        "the ring key file's contents, instead of the key cache",
        "TEXT",
    ),
    Flag(
        ("--cache-key-path",),
        "key_cache",
        "the key cache: ring keys, service keys (encrypted config), ctl/ TLS files",
        "DIR",
        shown_default="/hab/cache/keys as root if it exists, else ~/.pysup/keys",
    ),
    Flag(
        ("--key",),
        "tls_key",
        "the HTTP gateway's TLS private key (PEM); with --certs it serves HTTPS only",
        "KEY_FILE",
    ),
    Flag(
        ("--certs",),
        "tls_certs",
        "the HTTP gateway's TLS certificate chain (PEM); re-read when the file changes",
        "CERT_FILE",
    ),
    Flag(
        ("--ca-certs",),
        "tls_ca_certs",
        "HTTP clients must present a certificate signed by one of these CAs (PEM)",
        "CA_FILE",
    ),
    Flag(
        ("--ctl-server-certificate",),
        "ctl_server_certificate",
        "the control gateway's TLS certificate; a directory takes its newest "
        "ctl-gateway-*.crt.pem; no value: <key cache>/ctl",
        "PATH",
        kind="optional",
    ),
    Flag(
        ("--ctl-server-key",),
        "ctl_server_key",
        "the control gateway's TLS key; a directory takes its newest ctl-gateway-*.key.pem; "
        "no value: <key cache>/ctl",
        "PATH",
        kind="optional",
    ),
    Flag(
        ("--ctl-client-ca-certificate",),
        "ctl_client_ca_certificate",
        "control clients must present a certificate signed by this CA; no value: <key cache>/ctl",
        "PATH",
        kind="optional",
    ),
    Flag(("-D", "--http-disable"), "http_disable", "do not start the HTTP gateway", kind="switch"),
    Flag(
        ("--sys-ip-address",),
        "sys_ip_address",
        "the IP others use for this member, as templates see it (sys.ip)",
        "IP",
        shown_default="detected",
    ),
    Flag(
        ("--state-dir",),
        "state_dir",
        "member id, rumors, CTL_SECRET and service directories",
        "DIR",
    ),
    Flag(
        ("--gossip-profile",),
        "gossip_profile",
        "gossip timing: lan, lan-fast (sooner detection), wan, local (one machine) or habitat "
        "(Habitat's own)",
        choices=("lan", "lan-fast", "wan", "local", "habitat"),
    ),
    Flag(
        ("--udp-backend",),
        "udp_backend",
        "datagram I/O (asyncio: less CPU per member, for many members in one process)",
        choices=("asyncio-dgram", "asyncio"),
    ),
    Flag(
        ("--readiness",),
        "readiness",
        "what /readyz waits for: the API, joining a ring, or every service up",
        choices=("api", "ring", "services"),
    ),
    Flag(("--group",), "group", "service group of the plans given", "NAME"),
    Flag(
        ("-t", "--topology"),
        "topology",
        "leader: the service group elects one leader",
        choices=("standalone", "leader"),
    ),
    Flag(
        ("-s", "--strategy"),
        "strategy",
        "how the plans' services take updates",
        choices=("none", "at-once", "rolling"),
    ),
    Flag(
        ("--bind",),
        "binds",
        "bind NAME of the plans to a service group (repeatable)",
        "NAME:SVC.GROUP[@ORG]",
        kind="list",
    ),
    Flag(
        ("--binding-mode",),
        "binding_mode",
        "strict: hold a service until every bind has a member; relaxed: start anyway",
        choices=("strict", "relaxed"),
    ),
    Flag(
        ("-i", "--health-check-interval"),
        "health_check_interval_s",
        "time between health checks",
        "SECONDS",
        kind="float",
    ),
    Flag(
        ("--shutdown-timeout",),
        "shutdown_timeout_s",
        "time a service gets to stop before it is killed",
        "SECONDS",
        kind="float",
        shown_default="the plan's pkg_shutdown_timeout_sec",
    ),
    Flag(
        ("--hook-timeout",),
        "hook_timeout_s",
        "time a hook other than run may take before it is killed",
        "SECONDS",
        kind="float",
    ),
    Flag(
        ("--departure-timeout",),
        "departure_timeout_s",
        "Confirmed -> Departed, and Departed members' rumors kept, this long",
        "SECONDS",
        kind="float",
        shown_default="3 days, from the gossip profile",
    ),
    Flag(
        ("--peer-discovery",),
        "peer_discovery",
        "find peers through the Kubernetes API or the DNS records of NAME",
        "kubernetes|dns:NAME",
    ),
    Flag(
        ("--kubernetes-service",),
        "kubernetes_service",
        "the Service whose EndpointSlices list the peers",
        "NAME",
    ),
    Flag(
        ("--kubernetes-selector",),
        "kubernetes_selector",
        "label selector of the peer pods, when EndpointSlices cannot be read",
        "LABELS",
    ),
    Flag(
        ("--mode",),
        "mode",
        "a SWIM gossip ring, or Kubernetes-native (members, leader, config from the API)",
        choices=("gossip", "kubernetes"),
    ),
    Flag(
        ("--pkg-path",),
        "pkg_paths",
        'where a plan\'s dependency lives on this host: {{pkgPathFor "ORIGIN/NAME"}} renders '
        "PREFIX (repeatable)",
        "ORIGIN/NAME=PREFIX",
        kind="list",
        shown_default="none; /hab/pkgs, then the prefix of a namesake program on PATH",
    ),
    Flag(
        ("--orphans",),
        "orphans",
        "a service process left running by a killed supervisor: keep supervising it, or stop it "
        "and start a fresh one",
        choices=("adopt", "stop"),
    ),
    Flag(("--json-logging",), "json_logging", "log one JSON object per line", kind="switch"),
    Flag(("-v", "--verbose"), "verbose", "log debug events too", kind="switch"),
)

IGNORED: Final = ("--channel", "--url", "-u", "--org", "--config-from", "--update-condition")
"""Habitat flags with no meaning here (they take a value), accepted so manifests keep working."""
IGNORED_SWITCHES: Final = ("--auto-update", "-A", "--no-color")


def setting_help(dest: str, text: str, shown_default: str | None = None) -> str:
    """`text [default: X] [env: VAR]`."""
    default = shown_default
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


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Every flag of `pysup run` (and Habitat's ignored ones, hidden) on parser `p`."""
    p.add_argument(
        "plans",
        nargs="*",
        metavar="PLAN_DIR",
        help=setting_help("plans", "plan directories to load at start"),
    )
    for f in FLAGS:
        kw: dict[str, Any] = {"dest": f.dest, "help": setting_help(f.dest, f.help, f.shown_default)}
        if f.kind == "switch":
            kw.update(action="store_true", default=None)
        else:
            kw.update(metavar=f.metavar, choices=f.choices)
            if f.kind == "list":
                kw["action"] = "append"
            elif f.kind == "float":
                kw["type"] = float
            elif f.kind == "optional":
                kw.update(nargs="?", const="")
        p.add_argument(*f.names, **kw)
    p.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="a TOML file with any of these settings; flags and environment win "
        "[default: none] [env: PYSUP_CONFIG]",
    )
    for name in IGNORED:
        p.add_argument(name, dest=_ignored(name), help=argparse.SUPPRESS)
    for name in IGNORED_SWITCHES:
        p.add_argument(name, action="store_true", dest=_ignored(name), help=argparse.SUPPRESS)


def _ignored(name: str) -> str:
    return f"ignored_{name.lstrip('-').replace('-', '_')}"
